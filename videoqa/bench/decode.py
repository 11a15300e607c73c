"""decode_vs_ffmpeg: ffmpeg's full decode of a generated H.264 file (to null) over our time to
deliver its 1-fps frames resized for the captioner (videoqa.frames.stream_videos)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from videoqa.bench.settings import BenchSettings, say
from videoqa.fixtures.synthetic_video import make_video
from videoqa.frames import DecodeStats, ffmpeg_exe, probe_video, stream_videos


def bench_video(work: Path, settings: BenchSettings) -> Path:
    """The decode benchmark's H.264 video, generated once per size and kept under `work`."""
    s = settings
    path = (
        work
        / "videos"
        / f"decode-{s.decode_seconds:g}s-{s.decode_fps}fps-{s.decode_width}x{s.decode_height}-g{s.decode_gop}.mp4"
    )
    if not path.is_file():
        say(f"generating {path.name} (once)")
        partial = path.with_suffix(".partial.mp4")
        make_video(
            partial,
            seconds=s.decode_seconds,
            fps=s.decode_fps,
            width=s.decode_width,
            height=s.decode_height,
            pattern="testsrc2",
            gop=s.decode_gop,
        )
        partial.rename(path)
    return path


def decode_step(settings: BenchSettings, work: Path, size: int) -> dict[str, Any]:
    """ffmpeg decoding the whole file to null vs our 1-fps frames resized to `size`."""
    video = bench_video(work, settings)
    video.read_bytes()  # page cache warm for both sides
    info = probe_video(video)

    def ffmpeg_null() -> float:
        started = time.perf_counter()
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video), "-f", "null", "-"],
            check=True,
        )
        return time.perf_counter() - started

    def ours(resize: int | None) -> tuple[float, int, DecodeStats]:
        stats = DecodeStats()
        started = time.perf_counter()
        count = 0
        for item in stream_videos([("bench", video)], fps=1.0, size=resize, stats=stats):
            if not hasattr(item, "images"):
                raise RuntimeError(f"decoding failed: {item}")
            count += len(item.images)
        return time.perf_counter() - started, count, stats

    ffmpeg_runs, our_runs, frames = [], [], 0
    for _ in range(settings.decode_repeats):  # alternate, so both see the same machine load
        ffmpeg_runs.append(ffmpeg_null())
        seconds, frames, _ = ours(size)
        our_runs.append(seconds)
    native_s, _, _ = ours(None)
    ffmpeg_s, ours_s = min(ffmpeg_runs), min(our_runs)
    total_frames = round(settings.decode_seconds * settings.decode_fps)
    return {
        "video": str(video),
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "duration_s": info.duration,
        "gop": settings.decode_gop,
        "total_frames": total_frames,
        "ffmpeg_null_s": ffmpeg_s,
        "ffmpeg_runs": ffmpeg_runs,
        "ours_s": ours_s,
        "ours_runs": our_runs,
        "ours_frames": frames,
        "resize_to": size,
        "ours_native_size_s": native_s,
        "ffmpeg_fps": total_frames / ffmpeg_s,
        "decoder": "decord (frames.stream_videos)",
        "decode_vs_ffmpeg": ffmpeg_s / ours_s,
    }
