"""The YAML config of `captioner train` (one stage): validated, with errors naming file and key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from captioner.modeling.modeling_ser import TrainingStage
from videoqa_base.config import Strict, parse_override, read_yaml, set_dotted, validate

Stage = Literal["pretrain", "stage1", "stage2"]  # the stages one can train (TrainingStage adds "all")


class ModelInit(Strict):
    """Where the weights come from: exactly one of `init_from`, the pretrained parts, or a preset."""

    init_from: str | None = None  # checkpoint directory of the previous stage
    vision_tower: str | None = None  # pretrain: CLIP vision checkpoint (HF id in the local cache, or dir)
    language_model: str | None = None  # pretrain: causal LM checkpoint (HF id or dir)
    preset: str | None = None  # random init from captioner.modeling.presets (tiny-* only; tests, synthetic runs)
    seed: int = 0  # init seed of a preset
    config: dict[str, Any] = {}  # SeRConfig fields (fresh model), or overrides applied when loading init_from
    trainable: TrainingStage | None = None  # default: the stage's parts

    @model_validator(mode="after")
    def _one_source(self):
        sources = [
            self.init_from is not None,
            self.vision_tower is not None or self.language_model is not None,
            self.preset is not None,
        ]
        if sum(sources) != 1:
            raise ValueError(
                "set exactly one of model.init_from, model.vision_tower + model.language_model, model.preset"
            )
        if (self.vision_tower is None) != (self.language_model is None):
            raise ValueError("model.vision_tower and model.language_model go together")
        return self


class DataSource(Strict):
    path: str  # annotation file (LLaVA JSON, Karpathy COCO JSON or JSONL), or a DCI release directory
    image_root: str = "."  # directory the image paths in `path` are relative to
    format: Literal["auto", "llava", "coco-karpathy", "jsonl", "dci"] = "auto"
    split: str | None = "train"  # Karpathy COCO ("train" includes "restval") and DCI (splits.json)
    limit: int | None = None  # first N images only (smoke runs)


class DataConfig(Strict):
    train: list[DataSource]
    on_missing_image: Literal["error", "skip"] = "error"
    # None = the processor's default instruction (the prompt videoqa captions with);
    # "from_data" = the human turn of LLaVA conversations; any other string = that instruction.
    instruction: str | None = None
    # Stage 2 only: the share of every batch that is (image, GT caption) first-glance pairs of the
    # same files, so that the LM both glances share keeps its first glance while it learns to refine
    # (arm ser_protected of docs/replication.md). 0 = the paper's refinement loss alone.
    first_glance_fraction: float = 0.0

    @model_validator(mode="after")
    def _some_data(self):
        if not self.train:
            raise ValueError("data.train needs at least one annotation file")
        if not 0 <= self.first_glance_fraction < 1:
            raise ValueError("data.first_glance_fraction must be in [0, 1)")
        return self


class TrainingConfig(Strict):
    output_dir: str
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    global_batch_size: int | None = None  # if set: accumulation = global / (per_device * world size)
    learning_rate: float
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 on GPUs that have it, else fp32
    gradient_checkpointing: bool | Literal["auto"] = "auto"  # auto: on when training on a GPU
    save_steps: int = 500
    save_total_limit: int | None = 2
    logging_steps: int = 10
    seed: int = 42
    dataloader_num_workers: int = 2
    resume_from_checkpoint: bool | str = "auto"  # auto/true: last checkpoint in output_dir if any; false; or a path
    report_to: list[str] = []  # e.g. ["tensorboard"], ["wandb"]
    disable_tqdm: bool | None = None

    @model_validator(mode="after")
    def _sane(self):
        if self.learning_rate <= 0:
            raise ValueError("training.learning_rate must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("training.warmup_ratio must be in [0, 1)")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch size and gradient accumulation must be >= 1")
        return self


class TrainConfig(Strict):
    stage: Stage
    model: ModelInit
    data: DataConfig
    training: TrainingConfig


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML, apply `key=value` overrides, validate (errors name file and key)."""
    data = read_yaml(Path(path))
    for item in overrides:
        set_dotted(data, *parse_override(item))
    source = f"{path}{' (+ --set)' if overrides else ''}"
    return validate(TrainConfig, data, source)
