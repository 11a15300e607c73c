"""The training stages of the miniature, on ViT features computed once.

The ViT is frozen in every stage (Sec. 3.1; Tab. 15 never lists it as trainable), so its features
are a fixed function of the image: they are computed once per image (`SeRForCaptioning.encode_images`)
and every step reads them back (`forward(vision_buffer=...)`), which is what makes 3 seeds x 7 arms
fit in minutes. Everything else is the model's own code: `set_trainable(stage)` picks Tab. 15's
trainable set, `SeRProcessor.build_text_batch` builds the rows and labels, the loss is the model's.
Optimiser as in App. H.1: AdamW, weight decay 0, warm-up ratio 0.03, cosine decay, grad-norm clip 1.

Arms (all start from the same converged stage-1 weights and run the same steps x batch size):

    control                   stage 1 continued: connector + LM, first-glance loss on (image, GT)
    ser_paper                 stage 2 as written (Sec. 5): DeepLens + LM, refinement loss only
    ser_protected             DeepLens + LM; each batch is half refinement pairs, half first-glance
                              (image, GT) pairs, so the shared LM keeps its first glance (see below)
    single_glance_multilayer  Tab. 3's "single glance + (2)": one pass whose connector also reads the
                              DeepLens layers (connector + LM, first-glance loss; the specialist's
                              connector widened with zero weights on the new layers, so it starts
                              as the specialist)
    oracle_draft              as ser_paper, on drafts with exactly one lexical edit, and scored on
                              held-out one-edit drafts: the refiner's capacity, not a deployable arm
    optional: ser_self (as ser_paper on the stage-1 model's own drafts, Data 1), ser_caption_only
    and ser_multilayer_only (Tab. 3's inputs, as ser_protected)

Why ser_protected is allowed by the paper: at inference "the same LM" writes the first glance and
then refines (Sec. 4, "One More Glance"), and stage 2 trains "Adapters + Language Model" (Tab. 15),
so stage 2 must leave the first glance usable. The paper does not say how; its Data 4 already feeds
the ground truth as a draft, i.e. stage 2 is not restricted to pure correction pairs.
The connector stays frozen (Tab. 15: DeepLens + LM), so the first-glance half trains the LM only.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Example:
    image: int  # row of the image in the cached features
    caption: str  # the target (a ground-truth caption)
    initial: str | None = None  # the draft a refinement pass reads; None = a first-glance example


@dataclass(frozen=True)
class Recipe:
    trainable: str  # `SeRForCaptioning.set_trainable` stage: "pretrain" | "stage1" | "stage2"
    refine_fraction: float  # share of every batch that is refinement examples (0: first glance only)


@dataclass(frozen=True)
class Arm:
    name: str
    variant: str  # Tab. 3 model variant (captioner.presets.VARIANTS)
    recipe: Recipe
    drafts: str | None  # pseudo-initial captions: "lexical" (Data 3) | "gt-mix" (Data 4) | "self" (Data 1)


PROTECTED = Recipe("stage2", 0.5)
PAPER = Recipe("stage2", 1.0)
ARMS: dict[str, Arm] = {
    "control": Arm("control", "specialist", Recipe("stage1", 0.0), None),
    "ser_paper": Arm("ser_paper", "ser", PAPER, "lexical"),
    "ser_protected": Arm("ser_protected", "ser", PROTECTED, "lexical"),
    "single_glance_multilayer": Arm(
        "single_glance_multilayer", "single-glance-multilayer", Recipe("stage1", 0.0), None
    ),
    "oracle_draft": Arm("oracle_draft", "ser", PAPER, "one-edit"),
    "ser_self": Arm("ser_self", "ser", PAPER, "self"),
    "ser_caption_only": Arm("ser_caption_only", "ser-caption-only", PROTECTED, "lexical"),
    "ser_multilayer_only": Arm("ser_multilayer_only", "ser-multilayer-only", PROTECTED, "lexical"),
}
DEFAULT_ARMS = ("control", "ser_paper", "ser_protected", "single_glance_multilayer", "oracle_draft")
REFINERS = ("ser_paper", "ser_protected", "oracle_draft", "ser_self", "ser_caption_only", "ser_multilayer_only")


class Sampler:
    """Epoch-wise shuffled examples, as Trainer's sampler: each example once per pass."""

    def __init__(self, examples: Sequence[Example], seed: int):
        if not examples:
            raise ValueError("no training examples")
        self.examples = list(examples)
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def take(self, n: int) -> list[Example]:
        out: list[Example] = []
        while len(out) < n:
            if not self.order:
                self.order = torch.randperm(len(self.examples), generator=self.generator).tolist()
            out.append(self.examples[self.order.pop()])
        return out


def batch_loss(model, processor, buffer, examples: Sequence[Example], refine: bool) -> torch.Tensor:
    """The model's token-mean cross-entropy on one batch (refinement rows read their draft)."""
    batch = processor.build_text_batch(
        [e.caption for e in examples], [e.initial or "" for e in examples] if refine else None
    )
    rows = torch.tensor([e.image for e in examples])
    return model(vision_buffer=buffer.select(rows), **batch).loss


@dataclass
class TrainLog:
    steps: int
    batch_size: int
    losses: list[float] = field(default_factory=list)  # every 10th step's loss
    seconds: float = 0.0
    flops: float = 0.0  # forward + backward FLOPs of all steps (first step measured x steps)
    trainable: dict[str, int] = field(default_factory=dict)
    vision_gradient: bool = False  # did any gradient reach the ViT (must stay False)
    stopped_early: bool = False


def train(
    model,
    processor,
    buffer,
    recipe: Recipe,
    first: Sequence[Example],
    refine: Sequence[Example],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    schedule: str = "cosine",
    check: Callable[[int], bool] | None = None,
    check_every: int = 0,
) -> TrainLog:
    """`steps` optimiser steps of `recipe` (in place). `check(step)` returning True stops early."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import get_scheduler

    torch.manual_seed(seed)
    log = TrainLog(steps=0, batch_size=batch_size, trainable=model.set_trainable(recipe.trainable))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = get_scheduler(schedule, optimizer, num_warmup_steps=math.ceil(0.03 * steps), num_training_steps=steps)
    n_refine = round(batch_size * recipe.refine_fraction)
    parts = [
        (n, Sampler(examples, seed + k), k == 1)
        for k, (n, examples) in enumerate(((batch_size - n_refine, first), (n_refine, refine)))
        if n
    ]
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        counter = FlopCounterMode(display=False) if step == 0 else None
        with counter if counter is not None else contextlib.nullcontext():
            loss = (
                sum(
                    n * batch_loss(model, processor, buffer, sampler.take(n), is_refine)
                    for n, sampler, is_refine in parts
                )
                / batch_size
            )
            loss.backward()
        if counter is not None:
            log.flops = float(counter.get_total_flops()) * steps
        log.vision_gradient |= any(p.grad is not None for p in model.vision_tower.parameters())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        log.steps = step + 1
        if step % 10 == 0 or step == steps - 1:
            log.losses.append(round(float(loss.detach()), 4))
        if check is not None and check_every and log.steps % check_every == 0:
            model.eval()
            stop = check(log.steps)
            model.train()
            if stop:
                log.stopped_early = log.steps < steps
                log.flops = log.flops / steps * log.steps
                break
    model.eval()
    log.seconds = round(time.perf_counter() - started, 2)
    return log


def first_glance_examples(images: Sequence[int], captions: Sequence[Sequence[str]]) -> list[Example]:
    """(image, GT caption) pairs: one per caption, as `captioner.data.expand_pairs` makes them."""
    return [Example(i, c) for i, caps in zip(images, captions) for c in caps]


def refinement_examples(
    images: Sequence[int], captions: Sequence[Sequence[str]], drafts: Sequence[Sequence[Sequence[str]]]
) -> list[Example]:
    """(image, draft, GT caption): `drafts[k][j]` are the pseudo-initial captions of `captions[k][j]`."""
    return [Example(i, c, d) for i, caps, ds in zip(images, captions, drafts) for c, dd in zip(caps, ds) for d in dd]


def encode(model, pixels: torch.Tensor, chunk: int = 256):
    """The frozen ViT's features of every image, once (a `VisionBuffer` over all rows)."""
    from captioner.modeling.modeling_ser import VisionBuffer

    with torch.no_grad():
        parts = [model.encode_images(pixels[i : i + chunk]) for i in range(0, len(pixels), chunk)]
    deeplens = None if parts[0].deeplens is None else torch.cat([p.deeplens for p in parts])
    return VisionBuffer(torch.cat([p.first_glance for p in parts]), deeplens)
