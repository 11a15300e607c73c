"""Answerers: how a run gets from questions to answers. The run object holds one and never asks
which kind it is.

    captions   caption the sampled frames (the executor's caption stage), then ask the LLM with the
               caption transcript (LLoVi, the paper's pipeline)
    video-llm  show a video LLM the sampled frames themselves: no captioner, no transcript

Both work in two steps the run object calls in order: `gather()` what the answers are drawn from
(captions, or only the earlier failures for a video LLM), then `ask()` the LLM for the questions
that still need an answer. Everything an answerer needs from the run (its executor's caption
stage, its captioner, the durable appends of its run directory) comes in a `RunContext`: the
answering stage never imports the run object, and never closes what it was handed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from videoqa.answering.answer import answer_questions
from videoqa.answering.llm.base import LLMBackend
from videoqa.answering.llm.video import VideoLLMBackend
from videoqa.answering.relevance import select_per_question
from videoqa.answering.transcript import build_question_transcripts, build_transcripts
from videoqa.answering.video_llm import VideoLLMAnswerer, video_llm_parameters
from videoqa.captioning.base import Captioner
from videoqa.captioning.cache import file_state
from videoqa.captioning.videos import CaptionResult, CaptionTiming
from videoqa.config import RunConfig
from videoqa.types import Answer, Question, VideoFailure
from videoqa_base.errors import UserError


def unique_videos(questions: Sequence[Question]) -> list[tuple[str, Path]]:
    """(video_id, path) of every video the questions ask about, in first-asked order."""
    seen: dict[str, Path] = {}
    for q in questions:
        seen.setdefault(q.video_id, q.video_path)
    return list(seen.items())


@dataclass
class RunContext:
    """What an answerer may use of the run that holds it."""

    config: RunConfig
    progress: bool
    known_failures: dict[str, VideoFailure]  # recorded by earlier attempts of this run
    record_answers: Callable[[Sequence[Question], Sequence[Answer]], None]  # durable appends
    record_failures: Callable[[Sequence[VideoFailure]], None]
    caption_videos: Callable[..., CaptionResult]  # the executor's caption stage
    captioner: Callable[[], Captioner]  # the run's captioner, built on first call (no weights)
    # adaptive.relevance llm: the question-dependent selections of earlier attempts, and their durable append
    recorded_selections: dict[str, dict[str, Any]] = field(default_factory=dict)
    record_selections: Callable[[Sequence[dict[str, Any]]], None] = lambda records: None


class Answerer(ABC):
    kind: ClassVar[str]
    uses_captioner: ClassVar[bool]  # False: the run never builds a captioner
    executors: ClassVar[frozenset[str]]  # where this answerer can run (videoqa.executors)

    def __init__(self, config: RunConfig):
        self.config = config
        if config.executor not in self.executors:
            raise UserError(
                f"executor {config.executor!r}: answerer {self.kind!r} runs only with {sorted(self.executors)}"
            )

    def row_name(self) -> str:
        """The name of this run's row in result and comparison tables."""
        # RunConfig requires a captioner for captioning answerers; the others override this
        assert self.config.captioner is not None, f"answerer {self.kind!r} has no captioner"
        return self.config.captioner.name

    @abstractmethod
    def gather(self, questions: Sequence[Question], ctx: RunContext) -> CaptionResult:
        """What the answers are drawn from, and the videos that failed (earlier or now)."""

    @abstractmethod
    def ask(
        self, backend: Any, questions: Sequence[Question], gathered: CaptionResult, ctx: RunContext
    ) -> tuple[list[Answer], float]:
        """Answers for `questions` (appended durably as they come, with `ctx.record_answers`), in
        order, and the seconds spent answering. May add to `gathered` the failures and timings it
        met (a video LLM decodes while it answers)."""


class CaptionsAnswerer(Answerer):
    kind = "captions"
    uses_captioner = True
    executors = frozenset({"local", "ray"})

    def gather(self, questions: Sequence[Question], ctx: RunContext) -> CaptionResult:
        return ctx.caption_videos(
            self.config,
            ctx.captioner(),
            unique_videos(questions),
            known_failures=ctx.known_failures,
            on_failure=lambda failure: ctx.record_failures([failure]),
            progress=ctx.progress,
        )

    def ask(
        self, backend: LLMBackend, questions: Sequence[Question], gathered: CaptionResult, ctx: RunContext
    ) -> tuple[list[Answer], float]:
        transcripts = build_transcripts(questions, gathered.captions, self.config.transcript)
        started, answers = time.perf_counter(), []
        own: dict[str, str] = {}  # question-dependent selection (adaptive.relevance llm): one transcript per question
        if self.config.frames.select == "adaptive" and self.config.adaptive.relevance == "llm":
            views = select_per_question(
                backend, questions, gathered.captions, ctx.recorded_selections, ctx.record_selections
            )
            own = build_question_transcripts(questions, views, self.config.transcript)
        chunk_size = self.config.answer.chunk_size
        for i in range(0, len(questions), chunk_size):
            chunk = list(questions[i : i + chunk_size])
            new = answer_questions(
                backend,
                chunk,
                transcripts,
                self.config.answer,
                progress=ctx.progress,
                batch_size=len(chunk),
                question_transcripts=own,
            )
            ctx.record_answers(chunk, new)
            answers += new
        return answers, time.perf_counter() - started


class FramesAnswerer(Answerer):
    """`answerer: video-llm`: the frames and the question go straight to a video LLM."""

    kind = "video-llm"
    uses_captioner = False
    # the Ray executor's LLM replicas serve text prompts; a video LLM's frames stay in this process
    executors = frozenset({"local"})

    def row_name(self) -> str:
        return f"{self.config.llm.name} (video LLM)"

    def gather(self, questions: Sequence[Question], ctx: RunContext) -> CaptionResult:
        """No captions. Earlier failures stand unless the video's file changed since (then the
        video is decoded again when its questions are asked)."""
        videos = dict(unique_videos(questions))
        failures, retried = {}, []
        for vid, failure in ctx.known_failures.items():
            if vid not in videos:
                continue
            if failure.fingerprint and failure.fingerprint == file_state(videos[vid]):
                failures[vid] = failure
            else:
                retried.append(vid)
        identity = {"type": "video-llm", "frames": self.config.video_llm.model_dump()}
        timing: CaptionTiming = {"caption_s": 0.0, "decode_s": 0.0}
        return CaptionResult({}, failures, timing, identity, video_llm_parameters(self.config.llm), retried)

    def ask(
        self, backend: VideoLLMBackend, questions: Sequence[Question], gathered: CaptionResult, ctx: RunContext
    ) -> tuple[list[Answer], float]:
        if not questions:
            return [], 0.0
        answerer = VideoLLMAnswerer(backend, **self.config.video_llm.model_dump(), workers=self.config.frames.workers)
        answers, timing = answerer.answer(questions, progress=ctx.progress)
        ctx.record_answers(questions, answers)
        ctx.record_failures(list(answerer.failures.values()))
        # VideoLLMAnswerer.answer returns its timing (keys of CaptionTiming) as a plain dict: unchecked here
        gathered.timing.update(timing)  # type: ignore[typeddict-item]  # decode_s and video_seconds of the frames shown
        gathered.failures.update(answerer.failures)
        return answers, timing["answer_s"]


ANSWERERS: dict[str, type[Answerer]] = {"captions": CaptionsAnswerer, "video-llm": FramesAnswerer}


def make_answerer(config: RunConfig) -> Answerer:
    return ANSWERERS[config.answerer](config)
