"""Which frames to decode: the sampling rule by fps / num_frames / max_frames, and by real time.

Pure functions of the frame count, frame rate and (for variable frame rate) the frame timestamps;
no decoding happens here, so the rule can be tested exhaustively and shared by both decoders.

Sampling rule (LLoVi-style, one frame per interval): the video is cut into intervals of
`step` frames and the frame at the CENTRE of each interval is taken, i.e.
index_k = floor((k + 1/2) * step), keeping the k whose centre lies inside the video.
`step` = avg_fps / fps (1 fps: the frames at 0.5 s, 1.5 s, 2.5 s, ...), or total / num_frames
for a fixed count; `max_frames` caps long videos by re-spacing with step = total / max_frames.
Centres rather than interval starts: the first frame of a video is often a black fade-in.
Variable frame rate (phones, streams with gaps): when decord's frame timestamps stray from
index / avg_fps by more than half a sampling interval, frames are picked by time instead
(`sample_by_time`: the frame on screen at each interval centre), so 1 fps stays 1 fps of real time.
Because the rule is a closed form, ffmpeg's `select` filter can apply exactly the same rule when
ffmpeg stands in for decord (see `Sampling.select_expr`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_EPS = 1e-9  # shifts the interval edges off the integers, where decimal steps would tie


def is_sample(n: int, step: float) -> bool:
    """Whether some centre (k + 1/2) * step falls in [n, n + 1).

    Counts the centres below n + 1 and below n. `Sampling.select_expr` hands ffmpeg the very
    same double-precision arithmetic, so both decoders pick identical frames.
    """
    return math.ceil((n + 1 - _EPS) / step - 0.5) > math.ceil((n - _EPS) / step - 0.5)


@dataclass(frozen=True)
class Sampling:
    """The frames chosen for one video, and the rule that chose them (for ffmpeg's `select`)."""

    indices: list[int]
    step: float | None  # None: every frame (step <= 1) or a single frame (clip shorter than half a step)
    explicit: bool = False  # indices chosen by timestamp (variable frame rate): ffmpeg gets the list

    def select_expr(self, first: int = 0) -> str:
        """ffmpeg `select` expression picking the `indices` from `first` on."""
        if self.explicit:
            return "+".join(f"eq(n,{i})" for i in self.indices if i >= first) or "0"
        if self.step is None:
            pick = f"eq(n,{self.indices[0]})" if len(self.indices) == 1 else "1"
        else:
            s, e = repr(self.step), repr(_EPS)
            pick = f"gt(ceil((n+1-{e})/{s}-0.5),ceil((n-{e})/{s}-0.5))"
        return pick + (f"*gte(n,{first})" if first else "")


def _centres(step: float, total: int) -> list[int]:
    if step <= 1.0:
        return list(range(total))
    out: list[int] = []
    k = 0
    while True:
        guess = int((k + 0.5) * step)  # floor of the centre, up to rounding: check its neighbours
        if guess - 1 >= total:
            return out
        for n in (guess - 1, guess, guess + 1):
            if 0 <= n < total and (not out or n > out[-1]) and is_sample(n, step):
                out.append(n)
        k += 1


def plan_sampling(
    total_frames: int, avg_fps: float, fps: float | None, num_frames: int | None, max_frames: int | None
) -> Sampling:
    """The index-based sampling of a video of `total_frames` frames at `avg_fps` (module docstring)."""
    check_sampling_args(fps, num_frames, max_frames)
    if total_frames < 0:
        raise ValueError(f"total_frames must be >= 0, got {total_frames}")
    if total_frames == 0:
        return Sampling([], None)
    if num_frames is not None:
        step = total_frames / num_frames
    else:
        if not (avg_fps > 0 and math.isfinite(avg_fps)):
            raise ValueError(f"avg_fps must be a positive number to sample by fps, got {avg_fps}")
        step = avg_fps / fps
    if max_frames is not None and total_frames / step > max_frames + 1:
        step = total_frames / max_frames  # surely over the cap: skip listing the uncapped indices
    indices = _centres(step, total_frames)
    if max_frames is not None and len(indices) > max_frames:
        step = total_frames / max_frames
        indices = _centres(step, total_frames)
    if not indices:  # shorter than half an interval: the centre of what there is
        return Sampling([total_frames // 2], None)
    return Sampling(indices, step if step > 1.0 else None)


def check_sampling_args(fps: float | None, num_frames: int | None, max_frames: int | None) -> None:
    """Raise ValueError for sampling arguments that pick no frames (checked before any decoding)."""
    if num_frames is None and fps is None:
        raise ValueError("set fps or num_frames")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_frames is None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")


def sample_by_time(
    starts: np.ndarray, duration: float, fps: float | None, num_frames: int | None, max_frames: int | None
) -> list[int]:
    """The frames on screen at the centre of each sampling interval, by real timestamps.

    For variable-frame-rate videos (phones), where index-based spacing would drift from 1/fps:
    target times (k + 1/2) / fps (or num_frames / max_frames evenly over the duration); each picks
    the last frame that starts at or before it. A gap in the stream gives one frame, not repeats.
    """
    check_sampling_args(fps, num_frames, max_frames)
    if len(starts) == 0:
        return []
    count = num_frames if num_frames is not None else max(1, int(duration * fps + 0.5))
    if max_frames is not None:
        count = min(count, max_frames)
    interval = duration / count if (num_frames is not None or count == max_frames) else 1.0 / fps
    targets = (np.arange(count) + 0.5) * interval
    picks = np.clip(np.searchsorted(starts, targets, side="right") - 1, 0, len(starts) - 1)
    return sorted(set(int(i) for i in picks))


def is_variable_rate(starts: np.ndarray, avg_fps: float, fps: float | None) -> bool:
    """Whether frame times stray from index / avg_fps by more than half a sampling interval."""
    tolerance = 0.5 / fps if fps else 0.5
    nominal = np.arange(len(starts)) / avg_fps
    return bool(len(starts) > 1 and np.max(np.abs(starts - nominal)) > tolerance)


def sample_indices(
    total_frames: int,
    avg_fps: float,
    *,
    fps: float | None = 1.0,
    num_frames: int | None = None,
    max_frames: int | None = None,
) -> list[int]:
    """Sorted, unique frame indices in [0, total_frames) to decode (see the module docstring).

    num_frames (evenly spaced, overrides fps) gives min(num_frames, total_frames) frames;
    max_frames re-spaces evenly when the rule would give more. A non-empty video always gives at
    least one frame; total_frames == 0 gives [].
    """
    return plan_sampling(total_frames, avg_fps, fps, num_frames, max_frames).indices
