"""Caption annotations: the readers of every format training accepts.

readers.py  our JSONL, LLaVA JSON and Karpathy COCO files, pairs for training (CaptionDataset)
paper.py    the paper's published datasets as downloaded (LCS-558K, COCO Karpathy, ShareGPT4V,
            DCI: one JSON per image), and `captioner data` to check one

READERS maps a `format` of a training config's data source to the function that reads it, so
adding a format is one reader plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from captioner.data.paper import read_records
from captioner.data.readers import CaptionRecord, load_records


def _file_reader(fmt: str) -> Callable[..., list[CaptionRecord]]:
    def read(path: str | Path, split: str | None = None) -> list[CaptionRecord]:
        return load_records(path, fmt, split=split)  # type: ignore[arg-type]

    return read


def _read_dci(path: str | Path, split: str | None = None) -> list[CaptionRecord]:
    return read_records(path, "dci", split=split)  # a directory of one JSON per image


READERS: dict[str, Callable[..., list[CaptionRecord]]] = {
    "auto": _file_reader("auto"),
    "llava": _file_reader("llava"),
    "coco-karpathy": _file_reader("coco-karpathy"),
    "jsonl": _file_reader("jsonl"),
    "dci": _read_dci,
}

__all__ = ["READERS"]
