"""What every command line shares: user-fixable errors become one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from videoqa_base.errors import UserError


def run_guarded(action: Callable[[], int | None]) -> int:
    """Run a command; user-fixable errors become one line on stderr and a non-zero exit."""
    try:
        return int(action() or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
