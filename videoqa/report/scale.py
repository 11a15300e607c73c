"""The report's scale check: build time of a synthetic EgoSchema-sized run, and thumbnail decoding.

    python -m videoqa.report.scale [--questions 500] [--frames 180] [--runs 2] [--work DIR]

Writes synthetic run directories (videoqa.report.synthetic: real RunDirectory files, ~50-word
captions), then times write_report on one run and on all runs without thumbnails (the build), and
the thumbnails of one generated video with `--frames` seconds at 1 fps, cold and from the cache.
Prints one line per figure; nothing here is a test (the numbers depend on the machine).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from videoqa.frames import ffmpeg_exe
from videoqa.report.build import DEFAULT_MAX_THUMBNAILS, ReportTimings, write_report
from videoqa.report.synthetic import write_synthetic_dataset, write_synthetic_run
from videoqa.report.thumbnails import Sampling, ThumbJob, ThumbnailCache


def test_pattern_video(path: Path, seconds: int) -> None:
    """ffmpeg's moving test pattern, 320x240 at 30 fps (the report's level may not import fixtures)."""
    source = f"testsrc=size=320x240:rate=30:duration={seconds}"
    command = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset", "veryfast"]
    subprocess.run([*command, "-pix_fmt", "yuv420p", str(path)], check=True)


def timed_report(runs: list[Path], out: Path, thumbnails: int) -> tuple[float, ReportTimings, int]:
    timings = ReportTimings()
    started = time.perf_counter()
    page = write_report(runs, out, max_thumbnails_per_video=thumbnails, progress=False, timings=timings)
    return time.perf_counter() - started, timings, page.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videoqa.report.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--frames", type=int, default=180, help="captions (frames at 1 fps) per video")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="videoqa-report-scale-"))

    started = time.perf_counter()
    questions = write_synthetic_dataset(work / "data", args.questions)
    runs = [
        write_synthetic_run(
            work / "outputs", work / "data", questions, label=f"run{i}", frames_per_video=args.frames, seed=i
        )
        for i in range(args.runs)
    ]
    print(
        f"synthetic runs: {args.runs} x {args.questions} questions x {args.frames} captions per video, written in "
        f"{time.perf_counter() - started:.1f} s under {work}"
    )
    for label, chosen in (("one run", runs[:1]), (f"{args.runs} runs", runs)):
        total, t, size = timed_report(chosen, work / f"report-{len(chosen)}", 0)
        print(
            f"report build, {label}, no thumbnails: {total:.2f} s (load+join {t.load_s:.2f} s, "
            f"page {t.write_s:.2f} s), report.html {size / 1e6:.1f} MB"
        )

    video = work / "video.mp4"
    test_pattern_video(video, seconds=args.frames)
    cache = ThumbnailCache(work / "thumbs")
    job = ThumbJob("v", video, Sampling(1.0), tuple(k + 0.5 for k in range(args.frames)), DEFAULT_MAX_THUMBNAILS)
    for label in ("cold", "cached"):
        started = time.perf_counter()
        _, result = cache.get(job)
        print(
            f"thumbnails of one {args.frames}-s video ({label}): {time.perf_counter() - started:.2f} s for "
            f"{len(result.frames)} thumbnails of {result.sampled} sampled frames"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
