"""The orchestrator: wires the stages, times them, writes the run directory. No stage logic here.

questions -> (cache | decode -> caption) -> transcripts -> answers -> metrics -> table
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
from tqdm import tqdm

from eval.qa_metrics import score
from eval.tables import result_row, write_table
from videoqa.cache import CaptionCache
from videoqa.captioning import CaptionStats, caption_stream
from videoqa.config import RunConfig, dump_config
from videoqa.datasets import load_questions
from videoqa.frames import stream_videos
from videoqa.outputs import environment, new_run_id, safe_name, to_jsonable, write_json, write_jsonl
from videoqa.registry import CAPTIONERS, LLM_BACKENDS
from videoqa.transcript import build_transcript
from videoqa.types import OPTION_LETTERS, Answer, FrameBatch, Question, VideoCaptions, VideoFailure


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    table: pd.DataFrame


def run_directory(config: RunConfig) -> Path:
    run_id = config.run_id or new_run_id()
    return (
        Path(config.output_dir) / safe_name(config.dataset.name)
        / f"{safe_name(config.captioner.name)}__{safe_name(config.llm.name)}" / safe_name(run_id)
    )


def _unique_videos(questions: list[Question]) -> list[tuple[str, Path]]:
    seen: dict[str, Path] = {}
    for q in questions:
        seen.setdefault(q.video_id, q.video_path)
    return list(seen.items())


def _count_decoded(stream: Iterator[FrameBatch | VideoFailure], bar: tqdm) -> Iterator[FrameBatch | VideoFailure]:
    for item in stream:
        if isinstance(item, FrameBatch):
            bar.update(len(item.timestamps))
        yield item


def caption_videos(
    config: RunConfig, videos: list[tuple[str, Path]], progress: bool = True
) -> tuple[dict[str, VideoCaptions], dict[str, VideoFailure], dict, object]:
    """Captions for every video: from the cache, or decoded and captioned now (streamed)."""
    captioner = CAPTIONERS.get(config.captioner.type)(config.captioner)
    sampling = config.frames.model_dump(exclude={"workers"}) | {"size": captioner.image_size}
    cache = CaptionCache(Path(config.output_dir) / "cache" / "captions", sampling, captioner.identity())
    captions: dict[str, VideoCaptions] = {}
    for video_id, path in videos:
        cached = cache.get(path)
        if cached is not None:
            captions[video_id] = VideoCaptions(video_id, cached.captions, cached.duration)
    todo = [(vid, path) for vid, path in videos if vid not in captions]
    paths = dict(todo)

    failures: dict[str, VideoFailure] = {}
    stats = CaptionStats()
    started = time.perf_counter()
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
        )
        for out in caption_stream(
            _count_decoded(frames, decode_bar), captioner, config.captioner.prompt, config.captioner.batch_size, stats
        ):
            if isinstance(out, VideoFailure):
                failures[out.video_id] = out
            else:
                captions[out.video_id] = out
                cache.put(paths[out.video_id], out)
            caption_bar.update(1)
            caption_bar.set_postfix(frames=stats.frames, failed=len(failures))
    timing = {
        "caption_stage_wall_s": time.perf_counter() - started,
        "caption_s": stats.caption_s,
        "decode_s": stats.wait_s,  # time captioning waited for decoding (decoding overlaps captioning)
        "frames_captioned": stats.frames,
        "caption_batches": stats.batches,
        "videos_from_cache": len(videos) - len(todo),
        "per_video_caption_s": dict(stats.per_video_caption_s),
    }
    return captions, failures, timing, captioner


def run(config: RunConfig, progress: bool = True) -> RunResult:
    from videoqa.answer import answer_questions  # imported late: pulls in the LLM stack

    questions = load_questions(config.dataset)
    if config.limit is not None:
        questions = questions[: config.limit]
    run_dir = run_directory(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    env = environment()
    run_started = time.perf_counter()

    videos = _unique_videos(questions)
    captions, failures, timing, captioner = caption_videos(config, videos, progress)
    captioner_identity, captioner_params = captioner.identity(), captioner.num_parameters()
    del captioner  # free the captioner's memory before the LLM engine starts
    gc.collect()

    transcripts = {vid: build_transcript(vc, config.transcript.caption_every) for vid, vc in captions.items()}
    backend = LLM_BACKENDS.get(config.llm.backend)(config.llm)
    try:
        started = time.perf_counter()
        answers = answer_questions(backend, questions, transcripts, config.answer, progress=progress)
        timing["answer_s"] = time.perf_counter() - started
        llm_identity = backend.identity()
    finally:
        backend.close()
    video_of = {q.qid: q.video_id for q in questions}
    for a in answers:  # say why a question had no transcript
        failure = failures.get(video_of[a.qid])
        if a.status == "video_failed" and failure is not None and not a.detail:
            a.detail = f"{failure.reason}: {failure.message}"

    timing["total_wall_s"] = time.perf_counter() - run_started
    timing["video_seconds"] = sum(vc.duration for vc in captions.values())
    metrics = score(questions, answers)
    metrics["timing"] = timing
    metrics["video_failures"] = {
        reason: sum(1 for f in failures.values() if f.reason == reason)
        for reason in sorted({f.reason for f in failures.values()})
    }
    _write_outputs(run_dir, config, questions, answers, captions, failures, metrics)
    table = write_table(
        [result_row(config.dataset.name, config.captioner.name, config.llm.name, captioner_params, metrics)],
        run_dir / "results",
    )
    write_json(
        run_dir / "manifest.json",
        {
            "run_dir": str(run_dir),
            "dataset": config.dataset.model_dump(),
            "captioner": captioner_identity | {"parameters": captioner_params},
            "llm": llm_identity,
            "environment": env,
            "files": sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) + ["manifest.json"],
        },
    )
    return RunResult(run_dir, metrics, table)


def _write_outputs(run_dir, config, questions, answers, captions, failures, metrics) -> None:
    by_qid = {a.qid: a for a in answers}
    records = []
    for q in questions:
        a: Answer = by_qid[q.qid]
        records.append(
            {
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
            }
        )
    write_jsonl(run_dir / "predictions.jsonl", records)
    write_jsonl(
        run_dir / "captions.jsonl",
        ({"video_id": vc.video_id, "duration": vc.duration, "captions": to_jsonable(vc.captions)} for vc in captions.values()),
    )
    write_jsonl(run_dir / "failures.jsonl", failures.values())
    write_json(run_dir / "metrics.json", metrics)
    if config.dataset.split == "full":  # EgoSchema's validation server takes {q_uid: option index}
        write_json(run_dir / "submission.json", {a.qid: a.pred for a in answers if a.pred is not None})
