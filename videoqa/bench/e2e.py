"""e2e_speedup_vs_loop: the whole pipeline (`VideoQA.run()`: streaming decode -> cross-video
batched captions -> batched answers) over a LLoVi-style loop (per video, one frame at a time
decoded and captioned at batch 1, then one prompt at a time to the LLM), with the demo's tiny SeR
and tiny Qwen2 on generated videos. Both arms share one captioner and one vLLM engine, whose
start-up is timed apart and excluded from both."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import decord
import torch

from videoqa.answering.answer import answer_questions
from videoqa.answering.llm import load_backend
from videoqa.answering.transcript import build_transcript
from videoqa.bench.caption import frames_like_decoded
from videoqa.bench.settings import PROMPT, BenchSettings, say
from videoqa.config import AnswerConfig, CaptionerConfig, DatasetConfig, LLMConfig, RunConfig
from videoqa.datasets import load_questions
from videoqa.fixtures.demo import build_demo_models
from videoqa.fixtures.synthetic_video import make_video
from videoqa.frames import output_size, probe_video, sample_indices
from videoqa.registry import CAPTIONERS
from videoqa.run import VideoQA
from videoqa.types import Caption, Question, VideoCaptions
from videoqa_base.jsonl import read_jsonl, write_jsonl

E2E_PATTERNS = ("testsrc", "testsrc2", "smptebars", "rgbtestsrc", "smptehdbars", "pal75bars")
E2E_QUESTIONS = ("What does the video show?", "What is on the screen?")
E2E_OPTIONS = ("a colour test pattern", "a cooking show", "a football match", "a city street", "a black screen")


def e2e_dataset(work: Path, settings: BenchSettings) -> DatasetConfig:
    """Generated videos (kept under `work`) and a JSONL dataset of questions about them (answers
    known only to make the records complete)."""
    records = []
    for i in range(settings.e2e_videos):
        pattern = E2E_PATTERNS[i % len(E2E_PATTERNS)]
        path = work / "videos" / f"e2e-{i}-{pattern}-{settings.e2e_seconds:g}s.mp4"
        if not path.is_file():
            partial = path.with_suffix(".partial.mp4")
            make_video(partial, seconds=settings.e2e_seconds, fps=30, width=320, height=240, pattern=pattern)
            partial.rename(path)
        for j in range(settings.e2e_questions_per_video):
            records.append(
                {
                    "qid": f"q{i}-{j}",
                    "video_id": f"v{i}",
                    "video": str(path.resolve()),
                    "question": E2E_QUESTIONS[j % 2],
                    "options": list(E2E_OPTIONS),
                    "answer": 0,
                }
            )
    root = work / "e2e-data"
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "test.jsonl", records)
    return DatasetConfig(name="bench-e2e", type="jsonl", data_root=str(root), split="test")


def run_pipeline(config: RunConfig, captioner, backend, questions: Sequence[Question]) -> dict[str, Any]:
    """Our pipeline: the run object on a fresh output directory (no caption cache, no earlier run)."""
    shutil.rmtree(config.output_dir, ignore_errors=True)
    started = time.perf_counter()
    result = VideoQA(config, progress=False, captioner=captioner, llm=backend).run()
    seconds = time.perf_counter() - started
    timing = result.metrics["timing"]
    transcripts = {
        row["video_id"]: build_transcript(
            VideoCaptions(row["video_id"], [Caption(**c) for c in row["captions"]], row["duration"])
        )
        for _, row in read_jsonl(result.run_dir / "captions.jsonl")
    }
    predictions = {row["qid"]: row["pred"] for _, row in read_jsonl(result.run_dir / "predictions.jsonl")}
    caption_s, decode_wait_s, answer_s = timing["caption_s_this_run"], timing["decode_s"], timing["answer_s"]
    return {
        "seconds": seconds,
        "decode_and_caption_s": timing["caption_stage_wall_s"],
        "caption_s": caption_s,
        "decode_wait_s": decode_wait_s,
        "answer_s": answer_s,
        # the run object's own work: run directory, stage hand-overs, freeing the captioner, final files
        "other_s": seconds - caption_s - decode_wait_s - answer_s,
        "frames": timing["frames_captioned"],
        "caption_batches": timing["caption_batches"],
        "run_dir": str(result.run_dir),
        "answers": [predictions[q.qid] for q in questions],
        "transcripts": transcripts,
    }


def run_loop(captioner, backend, questions: Sequence[Question]) -> dict[str, Any]:
    """LLoVi-style, deliberately serial: per video, decode one sampled frame at a time (decord,
    resized at decode like ours) and caption it alone; then one prompt at a time to the LLM."""
    videos = list({q.video_id: q.video_path for q in questions}.items())
    decode_s = caption_s = 0.0
    frames = 0
    started = time.perf_counter()
    transcripts = {}
    for video_id, path in videos:
        t0 = time.perf_counter()
        info = probe_video(path)
        width, height = output_size(info.width, info.height, captioner.image_size)
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height)
        starts = reader.get_frame_timestamp(list(range(len(reader))))[:, 0]
        indices = sample_indices(len(reader), reader.get_avg_fps(), fps=1.0)
        decode_s += time.perf_counter() - t0
        captions = []
        for index in indices:
            t0 = time.perf_counter()
            frame = reader[index].asnumpy()
            t1 = time.perf_counter()
            text = captioner.caption([frame], PROMPT)[0]
            t2 = time.perf_counter()
            decode_s += t1 - t0
            caption_s += t2 - t1
            captions.append(Caption(t=round(float(starts[index] - starts[0]), 4), text=text))
            frames += 1
        duration = len(reader) / reader.get_avg_fps()
        transcripts[video_id] = build_transcript(VideoCaptions(video_id, captions, duration))
        del reader
    caption_done = time.perf_counter()
    answers = []
    for question in questions:
        answers += answer_questions(backend, [question], transcripts, AnswerConfig(), progress=False)
    finished = time.perf_counter()
    return {
        "seconds": finished - started,
        "decode_and_caption_s": caption_done - started,
        "caption_s": caption_s,
        "decode_s": decode_s,
        "answer_s": finished - caption_done,
        "frames": frames,
        "answers": [a.pred for a in answers],
        "transcripts": transcripts,
    }


def forget_prompts(backend) -> None:
    """Empty the engine's prefix cache, so one side never reuses the other's prompts."""
    engine = getattr(backend, "llm", None)
    if engine is not None and hasattr(engine, "reset_prefix_cache"):
        engine.reset_prefix_cache()


def e2e_step(settings: BenchSettings, work: Path, device: str = "cpu") -> dict[str, Any]:
    """One captioner and one vLLM engine for both arms. The loop runs first: `VideoQA.run()` closes
    the captioner when its caption stage ends, and neither arm should pay for loading weights."""
    dataset = e2e_dataset(work, settings)
    questions = load_questions(dataset)
    captioner_dir, llm_dir = build_demo_models(work / "models")
    captioner_config = CaptionerConfig(
        name="tiny-ser",
        type="ser",
        model=str(captioner_dir),
        prompt=PROMPT,
        max_new_tokens=settings.e2e_new_tokens,
        batch_size=settings.e2e_batch_size,
        device=device,
    )
    llm_config = LLMConfig(
        name="tiny-qwen2",
        model=str(llm_dir),
        max_model_len=4096,
        dtype="float32",
        cpu_kvcache_gib=1,
        gpu_memory_utilization=0.3,  # GPUs: leave room for the captioner
        engine_kwargs={"enforce_eager": True} if settings.enforce_eager else {},
    )
    config = RunConfig(
        dataset=dataset, captioner=captioner_config, llm=llm_config, output_dir=str(work / "e2e-run"), run_id="bench"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: per-op overhead dominates, a second thread only spins
    backend = None
    try:
        captioner = CAPTIONERS.get("ser")(captioner_config)
        say("starting the vLLM engine (start-up is excluded from both sides)")
        started = time.perf_counter()
        backend = load_backend(llm_config)
        startup_s = time.perf_counter() - started
        # warm-up: one caption batch, one answer (first-call costs land on neither side)
        captioner.caption(frames_like_decoded(2, captioner.image_size), PROMPT)
        answer_questions(
            backend, questions[:1], {questions[0].video_id: "0: a test pattern"}, AnswerConfig(), progress=False
        )
        say("e2e: the LLoVi-style loop")
        forget_prompts(backend)
        loop = run_loop(captioner, backend, questions)
        say(f"e2e: loop {loop['seconds']:.1f} s; our pipeline (VideoQA.run)")
        forget_prompts(backend)  # the same prompts again: no reuse of the loop's KV cache
        ours = run_pipeline(config, captioner, backend, questions)
        say(f"e2e: ours {ours['seconds']:.1f} s")
    finally:
        torch.set_num_threads(threads)
        if backend is not None:
            backend.close()
    same = ours.pop("transcripts") == loop.pop("transcripts")
    return {
        "videos": settings.e2e_videos,
        "video_seconds": settings.e2e_seconds,
        "questions": len(questions),
        "batch_size": settings.e2e_batch_size,
        "new_tokens": settings.e2e_new_tokens,
        "torch_threads": 1,
        "vllm_startup_s_excluded": startup_s,
        "vllm_enforce_eager": settings.enforce_eager,
        "order": "loop first, then ours",
        "ours": ours,
        "loop": loop,
        "same_transcripts": same,
        "same_answers": ours["answers"] == loop["answers"],
        "e2e_speedup_vs_loop": loop["seconds"] / ours["seconds"],
    }
