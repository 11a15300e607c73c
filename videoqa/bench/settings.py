"""What one bench run measures and how big: the figures, their targets, the three size presets.

Light on purpose (no torch): the CLI imports it to build `videoqa bench`'s arguments.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

FIGURES = (
    "peak_flops",
    "caption_mfu",
    "batch_speedup",
    "ser_over_specialist",
    "generalist_over_ser",
    "decode_vs_ffmpeg",
    "long_video_linearity",
    "e2e_speedup_vs_loop",
    "ray_over_local",
    "adaptive_over_uniform",
)
# targets on a CPU (the lead's), as (comparison, value)
TARGETS: dict[str, tuple[str, float]] = {
    "caption_mfu": (">=", 0.5),
    "batch_speedup": (">=", 4.0),
    "ser_over_specialist": ("<=", 1.15),
    "decode_vs_ffmpeg": (">=", 0.9),
    "long_video_linearity": ("<=", 1.2),
    "e2e_speedup_vs_loop": (">=", 3.0),
    # caption-stage time; the step also requires <= 0.4 of the captions and every scene captioned
    "adaptive_over_uniform": ("<=", 0.5),
}
PAPER = {"ser_over_specialist": 1.34, "generalist_over_ser": 37.0}  # batch 1 on a GPU
STEPS = ("peak", "caption", "generalist", "decode", "adaptive", "long_video", "e2e", "ray")
# the figures a failing step leaves without a value
FIGURES_OF_STEP = {
    "peak": ("peak_flops", "caption_mfu"),
    "caption": ("caption_mfu", "batch_speedup", "ser_over_specialist", "generalist_over_ser"),
    "generalist": ("generalist_over_ser",),
    "decode": ("decode_vs_ffmpeg",),
    "long_video": ("long_video_linearity",),
    "e2e": ("e2e_speedup_vs_loop",),
    "ray": ("ray_over_local",),  # no target: Ray's overhead on one machine, reported as measured
    "adaptive": ("adaptive_over_uniform",),
}
PROMPT = "Describe this frame within 50 words"  # the paper's VideoQA captioning prompt


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one bench run. `MODES` holds the three presets (full, quick, tiny for tests)."""

    mode: str
    # captioning figures: a SeR preset with random weights
    preset: str = "ser"
    small_preset: str = "tiny-ser"
    batch_size: int = 8
    frames: int = 16  # captioned at batch_size (SeR and specialist)
    batch1_frames: int = 4  # captioned at batch 1
    new_tokens: int = 60  # generated per pass, forced (the prompt asks for 50 words)
    repeats: int = 2  # caption timings: each chunk's fastest of this many runs
    dtype: str = "auto"  # auto: videoqa_base.device.resolve_dtype (fp32 on CPUs without native bf16)
    threads: int | None = None  # torch threads for the full-size models (None: all cores)
    device: str = "auto"  # auto: cuda when available, else cpu
    # peak FLOP/s: (m, k, n) GEMM shapes and seconds per dtype
    peak_shapes: tuple[tuple[int, int, int], ...] = ((577, 1024, 4096), (2308, 1024, 4096), (2048, 2048, 2048))
    peak_seconds: float = 4.0
    peak_shapes_gpu: tuple[tuple[int, int, int], ...] = ((4096, 4096, 4096), (8192, 8192, 8192))
    # generalist: LLaVA-1.5 with `llava_layers` of its decoder layers, extrapolated to all of them
    llava: str = "7b"  # "7b" or "tiny"
    llava_layers: tuple[int, ...] = (2, 4)  # decoder layers of the timed model(s); the deepest is scaled to 32
    # decode: a generated H.264 video
    decode_seconds: float = 180.0
    decode_fps: int = 30
    decode_width: int = 640
    decode_height: int = 360
    decode_gop: int = 250  # x264's default keyframe interval
    decode_repeats: int = 2
    # long_video: the caption stage (the demo's tiny SeR, 1 fps) on a long video vs a short one (looped copies)
    long_video_short_s: float = 300.0
    long_video_long_s: float = 2400.0
    long_video_fps: int = 30
    long_video_width: int = 320
    long_video_height: int = 240
    long_video_repeats: int = 2  # short, long, short, long...: each video's median ms/frame (a noisy host)
    # end to end: generated videos, the demo's tiny SeR and tiny Qwen2
    e2e_videos: int = 8
    e2e_seconds: float = 60.0
    e2e_batch_size: int = 32
    e2e_new_tokens: int = 24
    e2e_questions_per_video: int = 2
    enforce_eager: bool = False  # vLLM without torch.compile (faster start-up)
    # adaptive over uniform: a generated video of distinct scenes, each shown `adaptive_repeats` times
    # for `adaptive_seconds_each` s, sampled at `adaptive_fps` and captioned by the `preset` SeR
    adaptive_scenes: int = 4
    adaptive_repeats: int = 2
    adaptive_seconds_each: float = 120.0
    adaptive_fps: float = 1 / 30


MODES = {
    "full": BenchSettings(mode="full"),
    "quick": BenchSettings(
        mode="quick",
        batch_size=4,
        frames=4,
        batch1_frames=1,
        new_tokens=16,
        repeats=1,
        peak_shapes=((577, 1024, 4096), (2048, 2048, 2048)),
        peak_seconds=1.5,
        llava_layers=(2,),
        e2e_videos=4,
        e2e_seconds=30.0,
        enforce_eager=True,
        adaptive_seconds_each=60.0,
        adaptive_fps=1 / 20,
    ),
    "tiny": BenchSettings(  # the tests' smoke run: every code path, tiny sizes
        mode="tiny",
        preset="tiny-ser",
        batch_size=4,
        frames=4,
        batch1_frames=2,
        new_tokens=4,
        repeats=1,
        peak_shapes=((64, 64, 64),),
        peak_seconds=0.05,
        llava="tiny",
        llava_layers=(1, 2),
        decode_seconds=4.0,
        decode_width=160,
        decode_height=120,
        decode_gop=30,
        decode_repeats=1,
        long_video_short_s=6.0,
        long_video_long_s=48.0,
        long_video_width=160,
        long_video_height=120,
        long_video_repeats=1,
        e2e_videos=2,
        e2e_seconds=3.0,
        e2e_batch_size=4,
        e2e_new_tokens=4,
        e2e_questions_per_video=1,
        enforce_eager=True,
        adaptive_scenes=3,
        adaptive_seconds_each=6.0,
        adaptive_fps=1.0,
    ),
}


@dataclass
class Figure:
    name: str
    value: float | None = None
    target: tuple[str, float] | None = None
    paper: float | None = None
    status: str = "skipped"  # pass | miss | info | error | skipped
    note: str = ""

    def judge(self, value: float, note: str = "") -> Figure:
        self.value, self.note = value, note
        if self.target is None:
            self.status = "info"
        else:
            op, goal = self.target
            self.status = "pass" if (value >= goal if op == ">=" else value <= goal) else "miss"
        return self


def say(message: str) -> None:
    """Progress on stderr (stdout carries the figures table)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
