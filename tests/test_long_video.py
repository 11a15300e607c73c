"""Per-frame cost that does not grow with the video: a CPU captioner and the decoders take turns.

The mechanism is checked without timing (a lock the decoders must hold to decode, and that the
caption stage holds while it captions); the `long_video_linearity` bench figure is run at tiny
sizes (its value is measured by `videoqa bench`, never asserted here).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import decord
import numpy as np
import pytest
import torch

from videoqa.bench.long_video import long_video_step
from videoqa.bench.settings import MODES
from videoqa.captioning.stage import caption_stream
from videoqa.captioning.videos import computes_on_cpu
from videoqa.fixtures.synthetic_video import make_video
from videoqa.frames import stream_videos
from videoqa.types import FrameBatch


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("long-video") / "clip.mp4", seconds=4, fps=30, width=96, height=64)


def test_decoders_decode_only_while_they_hold_the_turn(clip, monkeypatch):
    real = decord.VideoReader.get_batch
    calls: list[bool] = []
    turns = threading.Lock()

    def counting(self, indices):
        calls.append(turns.locked())  # a unit is decoded while the turn is held (by its reader)
        return real(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", counting)
    got: list[FrameBatch] = []
    with turns:  # the captioner's turn: nothing may be decoded
        stream = stream_videos([("clip", clip)], fps=1.0, size=32, chunk_size=2, turns=turns)
        consumer = threading.Thread(target=lambda: got.extend(stream), daemon=True)
        consumer.start()
        time.sleep(1.5)
        assert calls == [] and got == []
    consumer.join(timeout=120)
    assert not consumer.is_alive()
    assert calls and all(calls)
    assert sum(len(b.images) for b in got) == 4


def test_the_caption_stage_captions_while_it_holds_the_turn():
    turns = threading.Lock()
    held: list[bool] = []

    class Recorder:
        loaded = True

        def load(self) -> None:
            pass

        def caption(self, images, prompt):
            held.append(turns.locked())
            return [f"frame {i}" for i in range(len(images))]

    frames = np.zeros((5, 8, 8, 3), np.uint8)
    stream = [FrameBatch("v", frames, [0.5, 1.5, 2.5, 3.5, 4.5], 5.0, "decord", 0, True)]
    out = list(caption_stream(stream, Recorder(), "p", batch_size=2, turns=turns))  # type: ignore[arg-type]
    assert [len(v.captions) for v in out] == [5] and held == [True, True, True]
    assert not turns.locked()


def test_turns_are_taken_only_by_a_captioner_whose_threads_fill_this_cpu():
    cores = len(os.sched_getaffinity(0))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cores)
        assert computes_on_cpu(SimpleNamespace(device="cpu"))
        assert not computes_on_cpu(SimpleNamespace(device="cuda:0"))  # the GPU computes: decoding overlaps it
        assert not computes_on_cpu(SimpleNamespace())  # an engine of its own (vLLM captioner): as before
        if cores > 1:  # one intra-op thread leaves the decoders a core: they overlap
            torch.set_num_threads(1)
            assert not computes_on_cpu(SimpleNamespace(device="cpu"))
    finally:
        torch.set_num_threads(threads)


def test_long_video_figure_reports_both_videos(tmp_path):
    details = long_video_step(MODES["tiny"], tmp_path)
    short, long = details["short"], details["long"]
    assert details["frame_ratio"] == long["frames"] / short["frames"] == 8
    assert long["duration_s"] == pytest.approx(8 * short["duration_s"], rel=0.05)
    assert short["peak_rss_mb"] > 0 and long["peak_rss_mb"] > 0  # each measured in its own process
    assert details["long_video_linearity"] == pytest.approx(long["seconds_per_frame"] / short["seconds_per_frame"])
