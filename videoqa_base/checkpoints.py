"""Facts about a checkpoint read from its files, without loading a tensor."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path


def safetensors_parameter_count(files: Sequence[Path], prefix: str = "") -> int:
    """Parameters stored in safetensors files (those whose name starts with `prefix`), read from
    their headers: a 7B checkpoint is counted in milliseconds, and no weights are loaded."""
    total = 0
    for file in files:
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        total += sum(
            math.prod(entry["shape"])
            for key, entry in header.items()
            if key != "__metadata__" and key.startswith(prefix)
        )
    return total


def checkpoint_parameters(directory: Path, prefix: str = "") -> int:
    """Parameters of every *.safetensors file in a checkpoint directory."""
    return safetensors_parameter_count(sorted(Path(directory).glob("*.safetensors")), prefix)
