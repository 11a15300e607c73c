"""Frames stage: sampling rule, decoding (decord and ffmpeg paths), chunking, streaming."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import decord
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videoqa.config import FramesConfig
from videoqa.fixtures.synthetic_video import (
    drawtext_available,
    frame_counter_index,
    make_color_sequence,
    make_frame_counter,
    make_video,
)
from videoqa.frames import (
    DecodeStats,
    decode_frames,
    is_sample,
    output_size,
    plan_sampling,
    probe_video,
    sample_indices,
    stream_videos,
)
from videoqa.types import FrameBatch, VideoFailure

PANCAKE = Path("/work/shared/videos/flipping_a_pancake.mkv")


# ---------------------------------------------------------------------------- sampling


def test_one_fps_takes_the_centre_of_each_second():
    # 10.33 s at 30 fps: centres 0.5 s .. 9.5 s lie inside, 10.5 s does not
    assert sample_indices(310, 30.0) == [15 + 30 * k for k in range(10)]
    assert sample_indices(318, 30.0) == [15 + 30 * k for k in range(11)]  # 10.6 s: 10.5 s is inside


def test_fps_rates_and_fractional_frame_rates():
    assert sample_indices(300, 30.0, fps=2.0) == [7 + 15 * k for k in range(20)]
    assert sample_indices(300, 30.0, fps=0.5) == [30, 90, 150, 210, 270]
    ntsc = sample_indices(1800, 30000 / 1001)  # 29.97 fps, 60.06 s
    assert len(ntsc) == 60 and ntsc[0] == 14 and ntsc[-1] == 1783  # floor(59.5 * 29.97)


def test_fixed_count_is_evenly_spaced_and_overrides_fps():
    assert sample_indices(100, 30.0, num_frames=4) == [12, 37, 62, 87]
    assert sample_indices(100, 30.0, fps=5.0, num_frames=4) == [12, 37, 62, 87]
    assert sample_indices(5, 30.0, num_frames=8) == [0, 1, 2, 3, 4]  # more asked than there are
    assert sample_indices(100, 0.0, fps=None, num_frames=1) == [50]  # no frame rate needed


def test_max_frames_respaces_long_videos():
    three_hours = 3 * 3600 * 30
    capped = sample_indices(three_hours, 30.0, fps=1.0, max_frames=1000)
    assert len(capped) == 1000
    assert capped == sample_indices(three_hours, 30.0, fps=None, num_frames=1000)
    gaps = np.diff(capped)
    assert gaps.min() >= 323 and gaps.max() <= 325  # 324 frames = 10.8 s apart
    assert sample_indices(310, 30.0, max_frames=100) == sample_indices(310, 30.0)  # under the cap: untouched
    assert sample_indices(310, 30.0, num_frames=50, max_frames=10) == sample_indices(310, 30.0, num_frames=10)


def test_short_clips_still_give_a_frame():
    assert sample_indices(10, 30.0) == [5]  # 0.33 s < half an interval: the clip's centre
    assert sample_indices(20, 30.0) == [15]  # 0.67 s: the 0.5 s centre is inside
    assert sample_indices(1, 30.0) == [0]
    assert sample_indices(3, 30.0, fps=60.0) == [0, 1, 2]  # sampling faster than the video: every frame
    assert sample_indices(0, 30.0) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(fps=0),
        dict(fps=-1.0),
        dict(fps=None),
        dict(fps=1.0, num_frames=0),
        dict(max_frames=0),
        dict(fps=float("nan")),
    ],
)
def test_bad_sampling_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        sample_indices(100, 30.0, **kwargs)


def test_fps_sampling_needs_a_frame_rate():
    with pytest.raises(ValueError, match="avg_fps"):
        sample_indices(100, 0.0)
    with pytest.raises(ValueError):
        sample_indices(-1, 30.0)


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(1, 200_000),
    avg_fps=st.floats(1.0, 240.0),
    fps=st.floats(0.01, 60.0),
    num_frames=st.one_of(st.none(), st.integers(1, 5000)),
    max_frames=st.one_of(st.none(), st.integers(1, 3000)),
)
def test_sampling_properties(total, avg_fps, fps, num_frames, max_frames):
    indices = sample_indices(total, avg_fps, fps=fps, num_frames=num_frames, max_frames=max_frames)
    assert indices == sorted(set(indices)), "sorted and unique"
    assert 1 <= len(indices) and 0 <= indices[0] and indices[-1] < total
    if max_frames is not None:
        assert len(indices) <= max_frames
    if num_frames is not None and (max_frames is None or max_frames >= num_frames):
        assert len(indices) == min(num_frames, total)
    elif num_frames is None and max_frames is None:
        step = avg_fps / fps
        expected = total if step <= 1 else max(1, math.ceil(total / step - 0.5))
        assert abs(len(indices) - expected) <= 1
    assert indices == sample_indices(
        total, avg_fps, fps=fps, num_frames=num_frames, max_frames=max_frames
    )  # deterministic


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 3000), step=st.floats(1.0001, 500.0))
def test_ffmpeg_select_rule_matches_the_index_list(total, step):
    """The membership test handed to ffmpeg picks exactly the listed indices (same arithmetic)."""
    plan = plan_sampling(total, step, 1.0, None, None)  # avg_fps = step at 1 fps
    if plan.step is not None:
        assert [n for n in range(total) if is_sample(n, plan.step)] == plan.indices


def test_output_size_sets_the_shorter_side():
    assert output_size(426, 240, 224) == (398, 224)
    assert output_size(240, 426, 224) == (224, 398)
    assert output_size(320, 240, None) == (320, 240)
    assert output_size(100, 50, 224) == (448, 224)  # small videos are scaled up


# ---------------------------------------------------------------------------- decoding


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("frames")
    return {
        "counter": make_frame_counter(root / "counter.mp4", frames=100),  # 3.33 s, frame i shows i
        "clip": make_video(root / "clip.mp4", seconds=3, width=320, height=180, preset="ultrafast"),
        "colors": make_color_sequence(
            root / "colors.mp4", ["red", "lime", "blue"], seconds_each=2.0, width=160, height=120
        ),
    }


@pytest.mark.skipif(not PANCAKE.exists(), reason=f"{PANCAKE} not present")
def test_real_clip_at_one_fps():
    stats = DecodeStats()
    batches = list(decode_frames(PANCAKE, fps=1.0, size=224, stats=stats))
    assert len(batches) == 1
    batch = batches[0]
    assert batch.images.shape == (10, 224, 398, 3) and batch.images.dtype == np.uint8
    assert batch.timestamps == pytest.approx([0.5 + k for k in range(10)], abs=0.02)
    assert batch.duration == pytest.approx(10.33, abs=0.05)
    assert batch.video_id == "flipping_a_pancake" and batch.decoder == "decord"
    assert batch.final and batch.start == 0
    assert batch.images.std() > 10  # real picture content, not a blank buffer
    assert stats.videos == 1 and stats.frames == 10 and stats.failures == 0 and stats.seconds > 0


@pytest.mark.skipif(not PANCAKE.exists(), reason=f"{PANCAKE} not present")
def test_real_clip_in_small_chunks_matches_one_chunk():
    whole = next(decode_frames(PANCAKE, fps=1.0, size=112))
    chunks = list(decode_frames(PANCAKE, fps=1.0, size=112, chunk_size=3, readers=2))
    assert [len(c.images) for c in chunks] == [3, 3, 3, 1]
    assert [c.start for c in chunks] == [0, 3, 6, 9]
    assert [c.final for c in chunks] == [False, False, False, True]
    assert sum((c.timestamps for c in chunks), []) == whole.timestamps
    np.testing.assert_array_equal(np.concatenate([c.images for c in chunks]), whole.images)


@pytest.mark.parametrize("decoder", ["auto", "ffmpeg"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(fps=1.0),
        dict(fps=7.0),
        dict(fps=2.9),
        dict(fps=None, num_frames=13),
        dict(fps=60.0),
        dict(fps=1.0, max_frames=2),
    ],
)
def test_both_decoders_deliver_exactly_the_sampled_frames(videos, decoder, kwargs):
    batches = list(decode_frames(videos["counter"], decoder=decoder, chunk_size=5, **kwargs))
    expected = sample_indices(100, 30.0, **kwargs)
    got = frame_counter_index(np.concatenate([b.images for b in batches]))
    assert got == expected
    assert {b.decoder for b in batches} == {"decord" if decoder == "auto" else "ffmpeg"}
    assert sum((b.timestamps for b in batches), []) == pytest.approx([i / 30.0 for i in expected], abs=1e-3)


@pytest.mark.parametrize("readers", [1, 2, 3])
def test_parallel_readers_keep_frame_order(videos, readers):
    batches = list(decode_frames(videos["counter"], fps=None, num_frames=100, chunk_size=7, readers=readers))
    assert frame_counter_index(np.concatenate([b.images for b in batches])) == list(range(100))
    assert [len(b.images) for b in batches] == [7] * 14 + [2]
    assert [b.start for b in batches] == list(range(0, 100, 7))
    assert [b.final for b in batches] == [False] * 14 + [True]


def test_resize_keeps_aspect_and_content(videos):
    native = next(decode_frames(videos["clip"], fps=1.0))
    small = next(decode_frames(videos["clip"], fps=1.0, size=90))
    assert native.images.shape == (3, 180, 320, 3)
    assert small.images.shape == (3, 90, 160, 3)
    # the small frame is the big one scaled down
    down = native.images.reshape(3, 90, 2, 160, 2, 3).mean(axis=(2, 4))
    assert np.abs(down - small.images).mean() < 12


def test_colour_sequence_comes_out_in_order(videos):
    batch = next(decode_frames(videos["colors"], fps=1.0))
    mean_rgb = batch.images.reshape(len(batch.images), -1, 3).mean(axis=1)
    names = ["red", "lime", "blue"]
    dominant = [names[int(np.argmax(rgb))] for rgb in mean_rgb]
    assert dominant == ["red", "red", "lime", "lime", "blue", "blue"]
    assert batch.timestamps == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5, 5.5], abs=1e-3)


def test_text_is_drawn_on_synthetic_videos(tmp_path):
    if not drawtext_available():
        pytest.skip("this ffmpeg build cannot draw text")
    plain = make_video(tmp_path / "plain.mp4", seconds=1, pattern="color=c=black", preset="ultrafast")
    text = make_video(tmp_path / "text.mp4", seconds=1, pattern="color=c=black", text="CAT: 3", preset="ultrafast")
    plain_frame, text_frame = (next(decode_frames(p, fps=1.0)).images[0] for p in (plain, text))
    assert plain_frame.max() < 40  # black
    centre = text_frame[90:150, 100:220]
    assert (centre > 200).mean() > 0.02 and (text_frame[:40] > 100).mean() == 0  # white glyphs, centred
    labelled = make_color_sequence(tmp_path / "labelled.mp4", ["navy", "navy"], labels=["one", "two"], seconds_each=1.0)
    one, two = next(decode_frames(labelled, fps=1.0)).images
    assert np.abs(one.astype(int) - two).mean() > 1  # different words on the same colour


def test_probe_reads_the_header(videos):
    info = probe_video(videos["clip"])
    assert (info.width, info.height, info.rotation, info.codec) == (320, 180, 0, "h264")
    assert info.fps == 30.0 and info.duration == pytest.approx(3.0, abs=0.05)


def test_arguments_are_checked_before_decoding(videos):
    with pytest.raises(ValueError):
        decode_frames(videos["clip"], chunk_size=0)
    with pytest.raises(ValueError):
        decode_frames(videos["clip"], size=0)
    with pytest.raises(ValueError):
        decode_frames(videos["clip"], decoder="opencv")


def _decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("decord-reader", "video-decoder"))]


def _wait_no_decoder_threads(timeout: float = 30.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while _decoder_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _decoder_threads()


def test_closing_decode_frames_early_stops_its_readers(videos):
    stats = DecodeStats()
    gen = decode_frames(videos["counter"], fps=None, num_frames=100, chunk_size=2, readers=2, stats=stats)
    first = next(gen)
    assert len(first.images) == 2
    gen.close()
    assert _wait_no_decoder_threads() == []
    assert (stats.videos, stats.frames, stats.failures) == (1, 2, 0)  # stopping early is not a failure


def _count_get_batch(monkeypatch) -> dict[str, int]:
    real = decord.VideoReader.get_batch
    calls = {"n": 0}
    lock = threading.Lock()

    def counting(self, indices):
        with lock:
            calls["n"] += 1
        return real(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", counting)
    return calls


def test_decoding_runs_only_a_bounded_way_ahead_of_a_slow_consumer(videos, monkeypatch):
    calls = _count_get_batch(monkeypatch)
    gen = decode_frames(videos["counter"], fps=None, num_frames=100, chunk_size=2, readers=2)  # 50 units
    next(gen)
    time.sleep(1.0)  # plenty of time to decode everything if nothing held the readers back
    assert calls["n"] <= 6  # per reader: one unit queued, one waiting to be queued; plus the one consumed
    gen.close()


# ---------------------------------------------------------------------------- streaming


def _collect(stream) -> tuple[dict[str, list[FrameBatch]], dict[str, VideoFailure]]:
    chunks: dict[str, list[FrameBatch]] = {}
    failures: dict[str, VideoFailure] = {}
    for item in stream:
        if isinstance(item, VideoFailure):
            failures[item.video_id] = item
        else:
            chunks.setdefault(item.video_id, []).append(item)
    return chunks, failures


def test_stream_keeps_per_video_order_and_goes_on_after_failures(videos, tmp_path):
    (tmp_path / "garbage.mp4").write_bytes(b"\x00\x01not a video at all" * 100)
    items = [
        ("counter", videos["counter"]),
        ("missing", tmp_path / "nope.mp4"),
        ("colors", videos["colors"]),
        ("garbage", tmp_path / "garbage.mp4"),
        ("clip", videos["clip"]),
    ]
    stats = DecodeStats()
    stream = stream_videos(items, fps=None, num_frames=20, size=32, chunk_size=3, workers=2, queue_size=2, stats=stats)
    chunks, failures = _collect(stream)
    assert {k: v.reason for k, v in failures.items()} == {"missing": "missing", "garbage": "not_a_video"}
    assert "nope.mp4" in failures["missing"].message
    assert set(chunks) == {"counter", "colors", "clip"}
    for video_id, batches in chunks.items():
        assert [b.start for b in batches] == list(range(0, 20, 3)), video_id
        assert [b.final for b in batches] == [False] * 6 + [True]
    counter = np.concatenate([b.images for b in chunks["counter"]])
    assert counter.shape == (20, 32, 43, 3)  # 64x48 -> shorter side 32
    assert stats.videos == 5 and stats.failures == 2 and stats.frames == 60
    assert set(stats.per_video) == {"counter", "missing", "colors", "garbage", "clip"}
    assert _wait_no_decoder_threads() == []


def test_stream_consumer_leaving_early_does_not_hang(videos):
    items = [(f"v{i}", videos["counter"]) for i in range(6)]
    stream = stream_videos(items, fps=None, num_frames=100, chunk_size=4, workers=2, queue_size=1)
    first = next(stream)
    assert isinstance(first, FrameBatch)
    stream.close()
    assert _wait_no_decoder_threads() == []


def test_stream_memory_is_bounded_by_the_queue(videos, monkeypatch):
    calls = _count_get_batch(monkeypatch)
    items = [(f"v{i}", videos["counter"]) for i in range(4)]
    stream = stream_videos(items, fps=None, num_frames=100, chunk_size=2, workers=2, queue_size=2, readers=1)
    next(stream)
    time.sleep(1.0)
    # queue (2) + one chunk per blocked worker (2) + per worker's reader: one queued, one in hand
    assert calls["n"] <= 12
    stream.close()
    assert _wait_no_decoder_threads() == []


def test_stream_reraises_a_broken_item_source(videos):
    def items():
        yield "counter", videos["counter"]
        raise OSError("annotation file vanished")

    with pytest.raises(OSError, match="vanished"):
        list(stream_videos(items(), fps=1.0, workers=1))
    assert _wait_no_decoder_threads() == []


def test_stream_takes_the_frames_config(videos):
    config = FramesConfig(fps=None, num_frames=5, workers=1)
    chunks, failures = _collect(
        stream_videos([("clip", videos["clip"])], **config.model_dump(exclude={"select"}), size=24)
    )
    assert not failures and [len(b.images) for b in chunks["clip"]] == [5]


def test_stream_with_no_items_ends():
    assert list(stream_videos([], fps=1.0)) == []
