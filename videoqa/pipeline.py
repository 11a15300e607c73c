"""The orchestrator: wires the stages, times them, writes the run directory. No stage logic here.

questions -> (cache | decode -> caption) -> transcripts -> answers -> metrics -> table

A run directory is resumable: predictions are appended durably as answers come back, captions
are cached per video, so re-running the same `--run-id` after a crash does only what is missing
and a finished run does no model work at all.
"""
from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd
import yaml
from tqdm import tqdm

from eval.qa_metrics import score
from eval.tables import result_row, write_table
from videoqa.cache import CaptionCache
from videoqa.captioning import CaptionStats, caption_stream
from videoqa.config import RunConfig, dump_config
from videoqa.datasets import load_questions
from videoqa.errors import UserError
from videoqa.frames import DecodeStats, stream_videos
from videoqa.llm import load_backend
from videoqa.llm.base import LLMBackend
from videoqa.outputs import environment, new_run_id, safe_name, to_jsonable, write_json, write_jsonl
from videoqa.registry import CAPTIONERS, LLM_BACKENDS
from videoqa.transcript import build_transcript
from videoqa.types import OPTION_LETTERS, Answer, FrameBatch, Question, VideoCaptions, VideoFailure


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    table: pd.DataFrame
    row: dict = field(default_factory=dict)


@dataclass
class CaptionResult:
    captions: dict[str, VideoCaptions]
    failures: dict[str, VideoFailure]
    timing: dict
    identity: dict
    parameters: int


# ---------------------------------------------------------------------------- run directory


def run_directory(config: RunConfig) -> Path:
    return (
        Path(config.output_dir) / safe_name(config.dataset.name)
        / f"{safe_name(config.captioner.name)}__{safe_name(config.llm.name)}" / safe_name(config.run_id or "")
    )


def prepare_run_dir(config: RunConfig) -> tuple[RunConfig, Path, dict[str, Answer]]:
    """New run: a fresh directory. Existing `run_id`: resume it if its config matches."""
    config = config.model_copy(update={"run_id": config.run_id or new_run_id()})
    run_dir = run_directory(config)
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        before = yaml.safe_load(config_path.read_text())
        now = config.model_dump(mode="json")
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise UserError(
                f"{config_path}: run {config.run_id!r} exists with a different config (section "
                f"{changed[0]!r} differs); pass a new --run-id or restore the old settings"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, config_path)
    return config, run_dir, load_predictions(run_dir / "predictions.jsonl")


def load_predictions(path: Path) -> dict[str, Answer]:
    """Answers already recorded by an earlier (possibly killed) attempt; a torn last line is ignored."""
    done: dict[str, Answer] = {}
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
            done[r["qid"]] = Answer(
                r["qid"], r["pred"], r["raw"], r["status"], r.get("detail", ""), r.get("prompt_tokens"),
                r.get("choice_logprobs") or {},
            )
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _prediction_record(q: Question, a: Answer) -> dict:
    return {
        "qid": q.qid,
        "video_id": q.video_id,
        "question": q.question,
        "options": list(q.options),
        "answer": q.answer,
        "pred": a.pred,
        "pred_letter": None if a.pred is None else OPTION_LETTERS[a.pred],
        "correct": None if q.answer is None else a.pred == q.answer,
        "status": a.status,
        "detail": a.detail,
        "raw": a.raw,
        "prompt_tokens": a.prompt_tokens,
        "choice_logprobs": a.choice_logprobs,
    }


def _append_durably(path: Path, records: list[dict]) -> None:
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------- stages


def _unique_videos(questions: Sequence[Question]) -> list[tuple[str, Path]]:
    seen: dict[str, Path] = {}
    for q in questions:
        seen.setdefault(q.video_id, q.video_path)
    return list(seen.items())


def _count_decoded(stream: Iterator[FrameBatch | VideoFailure], bar: tqdm) -> Iterator[FrameBatch | VideoFailure]:
    for item in stream:
        if isinstance(item, FrameBatch):
            bar.update(len(item.timestamps))
        yield item


def caption_videos(config: RunConfig, videos: list[tuple[str, Path]], progress: bool = True) -> CaptionResult:
    """Captions for every video: from the cache, or decoded and captioned now (streamed)."""
    captioner = CAPTIONERS.get(config.captioner.type)(config.captioner)
    identity, parameters = captioner.identity(), captioner.num_parameters()
    sampling = config.frames.model_dump(exclude={"workers"}) | {"size": captioner.image_size}
    # the prompt is part of the key whatever the captioner's identity() says
    cache_context = identity | {"prompt": config.captioner.prompt}
    cache = CaptionCache(Path(config.output_dir) / "cache" / "captions", sampling, cache_context)
    captions: dict[str, VideoCaptions] = {}
    failures: dict[str, VideoFailure] = {}
    for video_id, path in videos:
        cached = captioner.precomputed(video_id) or cache.get(path)
        if cached is not None:
            captions[video_id] = VideoCaptions(video_id, cached.captions, cached.duration, cached.caption_s)
        elif (missing := captioner.missing_precomputed(video_id, path)) is not None:
            failures[video_id] = missing  # a captioner that never sees frames has nothing for it
    todo = [(vid, path) for vid, path in videos if vid not in captions and vid not in failures]
    paths = dict(todo)

    stats = CaptionStats()
    decode_stats = DecodeStats()
    started = time.perf_counter()
    if todo:
        with tqdm(desc="decode", unit="frame", disable=not progress) as decode_bar, tqdm(
            total=len(todo), desc="caption", unit="video", disable=not progress
        ) as caption_bar:
            frames = stream_videos(
                todo,
                fps=config.frames.fps,
                num_frames=config.frames.num_frames,
                max_frames=config.frames.max_frames,
                size=captioner.image_size,
                workers=config.frames.workers,
                stats=decode_stats,
            )
            for out in caption_stream(
                _count_decoded(frames, decode_bar), captioner, config.captioner.prompt,
                config.captioner.batch_size, stats,
            ):
                if isinstance(out, VideoFailure):
                    failures[out.video_id] = out
                else:
                    out.caption_s = stats.per_video_caption_s.get(out.video_id, 0.0)
                    captions[out.video_id] = out
                    cache.put(paths[out.video_id], out)
                caption_bar.update(1)
                caption_bar.set_postfix(frames=stats.frames, failed=len(failures))
    captioner.close()
    del captioner  # free the captioner's memory before an LLM engine starts
    gc.collect()
    timing = {
        "caption_stage_wall_s": time.perf_counter() - started,
        # captioning time of every video of the run, including videos captioned by earlier runs
        "caption_s": sum(vc.caption_s for vc in captions.values()),
        "caption_s_this_run": stats.caption_s,
        "decode_s": stats.wait_s,  # time captioning waited for frames (decoding overlaps captioning)
        "decode_worker_s": decode_stats.seconds,  # decoding time summed over videos
        "decode_wall_s": decode_stats.wall_seconds,
        "decode_fallbacks": decode_stats.fallbacks,  # videos (partly) decoded by ffmpeg
        "decode_truncated": decode_stats.truncated,  # videos that ended early (frames kept)
        "frames_captioned": stats.frames,
        "caption_batches": stats.batches,
        "caption_batch_size": stats.batch_size or config.captioner.batch_size,  # after any OOM backoff
        "caption_oom_backoffs": stats.oom_backoffs,
        "videos_from_cache": len(videos) - len(todo),
        "per_video": {
            vid: {
                "duration_s": vc.duration,
                "frames": len(vc.captions),
                "decode_s": decode_stats.per_video.get(vid, 0.0),  # 0 when captions came from the cache
                "caption_s": vc.caption_s,
            }
            for vid, vc in captions.items()
        },
    }
    return CaptionResult(captions, failures, timing, identity, parameters)


def answer_stage(
    backend: LLMBackend, questions: Sequence[Question], transcripts: dict[str, str], config: RunConfig,
    run_dir: Path, done: dict[str, Answer], progress: bool = True,
) -> tuple[list[Answer], float]:
    """Answers for questions not answered yet, appended durably chunk by chunk."""
    from videoqa.answer import answer_questions  # imported late: pulls in the LLM stack

    todo = [q for q in questions if q.qid not in done]
    answers = dict(done)
    started = time.perf_counter()
    for i in range(0, len(todo), config.answer.chunk_size):
        chunk = todo[i : i + config.answer.chunk_size]
        new = answer_questions(backend, chunk, transcripts, config.answer, progress=progress, batch_size=len(chunk))
        _append_durably(run_dir / "predictions.jsonl", [_prediction_record(q, a) for q, a in zip(chunk, new)])
        answers.update((a.qid, a) for a in new)
    return [answers[q.qid] for q in questions], time.perf_counter() - started


def finish_run(
    run_dir: Path, config: RunConfig, questions: Sequence[Question], answers: Sequence[Answer],
    captioned: CaptionResult, llm_identity: dict, env: dict, answer_s: float, llm_startup_s: float = 0.0,
) -> RunResult:
    failures = captioned.failures
    video_of = {q.qid: q.video_id for q in questions}
    for a in answers:  # say why a question had no transcript
        failure = failures.get(video_of[a.qid])
        if a.status == "video_failed" and failure is not None:
            a.detail = f"{failure.reason}: {failure.message}"
    timing = captioned.timing | {
        "answer_s": answer_s,
        "llm_startup_s": llm_startup_s,
        "video_seconds": sum(vc.duration for vc in captioned.captions.values()),
    }
    metrics = score(questions, answers)
    metrics["timing"] = timing
    metrics["video_failures"] = {
        reason: sum(1 for f in failures.values() if f.reason == reason)
        for reason in sorted({f.reason for f in failures.values()})
    }
    # the durable append log becomes the final, ordered, de-duplicated predictions file
    write_jsonl(run_dir / "predictions.jsonl", [_prediction_record(q, a) for q, a in zip(questions, answers)])
    write_jsonl(
        run_dir / "captions.jsonl",
        ({"video_id": vc.video_id, "duration": vc.duration, "captions": to_jsonable(vc.captions)}
         for vc in captioned.captions.values()),
    )
    write_jsonl(run_dir / "failures.jsonl", failures.values())
    write_json(run_dir / "metrics.json", metrics)
    if config.dataset.split == "full":  # EgoSchema's validation server takes {q_uid: option index}
        write_json(run_dir / "submission.json", {a.qid: a.pred for a in answers if a.pred is not None})
    row = result_row(config.dataset.name, config.captioner.name, config.llm.name, captioned.parameters, metrics)
    table = write_table([row], run_dir / "results")
    write_json(
        run_dir / "manifest.json",
        {
            "run_dir": str(run_dir),
            "dataset": config.dataset.model_dump(),
            "captioner": captioned.identity | {"parameters": captioned.parameters},
            "llm": llm_identity,
            "environment": env,
            "files": sorted({p.name for p in run_dir.iterdir() if not p.name.startswith(".")} | {"manifest.json"}),
        },
    )
    return RunResult(run_dir, metrics, table, row)


def select_questions(config: RunConfig) -> list[Question]:
    questions = load_questions(config.dataset)
    return questions if config.limit is None else questions[: config.limit]


def transcripts_for(config: RunConfig, captioned: CaptionResult) -> dict[str, str]:
    return {vid: build_transcript(vc, config.transcript.caption_every) for vid, vc in captioned.captions.items()}


class LazyBackend:
    """Starts the LLM engine on first use, so a finished run never starts it."""

    def __init__(self, config):
        self.config, self._backend = config, None
        self.startup_s = 0.0  # engine start-up (weights load, warm-up): reported apart from answering

    def get(self) -> LLMBackend:
        if self._backend is None:
            started = time.perf_counter()
            self._backend = load_backend(self.config)
            self.startup_s = time.perf_counter() - started
        return self._backend

    def identity(self, previous: dict | None = None) -> dict:
        return self._backend.identity() if self._backend is not None else (previous or {"model": self.config.model})

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def check_llm_available(config) -> None:
    """Fail in a second, not after hours of captioning, when the LLM's weights are absent."""
    check = getattr(LLM_BACKENDS.get(config.backend), "check_available", None)
    if check is not None:
        check(config)


def run(config: RunConfig, progress: bool = True) -> RunResult:
    questions = select_questions(config)
    config, run_dir, done = prepare_run_dir(config)
    if any(q.qid not in done for q in questions):
        check_llm_available(config.llm)
    env = environment()
    captioned = caption_videos(config, _unique_videos(questions), progress)
    backend = LazyBackend(config.llm)
    try:
        pending = [q for q in questions if q.qid not in done]
        answers, answer_s = answer_stage(
            backend.get() if pending else None, questions, transcripts_for(config, captioned), config,
            run_dir, done, progress,
        )
        llm_identity = backend.identity(_previous_llm_identity(run_dir))
    finally:
        backend.close()
    return finish_run(run_dir, config, questions, answers, captioned, llm_identity, env, answer_s, backend.startup_s)


def _previous_llm_identity(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "manifest.json").read_text())["llm"]
    except (OSError, ValueError, KeyError):
        return None
