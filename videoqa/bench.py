"""`videoqa bench`: how fast this machine runs the pipeline, as ratios against the hardware limit
and against the paper. Every figure is measured in ONE run on the current machine:

    peak_flops           the device's best matmul FLOP/s in the dtype the captioner runs in (fp32
                         and bf16 are both measured; the MFU divides by the dtype actually used)
    caption_mfu          SeR (full size, random weights) analytic FLOPs / time / peak, at batch B
    batch_speedup        captioning frames/s at batch B / at batch 1 (full-size SeR)
    ser_over_specialist  time(SeR) / time(specialist), same frames, same batch B (paper: 1.34)
    generalist_over_ser  time per caption of LLaVA-1.5-7B / of SeR, batch 1 (paper: 37)
    decode_vs_ffmpeg     ffmpeg's full decode of a 3-minute 30-fps H.264 file / our time to deliver
                         its 1-fps frames resized for the captioner
    e2e_speedup_vs_loop  our pipeline / a LLoVi-style loop (one frame at a time decoded and
                         captioned at batch 1, one prompt at a time to the LLM), tiny models

Random weights would let captions end at any length, so every captioning run forces a fixed
number of generated tokens (min_new_tokens = max_new_tokens) and the FLOPs are counted from the
real prompt and draft lengths (videoqa/flops.py). Modes: --quick (< 5 minutes on 2 CPU cores;
fewer frames and tokens, LLaVA scaled up from a 2-layer model, vLLM without
torch.compile), full (the default; ~10 minutes on an idle 2-core CPU). docs/performance.md explains
the figures.

The CLI imports this module to build the bench's arguments: nothing heavy at module level.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

FIGURES = (
    "peak_flops", "caption_mfu", "batch_speedup", "ser_over_specialist", "generalist_over_ser",
    "decode_vs_ffmpeg", "e2e_speedup_vs_loop",
)
# targets on a CPU (the lead's), as (comparison, value)
TARGETS: dict[str, tuple[str, float]] = {
    "caption_mfu": (">=", 0.5),
    "batch_speedup": (">=", 4.0),
    "ser_over_specialist": ("<=", 1.15),
    "decode_vs_ffmpeg": (">=", 0.9),
    "e2e_speedup_vs_loop": (">=", 3.0),
}
PAPER = {"ser_over_specialist": 1.34, "generalist_over_ser": 37.0}  # batch 1 on a GPU
STEPS = ("peak", "caption", "generalist", "decode", "e2e")
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
    dtype: str = "auto"  # auto: captioner.inference.resolve_dtype (fp32 on CPUs without native bf16)
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
    # end to end: generated videos, the demo's tiny SeR and tiny Qwen2
    e2e_videos: int = 8
    e2e_seconds: float = 60.0
    e2e_batch_size: int = 32
    e2e_new_tokens: int = 24
    e2e_questions_per_video: int = 2
    enforce_eager: bool = False  # vLLM without torch.compile (faster start-up)


MODES = {
    "full": BenchSettings(mode="full"),
    "quick": BenchSettings(
        mode="quick", batch_size=4, frames=4, batch1_frames=1, new_tokens=16, repeats=1,
        peak_shapes=((577, 1024, 4096), (2048, 2048, 2048)), peak_seconds=1.5, llava_layers=(2,),
        e2e_videos=4, e2e_seconds=30.0, enforce_eager=True,
    ),
    "tiny": BenchSettings(  # the tests' smoke run: every code path, tiny sizes
        mode="tiny", preset="tiny-ser", batch_size=4, frames=4, batch1_frames=2, new_tokens=4, repeats=1,
        peak_shapes=((64, 64, 64),), peak_seconds=0.05, llava="tiny", llava_layers=(1, 2),
        decode_seconds=4.0, decode_width=160, decode_height=120, decode_gop=30, decode_repeats=1,
        e2e_videos=2, e2e_seconds=3.0, e2e_batch_size=4, e2e_new_tokens=4, e2e_questions_per_video=1,
        enforce_eager=True,
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

    def judge(self, value: float, note: str = "") -> "Figure":
        self.value, self.note = value, note
        if self.target is None:
            self.status = "info"
        else:
            op, goal = self.target
            self.status = "pass" if (value >= goal if op == ">=" else value <= goal) else "miss"
        return self


def _sync(device) -> None:
    """Wait for queued GPU work, so that wall-clock reads mean something (no-op on CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- peak FLOP/s


def measure_peak_flops(dtype_name: str, shapes, seconds: float, device: str = "cpu") -> dict[str, Any]:
    """Best matmul FLOP/s in `dtype_name` over GEMM shapes (m, k, n) and two ops.

    `linear` (x @ W^T through F.linear: oneDNN on CPU, what the models' Linear layers run) and
    `matmul` (a plain matrix product, the attention's op). Each op is first probed on a 256^3
    product; shapes whose calls would blow the time budget at the best rate seen so far are
    skipped (emulated bf16 products on AVX2 run at ~1 GFLOP/s).
    """
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    budget = seconds / max(1, 2 * len(shapes))

    def timed(op_name: str, m: int, k: int, n: int, budget: float) -> dict[str, Any]:
        x = torch.randn(m, k, device=device).to(dtype)
        w = torch.randn(n, k, device=device).to(dtype)
        op = (lambda: F.linear(x, w)) if op_name == "linear" else (lambda: torch.matmul(x, w.t()))
        flop = 2 * m * k * n
        op()  # the first call pays for kernel generation / selection
        _sync(device)
        best, spent, calls = 0.0, 0.0, 0
        while calls < 2 or spent < budget:
            started = time.perf_counter()
            op()
            _sync(device)
            elapsed = time.perf_counter() - started
            best, spent, calls = max(best, flop / elapsed), spent + elapsed, calls + 1
        return {"op": op_name, "shape": [m, k, n], "flops": best, "calls": calls}

    results = []
    for op_name in ("linear", "matmul"):
        probe = timed(op_name, 256, 256, 256, 0.0)
        results.append(probe | {"probe": True})
        rate = probe["flops"]
        for m, k, n in sorted(shapes, key=lambda s: s[0] * s[1] * s[2]):
            if 2 * m * k * n / rate > budget:
                results.append({"op": op_name, "shape": [m, k, n], "skipped": "too slow for the time budget"})
                continue
            results.append(timed(op_name, m, k, n, budget))
            rate = max(rate, results[-1]["flops"])
    measured = [r for r in results if "flops" in r]
    top = max(measured, key=lambda r: r["flops"])
    return {"flops": top["flops"], "best": {"op": top["op"], "shape": top["shape"]}, "runs": results}


def nominal_fp32_flops() -> dict[str, Any] | None:
    """cores x clock x 32 FLOP/cycle (two 256-bit FMA units: 2 x 8 lanes x 2) when AVX2+FMA; info only."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    clocks = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    flags = next((line.split(":")[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    if not clocks or "fma" not in flags:
        return None
    per_cycle = 64 if "avx512f" in flags else 32
    cores = os.cpu_count() or 1
    return {"flops": cores * max(clocks) * 1e6 * per_cycle, "cores": cores, "mhz": max(clocks),
            "flop_per_cycle": per_cycle}


def auto_threads(probe: dict[str, Any]) -> int:
    """All cores, unless the probe found them busy: then the cores the load average leaves free."""
    cores = os.cpu_count() or 1
    if not probe["busy"]:
        return cores
    return max(1, cores - max(1, round(probe["load_average"][0])))


def contention_probe() -> dict[str, Any]:
    """How much a parallel region costs right now: filling 460k floats with all threads vs one.

    On an idle machine the OpenMP barrier costs microseconds; when other processes hold the cores
    a worker thread waits for a time slice and every small parallel op costs milliseconds (decode
    steps run hundreds of them). `busy` flags that the figures are pessimistic.
    """
    import torch

    threads = torch.get_num_threads()
    x = torch.empty(1, 12, 601, 64)

    def per_call(n_threads: int) -> float:
        torch.set_num_threads(n_threads)
        x.fill_(0.0)
        started = time.perf_counter()
        for _ in range(20):
            x.fill_(1.0)
        return (time.perf_counter() - started) / 20

    try:
        single = per_call(1)
        parallel = per_call(threads)
    finally:
        torch.set_num_threads(threads)
    return {"threads": threads, "fill_ms_1_thread": single * 1e3, f"fill_ms_{threads}_threads": parallel * 1e3,
            "busy": threads > 1 and parallel > max(1e-3, 5 * single), "load_average": os.getloadavg()}


# ---------------------------------------------------------------------------- captioners


def materialise(cls, config, dtype=None, device: str = "cpu"):
    """A model with random weights: built on the meta device (no memory, no init), then given
    storage and initialised once with the model's own `_init_weights` (buffers included)."""
    import torch

    with torch.device("meta"):
        model = cls(config)
    model.to_empty(device=device)
    model.initialize_weights()
    model.tie_weights()
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def random_ser(preset: str, dtype=None, seed: int = 0, device: str = "cpu"):
    """(model, processor) of a SeR preset with random weights and the tiny BPE tokenizer (no download)."""
    import torch

    from captioner.modeling_ser import SeRForCaptioning
    from captioner.presets import get_config, tiny_tokenizer
    from captioner.processing_ser import SeRProcessor, clip_image_processor

    tokenizer = tiny_tokenizer()
    text = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}
    if preset.startswith("tiny-"):
        text["vocab_size"] = len(tokenizer)
    config = get_config(preset, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = materialise(SeRForCaptioning, config, dtype, device)
    processor = SeRProcessor(
        clip_image_processor(config.vision_config.image_size), tokenizer,
        num_image_tokens=config.num_visual_tokens, max_caption_tokens=config.deeplens_max_caption_tokens,
    )
    return model, processor


def frames_like_decoded(count: int, side: int, seed: int = 0) -> list:
    """4:3 RGB frames whose shorter side is `side`, as the frames stage delivers them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side * 4 // 3, 3), dtype=np.uint8) for _ in range(count)]


@dataclass
class CaptionTiming:
    """One timed captioning run: `frames` images at `batch_size`, `new_tokens` per pass."""

    frames: int
    batch_size: int
    new_tokens: int
    refine_steps: int
    seconds: float
    stage_seconds: dict[str, float]
    flops: dict[str, float]  # analytic, summed over the frames
    prompt_tokens: dict[str, float] | None = None  # mean unpadded prompt length per pass: first, refine

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / self.frames

    def mfu(self, peak: float) -> float:
        return self.flops["total"] / self.seconds / peak

    def stage_mfu(self, peak: float) -> dict[str, float]:
        parts = {"vision": ["vision"], "first_glance": ["connector", "lm_first_glance"],
                 "refine": ["deeplens", "lm_refine"]}
        return {
            stage: sum(self.flops[p] for p in names) / self.stage_seconds[stage] / peak
            for stage, names in parts.items() if self.stage_seconds.get(stage)
        }

    def to_dict(self, peak: float | None = None) -> dict[str, Any]:
        out = asdict(self) | {"seconds_per_frame": self.seconds_per_frame}
        if peak:
            out |= {"mfu": self.mfu(peak), "stage_mfu": self.stage_mfu(peak)}
        return out


def time_captioning(model, processor, images, *, batch_size: int, new_tokens: int, refine_steps: int,
                    prompt: str = PROMPT) -> CaptionTiming:
    """Caption `images` with the calls `generate_captions` makes per batch (preprocess, ViT once,
    first glance, refinement), each generating exactly `new_tokens`; time the stages, count FLOPs
    per row from the real (unpadded) prompt and draft lengths."""
    import torch

    from captioner.inference import first_glance, refine_once
    from videoqa.flops import ser_caption_flops

    stages = {"preprocess": 0.0, "vision": 0.0, "first_glance": 0.0, "refine": 0.0}
    totals: dict[str, float] = {}
    prompt_sums = {"first": 0.0, "refine": 0.0}
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            t0 = time.perf_counter()
            pixels = processor.preprocess_images(chunk)
            t1 = time.perf_counter()
            buffer = model.encode_images(pixels)
            _sync(model.device)  # (the generation stages end in .tolist(), which waits anyway)
            t2 = time.perf_counter()
            ids = first_glance(model, processor, buffer, prompt, new_tokens, new_tokens)
            t3 = time.perf_counter()
            drafts_per_step, prompts_per_step = [], []
            for _ in range(refine_steps):
                lengths = processor.generation_inputs(len(chunk), prompt, ids)["attention_mask"].sum(1).tolist()
                prompts_per_step.append(lengths)
                drafts_per_step.append([min(len(r), processor.max_caption_tokens) for r in ids])
                ids = refine_once(model, processor, buffer, prompt, ids, new_tokens, new_tokens)
            captions = [processor.decode_caption(row) for row in ids]  # noqa: F841 - part of the real work
            t4 = time.perf_counter()
            stages["preprocess"] += t1 - t0
            stages["vision"] += t2 - t1
            stages["first_glance"] += t3 - t2
            stages["refine"] += t4 - t3
            first_prompt = int(processor.generation_inputs(1, prompt)["attention_mask"].sum())
            prompt_sums["first"] += first_prompt * len(chunk)
            prompt_sums["refine"] += sum(sum(p) for p in prompts_per_step[:1])
            for row in range(len(chunk)):
                parts = ser_caption_flops(
                    model.config, first_prompt=first_prompt, new_tokens=new_tokens,
                    refine_prompts=[int(p[row]) for p in prompts_per_step],
                    drafts=[d[row] for d in drafts_per_step],
                )
                for key, value in parts.items():
                    totals[key] = totals.get(key, 0.0) + value
    prompts = {k: v / len(images) for k, v in prompt_sums.items()}
    return CaptionTiming(len(images), batch_size, new_tokens, refine_steps, time.perf_counter() - started,
                         stages, totals, prompts)


def merge_timings(runs: list[CaptionTiming]) -> CaptionTiming:
    """Several runs (e.g. one per chunk) as one: frames, times and FLOPs add up."""
    first = runs[0]
    add = lambda dicts: {k: sum(d.get(k, 0.0) for d in dicts) for k in dicts[0]}  # noqa: E731
    frames = sum(r.frames for r in runs)
    prompts = {k: sum(r.prompt_tokens[k] * r.frames for r in runs) / frames for k in first.prompt_tokens}
    return CaptionTiming(
        frames, first.batch_size, first.new_tokens, first.refine_steps,
        sum(r.seconds for r in runs), add([r.stage_seconds for r in runs]), add([r.flops for r in runs]), prompts,
    )


def time_variants(model, processor, images, *, batch_size: int, new_tokens: int, variants: dict[str, int],
                  repeats: int = 1) -> dict[str, CaptionTiming]:
    """Time each variant ({name: refine_steps}) on the same chunks of `batch_size` images,
    alternating variants chunk by chunk so that all of them see the same machine load; with
    repeats > 1 each chunk keeps its fastest run (the usual defence against interference)."""
    best: dict[str, list[CaptionTiming]] = {name: [] for name in variants}
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        runs: dict[str, list[CaptionTiming]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, steps in variants.items():
                runs[name].append(time_captioning(model, processor, chunk, batch_size=batch_size,
                                                  new_tokens=new_tokens, refine_steps=steps))
        for name in variants:
            best[name].append(min(runs[name], key=lambda r: r.seconds))
    return {name: merge_timings(chunks) for name, chunks in best.items()}


def warm_up(model, processor, image) -> float:
    """One short captioning call: oneDNN kernel generation and first allocations are not timed."""
    started = time.perf_counter()
    time_captioning(model, processor, [image], batch_size=1, new_tokens=2,
                    refine_steps=1 if model.deeplens is not None else 0)
    return time.perf_counter() - started


def caption_step(settings: BenchSettings, peak: dict[str, Any] | None, device: str = "cpu") -> dict[str, Any]:
    """Full-size (settings.preset) and small-preset SeR: batch B vs 1, SeR vs specialist, MFU."""
    import torch

    from captioner.inference import resolve_dtype

    dtype = resolve_dtype(settings.dtype, device)
    out: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
                           "device": device}
    threads = torch.get_num_threads()
    # the small preset runs single-threaded, as tiny models should (per-op overhead dominates)
    for label, preset, n_threads in (("main", settings.preset, threads), ("small", settings.small_preset, 1)):
        torch.set_num_threads(n_threads)
        started = time.perf_counter()
        model, processor = random_ser(preset, dtype, device=device)
        build_s = time.perf_counter() - started
        side = processor.image_size
        images = frames_like_decoded(settings.frames, side)
        warm_s = warm_up(model, processor, images[0])
        _say(f"{preset}: built in {build_s:.1f} s, warmed up in {warm_s:.1f} s; timing batch 1")
        single = time_variants(model, processor, images[: settings.batch1_frames], batch_size=1,
                               new_tokens=settings.new_tokens, variants={"ser": 1}, repeats=settings.repeats)["ser"]
        _say(f"{preset}: batch 1 {single.seconds_per_frame:.2f} s/frame; SeR and specialist at batch {settings.batch_size}")
        # the specialist is the first glance alone: the same model with refine_steps=0
        timed = time_variants(model, processor, images, batch_size=settings.batch_size, new_tokens=settings.new_tokens,
                              variants={"ser": 1, "specialist": 0}, repeats=settings.repeats)
        ser, specialist = timed["ser"], timed["specialist"]
        _say(f"{preset}: SeR {ser.seconds_per_frame:.2f} s/frame, specialist {specialist.seconds_per_frame:.2f} s/frame")
        first_part = sum(ser.stage_seconds[k] for k in ("preprocess", "vision", "first_glance"))
        used_peak = peak["flops"] if peak else None
        out[label] = {
            "preset": preset,
            "threads": n_threads,
            "parameters": model.num_parameters(),
            "image_size": side,
            "build_s": build_s,
            "warm_up_s": warm_s,
            "batch1": single.to_dict(used_peak),
            "ser": ser.to_dict(used_peak),
            "specialist": specialist.to_dict(used_peak),
            "batch_speedup": single.seconds_per_frame / ser.seconds_per_frame,
            "ser_over_specialist": ser.seconds / specialist.seconds,
            "flop_ratio_ser_over_specialist": ser.flops["total"] / specialist.flops["total"],
            # cross-check free of load drift: SeR's own run, whole vs up to the end of its first glance
            "ser_over_own_first_glance": ser.seconds / first_part,
        }
        if used_peak:
            out[label]["caption_mfu"] = ser.mfu(used_peak)
        del model
        gc.collect()
    torch.set_num_threads(threads)
    return out


# ---------------------------------------------------------------------------- generalist


def llava_config(size: str, layers: int):
    """transformers' LLaVA-1.5 config: CLIP ViT-L/14-336 + LLaMA-2-7B with `layers` decoder layers
    (size "7b"), or a tiny one of the same layout for tests ("tiny")."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    from captioner.presets import PAPER_VISION, _TINY_VISION

    if size == "7b":
        vision = CLIPVisionConfig(**PAPER_VISION)
        text = LlamaConfig(
            vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
            num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
            pad_token_id=0, bos_token_id=1, eos_token_id=2,
        )
        image_token = 32000
    elif size == "tiny":
        vision = CLIPVisionConfig(**_TINY_VISION)
        text = LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        )
        image_token = 255
    else:
        raise ValueError(f"unknown LLaVA size {size!r} (7b, tiny)")
    patches = (vision.image_size // vision.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_token, projector_hidden_act="gelu",
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=patches,
    )


LLAVA_FULL_LAYERS = {"7b": 32, "tiny": 4}


def instruction_tokens(prompt: str = PROMPT) -> int:
    """Text tokens of SeR's first-glance prompt (BOS and image tokens excluded), tiny tokenizer."""
    from captioner.presets import tiny_tokenizer
    from captioner.processing_ser import SeRProcessor, clip_image_processor

    processor = SeRProcessor(clip_image_processor(64), tiny_tokenizer(), num_image_tokens=1)
    return len(processor.prompt_ids(prompt)) - 2


class LayerClock:
    """Wall time spent inside a list of modules (forward pre/post hooks), e.g. the decoder layers."""

    def __init__(self, modules, device: str = "cpu"):
        self.seconds, self._started, self.device = 0.0, 0.0, device
        self._hooks = []
        for module in modules:
            self._hooks.append(module.register_forward_pre_hook(self._enter))
            self._hooks.append(module.register_forward_hook(self._leave))

    def _enter(self, *args) -> None:
        _sync(self.device)
        self._started = time.perf_counter()

    def _leave(self, *args) -> None:
        _sync(self.device)
        self.seconds += time.perf_counter() - self._started

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def time_llava(config, pixel_values, text_tokens: int, new_tokens: int, dtype, device: str = "cpu") -> dict[str, Any]:
    """Build a random-weight LLaVA and time one caption (batch 1, exactly `new_tokens` tokens),
    clocking the decoder layers apart from the rest (ViT, projector, embeddings, LM head, Python)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from videoqa.flops import llava_caption_flops

    started = time.perf_counter()
    torch.manual_seed(0)
    model = materialise(LlavaForConditionalGeneration, config, dtype, device)
    build_s = time.perf_counter() - started
    patches = config.image_seq_length
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, config.image_token_index - 1, (1, text_tokens), generator=generator)
    ids = torch.cat([torch.tensor([[1]]), torch.full((1, patches), config.image_token_index), text], dim=1).to(device)
    pixels = pixel_values.to(device=device, dtype=dtype)

    def caption(tokens: int) -> tuple[float, float]:
        clock = LayerClock(model.model.language_model.layers, device)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, do_sample=False,
                    max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=0, eos_token_id=2,
                )
            _sync(device)
        finally:
            clock.remove()
        if out.shape[1] - ids.shape[1] != tokens:
            raise RuntimeError(f"generation stopped after {out.shape[1] - ids.shape[1]} of {tokens} tokens")
        return time.perf_counter() - t0, clock.seconds

    warm_s, _ = caption(1)
    seconds, layer_seconds = caption(new_tokens)
    layers = config.text_config.num_hidden_layers
    flops = llava_caption_flops(config, prompt_tokens=ids.shape[1], new_tokens=new_tokens)
    del model
    gc.collect()
    return {"layers": layers, "build_s": build_s, "warm_up_s": warm_s, "seconds": seconds,
            "decoder_layer_seconds": layer_seconds, "seconds_per_layer": layer_seconds / layers,
            "seconds_rest": seconds - layer_seconds, "prompt_tokens": ids.shape[1], "flops": flops}


def generalist_step(settings: BenchSettings, ser_seconds_per_caption: float | None, peak: dict | None,
                    device: str = "cpu") -> dict[str, Any]:
    """LLaVA-1.5 per-caption time at batch 1. A model with fewer decoder layers than the real one
    is timed and the layers' clocked time scaled to the full depth: t = t_rest + L * t_layer
    (decoder layers are identical, so their time is linear in L)."""
    from captioner.inference import resolve_dtype
    from captioner.processing_ser import clip_image_processor
    from videoqa.flops import llava_caption_flops

    dtype = resolve_dtype(settings.dtype, device)
    full_layers = LLAVA_FULL_LAYERS[settings.llava]
    text_tokens = instruction_tokens()  # the same instruction length as SeR's first glance
    runs = []
    for layers in sorted(set(settings.llava_layers)):
        config = llava_config(settings.llava, layers)
        image = frames_like_decoded(1, config.vision_config.image_size, seed=1)
        pixels = clip_image_processor(config.vision_config.image_size)(image, return_tensors="pt")["pixel_values"]
        run = time_llava(config, pixels, text_tokens, settings.new_tokens, dtype, device)
        run["extrapolated"] = run["seconds_rest"] + full_layers * run["seconds_per_layer"]
        runs.append(run)
        _say(f"LLaVA-1.5 ({settings.llava}) with {layers} decoder layers: {run['seconds']:.2f} s per caption "
             f"({run['seconds_per_layer']:.2f} s per layer) -> {run['extrapolated']:.1f} s with {full_layers}")
    deepest = runs[-1]  # the most layers: the least extrapolation
    if deepest["layers"] == full_layers:
        how = f"all {full_layers} decoder layers timed directly"
    else:
        how = f"t = t_rest + {full_layers} x t_layer, decoder layers clocked in a {deepest['layers']}-layer model"
    out = {
        "architecture": "LLaVA-1.5-7B (CLIP ViT-L/14-336 + LLaMA-2-7B)" if settings.llava == "7b" else "tiny LLaVA",
        "dtype": str(dtype).removeprefix("torch."),
        "runs": runs,
        "extrapolation": how,
        "seconds_per_layer": None if deepest["layers"] == full_layers else deepest["seconds_per_layer"],
        "seconds_rest": deepest["seconds_rest"],
        "seconds_per_caption": deepest["extrapolated"],
        "flops_per_caption": llava_caption_flops(llava_config(settings.llava, full_layers),
                                                 prompt_tokens=deepest["prompt_tokens"], new_tokens=settings.new_tokens),
        "new_tokens": settings.new_tokens,
    }
    if len(runs) > 1:  # cross-check: the slope between two depths (noisier: a difference of totals)
        (k1, t1), (k2, t2) = (runs[0]["layers"], runs[0]["seconds"]), (runs[-1]["layers"], runs[-1]["seconds"])
        slope = (t2 - t1) / (k2 - k1)
        out["two_depth_fit"] = {"seconds_per_layer": slope, "seconds_per_caption": t1 + (full_layers - k1) * slope}
    if peak:
        out["mfu"] = out["flops_per_caption"]["total"] / out["seconds_per_caption"] / peak["flops"]
    if ser_seconds_per_caption:
        out["ser_seconds_per_caption"] = ser_seconds_per_caption
        out["generalist_over_ser"] = out["seconds_per_caption"] / ser_seconds_per_caption
    return out


# ---------------------------------------------------------------------------- decoding


def bench_video(work: Path, settings: BenchSettings) -> Path:
    """The decode benchmark's H.264 video, generated once per size and kept under `work`."""
    from videoqa.synthetic_video import make_video

    s = settings
    path = work / "videos" / f"decode-{s.decode_seconds:g}s-{s.decode_fps}fps-{s.decode_width}x{s.decode_height}-g{s.decode_gop}.mp4"
    if not path.is_file():
        _say(f"generating {path.name} (once)")
        partial = path.with_suffix(".partial.mp4")
        make_video(partial, seconds=s.decode_seconds, fps=s.decode_fps, width=s.decode_width, height=s.decode_height,
                   pattern="testsrc2", gop=s.decode_gop)
        partial.rename(path)
    return path


def decode_step(settings: BenchSettings, work: Path, size: int) -> dict[str, Any]:
    """ffmpeg decoding the whole file to null vs our 1-fps frames resized to `size`."""
    from videoqa.frames import DecodeStats, ffmpeg_exe, probe_video, stream_videos

    video = bench_video(work, settings)
    video.read_bytes()  # page cache warm for both sides
    info = probe_video(video)

    def ffmpeg_null() -> float:
        started = time.perf_counter()
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video),
                        "-f", "null", "-"], check=True)
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
        "video": str(video), "codec": info.codec, "width": info.width, "height": info.height, "fps": info.fps,
        "duration_s": info.duration, "gop": settings.decode_gop, "total_frames": total_frames,
        "ffmpeg_null_s": ffmpeg_s, "ffmpeg_runs": ffmpeg_runs, "ours_s": ours_s, "ours_runs": our_runs,
        "ours_frames": frames, "resize_to": size, "ours_native_size_s": native_s,
        "ffmpeg_fps": total_frames / ffmpeg_s, "decoder": "decord (frames.stream_videos)",
        "decode_vs_ffmpeg": ffmpeg_s / ours_s,
    }


# ---------------------------------------------------------------------------- end to end


E2E_PATTERNS = ("testsrc", "testsrc2", "smptebars", "rgbtestsrc", "smptehdbars", "pal75bars")


def e2e_dataset(work: Path, settings: BenchSettings):
    """Generated videos and questions (answers known only to make the records complete)."""
    from videoqa.synthetic_video import make_video
    from videoqa.types import Question

    questions = []
    for i in range(settings.e2e_videos):
        pattern = E2E_PATTERNS[i % len(E2E_PATTERNS)]
        path = work / "videos" / f"e2e-{i}-{pattern}-{settings.e2e_seconds:g}s.mp4"
        if not path.is_file():
            partial = path.with_suffix(".partial.mp4")
            make_video(partial, seconds=settings.e2e_seconds, fps=30, width=320, height=240, pattern=pattern)
            partial.rename(path)
        for j in range(settings.e2e_questions_per_video):
            options = ("a colour test pattern", "a cooking show", "a football match", "a city street", "a black screen")
            questions.append(Question(qid=f"q{i}-{j}", video_id=f"v{i}", video_path=path,
                                      question=["What does the video show?", "What is on the screen?"][j % 2],
                                      options=options, answer=0))
    return questions


def run_pipeline(captioner, backend, questions, batch_size: int) -> dict[str, Any]:
    """Our pipeline's stages: streaming decode -> cross-video batched captions -> batched answers."""
    from videoqa.answer import answer_questions
    from videoqa.captioning import CaptionStats, caption_stream
    from videoqa.config import AnswerConfig
    from videoqa.frames import stream_videos
    from videoqa.transcript import build_transcript

    videos = list({q.video_id: q.video_path for q in questions}.items())
    stats = CaptionStats()
    started = time.perf_counter()
    captions = {}
    frames = stream_videos(videos, fps=1.0, size=captioner.image_size, workers=2)
    for item in caption_stream(frames, captioner, PROMPT, batch_size, stats):
        if not hasattr(item, "captions"):
            raise RuntimeError(f"video failed: {item}")
        captions[item.video_id] = item
    caption_done = time.perf_counter()
    transcripts = {vid: build_transcript(vc) for vid, vc in captions.items()}
    answers = answer_questions(backend, questions, transcripts, AnswerConfig(), progress=False)
    finished = time.perf_counter()
    return {
        "seconds": finished - started, "decode_and_caption_s": caption_done - started,
        "caption_s": stats.caption_s, "decode_wait_s": stats.wait_s, "answer_s": finished - caption_done,
        "frames": stats.frames, "caption_batches": stats.batches, "answers": [a.pred for a in answers],
        "transcripts": transcripts,
    }


def run_loop(captioner, backend, questions) -> dict[str, Any]:
    """LLoVi-style: per video, decode one sampled frame at a time (decord, resized at decode like
    ours) and caption it alone; then one prompt at a time to the LLM."""
    import decord

    from videoqa.answer import answer_questions
    from videoqa.config import AnswerConfig
    from videoqa.frames import output_size, probe_video, sample_indices
    from videoqa.transcript import build_transcript
    from videoqa.types import Caption, VideoCaptions

    videos = list({q.video_id: q.video_path for q in questions}.items())
    decode_s = caption_s = 0.0
    frames = 0
    started = time.perf_counter()
    transcripts = {}
    for video_id, path in videos:
        t0 = time.perf_counter()
        info = probe_video(path)
        width, height = output_size(info.width, info.height, captioner.image_size)
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height)
        starts = reader.get_frame_timestamp(list(range(len(reader))))[:, 0]
        indices = sample_indices(len(reader), reader.get_avg_fps(), fps=1.0)
        decode_s += time.perf_counter() - t0
        captions = []
        for index in indices:
            t0 = time.perf_counter()
            frame = reader[index].asnumpy()
            t1 = time.perf_counter()
            text = captioner.caption([frame], PROMPT)[0]
            t2 = time.perf_counter()
            decode_s += t1 - t0
            caption_s += t2 - t1
            captions.append(Caption(t=round(float(starts[index] - starts[0]), 4), text=text))
            frames += 1
        duration = len(reader) / reader.get_avg_fps()
        transcripts[video_id] = build_transcript(VideoCaptions(video_id, captions, duration))
        del reader
    caption_done = time.perf_counter()
    answers = []
    for question in questions:
        answers += answer_questions(backend, [question], transcripts, AnswerConfig(), progress=False)
    finished = time.perf_counter()
    return {
        "seconds": finished - started, "decode_and_caption_s": caption_done - started, "caption_s": caption_s,
        "decode_s": decode_s, "answer_s": finished - caption_done, "frames": frames,
        "answers": [a.pred for a in answers], "transcripts": transcripts,
    }


def forget_prompts(backend) -> None:
    """Empty the engine's prefix cache, so one side never reuses the other's prompts."""
    engine = getattr(backend, "llm", None)
    if engine is not None and hasattr(engine, "reset_prefix_cache"):
        engine.reset_prefix_cache()


def e2e_step(settings: BenchSettings, work: Path, device: str = "cpu") -> dict[str, Any]:
    """One vLLM engine for both sides; engine start-up is timed apart and excluded from both."""
    import torch

    from videoqa.config import CaptionerConfig, LLMConfig
    from videoqa.demo import build_demo_models
    from videoqa.registry import CAPTIONERS, LLM_BACKENDS

    questions = e2e_dataset(work, settings)
    captioner_dir, llm_dir = build_demo_models(work / "models")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: per-op overhead dominates, a second thread only spins
    backend = None
    try:
        captioner = CAPTIONERS.get("ser")(CaptionerConfig(
            name="tiny-ser", type="ser", model=str(captioner_dir), max_new_tokens=settings.e2e_new_tokens,
            batch_size=settings.e2e_batch_size, device=device,
        ))
        llm_config = LLMConfig(
            name="tiny-qwen2", model=str(llm_dir), max_model_len=4096, dtype="float32", cpu_kvcache_gib=1,
            gpu_memory_utilization=0.3,  # GPUs: leave room for the captioner
            engine_kwargs={"enforce_eager": True} if settings.enforce_eager else {},
        )
        _say("starting the vLLM engine (start-up is excluded from both sides)")
        started = time.perf_counter()
        backend = LLM_BACKENDS.get("vllm")(llm_config)
        startup_s = time.perf_counter() - started
        # warm-up: one caption batch, one answer (first-call costs land on neither side)
        from videoqa.answer import answer_questions
        from videoqa.config import AnswerConfig

        captioner.caption(frames_like_decoded(2, captioner.image_size), PROMPT)
        answer_questions(backend, questions[:1], {questions[0].video_id: "0: a test pattern"}, AnswerConfig(),
                         progress=False)
        _say("e2e: our pipeline")
        forget_prompts(backend)
        ours = run_pipeline(captioner, backend, questions, settings.e2e_batch_size)
        _say(f"e2e: ours {ours['seconds']:.1f} s; the LLoVi-style loop")
        forget_prompts(backend)  # the loop sends the same prompts: no reuse of our side's KV cache
        loop = run_loop(captioner, backend, questions)
        _say(f"e2e: loop {loop['seconds']:.1f} s")
    finally:
        torch.set_num_threads(threads)
        if backend is not None:
            backend.close()
    same = ours.pop("transcripts") == loop.pop("transcripts")
    return {
        "videos": settings.e2e_videos, "video_seconds": settings.e2e_seconds, "questions": len(questions),
        "batch_size": settings.e2e_batch_size, "new_tokens": settings.e2e_new_tokens, "torch_threads": 1,
        "vllm_startup_s_excluded": startup_s, "vllm_enforce_eager": settings.enforce_eager,
        "ours": ours, "loop": loop, "same_transcripts": same, "same_answers": ours["answers"] == loop["answers"],
        "e2e_speedup_vs_loop": loop["seconds"] / ours["seconds"],
    }


# ---------------------------------------------------------------------------- figures and notes


def build_figures(details: dict[str, Any]) -> dict[str, Figure]:
    """The seven figures with targets, paper values, pass/miss and a note saying why."""
    figures = {name: Figure(name, target=TARGETS.get(name), paper=PAPER.get(name)) for name in FIGURES}
    for step, error in details.get("errors", {}).items():
        for name in _FIGURES_OF_STEP[step]:
            figures[name].status, figures[name].note = "error", f"{step} failed: {error}"
    peak, cap = details.get("peak"), details.get("caption")
    peak_flops = peak[peak["used_dtype"]]["flops"] if peak else None
    busy = (details.get("contention") or {}).get("busy", False)
    threads = details.get("threads") or {}
    busy_note = ""
    if busy and threads.get("used", 0) >= (threads.get("cores") or 1):
        busy_note = (" The machine was busy (other processes held cores: see details.contention), which stalls "
                     "every small parallel op.")
    elif busy:
        busy_note = (f" Other processes kept cores busy: the bench ran on {threads['used']} of {threads['cores']} "
                     f"threads (peak measured on the same threads).")
    # decoding and the end-to-end run use processes and threads of their own: only the load matters
    load_note = " Other processes kept cores busy during the run." if busy else ""

    if peak:
        used, other = peak["used_dtype"], peak["other_dtype"]
        note = f"{used}, the dtype the captioner runs in; {other}: {peak[other]['flops'] / 1e9:,.1f} GFLOP/s"
        if peak.get("nominal_fp32"):
            note += (f"; nominal fp32 at the {peak['nominal_fp32']['mhz']:.0f} MHz /proc/cpuinfo clock "
                     f"{peak['nominal_fp32']['flops'] / 1e9:,.0f} GFLOP/s (boost clocks go higher)")
        if used == "float32" and peak[other]["flops"] < peak[used]["flops"]:
            note += " (no native bf16 here: oneDNN emulates it, so fp32 is the faster dtype and the MFU divides by it)"
        figures["peak_flops"].judge(peak_flops, note)

    if cap and "main" in cap:
        main, small = cap["main"], cap["small"]
        single, ser, spec = main["batch1"], main["ser"], main["specialist"]
        batch = ser["batch_size"]
        stage = ser.get("stage_mfu", {})
        stages = ", ".join(f"{_STAGE_NAMES[k]} {v:.2f}" for k, v in stage.items())
        if "caption_mfu" in main:
            note = (f"{main['preset']} at batch {batch}, {cap['dtype']}, {cap['threads']} threads, "
                    f"{ser['new_tokens']} tokens per pass; by stage: {stages}; {small['preset']}: "
                    f"{small.get('caption_mfu', 0):.5f} (per-op overhead)")
            if peak:
                note += f"; against the {peak['other_dtype']} peak: {main['caption_mfu'] * peak['peak_ratio_used_over_other']:.2f}"
            fig = figures["caption_mfu"].judge(main["caption_mfu"], note)
            if fig.status == "miss":
                fig.note = (f"missed by {_by(0.5 - fig.value)}: the generation stages run {ser['new_tokens'] - 1} "
                            f"decode steps per pass, each reading every LM weight for only {batch} tokens "
                            f"(memory- and per-op-overhead-bound).{busy_note} " + note)
        note = (f"batch 1: {single['seconds_per_frame']:.2f} s/frame, batch {batch}: {ser['seconds_per_frame']:.2f} s/frame; "
                f"{small['preset']}: {small['batch_speedup']:.1f}x")
        fig = figures["batch_speedup"].judge(main["batch_speedup"], note)
        if fig.status == "miss" and peak_flops:
            floor = ser["flops"]["total"] / ser["frames"] / peak_flops
            share = floor / single["seconds_per_frame"]
            fig.note = (f"missed by {_by(4 - fig.value)}x: even at 100% MFU batch {batch} could be at most "
                        f"{1 / share:.1f}x faster than batch 1 here - {_pct(share)} of batch 1's time is already the "
                        f"FLOP floor (the ViT's 577-token and the LM's {ser['prompt_tokens']['first']:.0f}-token prefills are large matmuls at batch "
                        f"1; only the decode steps gain from batching); batch {batch} ran at MFU "
                        f"{ser.get('mfu', 0):.2f}.{busy_note} " + note)
        ratio, flop_ratio = main["ser_over_specialist"], main["flop_ratio_ser_over_specialist"]
        note = (f"batch {batch}; analytic FLOP ratio {flop_ratio:.2f}; within SeR's own run (whole / up to the end of "
                f"the first glance): {main['ser_over_own_first_glance']:.2f}; {small['preset']}: "
                f"{small['ser_over_specialist']:.2f}")
        fig = figures["ser_over_specialist"].judge(ratio, note)
        if fig.status == "miss":
            refine_mfu, first_mfu = stage.get("refine", 0), stage.get("first_glance", 0)
            fig.note = (f"missed by {_by(ratio - 1.15)}: the refinement pass (DeepLens + a second LM pass over a "
                        f"{ser['prompt_tokens']['refine']:.0f}-token prompt) adds {_pct(flop_ratio - 1)} FLOPs, so at equal "
                        f"efficiency the time ratio cannot go below ~{flop_ratio:.2f} without skipping real work"
                        + (f"; it is higher because the refinement pass runs at MFU {refine_mfu:.2f} vs the "
                           f"specialist's {spec.get('mfu', 0):.2f}" if ratio > flop_ratio * 1.03 else "")
                        + f" (paper, batch 1 on a GPU: 1.34); " + note)

    gen = details.get("generalist")
    if gen and "generalist_over_ser" in gen:
        flop_ratio = ""
        if cap and "main" in cap:
            ser_flops = cap["main"]["batch1"]["flops"]["total"] / cap["main"]["batch1"]["frames"]
            flop_ratio = f"; analytic FLOP ratio {gen['flops_per_caption']['total'] / ser_flops:.1f}"
        figures["generalist_over_ser"].judge(
            gen["generalist_over_ser"],
            f"{gen['architecture']}, random weights, batch 1, {gen['new_tokens']} tokens each, {gen['dtype']}: "
            f"{gen['seconds_per_caption']:.1f} s vs SeR {gen['ser_seconds_per_caption']:.2f} s per caption{flop_ratio}; "
            + (f"LLaVA extrapolated ({gen['extrapolation']}: {gen['seconds_per_layer']:.2f} s per layer + "
               f"{gen['seconds_rest']:.2f} s for the rest"
               + (f"; two-depth fit: {gen['two_depth_fit']['seconds_per_caption']:.1f} s" if "two_depth_fit" in gen else "")
               + ")" if gen["seconds_per_layer"] is not None else gen["extrapolation"]),
        )

    dec = details.get("decode")
    if dec:
        spacing = (dec["fps"] or 30.0) / 1.0
        note = (f"ffmpeg -f null: {dec['ffmpeg_null_s']:.2f} s for all {dec['total_frames']} frames; ours: "
                f"{dec['ours_s']:.2f} s for {dec['ours_frames']} frames at {dec['resize_to']} px "
                f"({dec['ours_native_size_s']:.2f} s at native size); {dec['width']}x{dec['height']} {dec['codec']}, "
                f"keyframe every {dec['gop']} frames")
        fig = figures["decode_vs_ffmpeg"].judge(dec["decode_vs_ffmpeg"], note)
        if fig.status == "miss":
            why = (f"keyframes come every {dec['gop']} frames but samples every {spacing:.0f}, so every frame has to "
                   f"be decoded anyway (seeking cannot skip work) and decord's decode loop is slower than ffmpeg's "
                   f"frame-threaded one" if dec["gop"] > spacing else
                   "decord seeks to every sample, and seeking costs more than decoding through")
            fig.note = f"missed by {_by(0.9 - fig.value)}: {why}.{load_note} " + note

    e2e = details.get("e2e")
    if e2e:
        ours, loop = e2e["ours"], e2e["loop"]
        note = (f"{e2e['videos']} videos x {e2e['video_seconds']:g} s, {e2e['questions']} questions; ours "
                f"{ours['seconds']:.1f} s (captioning {ours['caption_s']:.1f}, waiting for frames "
                f"{ours['decode_wait_s']:.1f}, answering {ours['answer_s']:.1f}) vs loop {loop['seconds']:.1f} s "
                f"(captioning {loop['caption_s']:.1f}, decoding {loop['decode_s']:.1f}, answering "
                f"{loop['answer_s']:.1f}); vLLM start-up ({e2e['vllm_startup_s_excluded']:.0f} s) excluded from both; "
                f"same transcripts: {e2e['same_transcripts']}")
        fig = figures["e2e_speedup_vs_loop"].judge(e2e["e2e_speedup_vs_loop"], note)
        if fig.status == "miss":
            fig.note = f"missed by {_by(3 - fig.value)}x.{load_note} " + note
    return figures


_STAGE_NAMES = {"vision": "vision", "first_glance": "first glance", "refine": "refinement"}


def _by(x: float) -> str:
    """A shortfall with enough digits to be non-zero."""
    return f"{x:.2f}" if x >= 0.01 else f"{x:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


_FIGURES_OF_STEP = {
    "peak": ("peak_flops", "caption_mfu"),
    "caption": ("caption_mfu", "batch_speedup", "ser_over_specialist", "generalist_over_ser"),
    "generalist": ("generalist_over_ser",),
    "decode": ("decode_vs_ffmpeg",),
    "e2e": ("e2e_speedup_vs_loop",),
}


def figures_table(figures: dict[str, Figure]):
    import pandas as pd

    def fmt(value: float | None) -> str:
        if value is None:
            return ""
        if abs(value) >= 1e6:
            return f"{value / 1e9:,.1f} G"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"

    rows = [
        {
            "figure": f.name,
            "value": fmt(f.value),
            "target": f"{f.target[0]} {f.target[1]:g}" if f.target else "",
            "paper": fmt(f.paper),
            "status": f.status,
            "note": f.note,
        }
        for f in figures.values()
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- orchestration


def run_bench(settings: BenchSettings, work: Path, steps: tuple[str, ...] = STEPS) -> dict[str, Any]:
    """Run the steps in an order that keeps them apart (the vLLM engine starts last) and return
    the report: figures, details, machine. A failing step is reported, the others still run."""
    import torch

    from captioner.inference import resolve_dtype
    from videoqa.outputs import environment

    from captioner.inference import resolve_device

    work.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(settings.device))
    started = time.perf_counter()
    details: dict[str, Any] = {"errors": {}}
    contention = {"start": contention_probe()}
    details["contention"] = contention
    threads = settings.threads or auto_threads(contention["start"])
    if threads != torch.get_num_threads():
        _say(f"torch threads: {threads}" + ("" if settings.threads else
             " (other processes hold cores: a thread on a busy core stalls every parallel op)"))
    torch.set_num_threads(threads)
    details["threads"] = {"used": threads, "cores": os.cpu_count(), "chosen": "--threads" if settings.threads else "auto"}
    machine = environment() | {
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": resolve_dtype("auto", "cpu") == torch.bfloat16,
        "load_average_before": os.getloadavg(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
    }

    def attempt(step: str, action: Callable[[], Any]) -> Any:
        if step not in steps:
            return None
        t0 = time.perf_counter()
        try:
            result = action()
        except Exception as exc:  # noqa: BLE001 - reported per figure, the other steps still run
            details["errors"][step] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
            return None
        _say(f"{step}: {time.perf_counter() - t0:.1f} s")
        details.setdefault("step_seconds", {})[step] = time.perf_counter() - t0
        return result

    def peak_step() -> dict[str, Any]:
        used = str(resolve_dtype(settings.dtype, device)).removeprefix("torch.")
        shapes = settings.peak_shapes_gpu if device.startswith("cuda") else settings.peak_shapes
        out = {dtype: measure_peak_flops(dtype, shapes, settings.peak_seconds, device)
               for dtype in ("float32", "bfloat16")}
        other = "bfloat16" if used == "float32" else "float32"
        out |= {"used_dtype": used, "other_dtype": other, "device": device,
                "nominal_fp32": None if device.startswith("cuda") else nominal_fp32_flops(),
                "threads": torch.get_num_threads(),
                # MFU against the other dtype's peak = MFU x this ratio
                "peak_ratio_used_over_other": out[used]["flops"] / out[other]["flops"]}
        return out

    details["peak"] = attempt("peak", peak_step)
    peak_used = details["peak"][details["peak"]["used_dtype"]] if details["peak"] else None
    details["caption"] = attempt("caption", lambda: caption_step(settings, peak_used, device))
    ser_b1 = details["caption"]["main"]["batch1"]["seconds_per_frame"] if details["caption"] else None
    details["generalist"] = attempt("generalist", lambda: generalist_step(settings, ser_b1, peak_used, device))
    from captioner.presets import get_config

    captioner_side = get_config(settings.preset).vision_config.image_size  # what decoding resizes to
    details["decode"] = attempt("decode", lambda: decode_step(settings, work, captioner_side))
    details["e2e"] = attempt("e2e", lambda: e2e_step(settings, work, device))
    machine["load_average_after"] = os.getloadavg()
    contention["end"] = contention_probe()
    contention["busy"] = contention["start"]["busy"] or contention["end"]["busy"]
    machine["contention"] = contention

    figures = build_figures(details)
    report: dict[str, Any] = {name: figures[name].value for name in FIGURES}
    report |= {
        "figures": {name: asdict(f) for name, f in figures.items()},
        "mode": settings.mode,
        "wall_s": time.perf_counter() - started,
        "settings": asdict(settings),
        "details": details,
        "machine": machine,
    }
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes: finishes within 5 minutes on 2 CPU cores")
    parser.add_argument("--json", metavar="FILE", help="write the report here (default: <work-dir>/bench-<mode>.json)")
    parser.add_argument("--work-dir", default="outputs/bench", help="generated videos and tiny models (kept)")
    parser.add_argument("--only", help=f"comma-separated steps to run ({', '.join(STEPS)}); default: all")
    parser.add_argument("--batch-size", type=int, help="captioning batch size B of the caption figures")
    parser.add_argument(
        "--threads", type=int,
        help="torch threads (default: all cores, or the free ones when other processes keep some busy)",
    )
    parser.add_argument("--dtype", help="captioner dtype: auto (fp32 on CPUs without native bf16), fp32, bf16")
    parser.add_argument("--device", help="auto (cuda when available), cpu, cuda, cuda:1")
    parser.add_argument(
        "--llava-layers", metavar="K1,K2",
        help="LLaVA-1.5-7B depths to time (default 2,4; quick 2): the deepest is scaled to 32 layers; 32 = no scaling",
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the tests' smoke sizes


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    settings = MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.batch_size:
        settings = replace(settings, batch_size=args.batch_size, frames=max(settings.frames, args.batch_size))
    if args.threads:
        settings = replace(settings, threads=args.threads)
    if args.dtype:
        settings = replace(settings, dtype=args.dtype)
    if args.device:
        settings = replace(settings, device=args.device)
    if args.llava_layers:
        settings = replace(settings, llava_layers=tuple(int(k) for k in args.llava_layers.split(",")))
    return settings


def run(args: argparse.Namespace) -> int:
    from videoqa.errors import UserError
    from videoqa.outputs import to_jsonable

    settings = settings_from_args(args)
    steps = STEPS if not args.only else tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise UserError(f"--only: unknown steps {sorted(unknown)} (known: {', '.join(STEPS)})")
    work = Path(args.work_dir)
    _say(f"mode {settings.mode}: steps {', '.join(steps)}")
    report = run_bench(settings, work, steps)
    figures = {name: Figure(**values) for name, values in report["figures"].items()}
    print(figures_table(figures).to_markdown(index=False))
    path = Path(args.json) if args.json else work / f"bench-{settings.mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(report), indent=2, default=str))
    print(f"\n{settings.mode} mode, {report['wall_s']:.0f} s; report: {path}")
    return 1 if report["details"]["errors"] else 0


__all__ = [
    "BenchSettings", "MODES", "FIGURES", "TARGETS", "PAPER", "Figure", "measure_peak_flops", "random_ser",
    "materialise", "time_captioning", "CaptionTiming", "llava_config", "generalist_step", "decode_step",
    "e2e_step", "run_pipeline", "run_loop", "build_figures", "figures_table", "run_bench", "add_arguments", "run",
]
