"""Dataset loaders: each turns files on disk into a list of `Question`s."""

from __future__ import annotations

from videoqa.config import DatasetConfig
from videoqa.registry import DATASETS
from videoqa.types import Question


def load_questions(config: DatasetConfig) -> list[Question]:
    return DATASETS.get(config.type)(config)
