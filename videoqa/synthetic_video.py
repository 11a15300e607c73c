"""Synthetic videos made with ffmpeg's lavfi sources: test fixtures, demo clips, benchmark input.

Everything runs the ffmpeg binary bundled with imageio-ffmpeg (ffmpeg is not assumed to be on
PATH) through ffmpeg-python, which builds the command line and escapes filter arguments.

    make_video("clip.mp4", seconds=3)                                # moving test pattern
    make_video("phone.mp4", seconds=2, rotate=-90)                  # display matrix, like a phone
    make_color_sequence("colors.mp4", ["red", "green", "blue"])     # known content, in order
    make_truncated("clip.mp4", "broken.mp4", 0.5)                   # hostile files for the tests
"""
from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import ffmpeg
import imageio_ffmpeg
import numpy as np

# lavfi sources that take size/rate/duration; "color" also takes c=<colour> (pattern="color=c=red")
LAVFI_SOURCES = ("testsrc", "testsrc2", "smptebars", "smptehdbars", "rgbtestsrc", "pal75bars", "color")


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(stream) -> None:
    """Run an ffmpeg-python graph quietly; a failure raises with ffmpeg's own error text."""
    stream = stream.overwrite_output().global_args("-hide_banner", "-nostdin", "-loglevel", "error")
    args = stream.compile(cmd=ffmpeg_exe())
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def _encode_args(codec: str, preset: str, gop: int | None) -> dict[str, object]:
    args: dict[str, object] = {"vcodec": codec, "pix_fmt": "yuv420p"}
    if codec in ("libx264", "libx265"):
        args["preset"] = preset
    elif codec == "libsvtav1":  # AV1, which decord's bundled ffmpeg cannot decode
        args["preset"] = 12
    elif codec == "libvpx-vp9":
        args.update({"deadline": "realtime", "cpu-used": 8, "b:v": "1M"})
    elif codec == "mpeg4":
        args["q:v"] = 5
    if gop is not None:
        args["g"] = gop
    return args


@functools.lru_cache(maxsize=1)
def drawtext_available() -> bool:
    """True when this ffmpeg build has drawtext and can find a font (fontconfig)."""
    probe = ffmpeg.input("color=c=black:size=64x64:rate=1:duration=1", f="lavfi").drawtext(text="x")
    probe = probe.output("-", f="null")
    try:
        _run(probe)
    except RuntimeError:
        return False
    return True


def _with_text(stream, text: str | None):
    if text is None:
        return stream
    if not drawtext_available():
        raise RuntimeError("this ffmpeg build cannot draw text (no drawtext filter or no font); pass text=None")
    return stream.drawtext(
        text=text, fontcolor="white", fontsize="h/8", x="(w-tw)/2", y="(h-th)/2", box=1, boxcolor="black@0.6", boxborderw=6
    )


def _source(pattern: str, *, seconds: float, fps: int, width: int, height: int):
    name, _, options = pattern.partition("=")
    if name not in LAVFI_SOURCES:
        raise ValueError(f"pattern {pattern!r}: expected one of {', '.join(LAVFI_SOURCES)} (optionally name=options)")
    spec = f"{name}=size={width}x{height}:rate={fps}:duration={seconds}" + (f":{options}" if options else "")
    return ffmpeg.input(spec, f="lavfi")


def _set_rotation(path: Path, rotate: int) -> None:
    """Stream-copy `path` with display-matrix rotation metadata (pixels untouched, as phones do)."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        unrotated = Path(tmp) / f"unrotated{path.suffix}"
        os.replace(path, unrotated)
        _run(ffmpeg.input(str(unrotated), display_rotation=rotate).output(str(path), c="copy"))


def make_video(
    path: str | Path,
    *,
    seconds: float,
    fps: int = 30,
    width: int = 320,
    height: int = 240,
    codec: str = "libx264",
    pattern: str = "testsrc",
    rotate: int | None = None,
    text: str | None = None,
    preset: str = "veryfast",
    gop: int | None = None,
    faststart: bool = False,
) -> Path:
    """Encode `seconds` of a lavfi test pattern to `path` (container from the suffix).

    rotate: display rotation in degrees counter-clockwise (ffmpeg's -display_rotation; a phone held
        upright records rotate=-90). Stored as metadata only: the coded frames stay width x height.
    text: drawn centred on every frame (needs drawtext, see drawtext_available()).
    gop: keyframe interval in frames (None = the encoder default, 250 for x264).
    faststart: mp4/mov index at the front of the file, so a truncated copy is still readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = _with_text(_source(pattern, seconds=seconds, fps=fps, width=width, height=height), text)
    extra = {"movflags": "+faststart"} if faststart else {}
    _run(stream.output(str(path), **_encode_args(codec, preset, gop), **extra))
    if rotate:
        _set_rotation(path, rotate)
    return path


def make_color_sequence(
    path: str | Path,
    colors: Sequence[str],
    *,
    seconds_each: float = 2.0,
    fps: int = 30,
    width: int = 320,
    height: int = 240,
    labels: Sequence[str] | None = None,
    codec: str = "libx264",
) -> Path:
    """Solid colour segments shown in order (e.g. red, then green, then blue), optionally labelled.

    Content with known answers: "which colour comes first?", "what word is shown after the blue
    screen?". Colours are ffmpeg colour names or 0xRRGGBB.
    """
    if not colors:
        raise ValueError("colors: need at least one colour")
    if labels is not None and len(labels) != len(colors):
        raise ValueError(f"labels: expected {len(colors)} labels (one per colour), got {len(labels)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segments = []
    for i, color in enumerate(colors):
        segment = _source(f"color=c={color}", seconds=seconds_each, fps=fps, width=width, height=height)
        segments.append(_with_text(segment, labels[i] if labels is not None else None))
    stream = ffmpeg.concat(*segments, v=1, a=0) if len(segments) > 1 else segments[0]
    _run(stream.output(str(path), **_encode_args(codec, "veryfast", None)))
    return path


def make_frame_counter(path: str | Path, *, frames: int, fps: int = 30, width: int = 64, height: int = 48) -> Path:
    """Frame i is flat grey with luma 16 + 2*i, losslessly encoded: every frame tells its index.

    Decoded to RGB, frame i reads about 2.33 * i (see frame_counter_index); up to 110 frames.
    """
    if not 1 <= frames <= 110:
        raise ValueError(f"frames must be in [1, 110] (8-bit luma range), got {frames}")
    path = Path(path)
    stream = _source("color=c=black", seconds=frames / fps, fps=fps, width=width, height=height)
    stream = stream.filter("format", "yuv420p").filter("geq", lum="16+2*N", cb=128, cr=128)
    _run(stream.output(str(path), vcodec="libx264", preset="ultrafast", qp=0, pix_fmt="yuv420p", frames=frames))
    return path


def frame_counter_index(frames: np.ndarray) -> list[int]:
    """Indices encoded by make_frame_counter, read back from decoded RGB frames (N, H, W, 3)."""
    grey = frames.reshape(len(frames), -1).mean(axis=1)
    return [int(round(g * 219.0 / 255.0 / 2.0)) for g in grey]  # limited-range luma -> full-range RGB


# ---------------------------------------------------------------------------- hostile files


def make_truncated(src: str | Path, dst: str | Path, fraction: float) -> Path:
    """Copy the first `fraction` of `src`'s bytes: a download or recording cut off mid-stream."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def make_garbage(dst: str | Path, nbytes: int, seed: int = 0) -> Path:
    """Random bytes under a video-looking name (nbytes=0 gives a zero-length file)."""
    dst = Path(dst)
    dst.write_bytes(np.random.default_rng(seed).integers(0, 256, size=nbytes, dtype=np.uint8).tobytes())
    return dst


def make_zero_frames(dst: str | Path) -> Path:
    """A container with a declared video track but not a single frame in it (use .mkv)."""
    dst = Path(dst)
    _run(_source("testsrc", seconds=1, fps=30, width=64, height=64).output(str(dst), vcodec="libx264", frames=0))
    return dst


def make_audio_only(dst: str | Path, seconds: float = 1.0, cover_art: bool = False) -> Path:
    """A sine tone with no video stream (.m4a); cover_art adds a picture stream as music files do (.mp3)."""
    dst = Path(dst)
    tone = ffmpeg.input(f"sine=frequency=440:duration={seconds}", f="lavfi")
    if not cover_art:
        _run(tone.output(str(dst)))
        return dst
    picture = ffmpeg.input("color=c=red:size=64x64:duration=1", f="lavfi")
    _run(ffmpeg.output(tone, picture, str(dst), **{"c:v": "png", "frames:v": 1, "disposition:v": "attached_pic"}))
    return dst


def make_timestamp_jump(
    dst: str | Path, colors: Sequence[str] = ("red", "blue"), *, seconds_each: float = 2.0, fps: int = 30
) -> Path:
    """MPEG-TS clips concatenated byte-wise: timestamps restart at every join (non-monotonic).

    This is what naive recorders and `cat a.ts b.ts` produce; players go by stream order.
    """
    dst = Path(dst)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        parts = []
        for i, color in enumerate(colors):
            part = Path(tmp) / f"part{i}.ts"
            make_video(part, seconds=seconds_each, fps=fps, pattern=f"color=c={color}", preset="ultrafast")
            parts.append(part.read_bytes())
    dst.write_bytes(b"".join(parts))
    return dst
