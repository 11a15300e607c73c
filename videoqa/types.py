"""The typed records that flow one way through the pipeline.

video -> FrameBatch -> VideoCaptions -> transcript (str) -> Answer -> metrics -> tables
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OPTION_LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question about one video."""

    qid: str
    video_id: str
    video_path: Path
    question: str
    options: tuple[str, ...]
    answer: int | None = None  # index into options; None when the split has no labels
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. question type / category

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(OPTION_LETTERS[: len(self.options)])


@dataclass
class FrameBatch:
    """A chunk of frames sampled from one video, already resized for the captioner.

    Long videos arrive as several chunks (bounded memory); `final` marks the last one.
    """

    video_id: str
    images: np.ndarray  # (N, H, W, 3) uint8, RGB
    timestamps: list[float]  # seconds from the start of the video, one per frame
    duration: float  # seconds
    decoder: str = "decord"  # which decoder delivered them (decord | ffmpeg)
    start: int = 0  # position of the first frame in the video's sampled sequence
    final: bool = True  # last chunk of this video


@dataclass(frozen=True)
class Caption:
    t: float  # seconds
    text: str


@dataclass
class VideoCaptions:
    video_id: str
    captions: list[Caption]
    duration: float
    caption_s: float = 0.0  # captioning time spent on this video (kept with cached captions)


@dataclass
class Answer:
    """What the LLM chose for one question. `pred` is None when no valid option came back."""

    qid: str
    pred: int | None
    raw: str
    status: str = "ok"  # ok | invalid | video_failed | llm_failed
    detail: str = ""  # reason for a non-ok status, or the context policy that was applied
    prompt_tokens: int | None = None
    choice_logprobs: dict[str, float] = field(default_factory=dict)  # letter -> log-prob, when the backend gives them


@dataclass
class VideoFailure:
    video_id: str
    path: str
    reason: str  # short machine-readable reason: missing | not_a_video | zero_frames | decode_error
    message: str
    fingerprint: str = (
        ""  # the file's state when it failed ("absent" or a content hash): resume retries it if it changes
    )
