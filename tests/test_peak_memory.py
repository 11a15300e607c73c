"""peak_rss_bytes: a child process reports its own peak memory, not the one of the parent that started it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from videoqa_base.memory import peak_rss_bytes

CHILD = "from videoqa_base.memory import peak_rss_bytes; print(peak_rss_bytes())"


def test_a_child_reports_its_own_peak_not_its_parents():
    held = np.ones(400 * 2**20, dtype=np.uint8)  # 400 MiB resident in this process
    assert peak_rss_bytes() >= held.nbytes
    child = int(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout)
    assert 0 < child < 200 * 2**20  # a bare interpreter; ru_maxrss would say >= 400 MiB on Linux
    del held
