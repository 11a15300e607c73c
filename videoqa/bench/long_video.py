"""long_video_linearity: per-frame time of the caption stage on a long video over a short one.

Both videos are generated (a 320x240 30-fps H.264 test pattern: the short one encoded once, the long
one its copy looped with `-stream_loop`, no re-encode), both sampled at 1 fps and captioned by the
demo's tiny SeR through the real stage (`videoqa.captioning.videos.caption_videos`: streaming decode
-> batched captions). Each video runs in a fresh subprocess, so the peak RSS of each is its own:

    python -m videoqa.bench.long_video VIDEO CAPTIONER_DIR    # one measurement, JSON on stdout

A figure of 1 means a frame of a 40-minute video costs what a frame of a 5-minute one does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from videoqa.bench.settings import BenchSettings, say
from videoqa.fixtures.synthetic_video import ffmpeg_exe, make_video
from videoqa_base.memory import peak_rss_bytes

CAPTION_TOKENS = 24  # the demo's captioner.max_new_tokens


def long_video_pair(work: Path, settings: BenchSettings) -> tuple[Path, Path]:
    """(short, long) videos under `work`, generated once per size: the long one is the short one looped."""
    s = settings
    stem = f"long-video-{s.long_video_fps}fps-{s.long_video_width}x{s.long_video_height}"
    short = work / "videos" / f"{stem}-{s.long_video_short_s:g}s.mp4"
    repeats = round(s.long_video_long_s / s.long_video_short_s)
    long = work / "videos" / f"{stem}-{s.long_video_short_s * repeats:g}s.mp4"
    if not short.is_file():
        say(f"generating {short.name} (once)")
        partial = short.with_suffix(".partial.mp4")
        make_video(
            partial,
            seconds=s.long_video_short_s,
            fps=s.long_video_fps,
            width=s.long_video_width,
            height=s.long_video_height,
            pattern="testsrc",
        )
        partial.rename(short)
    if not long.is_file():
        partial = long.with_suffix(".partial.mp4")
        loop = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", str(repeats - 1)]
        subprocess.run([*loop, "-i", str(short), "-c", "copy", str(partial)], check=True)
        partial.rename(long)
    return short, long


def measure(video: Path, captioner_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The caption stage on one video, in this process: frames, stage time, peak RSS."""
    from videoqa.captioning.videos import caption_videos
    from videoqa.config import RunConfig
    from videoqa.registry import CAPTIONERS

    config = RunConfig.model_validate(
        {
            "dataset": {"name": "long-video", "type": "egoschema", "data_root": str(video.parent)},
            "captioner": {
                "name": "tiny-ser",
                "type": "ser",
                "model": str(captioner_dir),
                "max_new_tokens": CAPTION_TOKENS,
            },
            "llm": {"name": "unused", "model": "unused"},
            "output_dir": str(out_dir),
        }
    )
    assert config.captioner is not None
    captioner = CAPTIONERS.get(config.captioner.type)(config.captioner)
    captioner.load()  # weights load outside the timed stage, as every run's first batch would
    try:
        started = time.perf_counter()
        result = caption_videos(config, captioner, [(video.stem, video)], progress=False)
        seconds = time.perf_counter() - started
    finally:
        captioner.close()
    if result.failures:
        raise RuntimeError(f"{video}: {next(iter(result.failures.values())).message}")
    timing = result.timing
    frames = int(timing["frames_captioned"])
    return {
        "video": str(video),
        "duration_s": timing["per_video"][video.stem]["duration_s"],
        "frames": frames,
        "stage_s": seconds,
        "seconds_per_frame": seconds / frames,
        "caption_s": timing["caption_s_this_run"],
        "decode_wait_s": timing["decode_s"],
        "decode_wall_s": timing["decode_wall_s"],
        "peak_rss_mb": peak_rss_bytes() / 2**20,  # this process's own, not its parent's (see peak_rss_bytes)
    }


def measure_in_subprocess(video: Path, captioner_dir: Path, threads: int | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "videoqa.bench.long_video", str(video), str(captioner_dir)]
    command += ["--threads", str(threads)] if threads else []
    with tempfile.TemporaryDirectory(prefix="videoqa-long-video-") as out:
        done = subprocess.run([*command, "--out", out], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {video.name} failed: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def long_video_step(settings: BenchSettings, work: Path) -> dict[str, Any]:
    """The figure and its measurements: short, long, short, long... (`long_video_repeats` of each,
    alternated so that a slow spell of a shared host falls on both), each in a fresh process. Each
    video's time per frame is its median over the repeats; its peak RSS the largest."""
    from videoqa.fixtures.demo import build_demo_models

    short, long = long_video_pair(work, settings)
    captioner_dir, _ = build_demo_models(work / "models")
    runs: dict[str, list[dict[str, Any]]] = {"short": [], "long": []}
    for _ in range(settings.long_video_repeats):
        for name, video in (("short", short), ("long", long)):
            run = measure_in_subprocess(video, captioner_dir, settings.threads)
            say(f"long_video: {run['frames']} frames: {1000 * run['seconds_per_frame']:.1f} ms/frame")
            runs[name].append(run)
    summary = {name: summarize(measured) for name, measured in runs.items()}
    return {
        **summary,
        "frame_ratio": summary["long"]["frames"] / summary["short"]["frames"],
        "long_video_linearity": summary["long"]["seconds_per_frame"] / summary["short"]["seconds_per_frame"],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One video's repeats as one measurement: the median run's times, the largest peak RSS, every
    run's time per frame (`runs_seconds_per_frame`)."""
    ordered = sorted(runs, key=lambda run: run["seconds_per_frame"])
    median = dict(ordered[(len(ordered) - 1) // 2])  # the lower median: a run that happened
    median["seconds_per_frame"] = statistics.median(run["seconds_per_frame"] for run in runs)
    median["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    median["runs_seconds_per_frame"] = [run["seconds_per_frame"] for run in runs]
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the caption stage on one video (one long_video measurement)")
    parser.add_argument("video", type=Path)
    parser.add_argument("captioner", type=Path, help="a SeR checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory (the caption cache goes there)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    shutil.rmtree(args.out / "cache", ignore_errors=True)  # captioned now, never read from a cache
    print(json.dumps(measure(args.video, args.captioner, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
