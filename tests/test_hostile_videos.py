"""Videos that fight back: each one gives frames or a VideoFailure with the right reason."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import decord
import numpy as np
import pytest

from videoqa.fixtures.synthetic_video import (
    frame_counter_index,
    make_audio_only,
    make_frame_counter,
    make_garbage,
    make_timestamp_jump,
    make_truncated,
    make_video,
    make_zero_frames,
)
from videoqa.frames import DecodeStats, VideoDecodeError, decode_frames, ffmpeg_exe, probe_video, stream_videos
from videoqa.types import FrameBatch, VideoFailure


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    ten_s_mp4 = make_video(
        root / "ten.mp4", seconds=10, width=160, height=120, preset="ultrafast", gop=30, faststart=True
    )
    ten_s_mkv = make_video(root / "ten.mkv", seconds=10, width=160, height=120, preset="ultrafast", gop=30)
    index_at_end = make_video(root / "plain.mp4", seconds=2, width=160, height=120, preset="ultrafast")
    (root / "a_directory.mp4").mkdir()
    return {
        "missing": root / "does_not_exist.mp4",
        "directory": root / "a_directory.mp4",
        "garbage": make_garbage(root / "garbage.mp4", 50_000),
        "garbage_mkv": make_garbage(root / "garbage.mkv", 4_000, seed=1),
        "zero_length": make_garbage(root / "zero_length.mp4", 0),
        "audio_only": make_audio_only(root / "audio_only.m4a"),
        "cover_art": make_audio_only(root / "song.mp3", cover_art=True),
        "zero_frames": make_zero_frames(root / "zero_frames.mkv"),
        "moov_missing": make_truncated(index_at_end, root / "moov_missing.mp4", 0.6),
        "truncated_mp4": make_truncated(ten_s_mp4, root / "truncated.mp4", 0.5),
        "truncated_mkv": make_truncated(ten_s_mkv, root / "truncated.mkv", 0.5),
        "few_frames": make_video(root / "few_frames.mp4", seconds=0.1, fps=30, preset="ultrafast"),  # 3 frames
        "short": make_video(root / "short.mp4", seconds=0.4, fps=30, preset="ultrafast"),
        "timestamp_jump": make_timestamp_jump(root / "timestamp_jump.ts", ("red", "blue"), seconds_each=2.0),
        "counter": make_frame_counter(root / "counter.mp4", frames=100),
    }


def _frames(path, **kwargs) -> tuple[list[FrameBatch], np.ndarray]:
    batches = list(decode_frames(path, **kwargs))
    return batches, np.concatenate([b.images for b in batches])


@pytest.mark.parametrize(
    "name, reason",
    [
        ("missing", "missing"),
        ("directory", "not_a_video"),
        ("garbage", "not_a_video"),
        ("garbage_mkv", "not_a_video"),
        ("zero_length", "not_a_video"),
        ("audio_only", "not_a_video"),
        ("cover_art", "not_a_video"),
        ("zero_frames", "zero_frames"),
        ("moov_missing", "decode_error"),
    ],
)
def test_undecodable_files_fail_with_the_right_reason(hostile, name, reason):
    path = hostile[name]
    with pytest.raises(VideoDecodeError) as info:
        list(decode_frames(path))
    assert info.value.reason == reason
    assert str(path) in info.value.message and "\n" not in info.value.message
    failure = info.value.to_failure("vid")
    assert (failure.video_id, failure.path, failure.reason) == ("vid", str(path), reason)


def test_truncated_mp4_gives_the_decodable_part(hostile):
    stats = DecodeStats()
    batches, images = _frames(hostile["truncated_mp4"], fps=1.0, stats=stats)
    assert 3 <= len(images) <= 7  # about half of the 10 one-second samples survive
    assert batches[-1].final and batches[0].decoder == "ffmpeg"  # decord cannot open it, ffmpeg can
    assert images.std() > 10
    assert stats.truncated == 1 and stats.fallbacks == 1 and stats.failures == 0


def test_truncated_mkv_gives_the_decodable_part(hostile):
    batches, images = _frames(hostile["truncated_mkv"], fps=1.0, chunk_size=2)
    assert 3 <= len(images) <= 7
    assert batches[-1].final and not any(b.final for b in batches[:-1])
    timestamps = sum((b.timestamps for b in batches), [])
    assert timestamps == pytest.approx([0.5 + k for k in range(len(images))], abs=0.02)


def test_truncated_faststart_mp4_open_fails_for_decord_only(hostile):
    with pytest.raises(decord.DECORDError):  # the reason the ffmpeg fallback exists
        decord.VideoReader(str(hostile["truncated_mp4"]))


def test_codec_decord_cannot_decode_falls_back_to_ffmpeg(tmp_path):
    try:
        path = make_video(tmp_path / "av1.mp4", seconds=2, width=160, height=120, codec="libsvtav1")
    except RuntimeError as exc:
        pytest.skip(f"this ffmpeg build has no AV1 encoder: {exc}")
    with pytest.raises(decord.DECORDError):  # decord 0.6.0 bundles an ffmpeg without AV1
        decord.VideoReader(str(path))
    batches, images = _frames(path, fps=1.0, size=60)
    assert images.shape == (2, 60, 80, 3) and batches[0].decoder == "ffmpeg"
    assert batches[0].timestamps == pytest.approx([0.5, 1.5])


def test_clip_with_only_a_few_frames(hostile):
    batches, images = _frames(hostile["few_frames"], fps=1.0, size=64)
    assert images.shape == (1, 64, 85, 3)
    assert batches[0].timestamps == pytest.approx([1 / 30], abs=1e-3)  # frame 1 of 3: the centre
    assert batches[0].final


def test_clip_shorter_than_one_sampling_interval(hostile):
    batches, images = _frames(hostile["short"], fps=1.0)  # 0.4 s, 12 frames
    assert len(images) == 1 and batches[0].timestamps == pytest.approx([0.2], abs=1e-3)
    batches, images = _frames(hostile["short"], fps=None, num_frames=32)
    assert len(images) == 12  # asked for more frames than there are: all of them


def test_restarting_timestamps_keep_stream_order(hostile):
    batches, images = _frames(hostile["timestamp_jump"], fps=1.0)
    mean_rgb = images.reshape(len(images), -1, 3).mean(axis=1)
    assert ["red" if rgb[0] > rgb[2] else "blue" for rgb in mean_rgb] == ["red", "red", "blue", "blue"]
    assert batches[0].decoder == "ffmpeg"
    timestamps = sum((b.timestamps for b in batches), [])
    assert timestamps == pytest.approx([0.5, 1.5, 2.5, 3.5], abs=1e-3)
    assert batches[0].duration == pytest.approx(4.0, abs=0.05)


def _ffmpeg_upright(path: Path, index: int, width: int, height: int) -> np.ndarray:
    """ffmpeg's own rendering (autorotate on) of frame `index`: the ground truth for 'upright'."""
    raw = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-vf",
            f"select=eq(n\\,{index}),scale={width}:{height}",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


@pytest.mark.parametrize("rotate", [-90, 90, 180])
@pytest.mark.parametrize("decoder", ["auto", "ffmpeg"])
def test_rotated_phone_video_comes_out_upright(tmp_path, rotate, decoder):
    path = make_video(
        tmp_path / f"phone{rotate}.mp4", seconds=1, width=320, height=240, rotate=rotate, preset="ultrafast"
    )
    assert probe_video(path).rotation == rotate % 360
    batch = next(decode_frames(path, fps=1.0, size=120, decoder=decoder))  # 1 s clip: frame 15
    expected_shape = (1, 120, 160, 3) if rotate == 180 else (1, 160, 120, 3)
    assert batch.images.shape == expected_shape
    reference = _ffmpeg_upright(path, 15, batch.images.shape[2], batch.images.shape[1]).astype(int)
    assert np.abs(reference - batch.images[0]).mean() < 8  # scaler differences only
    if rotate == 180:  # and not merely the coded frame
        assert np.abs(reference[::-1, ::-1] - batch.images[0]).mean() > 40


def test_decord_breaking_mid_video_hands_over_to_ffmpeg(hostile, monkeypatch):
    """decord fails on its second unit: ffmpeg decodes the rest, same frames, in order."""
    real_get_batch = decord.VideoReader.get_batch
    calls = {"n": 0}
    lock = threading.Lock()

    def flaky_get_batch(self, indices):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n >= 2:
            raise decord.DECORDError("injected: corrupt packet")
        return real_get_batch(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", flaky_get_batch)
    stats = DecodeStats()
    batches, images = _frames(hostile["counter"], fps=10.0, chunk_size=8, readers=1, stats=stats)
    expected = list(range(1, 100, 3))  # 10 fps of 30: the centre of every 3 frames
    assert frame_counter_index(images) == expected
    # decord delivered the first unit (7 frames), ffmpeg the rest; a chunk holding any ffmpeg frame says so
    assert calls["n"] == 2
    assert [b.decoder for b in batches] == ["ffmpeg"] * 5
    assert [b.final for b in batches] == [False] * 4 + [True]
    assert sum((b.timestamps for b in batches), []) == pytest.approx([i / 30 for i in expected], abs=1e-3)
    assert stats.fallbacks == 1 and stats.truncated == 0


def test_stream_reports_every_hostile_file_and_keeps_going(hostile):
    names = [
        "garbage",
        "few_frames",
        "missing",
        "zero_length",
        "truncated_mkv",
        "zero_frames",
        "timestamp_jump",
        "audio_only",
        "moov_missing",
        "short",
    ]
    items = [(name, hostile[name]) for name in names]
    failures: dict[str, str] = {}
    frames: dict[str, int] = {}
    finals: set[str] = set()
    for item in stream_videos(items, fps=1.0, size=48, workers=2, queue_size=2, chunk_size=2):
        if isinstance(item, VideoFailure):
            failures[item.video_id] = item.reason
        else:
            frames[item.video_id] = frames.get(item.video_id, 0) + len(item.images)
            if item.final:
                finals.add(item.video_id)
    assert failures == {
        "garbage": "not_a_video",
        "missing": "missing",
        "zero_length": "not_a_video",
        "zero_frames": "zero_frames",
        "audio_only": "not_a_video",
        "moov_missing": "decode_error",
    }
    assert frames["few_frames"] == 1 and frames["short"] == 1 and frames["timestamp_jump"] == 4
    assert 3 <= frames["truncated_mkv"] <= 7
    assert finals == set(frames)
