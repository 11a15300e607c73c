"""The caption stage's batching across videos, ordering and failure handling."""

import numpy as np
import pytest

from videoqa.captioning.base import Captioner
from videoqa.captioning.stage import CaptionStats, caption_stream
from videoqa.config import CaptionerConfig
from videoqa.types import FrameBatch, VideoFailure
from videoqa_base.batching import is_out_of_memory, map_in_batches


class BrightnessCaptioner(Captioner):
    """Describes a frame by its mean brightness (a real function of the pixels), records batch sizes."""

    def __init__(self):
        super().__init__(CaptionerConfig(name="brightness", type="brightness"))
        self.batch_sizes = []

    def caption(self, images, prompt):
        self.batch_sizes.append(len(images))
        return [f"{prompt} {int(image.mean())}" for image in images]

    def identity(self):
        return {"name": "brightness"}

    def num_parameters(self):
        return 0


def _chunk(video_id, values, start_t, final, duration=10.0):
    images = np.stack([np.full((4, 4, 3), v, dtype=np.uint8) for v in values])
    return FrameBatch(
        video_id, images, [start_t + i for i in range(len(values))], duration, start=int(start_t), final=final
    )


def test_batches_span_videos_and_each_video_is_emitted_complete():
    stream = [
        _chunk("a", [10, 11, 12], 0, final=False),
        _chunk("a", [13], 3, final=True),
        _chunk("b", [20, 21], 0, final=True),
        VideoFailure("c", "c.mp4", "missing", "c.mp4: no such file"),
        _chunk("d", [40, 41, 42], 0, final=True, duration=3.0),
    ]
    captioner = BrightnessCaptioner()
    stats = CaptionStats()
    out = list(caption_stream(stream, captioner, "frame", batch_size=4, stats=stats))
    assert captioner.batch_sizes == [4, 4, 1]  # full batches across video boundaries
    by_id = {o.video_id: o for o in out}
    assert isinstance(by_id["c"], VideoFailure)
    assert [c.text for c in by_id["a"].captions] == ["frame 10", "frame 11", "frame 12", "frame 13"]
    assert [c.t for c in by_id["a"].captions] == [0, 1, 2, 3]
    assert [c.text for c in by_id["b"].captions] == ["frame 20", "frame 21"]
    assert [c.text for c in by_id["d"].captions] == ["frame 40", "frame 41", "frame 42"] and by_id["d"].duration == 3.0
    assert stats.frames == 9 and stats.batches == 3
    assert set(stats.per_video_caption_s) == {"a", "b", "d"}


def test_video_failing_midway_is_reported_not_emitted():
    stream = [
        _chunk("a", [1, 2], 0, final=False),
        VideoFailure("a", "a.mp4", "decode_error", "broke"),
        _chunk("b", [3], 0, True),
    ]
    out = list(caption_stream(stream, BrightnessCaptioner(), "f", batch_size=8))
    assert [type(o).__name__ for o in out] == ["VideoFailure", "VideoCaptions"]
    assert out[1].video_id == "b"


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError (matched by class name, as CUDA's is)."""


class SmallMemoryCaptioner(BrightnessCaptioner):
    """Runs out of memory above `limit` frames per batch, like a GPU that is too small."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def caption(self, images, prompt):
        if len(images) > self.limit:
            self.batch_sizes.append(-len(images))
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().caption(images, prompt)


def test_out_of_memory_halves_the_batch_retries_and_keeps_the_smaller_size():
    stream = [_chunk("a", list(range(10, 18)), 0, final=True), _chunk("b", list(range(20, 28)), 0, final=True)]
    captioner = SmallMemoryCaptioner(limit=3)
    stats = CaptionStats()
    out = list(caption_stream(stream, captioner, "f", batch_size=8, stats=stats))
    assert [c.text for c in out[0].captions] == [f"f {v}" for v in range(10, 18)]
    assert [c.text for c in out[1].captions] == [f"f {v}" for v in range(20, 28)]
    assert captioner.batch_sizes[:4] == [-8, -4, 2, 2]  # 8 fails, 4 fails, then halves of 2
    assert stats.batch_size == 2 and max(captioner.batch_sizes) == 2  # later batches start small
    assert stats.oom_backoffs >= 2


def test_other_errors_are_not_swallowed():
    class Broken(BrightnessCaptioner):
        def caption(self, images, prompt):
            raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        list(caption_stream([_chunk("a", [1, 2], 0, final=True)], Broken(), "f", batch_size=2))


# ---------------------------------------------------------------------------- the out-of-memory rule


@pytest.mark.parametrize(
    "error, expected",
    [
        (OutOfMemoryError("anything"), True),  # matched by class name, as torch.OutOfMemoryError is
        (type("CudaOOM", (OutOfMemoryError,), {})("x"), True),  # or by a base class's name
        (MemoryError(), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("out of memory"), False),  # only RuntimeErrors are read by message
    ],
)
def test_out_of_memory_rule(error, expected):
    assert is_out_of_memory(error) is expected


def test_map_in_batches_halves_on_out_of_memory_and_reports_each_smaller_size():
    calls, backoffs = [], []

    def double(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise MemoryError
        return [2 * x for x in batch]

    assert map_in_batches(double, list(range(8)), 8, on_backoff=backoffs.append) == [2 * x for x in range(8)]
    assert calls == [8, 4, 2, 2, 2, 2]  # 8 fails, 4 fails, then the smaller size is kept
    assert backoffs == [4, 2]

    def never_fits(batch):
        raise MemoryError

    with pytest.raises(MemoryError):  # a single item that does not fit: raised
        map_in_batches(never_fits, [1, 2, 3], 3)
    with pytest.raises(ValueError):
        map_in_batches(double, [1], 0)
