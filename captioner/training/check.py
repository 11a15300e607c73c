"""`captioner check-training --preset ser [--json F]`: one optimiser step of each training stage at full size.

Builds the preset with random weights (paper size for "ser": CLIP ViT-L/14-336 + OPT-125M +
DeepLens, ~480M parameters) and runs, on the CPU in fp32, one AdamW step each of

    pretrain   connector                 first-glance batch (image, caption)
    stage1     connector + LM            first-glance batch (image, caption)
    stage2     DeepLens + LM             refinement batch (image, initial caption) -> caption

through the same pieces `captioner train` uses (`set_trainable(stage)`, `SeRProcessor.build_training_batch`,
the model's loss). Per stage it reports the trainable parameters per part against Tab. 15, whether
any gradient reached the ViT (it must not: CLIP is frozen in every stage), whether the loss is
finite, whether only the trainable parts changed, the seconds of the step and the process's peak
memory so far. Memory is kept down by building one model for all three stages and dropping each
stage's optimiser state before the next. Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from captioner.modeling.presets import PRESETS
from videoqa_base.memory import peak_rss_bytes

# Tab. 15 / Fig. 8: what each stage trains
TAB15_TRAINABLE = {
    "pretrain": ("connector",),
    "stage1": ("connector", "language_model"),
    "stage2": ("deeplens", "language_model"),
}
PARTS = ("vision_tower", "connector", "deeplens", "language_model")


def _tokenizer(preset: str):
    """A small byte-level BPE whose special-token ids match the preset's text config."""
    from captioner.modeling.presets import TINY_TOKENIZER_CORPUS, tiny_tokenizer
    from videoqa_base.tokenizer import train_bpe_tokenizer

    if preset.startswith("tiny-"):
        return tiny_tokenizer()
    # OPT's ids: <pad> = 1, </s> = 2 (BOS and EOS); random weights need no real OPT vocabulary
    return train_bpe_tokenizer(
        TINY_TOKENIZER_CORPUS,
        400,
        ["<unk>", "<pad>", "</s>", "<image>"],
        pad_token="<pad>",
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )


def build(preset: str, seed: int = 0):
    """(model, processor) of `preset` with random weights; refinement variants keep DeepLens."""
    import torch

    from captioner.modeling.modeling_ser import SeRForCaptioning
    from captioner.modeling.presets import get_config
    from captioner.modeling.processing_ser import SeRProcessor, clip_image_processor

    tokenizer = _tokenizer(preset)
    config = get_config(preset, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    if len(tokenizer) > config.text_config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} ids, the LM {config.text_config.vocab_size}")
    processor = SeRProcessor(
        clip_image_processor(config.vision_config.image_size),
        tokenizer,
        num_image_tokens=config.num_visual_tokens,
        max_caption_tokens=config.deeplens_max_caption_tokens,
    )
    torch.manual_seed(seed)
    return SeRForCaptioning(config).float().train(), processor


def _batch(processor, stage: str, batch_size: int, caption_words: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    words = "a man woman dog cat red blue green table chair street room sitting next to on the with".split()
    caption = lambda: " ".join(rng.choice(words, caption_words))  # noqa: E731
    size = processor.image_size
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch_size)]
    initial = [caption() for _ in range(batch_size)] if stage == "stage2" else None
    return processor.build_training_batch(images, [caption() for _ in range(batch_size)], initial)


def _peak_rss_gib() -> float:
    return peak_rss_bytes() / 2**30


def check_stage(model, processor, stage: str, batch_size: int, caption_words: int, lr: float = 1e-5) -> dict[str, Any]:
    """One optimiser step of `stage`; returns what it trained, what moved and what it cost."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    trainable = model.set_trainable(stage)
    params = [p for p in model.parameters() if p.requires_grad]
    # fingerprints of every part, to see which ones the step changed
    before = {part: _fingerprint(getattr(model, part)) for part in PARTS}
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    batch = _batch(processor, stage, batch_size, caption_words, seed=len(stage))
    started = time.perf_counter()
    with FlopCounterMode(display=False) as flops:
        loss = model(**batch).loss
        loss.backward()
    vision_gradient = any(p.grad is not None for p in model.vision_tower.parameters())
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    seconds = time.perf_counter() - started
    optimizer.zero_grad(set_to_none=True)
    changed = sorted(part for part in PARTS if _fingerprint(getattr(model, part)) != before[part])
    tokens = int(batch["attention_mask"].sum())
    del optimizer, params, batch
    gc.collect()
    expected = TAB15_TRAINABLE[stage]
    trained_parts = tuple(part for part in PARTS if trainable.get(part, 0) > 0)
    return {
        "trainable_parameters": trainable,
        "trainable_total": sum(trainable.values()),
        "tab15_parts": list(expected),
        "matches_tab15": set(trained_parts) == set(expected),
        "changed_parts": changed,
        "only_trainable_changed": set(changed) <= set(expected),
        "vision_gradient": vision_gradient,
        "loss": round(float(loss.detach()), 4),
        "loss_finite": math.isfinite(float(loss.detach())),
        "seconds_per_step": round(seconds, 2),
        "flops_per_step": float(flops.get_total_flops()),  # forward + backward (torch FlopCounterMode)
        "batch_tokens": tokens,
        "peak_rss_gib_so_far": round(_peak_rss_gib(), 2),
    }


def _fingerprint(module) -> float | None:
    import torch

    if module is None:
        return None
    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in module.parameters()))


def check_training(preset: str, batch_size: int = 1, caption_words: int = 40) -> dict[str, Any]:
    import torch

    from captioner.modeling.describe import count_parameters

    started = time.perf_counter()
    model, processor = build(preset)
    build_s = time.perf_counter() - started
    stages = {stage: check_stage(model, processor, stage, batch_size, caption_words) for stage in TAB15_TRAINABLE}
    ok = all(
        s["matches_tab15"]
        and s["only_trainable_changed"]
        and s["loss_finite"]
        and not s["vision_gradient"]
        and s["changed_parts"]
        for s in stages.values()
    )
    return {
        "preset": preset,
        "variant": model.config.variant,
        "device": "cpu",
        "dtype": "float32",
        "batch_size": batch_size,
        "caption_words": caption_words,
        "visual_tokens": processor.num_image_tokens,
        "parameters": count_parameters(model),
        "stages": stages,
        "ok": ok,
        "build_seconds": round(build_s, 1),
        "peak_rss_gib": round(_peak_rss_gib(), 2),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        },
    }


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = [
        f"{report['preset']} ({report['variant']}), random weights, fp32 on CPU, batch {report['batch_size']}: "
        f"{report['parameters']['total'] / 1e6:.1f}M parameters "
        f"({', '.join(f'{k} {v / 1e6:.2f}M' for k, v in report['parameters'].items() if k != 'total')})",
        "stage     trains (Tab. 15)          trainable   ViT grad  loss      s/step  peak RSS",
    ]
    for stage, s in report["stages"].items():
        lines.append(
            f"{stage:<9} {' + '.join(s['tab15_parts']):<25} {s['trainable_total'] / 1e6:8.3f}M "
            f"{'YES' if s['vision_gradient'] else 'no':<8}  {s['loss']:<8.3f}  {s['seconds_per_step']:6.1f}  "
            f"{s['peak_rss_gib_so_far']:.2f} GiB  "
            f"{'ok' if s['matches_tab15'] and s['only_trainable_changed'] else 'MISMATCH'}"
        )
    lines.append("all checks passed" if report["ok"] else "CHECK FAILED")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="ser",
        choices=[p for p in PRESETS if "specialist" not in p and "single" not in p],
        help="a preset with DeepLens (stage 2 needs it); default: the paper's SeR",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--caption-words", type=int, default=40, help="words per caption (and per initial caption)")
    parser.add_argument("--json", dest="json_out", help="write the report here")


def run(args: argparse.Namespace) -> int:
    report = check_training(args.preset, args.batch_size, args.caption_words)
    print(format_report(report))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1
