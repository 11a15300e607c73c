"""`captioner describe --preset NAME`: parameter counts of a preset, built on the meta device
(no memory for weights, no download), as JSON {"vision", "connector", "deeplens", "lm", "total"}."""

from __future__ import annotations

import argparse
import json

import torch

from captioner.modeling.modeling_ser import SeRForCaptioning
from captioner.modeling.presets import PRESETS, get_config

# the paper's sizes (Sec. 3.1, Sec. 6, App. C) that the full presets should match within 5%
PAPER_PARAMETERS = {"specialist": {"total": 450e6}, "ser": {"total": 500e6, "deeplens": 50e6}}


def count_parameters(model) -> dict[str, int]:
    """Unique parameters per part (the LM's tied input/output embedding counts once)."""
    parts = {
        "vision": model.vision_tower,
        "connector": model.connector,
        "deeplens": model.deeplens,
        "lm": model.language_model,
    }
    counts = {
        name: 0 if module is None else sum(p.numel() for p in module.parameters()) for name, module in parts.items()
    }
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def describe_preset(preset: str, **overrides) -> dict[str, int]:
    config = get_config(preset, **overrides)
    with torch.device("meta"):
        model = SeRForCaptioning(config)
    return count_parameters(model)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", required=True, choices=PRESETS, help="model preset (see captioner/modeling/presets.py)"
    )


def run(args: argparse.Namespace) -> int:
    print(json.dumps(describe_preset(args.preset)))
    return 0
