"""YAML configs validated into typed objects.

configs/run.yaml holds the run defaults; `--captioner`, `--llm` and `--dataset` name a YAML in
configs/captioners/, configs/llms/, configs/datasets/ (or a local model directory), and
`--set a.b=value` overrides any field. Every run writes the resolved config beside its outputs.
"""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from videoqa.registry import plugin_dirs
from videoqa_base.config import Strict, apply_overrides, read_yaml, validate
from videoqa_base.errors import UserError

# configs/ ships inside the package as videoqa.configs: found the same way from an editable or a wheel install
CONFIG_DIR = Path(os.environ.get("VIDEOQA_CONFIG_DIR") or str(files("videoqa.configs")))


class FramesConfig(Strict):
    fps: float | None = 1.0  # sample this many frames per second of video (the paper: 1 fps)
    num_frames: int | None = None  # or exactly this many, evenly spaced (overrides fps)
    max_frames: int | None = None  # cap for very long videos (evenly re-spaced), None = no cap
    workers: int = 2  # background decode workers
    # uniform: caption every sampled frame (the paper's and LLoVi's protocol); adaptive: cluster the
    # sampled frames and caption one per cluster (VideoTree-style; `adaptive:` below, captioning/selection.py)
    select: Literal["uniform", "adaptive"] = "uniform"

    @model_validator(mode="after")
    def _one_rule(self):
        if self.fps is None and self.num_frames is None:
            raise ValueError("set frames.fps or frames.num_frames")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("frames.fps must be > 0")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError("frames.num_frames must be >= 1")
        return self


class AdaptiveConfig(Strict):
    """`frames.select: adaptive`: which frames get captioned (videoqa.captioning.selection)."""

    max_captions: PositiveInt = 64  # captions per video at most (clusters, and expansions with relevance: llm)
    explained: float = 0.9  # k = the fewest clusters explaining this fraction of the frames' variance
    seed: int = 0  # k-means seeding: the same frames and seed give the same selection
    branch: PositiveInt = 4  # sub-clusters per cluster one level deeper (VideoTree's width)
    # captioner: its own vision tower where it has one (SeR: ViT at embed_size), else pixels; pixel: always pixels
    embedding: Literal["captioner", "pixel"] = "captioner"
    # none: the clusters' representatives only; llm: the LLM rates each cluster's relevance to the
    # question from its caption, the relevant clusters are expanded one level deeper
    relevance: Literal["none", "llm"] = "none"

    @model_validator(mode="after")
    def _fraction(self):
        if not 0.0 < self.explained < 1.0:
            raise ValueError("adaptive.explained must be between 0 and 1 (exclusive)")
        return self


class CaptionerConfig(Strict):
    name: str
    type: str  # registry key in videoqa.registry.CAPTIONERS
    model: str = ""  # HF id or local directory
    revision: str | None = None
    prompt: str = "Describe this frame within 50 words"
    batch_size: int = 16
    max_new_tokens: int = 60
    dtype: str = (
        "auto"  # auto: videoqa_base.device.resolve_dtype (bf16 on GPU; on CPU bf16 only with bf16 instructions)
    )
    device: str = "auto"
    options: dict[str, Any] = {}  # captioner-specific settings


class LLMConfig(Strict):
    name: str
    backend: str = "vllm"  # registry key in videoqa.registry.LLM_BACKENDS
    model: str
    revision: str | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    seed: int = 0
    enable_prefix_caching: bool = True
    # vLLM's memory settings (videoqa.answering.llm.engine_memory); None = sized from the model's weights
    # and KV cache, checked against the memory available before captioning. On vLLM's CPU backend
    # gpu_memory_utilization is a fraction of the WHOLE machine's RAM, which must be free at start-up.
    gpu_memory_utilization: float | None = Field(default=None, gt=0.0, le=1.0)  # GPU: None = what is free
    cpu_kvcache_gib: float | None = Field(default=None, gt=0.0)  # CPU: None = max_num_seqs full sequences
    max_num_seqs: PositiveInt | None = None  # sequences per engine step (vLLM's; None: its default, CPU KV for 8)
    base_url: str | None = None  # for the OpenAI-compatible backend
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key)
    timeout_s: float = 120.0
    max_retries: int = 4
    concurrency: int = 16
    engine_kwargs: dict[str, Any] = {}


class DatasetConfig(Strict):
    name: str
    type: str  # registry key in videoqa.registry.DATASETS
    data_root: str
    split: str = "subset"
    options: dict[str, Any] = {}
    # the benchmark's own headline metric: pooled accuracy, or MLVU's M-Avg (mean of per-task accuracies)
    headline: Literal["accuracy", "m_avg"] = "accuracy"
    # frame budget: frames.max_frames when run.yaml / --set leave it unset, so that an hour-long
    # video's transcript fits the LLM context at the default settings (docs/datasets.md)
    max_frames: PositiveInt | None = None


class TranscriptConfig(Strict):
    caption_every: PositiveInt = 1  # keep every k-th caption (LLoVi's interval)
    subtitles: bool = False  # merge the dataset's subtitles into the transcript by time, marked as speech


class AnswerConfig(Strict):
    prompt: str = "standard"  # configs/prompts/<prompt>.yaml
    max_tokens: int = 512  # free-text modes (chain of thought, summaries)
    context_policy: Literal["error", "subsample", "summarize"] = "subsample"
    context_margin: int = 64  # tokens kept free for the answer
    chunk_size: int = 256  # questions per LLM batch between durable appends to predictions.jsonl


class RayConfig(Strict):
    """Where and how wide the Ray executor runs (`executor: ray`); ignored by the local executor."""

    # None: start a Ray instance inside this process; "auto": join the cluster `ray start` runs on this
    # node; "HOST:PORT": that cluster's head (GCS) address
    address: str | None = None
    num_cpus: int | None = None  # logical CPUs of an in-process instance (address None); None = this machine's
    captioners: PositiveInt = 2  # captioner actors (each holds one captioner; on GPUs one GPU each)
    captioner_num_cpus: float = 1.0  # logical CPUs per captioner actor (decoding runs inside it)
    captioner_num_gpus: float | None = None  # None: 1 when the cluster has GPUs and captioner.device allows, else 0
    videos_per_task: PositiveInt = 4  # videos per actor call: frames of these are pooled into full caption batches
    concurrency: PositiveInt = 1  # LLM replicas (each one engine, `llm.tensor_parallel_size` GPUs)
    llm_num_cpus: float = 1.0  # logical CPUs per LLM replica
    llm_num_gpus: float | None = None  # None: llm.tensor_parallel_size when the cluster has GPUs, else 0
    max_restarts: int = 3  # an actor that dies is restarted this often; its unfinished call is retried


class VideoLLMConfig(Strict):
    """`answerer: video-llm`: how a video's frames reach the video LLM (videoqa.answering.video_llm)."""

    fps: float | None = 1.0  # frames sampled per second of video
    max_frames: int | None = 32  # frame cap: longer videos are evenly re-spaced to this many
    frame_size: int | None = 448  # shorter side (px) frames are decoded at
    max_pixels: int | None = 448 * 800  # per-frame pixel cap, aspect kept
    context_policy: Literal["subsample", "error"] = "subsample"  # prompts longer than the context
    context_margin: int = 16  # tokens kept free after the prompt


class RunConfig(Strict):
    dataset: DatasetConfig
    captioner: CaptionerConfig | None = None  # required by the captions answerer; a video LLM has none
    llm: LLMConfig
    frames: FramesConfig = FramesConfig()
    adaptive: AdaptiveConfig = AdaptiveConfig()
    transcript: TranscriptConfig = TranscriptConfig()
    answer: AnswerConfig = AnswerConfig()
    limit: int | None = None  # first N questions only
    output_dir: str = "outputs"
    run_id: str | None = None
    executor: Literal["local", "ray"] = "local"  # where the stages run (videoqa.executors)
    ray: RayConfig = RayConfig()
    # "captions": caption the frames, answer from the transcript; "video-llm": the frames and the
    # question go straight to a video LLM (llm.backend transformers-video or vllm-video)
    answerer: Literal["captions", "video-llm"] = "captions"
    video_llm: VideoLLMConfig = VideoLLMConfig()

    @model_validator(mode="after")
    def _captioner_when_captioning(self):
        if self.answerer == "captions" and self.captioner is None:
            raise ValueError("answerer 'captions' needs a captioner (--captioner)")
        return self

    @model_validator(mode="after")
    def _dataset_frame_budget(self):
        if self.frames.max_frames is None and self.dataset.max_frames is not None:
            self.frames = self.frames.model_copy(update={"max_frames": self.dataset.max_frames})
        return self


# ---------------------------------------------------------------------------- loading


def config_dirs() -> list[Path]:
    """Where registered names are looked up: the shipped configs, then each plugin directory's configs/."""
    return [Path(CONFIG_DIR), *(d / "configs" for d in plugin_dirs())]


def registered_names(kind: str) -> list[str]:
    return sorted({p.stem for d in config_dirs() for p in (d / kind).glob("*.yaml")})


def resolve_component(kind: str, ref: str) -> tuple[dict[str, Any], str]:
    """Resolve a registered name (configs/<kind>/<ref>.yaml), a YAML path, or a model directory."""
    for directory in config_dirs():
        candidate = directory / kind / f"{ref}.yaml"
        if candidate.is_file():
            data = read_yaml(candidate)
            data.setdefault("name", ref)
            return data, str(candidate)
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        data = read_yaml(path)
        data.setdefault("name", path.stem)
        return data, str(path)
    if path.is_dir() and kind in ("captioners", "llms"):
        return _from_model_dir(kind, path), str(path)
    known = registered_names(kind)
    raise UserError(
        f"{kind[:-1]} {ref!r}: not a registered name ({', '.join(known) or 'none'}), "
        f"a YAML file, or {'a local model directory' if kind != 'datasets' else 'a dataset YAML'}"
    )


def _from_model_dir(kind: str, path: Path) -> dict[str, Any]:
    """A local model directory: infer the captioner type / LLM backend from its config.json."""
    config_json = path / "config.json"
    fields: dict[str, Any] = {}
    if config_json.is_file():
        try:
            fields = json.loads(config_json.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{config_json}: not valid JSON") from None
    model_type, name = fields.get("model_type", ""), path.name
    vision = "vision_config" in fields  # a vision-language model
    if kind == "llms":  # a VLM answers from frames (answerer video-llm); on CPU through transformers
        return {"name": name, "backend": "transformers-video" if vision else "vllm", "model": str(path.resolve())}
    if model_type != "ser" and not vision:
        raise UserError(
            f"{config_json}: field 'model_type': expected 'ser' or a vision-language model, got {model_type!r}"
        )
    return {"name": name, "type": "ser" if model_type == "ser" else "hf-vlm", "model": str(path.resolve())}


def load_run_config(
    *,
    dataset: str,
    captioner: str | None,
    llm: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: Path | None = None,
) -> RunConfig:
    """Defaults from configs/run.yaml, components by name or path, then `key=value` overrides."""
    base = base or CONFIG_DIR / "run.yaml"
    data = read_yaml(base)
    llm = llm or data.pop("llm", None)
    data.pop("llm", None)
    if not llm:
        raise UserError(f"{base}: field 'llm': no default LLM and none given with --llm")
    sources = {}
    for kind, section, ref in (
        ("datasets", "dataset", dataset),
        ("captioners", "captioner", captioner),
        ("llms", "llm", llm),
    ):
        if ref is not None:  # no captioner: a video-LLM run
            data[section], sources[section] = resolve_component(kind, ref)
    apply_overrides(data, overrides)
    where = f"{base} (+ {', '.join(sources.values())}{' + --set' if overrides else ''})"
    return validate(RunConfig, data, where)
