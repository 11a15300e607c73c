"""The run object: the pipeline wired once, for `videoqa run`, `compare`, the bench and every executor.

    questions -> caption() -> transcripts -> answer() -> scores -> tables + manifest

    vq = VideoQA(config)
    result = vq.run()                      # or step by step:
    questions = vq.questions()
    captioned = vq.caption(questions)      # cache first; weights loaded only for uncached videos
    answers = vq.answer(questions, captioned)
    result = vq.finish(questions, answers, captioned)

Each stage lives in its own package (datasets, frames + captioning, answering, scoring); this
module only decides what still needs doing and hands it to them. The run directory
(videoqa.rundir) makes a run resumable: a re-run of the same `--run-id` retries what can pass
now (`llm_failed` answers, videos whose file appeared or changed) and redoes nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from videoqa.answering.answer import answer_questions
from videoqa.answering.llm.base import LLMBackend
from videoqa.answering.transcript import build_transcript
from videoqa.answering.video_llm import VideoLLMAnswerer, video_llm_parameters
from videoqa.captioning.base import Captioner
from videoqa.captioning.videos import CaptionResult
from videoqa.config import RunConfig
from videoqa.datasets import load_questions
from videoqa.executors import get_executor
from videoqa.manifest import environment
from videoqa.registry import CAPTIONERS, LLM_BACKENDS
from videoqa.rundir import RETRYABLE_ANSWERS, RunDirectory
from videoqa.scoring.qa_metrics import score
from videoqa.scoring.tables import result_row, write_table
from videoqa.types import Answer, Question

__all__ = ["VideoQA", "RunResult", "CaptionResult", "unique_videos"]


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    table: pd.DataFrame
    row: dict = field(default_factory=dict)


def unique_videos(questions: Sequence[Question]) -> list[tuple[str, Path]]:
    """(video_id, path) of every video the questions ask about, in first-asked order."""
    seen: dict[str, Path] = {}
    for q in questions:
        seen.setdefault(q.video_id, q.video_path)
    return list(seen.items())


class LazyLLM:
    """Starts the LLM engine on first use, so a run with nothing left to answer never starts it."""

    def __init__(self, config, backend: LLMBackend | None, load: Callable[..., LLMBackend]):
        self.config, self.backend, self.owned = config, backend, backend is None
        self.load = load  # how to build the backend: the executor's load_backend
        self.startup_s = 0.0  # engine start-up (weights load, warm-up): reported apart from answering

    def check_available(self) -> None:
        """Fail in a second, not after hours of captioning, when the LLM's weights are absent."""
        check = getattr(LLM_BACKENDS.get(self.config.backend), "check_available", None)
        if self.backend is None and check is not None:
            check(self.config)

    def get(self) -> LLMBackend:
        if self.backend is None:
            started = time.perf_counter()
            self.backend = self.load(self.config)
            self.startup_s = time.perf_counter() - started
        return self.backend

    def identity(self, previous: dict | None = None) -> dict:
        if self.backend is not None:
            return self.backend.identity()
        return previous or {"model": self.config.model}

    def close(self) -> None:
        if self.backend is not None and self.owned:
            self.backend.close()
            self.backend = None


class VideoQA:
    """One run: its config, its run directory, its captioner and LLM (built lazily, or injected)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        progress: bool = True,
        captioner: Captioner | None = None,
        llm: LLMBackend | LazyLLM | None = None,
    ):
        self.run_dir = RunDirectory(config)
        self.config = self.run_dir.config  # with its run id
        self.progress = progress
        self.executor = get_executor(self.config)
        self._captioner = captioner
        # an injected LazyLLM is shared (compare: one engine for every captioner): its owner closes it
        self.owns_llm = not isinstance(llm, LazyLLM)
        self.llm = llm if isinstance(llm, LazyLLM) else LazyLLM(self.config.llm, llm, load=self.executor.load_backend)
        self.retries = {"llm_failed": 0, "videos": 0}
        self.answer_s = 0.0
        self._prepared = False

    @property
    def captioner(self) -> Captioner:
        """Built on first use (cheap: no weights), after the dataset and the LLM have been checked."""
        if self._captioner is None:
            self._captioner = CAPTIONERS.get(self.config.captioner.type)(self.config.captioner)
        return self._captioner

    # ------------------------------------------------------------------ stages

    def questions(self) -> list[Question]:
        questions = load_questions(self.config.dataset)
        return questions if self.config.limit is None else questions[: self.config.limit]

    def prepare(self) -> None:
        if not self._prepared:
            self.run_dir.prepare()
            self._prepared = True

    def pending(self, questions: Sequence[Question]) -> list[Question]:
        """Questions without a recorded answer, or whose answer may pass if asked again."""
        done = self.run_dir.recorded_answers()
        return [q for q in questions if q.qid not in done or done[q.qid].status in RETRYABLE_ANSWERS]

    def caption(self, questions: Sequence[Question]) -> CaptionResult:
        self.prepare()
        if self.config.answerer == "video-llm":  # no captions: the video LLM is shown the frames in answer()
            videos = {q.video_id for q in questions}
            earlier = {vid: f for vid, f in self.run_dir.recorded_failures().items() if vid in videos}
            return CaptionResult(
                {},
                earlier,
                {"caption_s": 0.0, "decode_s": 0.0},
                {"type": "video-llm", "frames": self.config.video_llm.model_dump()},
                video_llm_parameters(self.config.llm),
            )
        captioned = self.executor.caption_videos(
            self.config,
            self.captioner,
            unique_videos(questions),
            known_failures=self.run_dir.recorded_failures(),
            on_failure=lambda failure: self.run_dir.append_failures([failure]),
            progress=self.progress,
            collect=self.llm.backend is None,
        )
        self.retries["videos"] = len(captioned.retried_videos)
        return captioned

    def answer(self, questions: Sequence[Question], captioned: CaptionResult) -> list[Answer]:
        """Answers for every question: recorded ones kept, the rest asked now and appended durably.

        A question whose video failed is answered `video_failed` with the failure's reason, without
        the LLM; a question whose video was retried is asked again."""
        self.prepare()
        if self.config.answerer == "video-llm":
            return self.answer_from_frames(questions, captioned)
        recorded = self.run_dir.recorded_answers()
        retried = set(captioned.retried_videos)
        answers: dict[str, Answer] = {}
        todo: list[Question] = []
        for q in questions:
            before = recorded.get(q.qid)
            failure = captioned.failures.get(q.video_id)
            if before is not None and before.status not in RETRYABLE_ANSWERS and q.video_id not in retried:
                answers[q.qid] = before
            elif failure is not None:
                answers[q.qid] = Answer(q.qid, None, "", "video_failed", f"{failure.reason}: {failure.message}")
                self.run_dir.append_answers([q], [answers[q.qid]])
            else:
                self.retries["llm_failed"] += before is not None and before.status in RETRYABLE_ANSWERS
                todo.append(q)
        transcripts = {
            vid: build_transcript(vc, self.config.transcript.caption_every) for vid, vc in captioned.captions.items()
        }
        self.answer_s = 0.0
        if todo:
            backend = self.llm.get()
            started = time.perf_counter()
            chunk_size = self.config.answer.chunk_size
            for i in range(0, len(todo), chunk_size):
                chunk = todo[i : i + chunk_size]
                new = answer_questions(
                    backend, chunk, transcripts, self.config.answer, progress=self.progress, batch_size=len(chunk)
                )
                self.run_dir.append_answers(chunk, new)
                answers.update((a.qid, a) for a in new)
            self.answer_s = time.perf_counter() - started
        return [answers[q.qid] for q in questions]

    def answer_from_frames(self, questions: Sequence[Question], captioned: CaptionResult) -> list[Answer]:
        """`answerer: video-llm`: pending questions go to the video LLM with their videos' frames."""
        recorded = self.run_dir.recorded_answers()
        todo = self.pending(questions)
        answers = {q.qid: recorded[q.qid] for q in questions if q.qid in recorded}
        self.answer_s = 0.0
        if todo:
            answerer = VideoLLMAnswerer(
                self.llm.get(), **self.config.video_llm.model_dump(), workers=self.config.frames.workers
            )
            new, timing = answerer.answer(todo, progress=self.progress)
            self.run_dir.append_answers(todo, new)
            self.run_dir.append_failures(list(answerer.failures.values()))
            answers.update((a.qid, a) for a in new)
            self.answer_s = timing["answer_s"]
            captioned.timing.update(timing)  # decode_s and video_seconds of the frames shown
            captioned.failures.update(answerer.failures)
        return [answers[q.qid] for q in questions]

    def finish(self, questions: Sequence[Question], answers: Sequence[Answer], captioned: CaptionResult) -> RunResult:
        """Scores, final files, result table and manifest."""
        failures = captioned.failures
        metrics = score(questions, answers)
        metrics["timing"] = captioned.timing | {
            "answer_s": self.answer_s,
            "llm_startup_s": self.llm.startup_s,
            "video_seconds": captioned.timing.get("video_seconds")
            or sum(vc.duration for vc in captioned.captions.values()),
        }
        metrics["retries"] = dict(self.retries)
        metrics["video_failures"] = {
            reason: sum(1 for f in failures.values() if f.reason == reason)
            for reason in sorted({f.reason for f in failures.values()})
        }
        self.run_dir.write_results(questions, answers, captioned.captions.values(), failures.values(), metrics)
        config = self.config
        name = config.captioner.name if config.answerer == "captions" else f"{config.llm.name} (video LLM)"
        row = result_row(config.dataset.name, name, config.llm.name, captioned.parameters, metrics)
        table = write_table([row], self.run_dir.file("results"))
        self.run_dir.write_manifest(
            {
                "dataset": config.dataset.model_dump(),
                "captioner": captioned.identity | {"parameters": captioned.parameters},
                "llm": self.llm.identity(self.run_dir.previous_manifest().get("llm")),
                "environment": environment() | self.executor.describe(),
            }
        )
        return RunResult(self.run_dir.path, metrics, table, row)

    def run(self) -> RunResult:
        questions = self.questions()
        self.prepare()
        if self.pending(questions):
            self.llm.check_available()
        try:
            captioned = self.caption(questions)
            answers = self.answer(questions, captioned)
            return self.finish(questions, answers, captioned)
        finally:
            self.close()

    def close(self) -> None:
        if self._captioner is not None:
            self._captioner.close()
        if self.owns_llm:
            self.llm.close()
