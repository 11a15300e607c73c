"""The model card (README.md) written next to every trained checkpoint.

No SeR weights are published, so every checkpoint anyone uses was made with this repository's
recipe; the card says how: the command, the resolved config, the data it read, what training
reached, and (once `captioner eval --model DIR` has scored it) the held-out metrics.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CARD = "README.md"
METRICS_FILE = "eval_metrics.json"  # written by `record_metrics`, read back into the card
STATE_FILE = "card_state.json"  # what the card is rendered from (so metrics can be added later)

PAPER = (
    'Sharp-Eyed Refinement (SeR), "One More Glance with Sharp Eyes: Rethinking Lightweight Captioning '
    'as a Practical Visual Specialist"'
)
STAGE_TEXT = {
    "pretrain": "connector pretraining (App. H.1): the MLP connector only; vision tower and LM frozen",
    "stage1": "fine-tuning stage 1 (Sec. 5): connector + LM on (image, caption); a single-pass specialist",
    "stage2": "fine-tuning stage 2 (Sec. 5): DeepLens + LM on (image, pseudo-initial caption) -> caption",
}


def render_card(
    *,
    stage: str,
    config_yaml: str,
    data: Sequence[Mapping[str, Any]],
    training: Mapping[str, Any],
    command: Sequence[str],
    variant: str,
    parameters: Mapping[str, int],
    metrics: Mapping[str, Any] | None = None,
) -> str:
    rows = "\n".join(
        f"| {d.get('path')} | {d.get('format', 'auto')} | {d.get('split') or '-'} | {d.get('image_root')} |"
        for d in data
    )
    params = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in parameters.items())
    lines = [
        "---",
        "library_name: transformers",
        "tags: [image-captioning, sharp-eyed-refinement, ser]",
        "---",
        "",
        f"# SeR checkpoint: {stage} ({variant})",
        "",
        f"Trained with this repository's reproduction of {PAPER}. The authors released no weights.",
        "",
        f"- stage: {STAGE_TEXT.get(stage, stage)}",
        f"- parameters: {params}",
        f"- optimiser steps: {training.get('global_step')}, training pairs: {training.get('pairs')}, "
        f"final logged loss: {training.get('final_loss')}, wall time: {training.get('runtime_s', 0):.0f} s",
        f"- trainable parameters per part: {json.dumps(training.get('trainable', {}))}",
        "",
        "## Command",
        "",
        "```bash",
        " ".join(shlex.quote(c) for c in command),
        "```",
        "",
        "## Data",
        "",
        "| annotation file | format | split | image root |",
        "|---|---|---|---|",
        rows,
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += [
            "Held-out scores from `captioner eval` (x100; CIDEr is CIDEr-D):",
            "",
            "| " + " | ".join(metrics["scores"]) + " | images | references |",
            "|" + "---|" * (len(metrics["scores"]) + 2),
            "| "
            + " | ".join(f"{v:.2f}" for v in metrics["scores"].values())
            + f" | {metrics.get('num_images', '?')} | {metrics.get('references', '?')} |",
        ]
    else:
        lines += [
            "Not evaluated yet: `captioner eval --model <this directory> --references <file> --json <out>` "
            "scores it (then `captioner.model_card.record_metrics` adds the table here)."
        ]
    lines += ["", "## Config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    return "\n".join(lines)


def write_card(output_dir: str | Path, config, result, model, command: Sequence[str] | None = None) -> Path:
    """README.md for a finished `captioner.train.train` run (`config`: TrainConfig, `result`: TrainResult)."""
    import yaml

    from captioner.modeling.describe import count_parameters

    output_dir = Path(output_dir)
    dump = config.model_dump(mode="json")
    state = {
        "stage": config.stage,
        "config_yaml": yaml.safe_dump(dump, sort_keys=False),
        "data": dump["data"]["train"],
        "training": {
            "global_step": result.global_step,
            "pairs": result.pairs,
            "runtime_s": result.runtime_s,
            "final_loss": round(result.losses[-1], 4) if result.losses else None,
            "trainable": result.trainable,
        },
        "command": list(command or [Path(sys.argv[0]).name, *sys.argv[1:]]),
        "variant": model.config.variant,
        "parameters": count_parameters(model),
    }
    (output_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    metrics_path = output_dir / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    (output_dir / CARD).write_text(render_card(**state, metrics=metrics))
    return output_dir / CARD


def record_metrics(model_dir: str | Path, scores: Mapping[str, float], num_images: int, references: str) -> Path | None:
    """Store held-out scores with a checkpoint and re-render its card (no card state: nothing to do)."""
    model_dir = Path(model_dir)
    state_path = model_dir / STATE_FILE
    if not state_path.is_file():
        return None
    metrics = {"scores": dict(scores), "num_images": num_images, "references": references}
    (model_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    state = json.loads(state_path.read_text())
    (model_dir / CARD).write_text(render_card(**state, metrics=metrics))
    return model_dir / CARD
