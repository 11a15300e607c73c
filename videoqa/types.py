"""The typed records that flow one way through the pipeline.

video -> FrameBatch -> VideoCaptions -> transcript (str) -> Answer -> metrics -> tables
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

OPTION_LETTERS = "ABCDEFGHIJ"
# ok: a valid option; invalid: none came back or the prompt could not fit (see `detail`);
# video_failed: the video could not be decoded; llm_failed: the LLM call failed (retried on resume)
AnswerStatus = Literal["ok", "invalid", "video_failed", "llm_failed"]
ANSWER_STATUSES: tuple[AnswerStatus, ...] = ("ok", "invalid", "video_failed", "llm_failed")


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
    # benchmark breakdowns, {name: labels}: accuracy is reported per label of each name; a question
    # with several labels (LVBench's question_type) counts once under each
    breakdowns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subtitles: Path | None = None  # the video's subtitle file (.srt or LongVideoBench JSON), when shipped

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
    # adaptive selection: the (start, end) seconds this caption stands for (its cluster's frames);
    # empty for uniform sampling, where a caption stands for its own frame
    spans: tuple[tuple[float, float], ...] = ()


@dataclass
class VideoCaptions:
    video_id: str
    captions: list[Caption]
    duration: float
    caption_s: float = 0.0  # captioning time spent on this video (kept with cached captions)
    # frames.select adaptive: frames decoded / embedded / captioned, and the clusters (captioning.frame_stage)
    selection: dict[str, Any] | None = None


@dataclass
class Answer:
    """What the LLM chose for one question. `pred` is None when no valid option came back."""

    qid: str
    pred: int | None
    raw: str
    status: AnswerStatus = "ok"
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
