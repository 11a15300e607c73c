"""One bench run: the steps in an order that keeps them apart, the machine's facts, the report
(figures, details, machine) printed as a table and written as JSON."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from captioner.modeling.presets import get_config
from videoqa.bench.adaptive import adaptive_step
from videoqa.bench.caption import caption_step
from videoqa.bench.decode import decode_step
from videoqa.bench.e2e import e2e_step
from videoqa.bench.generalist import generalist_step
from videoqa.bench.long_video import long_video_step
from videoqa.bench.peak import auto_threads, contention_probe, peak_step
from videoqa.bench.ray_ratio import ray_ratio_step
from videoqa.bench.report import build_figures, figures_table
from videoqa.bench.settings import FIGURES, STEPS, BenchSettings, Figure, say
from videoqa.manifest import environment, to_jsonable
from videoqa_base.device import cpu_has_native_bf16, resolve_device


def set_threads(settings: BenchSettings, probe: dict[str, Any]) -> dict[str, Any]:
    """Torch threads for the run: --threads, else all cores, or the free ones on a busy machine."""
    threads = settings.threads or auto_threads(probe)
    if threads != torch.get_num_threads():
        say(
            f"torch threads: {threads}"
            + (
                ""
                if settings.threads
                else " (other processes hold cores: a thread on a busy core stalls every parallel op)"
            )
        )
    torch.set_num_threads(threads)
    return {"used": threads, "cores": os.cpu_count(), "chosen": "--threads" if settings.threads else "auto"}


def run_bench(settings: BenchSettings, work: Path, steps: tuple[str, ...] = STEPS) -> dict[str, Any]:
    """Run the steps (the vLLM engine starts last) and return the report: figures, details,
    machine. A failing step is reported, the others still run."""
    work.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(settings.device))
    started = time.perf_counter()
    details: dict[str, Any] = {"errors": {}}
    contention = {"start": contention_probe()}
    details["contention"] = contention
    details["threads"] = set_threads(settings, contention["start"])
    machine = environment() | {
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
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
        except Exception as exc:  # reported per figure, the other steps still run
            details["errors"][step] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
            return None
        say(f"{step}: {time.perf_counter() - t0:.1f} s")
        details.setdefault("step_seconds", {})[step] = time.perf_counter() - t0
        return result

    details["peak"] = attempt("peak", lambda: peak_step(settings, device))
    peak_used = details["peak"][details["peak"]["used_dtype"]] if details["peak"] else None
    details["caption"] = attempt("caption", lambda: caption_step(settings, peak_used, device))
    ser_b1 = details["caption"]["main"]["batch1"]["seconds_per_frame"] if details["caption"] else None
    details["generalist"] = attempt("generalist", lambda: generalist_step(settings, ser_b1, peak_used, device))
    captioner_side = get_config(settings.preset).vision_config.image_size  # what decoding resizes to
    details["decode"] = attempt("decode", lambda: decode_step(settings, work, captioner_side))
    details["adaptive"] = attempt("adaptive", lambda: adaptive_step(settings, work, device))
    details["long_video"] = attempt("long_video", lambda: long_video_step(settings, work))
    details["e2e"] = attempt("e2e", lambda: e2e_step(settings, work, device))
    details["ray"] = attempt("ray", lambda: ray_ratio_step(settings, work, device))
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


def run_and_report(settings: BenchSettings, work: Path, steps: tuple[str, ...], json_path: Path | None) -> int:
    """Run, print the figures table, write the JSON report; exit status 1 when a step failed."""
    say(f"mode {settings.mode}: steps {', '.join(steps)}")
    report = run_bench(settings, work, steps)
    figures = {name: Figure(**values) for name, values in report["figures"].items()}
    print(figures_table(figures).to_markdown(index=False))
    path = json_path or work / f"bench-{settings.mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(report), indent=2, default=str))
    print(f"\n{settings.mode} mode, {report['wall_s']:.0f} s; report: {path}")
    return 1 if report["details"]["errors"] else 0
