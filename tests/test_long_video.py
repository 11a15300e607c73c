"""Per-frame cost that does not grow with the video: how a CPU captioner shares the cores with decoding.

The mechanisms are checked without timing: on 2+ cores the captioner keeps one core fewer and each
video is decoded by one decord reader of one thread; on one core a lock the decoders must hold to
decode, and that the caption stage holds while it captions. The `long_video_linearity`
bench figure is run at tiny sizes (its value is measured by `videoqa bench`, never asserted here).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import decord
import numpy as np
import pytest
import torch

import videoqa.captioning.videos as caption_videos_module
from videoqa.bench.long_video import long_video_step, summarize
from videoqa.bench.report import judge_long_video
from videoqa.bench.settings import MODES, Figure
from videoqa.captioning.base import Captioner
from videoqa.captioning.stage import caption_stream
from videoqa.captioning.videos import DecoderShare, computes_on_cpu, share_cores_with_decoders
from videoqa.config import CaptionerConfig, RunConfig
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


def recording_decord_readers(monkeypatch) -> list[int]:
    """The decoder threads of each decord reader opened from now on (num_threads; 0 = ffmpeg's choice)."""
    real_reader = decord.VideoReader.__init__
    opened: list[int] = []

    def opening(self, *args, **kwargs):
        opened.append(kwargs["num_threads"])
        real_reader(self, *args, **kwargs)

    monkeypatch.setattr(decord.VideoReader, "__init__", opening)
    return opened


def test_stream_videos_hands_the_reader_and_thread_counts_to_decord(clip, monkeypatch):
    opened = recording_decord_readers(monkeypatch)
    batches = list(stream_videos([("clip", clip)], fps=1.0, size=32, chunk_size=2, readers=2, num_threads=1))
    assert sum(len(b.images) for b in batches) == 4
    assert opened == [1, 1]  # the worker's reader and the second reader, one thread each


def test_a_cpu_captioner_on_two_cores_leaves_the_decoders_one_core(monkeypatch):
    threads = torch.get_num_threads()
    cpu = SimpleNamespace(device="cpu")
    try:
        monkeypatch.setattr(caption_videos_module, "usable_cores", lambda: 2)
        torch.set_num_threads(2)
        with share_cores_with_decoders(cpu) as share:  # type: ignore[arg-type]
            assert torch.get_num_threads() == 1
            assert share == DecoderShare(readers=1, num_threads=1)
        assert torch.get_num_threads() == 2
        with share_cores_with_decoders(SimpleNamespace(device="cuda:0")) as share:  # type: ignore[arg-type]
            assert share == DecoderShare() and torch.get_num_threads() == 2  # a GPU captioner: defaults
        monkeypatch.setattr(caption_videos_module, "usable_cores", lambda: 1)
        torch.set_num_threads(1)
        with share_cores_with_decoders(cpu) as share:  # type: ignore[arg-type]
            assert isinstance(share.turns, type(threading.Lock()))
            assert (share.readers, share.num_threads) == (1, 1)
    finally:
        torch.set_num_threads(threads)


def test_long_video_figure_reports_both_videos_over_repeats(tmp_path):
    details = long_video_step(replace(MODES["tiny"], long_video_repeats=2), tmp_path)
    short, long = details["short"], details["long"]
    assert details["frame_ratio"] == long["frames"] / short["frames"] == 8
    assert long["duration_s"] == pytest.approx(8 * short["duration_s"], rel=0.05)
    assert short["peak_rss_mb"] > 0 and long["peak_rss_mb"] > 0  # each measured in its own process
    for run in (short, long):
        assert len(run["runs_seconds_per_frame"]) == 2
        assert run["seconds_per_frame"] == pytest.approx(sum(run["runs_seconds_per_frame"]) / 2)
    assert details["long_video_linearity"] == pytest.approx(long["seconds_per_frame"] / short["seconds_per_frame"])
    figures = {"long_video_linearity": Figure("long_video_linearity", target=("<=", 1.2))}
    judge_long_video(figures, details, "")
    assert figures["long_video_linearity"].note.count("median of") == 2


def test_repeats_summarize_to_the_median_time_and_the_largest_memory():
    runs = [
        {"seconds_per_frame": t, "peak_rss_mb": m, "stage_s": 10 * t} for t, m in ((3.0, 500), (1.0, 700), (2.0, 600))
    ]
    summary = summarize(runs)
    assert summary["seconds_per_frame"] == 2.0 and summary["stage_s"] == 20.0  # the median run
    assert summary["peak_rss_mb"] == 700 and summary["runs_seconds_per_frame"] == [3.0, 1.0, 2.0]


class ThreadRecorder(Captioner):
    """A CPU captioner that records the torch threads it is given for each batch."""

    device = "cpu"
    image_size = 32

    def __init__(self) -> None:
        super().__init__(CaptionerConfig(name="recorder", type="recorder"))
        self.threads: list[int] = []

    def caption(self, images, prompt):
        self.threads.append(torch.get_num_threads())
        return [f"frame {int(image.mean())}" for image in images]

    def identity(self):
        return {"name": "recorder"}

    def num_parameters(self):
        return 0


def test_the_caption_stage_gives_a_cpu_captioner_all_cores_but_the_decoders_one(clip, tmp_path, monkeypatch):
    opened = recording_decord_readers(monkeypatch)
    monkeypatch.setattr(caption_videos_module, "usable_cores", lambda: 2)
    config = RunConfig.model_validate(
        {
            "dataset": {"name": "clips", "type": "egoschema", "data_root": str(tmp_path)},
            "captioner": {"name": "recorder", "type": "ser", "model": "unused", "batch_size": 2},
            "llm": {"name": "unused", "model": "unused"},
            "output_dir": str(tmp_path / "out"),
        }
    )
    threads = torch.get_num_threads()
    captioner = ThreadRecorder()
    try:
        torch.set_num_threads(2)
        result = caption_videos_module.caption_videos(config, captioner, [("clip", clip)], progress=False)
        assert torch.get_num_threads() == 2  # given back after the stage
    finally:
        torch.set_num_threads(threads)
    assert not result.failures and len(result.captions["clip"].captions) == 4
    assert captioner.threads == [1, 1]  # every batch on one core fewer
    assert opened == [1]  # the video decoded by one decord reader of one thread
