"""The denominator of every MFU: the device's best matmul FLOP/s, and whether other processes
are holding the CPU cores while the bench runs (a busy machine makes every figure pessimistic)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from videoqa.bench.settings import BenchSettings
from videoqa_base.device import dtype_name, resolve_dtype


def sync(device) -> None:
    """Wait for queued GPU work, so that wall-clock reads mean something (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_flops(dtype: str, shapes, seconds: float, device: str = "cpu") -> dict[str, Any]:
    """Best matmul FLOP/s in `dtype` (a torch dtype name) over GEMM shapes (m, k, n) and two ops.

    `linear` (x @ W^T through F.linear: oneDNN on CPU, what the models' Linear layers run) and
    `matmul` (a plain matrix product, the attention's op). Each op is first probed on a 256^3
    product; shapes whose calls would blow the time budget at the best rate seen so far are
    skipped (emulated bf16 products on AVX2 run at ~1 GFLOP/s).
    """
    torch_dtype = getattr(torch, dtype)
    budget = seconds / max(1, 2 * len(shapes))

    def timed(op_name: str, m: int, k: int, n: int, budget: float) -> dict[str, Any]:
        x = torch.randn(m, k, device=device).to(torch_dtype)
        w = torch.randn(n, k, device=device).to(torch_dtype)
        op = (lambda: F.linear(x, w)) if op_name == "linear" else (lambda: torch.matmul(x, w.t()))
        flop = 2 * m * k * n
        op()  # the first call pays for kernel generation / selection
        sync(device)
        best, spent, calls = 0.0, 0.0, 0
        while calls < 2 or spent < budget:
            started = time.perf_counter()
            op()
            sync(device)
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
    return {
        "flops": cores * max(clocks) * 1e6 * per_cycle,
        "cores": cores,
        "mhz": max(clocks),
        "flop_per_cycle": per_cycle,
    }


def peak_step(settings: BenchSettings, device: str = "cpu") -> dict[str, Any]:
    """Peak FLOP/s in fp32 and bf16; the MFU divides by the dtype the captioner runs in."""
    used = dtype_name(resolve_dtype(settings.dtype, device))
    shapes = settings.peak_shapes_gpu if device.startswith("cuda") else settings.peak_shapes
    out: dict[str, Any] = {
        dtype: measure_peak_flops(dtype, shapes, settings.peak_seconds, device) for dtype in ("float32", "bfloat16")
    }
    other = "bfloat16" if used == "float32" else "float32"
    return out | {
        "used_dtype": used,
        "other_dtype": other,
        "device": device,
        "nominal_fp32": None if device.startswith("cuda") else nominal_fp32_flops(),
        "threads": torch.get_num_threads(),
        # MFU against the other dtype's peak = MFU x this ratio
        "peak_ratio_used_over_other": out[used]["flops"] / out[other]["flops"],
    }


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
    return {
        "threads": threads,
        "fill_ms_1_thread": single * 1e3,
        f"fill_ms_{threads}_threads": parallel * 1e3,
        "busy": threads > 1 and parallel > max(1e-3, 5 * single),
        "load_average": os.getloadavg(),
    }
