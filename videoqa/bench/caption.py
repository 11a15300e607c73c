"""Captioning figures: SeR with random weights at batch B vs batch 1, SeR vs its single-pass
specialist on the same frames, and the MFU (analytic FLOPs / time / peak FLOP/s).

Random weights would let captions end at any length, so every run forces a fixed number of
generated tokens (min_new_tokens = max_new_tokens) and the FLOPs are counted from the real prompt
and draft lengths (videoqa/bench/flops.py).
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from captioner.modeling.inference import first_glance, refine_once
from captioner.modeling.modeling_ser import SeRForCaptioning
from captioner.modeling.presets import get_config, tiny_tokenizer
from captioner.modeling.processing_ser import SeRProcessor, clip_image_processor
from videoqa.bench.flops import ser_caption_flops
from videoqa.bench.peak import sync
from videoqa.bench.settings import PROMPT, BenchSettings, say
from videoqa_base.device import dtype_name, resolve_dtype


def materialise(cls, config, dtype=None, device: str = "cpu"):
    """A model with random weights: built on the meta device (no memory, no init), then given
    storage and initialised once with the model's own `_init_weights` (buffers included)."""
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
    tokenizer = tiny_tokenizer()
    text = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if preset.startswith("tiny-"):
        text["vocab_size"] = len(tokenizer)
    config = get_config(preset, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = materialise(SeRForCaptioning, config, dtype, device)
    processor = SeRProcessor(
        clip_image_processor(config.vision_config.image_size),
        tokenizer,
        num_image_tokens=config.num_visual_tokens,
        max_caption_tokens=config.deeplens_max_caption_tokens,
    )
    return model, processor


def frames_like_decoded(count: int, side: int, seed: int = 0) -> list:
    """4:3 RGB frames whose shorter side is `side`, as the frames stage delivers them."""
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
        parts = {
            "vision": ["vision"],
            "first_glance": ["connector", "lm_first_glance"],
            "refine": ["deeplens", "lm_refine"],
        }
        return {
            stage: sum(self.flops[p] for p in names) / self.stage_seconds[stage] / peak
            for stage, names in parts.items()
            if self.stage_seconds.get(stage)
        }

    def to_dict(self, peak: float | None = None) -> dict[str, Any]:
        out = asdict(self) | {"seconds_per_frame": self.seconds_per_frame}
        if peak:
            out |= {"mfu": self.mfu(peak), "stage_mfu": self.stage_mfu(peak)}
        return out


def time_captioning(
    model, processor, images, *, batch_size: int, new_tokens: int, refine_steps: int, prompt: str = PROMPT
) -> CaptionTiming:
    """Caption `images` with the calls `generate_captions` makes per batch (preprocess, ViT once,
    first glance, refinement), each generating exactly `new_tokens`; time the stages, count FLOPs
    per row from the real (unpadded) prompt and draft lengths."""
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
            sync(model.device)  # (the generation stages end in .tolist(), which waits anyway)
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
                    model.config,
                    first_prompt=first_prompt,
                    new_tokens=new_tokens,
                    refine_prompts=[int(p[row]) for p in prompts_per_step],
                    drafts=[d[row] for d in drafts_per_step],
                )
                for key, value in parts.items():
                    totals[key] = totals.get(key, 0.0) + value
    prompts = {k: v / len(images) for k, v in prompt_sums.items()}
    return CaptionTiming(
        len(images), batch_size, new_tokens, refine_steps, time.perf_counter() - started, stages, totals, prompts
    )


def merge_timings(runs: list[CaptionTiming]) -> CaptionTiming:
    """Several runs (e.g. one per chunk) as one: frames, times and FLOPs add up."""
    first = runs[0]
    add = lambda dicts: {k: sum(d.get(k, 0.0) for d in dicts) for k in dicts[0]}  # noqa: E731
    frames = sum(r.frames for r in runs)
    prompts = {k: sum(r.prompt_tokens[k] * r.frames for r in runs) / frames for k in first.prompt_tokens}
    return CaptionTiming(
        frames,
        first.batch_size,
        first.new_tokens,
        first.refine_steps,
        sum(r.seconds for r in runs),
        add([r.stage_seconds for r in runs]),
        add([r.flops for r in runs]),
        prompts,
    )


def time_variants(
    model, processor, images, *, batch_size: int, new_tokens: int, variants: dict[str, int], repeats: int = 1
) -> dict[str, CaptionTiming]:
    """Time each variant ({name: refine_steps}) on the same chunks of `batch_size` images,
    alternating variants chunk by chunk so that all of them see the same machine load; with
    repeats > 1 each chunk keeps its fastest run (the usual defence against interference)."""
    best: dict[str, list[CaptionTiming]] = {name: [] for name in variants}
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        runs: dict[str, list[CaptionTiming]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, steps in variants.items():
                runs[name].append(
                    time_captioning(
                        model, processor, chunk, batch_size=batch_size, new_tokens=new_tokens, refine_steps=steps
                    )
                )
        for name in variants:
            best[name].append(min(runs[name], key=lambda r: r.seconds))
    return {name: merge_timings(chunks) for name, chunks in best.items()}


def warm_up(model, processor, image) -> float:
    """One short captioning call: oneDNN kernel generation and first allocations are not timed."""
    started = time.perf_counter()
    time_captioning(
        model, processor, [image], batch_size=1, new_tokens=2, refine_steps=1 if model.deeplens is not None else 0
    )
    return time.perf_counter() - started


def caption_step(settings: BenchSettings, peak: dict[str, Any] | None, device: str = "cpu") -> dict[str, Any]:
    """Full-size (settings.preset) and small-preset SeR: batch B vs 1, SeR vs specialist, MFU."""
    dtype = resolve_dtype(settings.dtype, device)
    threads = torch.get_num_threads()
    out: dict[str, Any] = {"dtype": dtype_name(dtype), "threads": threads, "device": device}
    # the small preset runs single-threaded, as tiny models should (per-op overhead dominates)
    for label, preset, n_threads in (("main", settings.preset, threads), ("small", settings.small_preset, 1)):
        torch.set_num_threads(n_threads)
        started = time.perf_counter()
        model, processor = random_ser(preset, dtype, device=device)
        build_s = time.perf_counter() - started
        side = processor.image_size
        images = frames_like_decoded(settings.frames, side)
        warm_s = warm_up(model, processor, images[0])
        say(f"{preset}: built in {build_s:.1f} s, warmed up in {warm_s:.1f} s; timing batch 1")
        single = time_variants(
            model,
            processor,
            images[: settings.batch1_frames],
            batch_size=1,
            new_tokens=settings.new_tokens,
            variants={"ser": 1},
            repeats=settings.repeats,
        )["ser"]
        say(
            f"{preset}: batch 1 {single.seconds_per_frame:.2f} s/frame; SeR and specialist at batch "
            f"{settings.batch_size}"
        )
        # the specialist is the first glance alone: the same model with refine_steps=0
        timed = time_variants(
            model,
            processor,
            images,
            batch_size=settings.batch_size,
            new_tokens=settings.new_tokens,
            variants={"ser": 1, "specialist": 0},
            repeats=settings.repeats,
        )
        ser, specialist = timed["ser"], timed["specialist"]
        say(f"{preset}: SeR {ser.seconds_per_frame:.2f} s/frame, specialist {specialist.seconds_per_frame:.2f} s/frame")
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
