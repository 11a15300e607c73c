"""`captioner train --config configs/train/<stage>.yaml [--set key=value ...]`

The three training stages of the paper (App. H.1, Tab. 15, Fig. 8), on Hugging Face `Trainer`:

    stage      trains               data                                       paper
    pretrain   MLP connector        (image, caption)                           1 epoch, LCS-558K
    stage1     connector + LM       (image, GT caption)                        10 epochs
    stage2     DeepLens + LM        (image, pseudo-initial caption) -> GT      2 epochs

Stage 2 can mix (image, GT caption) first-glance pairs into every batch (`data.first_glance_fraction`,
0.5 in configs/train/stage2.yaml): the LM both glances share then keeps its first glance (measured
in docs/replication.md). All stages: cosine schedule, warm-up ratio 0.03, weight decay 0, vision
encoder frozen.
The paper's table lost its learning rates; the configs use LLaVA-1.5's (1e-3 pretraining,
2e-5 fine-tuning), which the paper says it follows.

Multi-GPU: launch the same command with `torchrun --nproc_per_node N -m videoqa.cli.captioner train ...`
or `accelerate launch -m videoqa.cli.captioner train ...`; Trainer picks up the distributed setup.
`training.global_batch_size` keeps the effective batch (LLaVA: 256 / 128) whatever the GPU
count by setting the gradient accumulation.

Checkpoints (model.safetensors + processor + optimizer/scheduler/RNG state) are written to
`<output_dir>/checkpoint-<step>` every `save_steps`; a rerun of the same command resumes from
the last one (`training.resume_from_checkpoint: auto`). The final directory holds a complete
HF checkpoint (model + processor + resolved config) that `SeRForCaptioning.from_pretrained`,
the next stage's `model.init_from` and `videoqa --captioner <dir>` load, plus its model card
(README.md: command, config, data, training result; captioner/training/model_card.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioner.training.config import (
    DataConfig,
    DataSource,
    ModelInit,
    Stage,
    TrainConfig,
    TrainingConfig,
    load_train_config,
)
from videoqa_base.errors import UserError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- pieces


def build_model_and_processor(init: ModelInit, stage: Stage = "stage1"):
    """(model, processor) from a checkpoint dir, pretrained parts, or a tiny preset.

    Stage 2 adds DeepLens: a single-pass (specialist) checkpoint from stage 1 is loaded with
    `refine=True`, which initialises DeepLens freshly (HF reports its weights as missing).
    """
    import torch

    from captioner.modeling.modeling_ser import SeRConfig, SeRForCaptioning
    from captioner.modeling.processing_ser import SeRProcessor

    if init.init_from is not None:
        path = Path(init.init_from)
        if not (path / "config.json").is_file():
            raise UserError(
                f"model.init_from: {path} is not a SeR checkpoint directory (no config.json); "
                f"train the previous stage first or fix the path"
            )
        overrides = dict(init.config)
        if stage == "stage2" and not SeRConfig.from_pretrained(path).refine:
            overrides.setdefault("refine", True)
            logger.info("stage2: adding a freshly initialised DeepLens to the single-pass checkpoint %s", path)
        # fp32 master weights whatever the checkpoint's dtype: bf16/fp16 training is autocast on top
        model = SeRForCaptioning.from_pretrained(path, dtype=torch.float32, **overrides)
        return model, SeRProcessor.from_pretrained(path)
    if init.preset is not None:
        from captioner.modeling.presets import build_tiny_checkpoint

        with tempfile.TemporaryDirectory(prefix="ser-init-") as tmp:
            try:
                build_tiny_checkpoint(tmp, init.preset, init.seed, **init.config)
            except ValueError as exc:
                raise UserError(f"model.preset: {exc}") from None
            return SeRForCaptioning.from_pretrained(tmp, dtype=torch.float32), SeRProcessor.from_pretrained(tmp)
    processor = SeRProcessor.from_pretrained_parts(init.vision_tower, init.language_model)
    model = SeRForCaptioning.from_pretrained_parts(
        init.vision_tower, init.language_model, processor=processor, dtype=torch.float32, **init.config
    )
    return model, processor


def build_dataset(data: DataConfig, stage: Stage):
    """All sources' (image, caption[, initial caption]) pairs as one dataset.

    Stage 2 with `data.first_glance_fraction` f > 0 adds the (image, caption) pairs, repeated so that
    about f of the pairs (and so of every shuffled batch) are first-glance pairs."""
    from torch.utils.data import ConcatDataset

    from captioner.data import READERS
    from captioner.data.readers import CaptionDataset, expand_pairs

    parts = []
    for source in data.train:
        records = READERS[source.format](source.path, split=source.split)
        if source.limit:
            records = records[: source.limit]
        from_data = data.instruction == "from_data"
        pairs = expand_pairs(records, with_initial=stage == "stage2", with_instruction=from_data)
        if stage == "stage2" and data.first_glance_fraction > 0:
            first = expand_pairs(records, with_instruction=from_data)
            f = data.first_glance_fraction
            pairs = pairs + first * max(1, round(f / (1 - f) * len(pairs) / len(first)))
        parts.append(CaptionDataset(pairs, source.image_root, on_missing=data.on_missing_image))
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


@dataclass
class CaptionCollator:
    """Dataset items -> a padded model batch (SeRProcessor.build_training_batch).

    In stage 2 items without an initial caption are first-glance pairs: a batch that mixes both
    kinds becomes {"parts": [refinement batch, first-glance batch]} (see `SeRTrainer`)."""

    processor: Any
    with_initial: bool
    instruction: str | None = None  # None = processor default; "from_data" = per-item

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if self.with_initial and any(item["initial_caption"] is None for item in items):
            refine = [item for item in items if item["initial_caption"] is not None]
            first = [item for item in items if item["initial_caption"] is None]
            return {"parts": [self.batch(part, part is refine) for part in (refine, first) if part]}
        return self.batch(items, self.with_initial)

    def batch(self, items: list[dict[str, Any]], with_initial: bool) -> dict[str, Any]:
        if self.instruction == "from_data":
            instruction = [item.get("instruction") or self.processor.default_instruction for item in items]
        else:
            instruction = self.instruction
        return self.processor.build_training_batch(
            [item["image"] for item in items],
            [item["caption"] for item in items],
            [item["initial_caption"] for item in items] if with_initial else None,
            instruction=instruction,
        )


def _trainer_class():
    from transformers import Trainer

    class SeRTrainer(Trainer):
        """Trainer whose batch may be {"parts": [...]}: the loss is the parts' pair-weighted mean."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "parts" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            sizes = [len(part["input_ids"]) for part in inputs["parts"]]
            loss = sum(model(**part).loss * n for part, n in zip(inputs["parts"], sizes)) / sum(sizes)
            return (loss, None) if return_outputs else loss

    return SeRTrainer


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_arguments(config: TrainConfig):
    """HF TrainingArguments from our config (precision / checkpointing resolved for this device)."""
    import torch
    from transformers import TrainingArguments

    t = config.training
    on_gpu = torch.cuda.is_available()
    precision = t.precision
    if precision == "auto":
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not on_gpu:
        raise UserError(f"training.precision={precision} needs a CUDA GPU; use fp32 (or auto) on CPU")
    checkpointing = on_gpu if t.gradient_checkpointing == "auto" else t.gradient_checkpointing
    accumulation = t.gradient_accumulation_steps
    if t.global_batch_size is not None:
        per_step = t.per_device_train_batch_size * _world_size()
        if t.global_batch_size % per_step:
            raise UserError(
                f"training.global_batch_size={t.global_batch_size} is not a multiple of "
                f"per_device_train_batch_size x GPUs = {per_step}"
            )
        accumulation = t.global_batch_size // per_step
    trainable = config.model.trainable or config.stage
    return TrainingArguments(
        output_dir=t.output_dir,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=t.lr_scheduler_type,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_pin_memory=on_gpu,
        use_cpu=not on_gpu,  # also makes `torchrun` on CPUs run DDP over gloo instead of N independent runs
        remove_unused_columns=False,  # the collator needs the raw image / caption fields
        report_to=t.report_to or "none",
        disable_tqdm=t.disable_tqdm,
        # "all" trains parts the pass does not use (e.g. DeepLens in stage 1): DDP must allow it
        # (so does a stage-2 batch of first-glance pairs only: DeepLens gets no gradient from it)
        ddp_find_unused_parameters=trainable == "all" or config.data.first_glance_fraction > 0,
    )


def resolve_resume(value: bool | str, output_dir: str) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if value is False:
        return None
    if value in (True, "auto"):
        return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    path = Path(value)
    if not path.is_dir():
        raise UserError(f"training.resume_from_checkpoint: {path} is not a directory")
    return str(path)


def _stop_after(steps: int):
    """A callback that ends training after `steps` optimizer steps (checkpoint written first)."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= steps:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopAfter()


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    finished: bool  # False when stopped early by stop_after_steps (a checkpoint is on disk)
    train_loss: float | None
    losses: list[float]  # logged training losses, in order
    runtime_s: float
    trainable: dict[str, int]
    pairs: int
    resumed_from: str | None


def train(
    config: TrainConfig,
    *,
    stop_after_steps: int | None = None,
    callbacks: Sequence[Any] = (),
    command: Sequence[str] | None = None,
) -> TrainResult:
    """Run one stage; returns where the final checkpoint is and the loss history.

    `command` is recorded in the checkpoint's model card (default: this process's argv)."""
    import torch

    from captioner.training.model_card import write_card

    started = time.perf_counter()
    torch.manual_seed(config.training.seed)
    model, processor = build_model_and_processor(config.model, config.stage)
    trainable = model.set_trainable(config.model.trainable or config.stage)
    if config.stage == "stage2" and model.deeplens is None:
        raise UserError("stage2 trains DeepLens, but this checkpoint has none (config.refine=false)")
    dataset = build_dataset(config.data, config.stage)
    args = training_arguments(config)
    output_dir = Path(config.training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resume = resolve_resume(config.training.resume_from_checkpoint, str(output_dir))
    extra = list(callbacks) + ([_stop_after(stop_after_steps)] if stop_after_steps else [])
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=CaptionCollator(processor, config.stage == "stage2", config.data.instruction),
        processing_class=processor,
        callbacks=extra or None,
    )
    logger.info("stage %s: %d pairs, trainable %s, resume from %s", config.stage, len(dataset), trainable, resume)
    output = trainer.train(resume_from_checkpoint=resume)
    state = trainer.state
    finished = state.max_steps > 0 and state.global_step >= state.max_steps
    if finished:
        trainer.save_model(str(output_dir))  # model.safetensors + config + processor (main process only)
        trainer.save_state()
        if args.should_save:
            (output_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the YAML below says it all
            (output_dir / "train_config.yaml").write_text(_dump_yaml(config))
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    result = TrainResult(
        output_dir=output_dir,
        global_step=state.global_step,
        finished=finished,
        train_loss=output.training_loss if math.isfinite(output.training_loss or float("nan")) else None,
        losses=losses,
        runtime_s=time.perf_counter() - started,
        trainable=trainable,
        pairs=len(dataset),
        resumed_from=resume,
    )
    if finished and args.should_save:
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_card(output_dir, config, result, model, command)  # README.md: command, config, data, metrics
    return result


def _dump_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# ---------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="configs/train/<stage>.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument(
        "--stop-after-steps",
        type=int,
        default=None,
        help="save a checkpoint and stop after this many optimizer steps (rerun to resume; for time-limited jobs)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_train_config(args.config, args.set)
    command = ["captioner", "train", "--config", args.config] + [x for item in args.set for x in ("--set", item)]
    result = train(config, stop_after_steps=args.stop_after_steps, command=command)
    if int(os.environ.get("RANK", "0")) != 0:  # one summary line per job, not per process
        return 0
    status = "finished" if result.finished else f"stopped at step {result.global_step} (rerun to resume)"
    loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    print(
        f"{config.stage}: {status}; {result.pairs} pairs, mean train loss {loss}, {result.runtime_s:.0f}s "
        f"-> {result.output_dir}"
    )
    return 0


__all__ = [  # the config classes live in captioner/training/config.py and are part of this module's API
    "train",
    "TrainResult",
    "build_dataset",
    "build_model_and_processor",
    "training_arguments",
    "CaptionCollator",
    "DataConfig",
    "DataSource",
    "ModelInit",
    "Stage",
    "TrainConfig",
    "TrainingConfig",
    "load_train_config",
]
