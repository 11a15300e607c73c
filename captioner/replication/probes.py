"""What each ViT layer the arms read actually holds: held-out linear probes, and the headroom.

The miniature's premise (the paper's Sec. 4, Analysis 2) is that the layer the first glance reads
is coarse and the layers DeepLens reads are not. Built in by the stand-in ViT's pretraining
(captioner/replication/standins.py), it is measured here, never assumed:

* per patch (16 tokens per image): occupancy (all patches), colour and shape (occupied patches);
* per image, from the 16 patch tokens side by side: the first group's count and the layout
  (single / left-right / above-below), i.e. group count and position.

Each probe is a multinomial logistic regression on standardised features (L2, full-batch L-BFGS),
fitted on probe-train images and scored on probe-test images that share nothing with them.
`chance` is the held-out share of the probe-train's majority class: what a probe that reads nothing
scores.

Headroom: the share of held-out captions that depend on a detail the first glance cannot read, i.e.
a shape other than the world's modal one (`synth.needs_hidden_detail`); only there can a sharper
second look add anything over the best shape-blind guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

PATCH_PROBES = ("occupancy", "colour", "shape")
IMAGE_PROBES = ("group_count", "position")
LAYOUTS = ("single", "horizontal", "vertical")


@dataclass
class ProbeData:
    """Labels of one probe split: per patch (N, P) and per image (N,)."""

    occupancy: torch.Tensor
    colour: torch.Tensor  # -1 on empty patches
    shape: torch.Tensor  # -1 on empty patches
    group_count: torch.Tensor  # the first group's count, 1-3
    position: torch.Tensor  # index into LAYOUTS


def probe_labels(scenes: Sequence[Any]) -> ProbeData:
    from captioner.replication.synth import patch_facts, patch_labels

    facts = torch.tensor([[patch_facts(label) for label in patch_labels(s)] for s in scenes])  # (N, P, 3)
    return ProbeData(
        occupancy=facts[..., 0],
        colour=facts[..., 1],
        shape=facts[..., 2],
        group_count=torch.tensor([s.first.count for s in scenes]),
        position=torch.tensor([LAYOUTS.index(s.layout) for s in scenes]),
    )


def linear_probe(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, l2: float = 1e-3
) -> dict[str, float]:
    """Held-out accuracy (%) of a multinomial logistic regression, and the majority-class chance."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xs, xt = (x_train - mean) / std, (x_test - mean) / std
    classes = int(max(y_train.max(), y_test.max())) + 1
    weight = torch.zeros(xs.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ weight + bias, y_train) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        accuracy = (xt @ weight + bias).argmax(-1).eq(y_test).float().mean().item()
    majority = torch.bincount(y_train, minlength=classes).argmax()
    return {"accuracy": round(100 * accuracy, 1), "chance": round(100 * y_test.eq(majority).float().mean().item(), 1)}


def layer_states(tower, pixels: torch.Tensor, layers: Sequence[int], chunk: int = 256) -> dict[int, torch.Tensor]:
    """Patch tokens (CLS dropped) of `layers` for every image: {layer: (N, P, C)}."""
    parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for start in range(0, len(pixels), chunk):
            states = tower(pixels[start : start + chunk], keep_states=list(layers))
            for layer in layers:
                parts[layer].append(states[layer][:, 1:])
    return {layer: torch.cat(chunks) for layer, chunks in parts.items()}


def probe_layers(tower, train: tuple[torch.Tensor, ProbeData], test: tuple[torch.Tensor, ProbeData], layers) -> dict:
    """{"layer N": {probe: {accuracy, chance}}} for every layer in `layers`."""
    (px_train, y_train), (px_test, y_test) = train, test
    states_train, states_test = layer_states(tower, px_train, layers), layer_states(tower, px_test, layers)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for layer in layers:
        a, b = states_train[layer], states_test[layer]
        result = {}
        for name in PATCH_PROBES:
            ya, yb = getattr(y_train, name), getattr(y_test, name)
            keep_a = y_train.occupancy.bool() if name != "occupancy" else torch.ones_like(ya, dtype=torch.bool)
            keep_b = y_test.occupancy.bool() if name != "occupancy" else torch.ones_like(yb, dtype=torch.bool)
            result[name] = linear_probe(a[keep_a], ya[keep_a], b[keep_b], yb[keep_b])
        for name in IMAGE_PROBES:
            result[name] = linear_probe(a.flatten(1), getattr(y_train, name), b.flatten(1), getattr(y_test, name), 1e-2)
        out[f"layer {layer}"] = result
    return out


def premise(probes: dict, first_glance_layer: int, deeplens_layers: Sequence[int], margin: float = 10.0) -> dict:
    """The thresholds of issue 17: first-glance shape probe <= chance + `margin`, best DeepLens layer >= 90 %."""
    first = probes[f"layer {first_glance_layer}"]["shape"]
    best_layer = max(deeplens_layers, key=lambda layer: probes[f"layer {layer}"]["shape"]["accuracy"])
    best = probes[f"layer {best_layer}"]["shape"]["accuracy"]
    return {
        "first_glance_layer": first_glance_layer,
        "first_glance_shape": first["accuracy"],
        "shape_chance": first["chance"],
        "first_glance_is_coarse": first["accuracy"] <= first["chance"] + margin,
        "best_deeplens_layer": best_layer,
        "best_deeplens_shape": best,
        "deeplens_sees_shape": best >= 90.0,
    }


def headroom(scenes: Sequence[Any]) -> dict[str, Any]:
    from captioner.replication.synth import MODAL_SHAPE, needs_hidden_detail

    hidden = [needs_hidden_detail(s) for s in scenes]
    return {
        "fraction": round(sum(hidden) / max(1, len(hidden)), 3),
        "images": len(hidden),
        "definition": f"held-out captions naming a shape other than '{MODAL_SHAPE}' (the best shape-blind guess): "
        "only a look at a shape can get them right",
    }


def run_probes(tower, processor, layers: Sequence[int], n_train: int, n_test: int, seed: int) -> dict:
    """Probe `layers` of the frozen ViT on fresh scenes (never the captioning data)."""
    from captioner.replication.standins import render
    from captioner.replication.synth import sample_scenes

    scenes_train = sample_scenes(n_train, f"probe-train:{seed}")
    scenes_test = sample_scenes(n_test, f"probe-test:{seed}")
    train = (render(processor, scenes_train), probe_labels(scenes_train))
    test = (render(processor, scenes_test), probe_labels(scenes_test))
    return probe_layers(tower, train, test, layers)
