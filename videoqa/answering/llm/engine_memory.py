"""How much memory a vLLM engine needs, whether this machine has it, and the settings that make it fit.

vLLM's memory setting means different things per device, and neither fits a shared machine:
  - CPU backend (vLLM 0.32, vllm/v1/worker/cpu_worker.py): `gpu_memory_utilization` is a fraction of
    the WHOLE machine's RAM, and the worker refuses to start when that much is not free at start-up
    ("Available memory on node 0 (20.44/23.54 GiB) on startup is less than desired CPU memory
    utilization (0.9, 21.19 GiB)"). An explicit KV cache size (`kv_cache_memory_bytes`, or the legacy
    environment variable VLLM_CPU_KVCACHE_SPACE in whole GiB, which overrides it) skips that check;
    the worker then only checks that the KV cache itself is available.
  - GPU: `gpu_memory_utilization` x total memory must be free when the engine starts, and a captioner
    that shares the device (compare: the next captioner loads while the engine runs) needs its share.

So the engine is sized from what the model needs, read from its files without loading a tensor:
weights (parameter count from the safetensors headers x the bytes of the dtype vLLM loads) plus the
KV cache (bytes per token from config.json x tokens), and that is checked against the memory
available now (psutil's MemAvailable, clamped by a cgroup limit), minus the captioner's share:
  - CPU: an explicit KV cache of `llm.cpu_kvcache_gib` (or VLLM_CPU_KVCACHE_SPACE) or, unset, enough
    for `llm.max_num_seqs` (default 8) sequences of `max_model_len` tokens, capped so that the engine
    takes at most CPU_AVAILABLE_SHARE of what is available, and never less than one full sequence;
  - GPU: `gpu_memory_utilization` = what is free now less the captioner's share, as a fraction of the
    device (an explicit `llm.gpu_memory_utilization` is checked instead).
`check_fits` runs before captioning, so hours of captions never end in an engine that cannot start.
This module stays light (no torch / vllm import at module level).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from videoqa.config import LLMConfig
from videoqa_base.checkpoints import safetensors_parameter_count
from videoqa_base.errors import UserError

GIB = 1 << 30
# What the engine holds beside weights and KV cache: torch and vLLM in the engine process, activations
# of one max_num_batched_tokens step, the sampler (an engine process of the demo's tiny Qwen2 shows
# ~0.7 GiB RSS in `ps` on vLLM-cpu 0.32); GPUs add CUDA graphs and the CUDA context.
RUNTIME_BYTES = {"cpu": GIB, "cuda": 2 * GIB}
CPU_AVAILABLE_SHARE = 0.8  # the engine takes at most this share of the available memory; the rest stays free
DEFAULT_KV_SEQUENCES = 8  # the derived CPU KV cache holds this many max_model_len-token sequences (llm.max_num_seqs)
GPU_DEFAULT_UTILIZATION = 0.9  # vLLM's own default: the derived fraction never goes above it
KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"  # vLLM's legacy setting (whole GiB), read by the engine at start
_BYTES_PER_DTYPE = {"float32": 4, "float": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2}


class EngineStartError(UserError):
    """The LLM engine cannot start (or could not): the cause and the setting that fixes it, in one line."""


@dataclass(frozen=True)
class ModelMemory:
    """What a model needs, read from config.json and the safetensors headers."""

    weight_bytes: int
    kv_bytes_per_token: int  # K and V of every attention layer, in the KV cache dtype
    max_model_len: int  # the context the engine is started with (llm.max_model_len, else the model's)

    @property
    def one_sequence_kv_bytes(self) -> int:
        """vLLM refuses to start unless the KV cache holds at least one max_model_len-token sequence."""
        return self.kv_bytes_per_token * self.max_model_len


@dataclass(frozen=True)
class EnginePlan:
    """The memory settings an engine starts with, and the arithmetic behind them (for the manifest)."""

    device: Literal["cpu", "cuda"]
    need_bytes: int  # weights + KV cache + runtime (+ the captioner's share when it shares the device)
    available_bytes: int  # RAM available (CPU) or free device memory (GPU), measured now
    kv_cache_bytes: int | None = None  # CPU: passed to vLLM as kv_cache_memory_bytes
    gpu_memory_utilization: float | None = None  # GPU, or a CPU config that set it explicitly
    source: str = ""  # where the KV cache size / fraction came from

    def engine_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.kv_cache_bytes is not None and os.environ.get(KVCACHE_ENV, "") == "":
            kwargs["kv_cache_memory_bytes"] = self.kv_cache_bytes  # (the environment variable would override it)
        if self.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        return kwargs

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "need_gib": round(self.need_bytes / GIB, 3),
            "available_gib": round(self.available_bytes / GIB, 3),
            "kv_cache_gib": None if self.kv_cache_bytes is None else round(self.kv_cache_bytes / GIB, 3),
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "source": self.source,
        }


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


# ---------------------------------------------------------------------------- what the model needs


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config.json (vision-language models nest it)."""
    for key in ("text_config", "llm_config", "language_config"):
        if isinstance(config.get(key), dict):
            return {**config, **config[key]}
    return config


def _dtype_bytes(requested: str, stored: str | None) -> int:
    """Bytes per weight/KV element in the dtype vLLM runs: `auto` keeps a 16-bit checkpoint's dtype and
    downcasts float32 to 16 bits (vllm/config/model.py `_resolve_auto_dtype`)."""
    if requested != "auto":
        return _BYTES_PER_DTYPE.get(requested.removeprefix("torch."), 4)
    return min(_BYTES_PER_DTYPE.get(str(stored or "float32").removeprefix("torch."), 4), 2)


def model_memory(model_dir: Path, dtype: str = "auto", max_model_len: int | None = None) -> ModelMemory:
    """Weights and KV cache per token of the model in `model_dir`, without loading it."""
    config_path = Path(model_dir) / "config.json"
    try:
        config = _text_config(json.loads(config_path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{config_path}: cannot read the model's config ({exc})") from None
    element = _dtype_bytes(dtype, config.get("torch_dtype") or config.get("dtype"))
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if files:
        weights = safetensors_parameter_count(files) * element
    else:  # .bin / .pt checkpoints: their size on disk, as stored
        weights = sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.suffix in (".bin", ".pt"))
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{config_path}: field {exc}: needed to size the KV cache") from None
    context = max_model_len or int(config.get("max_position_embeddings") or 0)
    if context <= 0:
        raise UserError(f"{config_path}: field 'max_position_embeddings' is missing: set llm.max_model_len")
    return ModelMemory(weights, 2 * layers * kv_heads * head_dim * element, context)


# ---------------------------------------------------------------------------- what the machine has


def available_ram() -> int:
    """RAM available to a new process now: MemAvailable, clamped by this process's cgroup v2 limit."""
    import psutil

    available = psutil.virtual_memory().available
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):  # no cgroup v2 limit visible: the machine's figure stands
        pass
    return available


def gpu_memory() -> tuple[int, int]:
    """(free, total) bytes of the first visible GPU."""
    import torch

    free, total = torch.cuda.mem_get_info(0)
    return int(free), int(total)


def engine_device() -> Literal["cpu", "cuda"]:
    """Where vLLM runs: the CUDA build on a visible GPU, else the CPU build."""
    import torch

    return "cuda" if torch.version.cuda is not None and torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------- the plan


def _kv_from_environment() -> int | None:
    value = os.environ.get(KVCACHE_ENV, "")
    if value == "":
        return None
    try:
        return int(value) * GIB  # vLLM parses it with int(): whole GiB
    except ValueError:
        raise EngineStartError(f"{KVCACHE_ENV}={value!r}: vLLM reads a whole number of GiB; unset it") from None


def plan_cpu(config: LLMConfig, model: ModelMemory, available: int, captioner_bytes: int = 0) -> EnginePlan:
    """The KV cache a CPU engine gets, or EngineStartError when the model cannot fit in `available`."""
    runtime = RUNTIME_BYTES["cpu"]
    fixed = model.weight_bytes + runtime + captioner_bytes
    one = model.one_sequence_kv_bytes
    what = f"{config.name!r} ({gib(model.weight_bytes)} of weights"
    explicit, source = _explicit_kv(config)
    if explicit is None and config.gpu_memory_utilization is not None:  # vLLM's own rule, asked for explicitly
        # (an explicit KV cache size makes vLLM skip the fraction's check: then the size is what counts)
        return _plan_cpu_fraction(config, model, available, fixed)
    if explicit is not None:
        kv = explicit
        if kv < one:
            raise EngineStartError(
                f"LLM {what}): {source} = {gib(kv)} holds fewer than the {model.max_model_len} tokens of one "
                f"sequence ({gib(one)}): raise it or lower llm.max_model_len"
            )
    else:
        want = one * (config.max_num_seqs or DEFAULT_KV_SEQUENCES)
        budget = int(available * CPU_AVAILABLE_SHARE) - fixed
        kv = max(one, min(want, budget))
        source = f"{config.max_num_seqs or DEFAULT_KV_SEQUENCES} sequences of {model.max_model_len} tokens" + (
            f", capped at {CPU_AVAILABLE_SHARE:.0%} of the available memory" if budget < want else ""
        )
    need = fixed + kv
    if need > available:
        fix = f"lower {source}" if explicit is not None else "lower llm.max_model_len"
        raise EngineStartError(
            f"LLM {what} + {gib(kv)} of KV cache for {source} + ~{gib(runtime)} runtime"
            + (f" + the captioner's {gib(captioner_bytes)}" if captioner_bytes else "")
            + f") needs {gib(need)} but {gib(available)} of memory is available: {fix}, "
            "close other programs, or use a smaller model"
        )
    return EnginePlan("cpu", need, available, kv_cache_bytes=kv, source=source)


def _explicit_kv(config: LLMConfig) -> tuple[int | None, str]:
    from_env = _kv_from_environment()
    if from_env is not None:  # vLLM applies it whatever the engine arguments say
        return from_env, f"{KVCACHE_ENV}={os.environ[KVCACHE_ENV]}"
    if config.cpu_kvcache_gib is not None:
        return int(config.cpu_kvcache_gib * GIB), f"llm.cpu_kvcache_gib={config.cpu_kvcache_gib:g}"
    return None, ""


def _plan_cpu_fraction(config: LLMConfig, model: ModelMemory, available: int, fixed: int) -> EnginePlan:
    """llm.gpu_memory_utilization set on a CPU: vLLM reserves that fraction of the machine's RAM."""
    import psutil

    fraction = float(config.gpu_memory_utilization or 0.0)
    total = psutil.virtual_memory().total
    requested = math.ceil(total * fraction)
    if requested > available:
        raise EngineStartError(
            f"llm.gpu_memory_utilization={fraction:g} asks vLLM's CPU backend for {fraction:.0%} of this machine's "
            f"RAM ({gib(requested)}) but {gib(available)} is available: set llm.gpu_memory_utilization: null "
            "(sized from the model), or lower it"
        )
    if requested < fixed - RUNTIME_BYTES["cpu"] + model.one_sequence_kv_bytes:
        raise EngineStartError(
            f"llm.gpu_memory_utilization={fraction:g} ({gib(requested)}) leaves no room for the KV cache of one "
            f"{model.max_model_len}-token sequence beside {gib(model.weight_bytes)} of weights: raise it, set it "
            "to null (sized from the model), or lower llm.max_model_len"
        )
    return EnginePlan("cpu", requested, available, gpu_memory_utilization=fraction, source="llm.gpu_memory_utilization")


def plan_gpu(config: LLMConfig, model: ModelMemory, free: int, total: int, captioner_bytes: int = 0) -> EnginePlan:
    """The fraction of the device the engine may take, leaving the captioner its share."""
    shards = max(1, config.tensor_parallel_size)
    runtime = RUNTIME_BYTES["cuda"]
    need = model.weight_bytes // shards + model.one_sequence_kv_bytes // shards + runtime
    usable = free - captioner_bytes
    beside = f" beside the captioner's {gib(captioner_bytes)}" if captioner_bytes else ""
    if config.gpu_memory_utilization is not None:
        fraction = float(config.gpu_memory_utilization)
        if math.ceil(total * fraction) > usable:
            raise EngineStartError(
                f"llm.gpu_memory_utilization={fraction:g} asks for {gib(total * fraction)} of the GPU but "
                f"{gib(usable)} is free{beside}: set llm.gpu_memory_utilization: null (sized from what is free) "
                "or lower it"
            )
        source = "llm.gpu_memory_utilization"
    else:
        fraction = math.floor(min(GPU_DEFAULT_UTILIZATION, usable / total) * 100) / 100
        source = f"free GPU memory{beside}"
    if total * fraction < need:
        raise EngineStartError(
            f"LLM {config.name!r} needs {gib(need)} per GPU ({gib(model.weight_bytes / shards)} of weights + the KV "
            f"cache of one {model.max_model_len}-token sequence + ~{gib(runtime)} runtime) but gets "
            f"{gib(total * fraction)} ({source}){beside}: lower llm.max_model_len, raise "
            "llm.tensor_parallel_size, or free the GPU"
        )
    return EnginePlan("cuda", need, free, gpu_memory_utilization=fraction, source=source)


def plan_engine(config: LLMConfig, model_dir: Path, captioner_bytes: int = 0) -> EnginePlan:
    """The plan for an engine serving `model_dir` with `config`, on this machine, now."""
    model = model_memory(model_dir, config.dtype, config.max_model_len)
    if engine_device() == "cuda":
        free, total = gpu_memory()
        return plan_gpu(config, model, free, total, captioner_bytes)
    return plan_cpu(config, model, available_ram(), captioner_bytes)


# ---------------------------------------------------------------------------- when it fails anyway

_MEMORY_WORDS = re.compile(r"memory|out of memory|KV cache|kv cache", re.IGNORECASE)
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def log_tail_cause(limit: int = 1 << 16) -> tuple[str | None, str | None]:
    """(the last error line, the log file) when stderr is a log file (videoqa_base.logs routes the
    engine process's output there): the engine process's own error is only written there."""
    try:
        path = os.readlink("/proc/self/fd/2")
        if not os.path.isfile(path):
            return None, None
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - limit))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None, None
    for line in reversed(lines):
        match = _ERROR_LINE.match(line.strip())
        if match and "Engine core initialization failed" not in match.group(2):
            return f"{match.group(1)}: {match.group(2)}", path
    return None, path


def start_failure(config: LLMConfig, exc: BaseException) -> EngineStartError:
    """One line for an engine that failed to start: its cause and the setting that fixes it."""
    chain: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 8:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    logged, log_path = log_tail_cause()
    text = " | ".join(chain + ([logged] if logged else []))
    reason = logged or chain[-1]
    reason = reason.splitlines()[0][:300] if reason else type(exc).__name__
    where = f" (traceback in {log_path})" if log_path else ""
    if _MEMORY_WORDS.search(text):
        fix = (
            "set llm.cpu_kvcache_gib / llm.gpu_memory_utilization to null (sized from the model and the free memory), "
            "lower llm.max_model_len, or free memory"
        )
    elif "max_model_len" in text or "max_position_embeddings" in text:
        fix = "lower llm.max_model_len to the model's context"
    else:
        fix = "see the log; llm.engine_kwargs passes settings to vllm.LLM"
    return EngineStartError(f"LLM {config.name!r}: the vLLM engine did not start: {reason}{where}: {fix}")
