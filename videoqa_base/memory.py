"""This process's peak resident memory, for benchmarks that measure each case in its own process."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """The largest resident set this process has had since it started its program.

    On Linux this is VmHWM, the high-water mark of the current address space. `ru_maxrss` is not
    used there: Linux carries it over `fork` and `exec`, so a child of a parent that held 5.8 GB
    reports 5.8 GB whatever it used itself (`videoqa bench` measured exactly that). Elsewhere
    `ru_maxrss` is the best there is (KiB on Linux and the BSDs, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # "VmHWM:   123456 kB"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
