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
    long_video_linearity per-frame caption-stage time on a generated 40-minute video / on a 5-minute
                         one, 1 fps, the demo's tiny SeR, each in a fresh process (peak RSS of both)
    adaptive_over_uniform  caption-stage time of `frames.select: adaptive` / `uniform` on a generated
                         video of repeated scenes (full-size SeR, random weights); also requires
                         <= 0.4 of the captions and every scene captioned; reports prompt tokens
    e2e_speedup_vs_loop  our pipeline (VideoQA.run) / a LLoVi-style loop (one frame at a time
                         decoded and captioned at batch 1, one prompt at a time to the LLM), tiny models

One module per figure, in the order a run measures them:
    settings.py    figures, targets, the size presets (full, quick, tiny), Figure
    peak.py        peak_flops, and the contention probe (are other processes holding cores?)
    caption.py     caption_mfu, batch_speedup, ser_over_specialist (random-weight SeR)
    generalist.py  generalist_over_ser (a shallower LLaVA-1.5, extrapolated to 32 layers)
    decode.py      decode_vs_ffmpeg
    adaptive.py    adaptive_over_uniform
    long_video.py  long_video_linearity
    e2e.py         e2e_speedup_vs_loop
    flops.py       the analytic FLOP model (the MFU numerators); `python -m videoqa.bench.flops`
    report.py      pass/miss and the notes that say why; the figures table
    runner.py      one run: steps, machine facts, JSON report

Modes: --quick (about 13 minutes on an idle 2-core CPU, most of it the adaptive, Ray and long-video
steps; fewer frames and tokens, LLaVA scaled up from a 2-layer model, vLLM without torch.compile),
full (the default; longer). `--only` runs some steps. docs/performance.md explains the figures.

This module and settings.py stay light (no torch): the CLI imports them to build the arguments.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from videoqa.bench.settings import MODES, STEPS, BenchSettings
from videoqa_base.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: about 13 minutes on an idle 2-core CPU (--only picks steps)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the report here (default: <work-dir>/bench-<mode>.json)")
    parser.add_argument("--work-dir", default="outputs/bench", help="generated videos and tiny models (kept)")
    parser.add_argument("--only", help=f"comma-separated steps to run ({', '.join(STEPS)}); default: all")
    parser.add_argument("--batch-size", type=int, help="captioning batch size B of the caption figures")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: all cores, or the free ones when other processes keep some busy)",
    )
    parser.add_argument("--dtype", help="captioner dtype: auto (fp32 on CPUs without native bf16), fp32, bf16")
    parser.add_argument("--device", help="auto (cuda when available), cpu, cuda, cuda:1")
    parser.add_argument(
        "--llava-layers",
        metavar="K1,K2",
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


def steps_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    steps = STEPS if not args.only else tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise UserError(f"--only: unknown steps {sorted(unknown)} (known: {', '.join(STEPS)})")
    return steps


def run(args: argparse.Namespace) -> int:
    settings, steps = settings_from_args(args), steps_from_args(args)
    # imported here, not at the top: the CLI imports this package to build `videoqa bench`'s
    # arguments, and the measuring modules import torch, transformers and vLLM's dependencies
    from videoqa.bench.runner import run_and_report

    return run_and_report(settings, Path(args.work_dir), steps, Path(args.json) if args.json else None)


__all__ = ["add_arguments", "run", "settings_from_args", "steps_from_args"]
