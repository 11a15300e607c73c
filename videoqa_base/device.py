"""Which device and dtype a model runs in: one resolver for every captioner, trainer and bench.

Tests must not assume the answer (it depends on the host CPU): they compare against these
functions and force each branch with `native_bf16=`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videoqa_base.errors import UserError

DTYPE_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere oneDNN emulates
    bf16 and it is several times slower than fp32 (measured by `videoqa bench`: ~4x on AVX2)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: trust torch's own check
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_dtype(
    dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu", native_bf16: bool | None = None
) -> torch.dtype:
    """auto: bf16 on GPUs that support it, else fp16 on GPU; on CPU bf16 only where the CPU has
    bf16 instructions, else fp32 (the faster one there). `native_bf16` overrides the CPU probe."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        return torch.bfloat16 if native else torch.float32
    if dtype not in DTYPE_NAMES:
        raise UserError(f"unknown dtype {dtype!r} (known: auto, {', '.join(DTYPE_NAMES)})")
    return DTYPE_NAMES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
