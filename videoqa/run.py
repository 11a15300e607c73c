"""The run object: the pipeline wired once, for `videoqa run`, `compare`, the bench and every executor.

    questions -> caption() -> transcripts -> answer() -> scores -> tables + manifest

    vq = VideoQA(config)
    result = vq.run()                      # or in its two phases:
    gathered = vq.gather()                 # questions + captions (cache first; weights only if needed)
    result = vq.complete(gathered)         # answers, scores, final files, manifest

How questions become answers is the run's `Answerer` (videoqa.answering.answerers: captions, or a
video LLM shown the frames); the run object never asks which one it holds. It owns what it
builds: it creates, loads and closes its captioner and its LLM (an engine handed to it, or shared
with another run through `share_llm_of`, is closed by its owner).

Each stage lives in its own package (datasets, frames + captioning, answering, scoring); this
module only decides what still needs doing and hands it to them. The run directory
(videoqa.rundir) makes a run resumable: a re-run of the same `--run-id` retries what can pass
now (`llm_failed` answers, videos whose file appeared or changed) and redoes nothing else.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from videoqa.answering.answerers import RunContext, make_answerer, unique_videos
from videoqa.captioning.base import Captioner
from videoqa.captioning.videos import CaptionResult
from videoqa.config import LLMConfig, RunConfig
from videoqa.datasets import load_questions
from videoqa.manifest import environment
from videoqa.registry import CAPTIONERS, LLM_BACKENDS, get_executor
from videoqa.rundir import RETRYABLE_ANSWERS, RunDirectory
from videoqa.scoring.qa_metrics import score
from videoqa.scoring.tables import result_row, write_table
from videoqa.types import Answer, Question

__all__ = ["VideoQA", "RunResult", "Gathered", "CaptionResult", "unique_videos"]


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    table: pd.DataFrame
    row: dict = field(default_factory=dict)


@dataclass
class Gathered:
    """The first phase's result: the run's questions and what their answers are drawn from."""

    questions: list[Question]
    inputs: CaptionResult


class LazyLLM:
    """Starts the LLM engine on first use, so a run with nothing left to answer never starts it."""

    def __init__(self, config: LLMConfig, backend: Any | None, load: Callable[..., Any]):
        self.config, self.backend, self.owned = config, backend, backend is None
        self.load = load  # how to build the backend: the executor's load_backend
        self.startup_s = 0.0  # engine start-up (weights load, warm-up): reported apart from answering
        self.startup_charged = False

    @property
    def started(self) -> bool:
        return self.backend is not None

    def check_available(self, captioner_bytes: int = 0, local: bool = True) -> None:
        """Fail in a second, not after hours of captioning, when the LLM's weights are absent or its
        engine cannot fit in this machine's memory beside `captioner_bytes` of captioner (a shared
        GPU). A backend that sizes its engine fixes its memory setting now (`fit_memory`)."""
        if self.backend is not None:
            return
        backend = LLM_BACKENDS.get(self.config.backend)
        check = getattr(backend, "check_available", None)
        if check is not None:
            check(self.config)
        fit = getattr(backend, "fit_memory", None)
        if fit is not None and local:  # on Ray the engines start on the cluster's nodes, not here
            self.config = fit(self.config, captioner_bytes)

    def get(self) -> Any:
        if self.backend is None:
            started = time.perf_counter()
            self.backend = self.load(self.config)
            self.startup_s = time.perf_counter() - started
        return self.backend

    def charge_startup_s(self) -> float:
        """The engine's start-up time, charged to the first run that reports it (0 afterwards)."""
        if self.startup_charged or self.backend is None:
            return 0.0
        self.startup_charged = True
        return self.startup_s

    def identity(self, previous: dict | None = None) -> dict:
        if self.backend is not None:
            return self.backend.identity()
        return previous or {"model": self.config.model}

    def close(self) -> None:
        if self.backend is not None and self.owned:
            self.backend.close()
            self.backend = None


class VideoQA:
    """One run: its config, its run directory, its answerer, captioner and LLM (built lazily)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        progress: bool = True,
        captioner: Captioner | None = None,
        llm: Any | None = None,
    ):
        self.run_dir = RunDirectory(config)
        self.config = self.run_dir.config  # with its run id
        self.progress = progress
        self.executor = get_executor(self.config)
        self.answerer = make_answerer(self.config)
        # what the run was handed (a bench's loaded captioner or backend) stays open: its creator closes it
        self._captioner, self.owns_captioner = captioner, captioner is None
        self.llm = LazyLLM(self.config.llm, llm, load=self.executor.load_backend)
        self.owns_llm = True
        self.retries = {"llm_failed": 0, "videos": 0}
        self.answer_s = 0.0
        self._prepared = False

    def share_llm_of(self, other: VideoQA) -> None:
        """Answer with `other`'s LLM engine (compare: one engine for every captioner). `other`
        closes it; its start-up time is charged once, to the first run that needed it."""
        if self.config.llm != other.config.llm:
            raise ValueError(f"{self.config.llm.name!r} and {other.config.llm.name!r}: runs share one LLM config only")
        self.llm, self.owns_llm = other.llm, False

    @property
    def captioner(self) -> Captioner:
        """Built on first use (cheap: no weights), after the dataset and the LLM have been checked."""
        if self._captioner is None:
            if self.config.captioner is None:
                raise ValueError(f"answerer {self.config.answerer!r} has no captioner")
            self._captioner = CAPTIONERS.get(self.config.captioner.type)(self.config.captioner)
        return self._captioner

    def context(self) -> RunContext:
        return RunContext(
            config=self.config,
            progress=self.progress,
            known_failures=self.run_dir.recorded_failures(),
            record_answers=self.run_dir.append_answers,
            record_failures=self.run_dir.append_failures,
            caption_videos=self.executor.caption_videos,
            captioner=lambda: self.captioner,
            recorded_selections=self.run_dir.recorded_selections(),
            record_selections=self.run_dir.append_selections,
        )

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
        """What the answers are drawn from (captions, or nothing for a video LLM). The captioner is
        closed afterwards, so its memory is free before the LLM engine starts."""
        self.prepare()
        gathered = self.answerer.gather(questions, self.context())
        self.retries["videos"] = len(gathered.retried_videos)
        self.close_captioner()
        return gathered

    def answer(self, questions: Sequence[Question], gathered: CaptionResult) -> list[Answer]:
        """Answers for every question: recorded ones kept, the rest asked now and appended durably.

        A question whose video failed is answered `video_failed` with the failure's reason, without
        the LLM; a question whose video was retried is asked again."""
        self.prepare()
        recorded = self.run_dir.recorded_answers()
        retried = set(gathered.retried_videos)
        answers: dict[str, Answer] = {}
        todo: list[Question] = []
        for q in questions:
            before = recorded.get(q.qid)
            failure = gathered.failures.get(q.video_id)
            if before is not None and before.status not in RETRYABLE_ANSWERS and q.video_id not in retried:
                answers[q.qid] = before
            elif failure is not None:
                answers[q.qid] = Answer(q.qid, None, "", "video_failed", f"{failure.reason}: {failure.message}")
                self.run_dir.append_answers([q], [answers[q.qid]])
            else:
                self.retries["llm_failed"] += before is not None and before.status in RETRYABLE_ANSWERS
                todo.append(q)
        self.answer_s = 0.0
        if todo:
            new, self.answer_s = self.answerer.ask(self.llm.get(), todo, gathered, self.context())
            answers.update((a.qid, a) for a in new)
        return [answers[q.qid] for q in questions]

    def finish(self, questions: Sequence[Question], answers: Sequence[Answer], gathered: CaptionResult) -> RunResult:
        """Scores, final files, result table and manifest."""
        failures = gathered.failures
        metrics = score(questions, answers, headline=self.config.dataset.headline)
        metrics["timing"] = gathered.timing | {
            "answer_s": self.answer_s,
            "llm_startup_s": self.llm.charge_startup_s(),
            "video_seconds": gathered.timing.get("video_seconds")
            or sum(vc.duration for vc in gathered.captions.values()),
        }
        metrics["retries"] = dict(self.retries)
        metrics["video_failures"] = {
            reason: sum(1 for f in failures.values() if f.reason == reason)
            for reason in sorted({f.reason for f in failures.values()})
        }
        self.run_dir.write_results(questions, answers, gathered.captions.values(), failures.values(), metrics)
        config = self.config
        row = result_row(config.dataset.name, self.answerer.row_name(), config.llm.name, gathered.parameters, metrics)
        table = write_table([row], self.run_dir.file("results"))
        self.run_dir.write_manifest(
            {
                "dataset": config.dataset.model_dump(),
                "captioner": gathered.identity | {"parameters": gathered.parameters},
                "llm": self.llm.identity(self.run_dir.previous_manifest().get("llm")),
                "environment": environment() | self.executor.describe(),
            }
        )
        return RunResult(self.run_dir.path, metrics, table, row)

    # ------------------------------------------------------------------ the two phases

    def gather(self) -> Gathered:
        """Phase 1: the questions, the LLM checked (when anything is left to ask), the captions."""
        questions = self.questions()
        self.prepare()
        if self.pending(questions):
            self.llm.check_available(self.captioner_gpu_bytes(), local=self.config.executor == "local")
        return Gathered(questions, self.caption(questions))

    def complete(self, gathered: Gathered) -> RunResult:
        """Phase 2: answers, scores, final files and manifest."""
        answers = self.answer(gathered.questions, gathered.inputs)
        return self.finish(gathered.questions, answers, gathered.inputs)

    def run(self) -> RunResult:
        try:
            return self.complete(self.gather())
        finally:
            self.close()

    def captioner_gpu_bytes(self) -> int:
        """The weights the captioner will hold on the GPU the LLM engine shares (0 on a CPU, for a
        video LLM, or on Ray where captioners run in their own actors): from its checkpoint files."""
        if not self.answerer.uses_captioner or self.config.executor != "local" or self.config.captioner is None:
            return 0
        from videoqa_base.device import resolve_device, resolve_dtype

        device = resolve_device(self.config.captioner.device)
        if device.type != "cuda":
            return 0
        itemsize = resolve_dtype(self.config.captioner.dtype, device).itemsize
        return self.captioner.num_parameters() * itemsize

    # ------------------------------------------------------------------ lifecycles

    def close_captioner(self) -> None:
        """Release the captioner this run built (its weights: for the LLM engine that starts next)."""
        if self._captioner is not None and self.owns_captioner:
            loaded = self._captioner.loaded
            self._captioner.close()
            self._captioner = None
            if loaded and not self.llm.started:
                gc.collect()  # a second or two: only worth it when an engine is about to start

    def close(self) -> None:
        self.close_captioner()
        if self.owns_llm:
            self.llm.close()
