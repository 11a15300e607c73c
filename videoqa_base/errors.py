"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a missing file, a malformed annotation, absent weights."""


class MissingModelError(UserError):
    """Model weights are not on this machine; the message says how to get them."""

    def __init__(self, what: str, ref: str, hint: str | None = None):
        if hint is None:
            hint = (
                f"download it with `huggingface-cli download {ref}` (or `hf download {ref}`) or pass a local directory"
                if "/" in ref and not ref.startswith(("/", ".", "~"))
                else "pass an existing local model directory"
            )
        super().__init__(f"{what} {ref!r} is not available on this machine: {hint}")


class AnnotationError(UserError):
    """A dataset file is malformed; names the file and the offending key."""

    def __init__(self, path, key: str, expected: str):
        super().__init__(f"{path}: field {key!r}: expected {expected}")
        self.path, self.key, self.expected = str(path), key, expected
