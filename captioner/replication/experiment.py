"""The experiment's parts, each cached on disk so the full run resumes per seed and per arm.

world       data, tokenizer, stand-ins and the frozen ViT's features (shared by every seed)
stage_one   connector pretraining, then stage 1 with cosine decay to the end of its schedule; the
            schedule length is chosen once on dev (`choose_stage1_steps`: doubled until dev exact
            match stops improving) and every seed retrains stage 1 at that length
lr_sweep    the arms' learning rate, swept on dev for the control (seed 0), then used by every arm
run_arm     one arm from one seed's converged specialist; held-out captions of every draft source
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from captioner.replication import loop, scoring, standins


@dataclass
class World:
    """Data, tokenizer, processor and frozen features shared by every seed."""

    tokenizer: Any
    processor: Any
    pretrained: standins.Pretrained
    scenes: dict[str, list[Any]]  # split -> scenes
    captions: dict[str, list[list[str]]]  # split -> per-image references
    buffers: dict[tuple[str, str], Any]  # (variant, split) -> VisionBuffer of the frozen ViT
    standins_cached: bool = False


class Cache:
    """JSON and safetensors entries under one directory per experiment setting (None: no cache)."""

    def __init__(self, root: Path | None):
        self.root = root
        self.hits = 0
        self.in_memory: dict[str, dict[str, torch.Tensor]] = {}  # weights of this run when there is no root

    def read(self, name: str) -> Any | None:
        path = self.root / f"{name}.json" if self.root else None
        if path is None or not path.is_file():
            return None
        self.hits += 1
        return json.loads(path.read_text())

    def write(self, name: str, value: Any) -> None:
        if self.root is not None:
            path = self.root / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".tmp").write_text(json.dumps(value) + "\n")
            path.with_suffix(".tmp").replace(path)  # whole entries only: a killed run leaves none half-written

    def read_weights(self, name: str) -> dict[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        if self.root is None:
            return self.in_memory.get(name)
        path = self.root / f"{name}.safetensors"
        return load_file(str(path)) if path.is_file() else None

    def write_weights(self, name: str, state: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        if self.root is None:
            self.in_memory[name] = state
            return
        path = self.root / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tied = "language_model.lm_head.weight"  # tied to the input embedding: stored once
        save_file({k: v.contiguous() for k, v in state.items() if k != tied}, str(path))


def cache_root(base: str | None, settings: dict[str, Any]) -> Path | None:
    """One directory per setting and code version (the seeds and arms run are not part of it)."""
    if not base:
        return None
    code = b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")) if p.name != "bench.py")
    digest = hashlib.sha256(code + json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(base).expanduser() / digest


def build_world(settings, variants: set[str], log) -> World:
    from captioner.replication.synth import sample_scenes

    tokenizer = standins.world_tokenizer()
    base = standins.miniature_config("ser", tokenizer)
    processor = standins.miniature_processor(base, tokenizer)
    fields = ("vit_images", "vit_steps", "lm_scenes", "lm_steps", "pretrain_batch_size", "pretrain_lr", "seed")
    key = standins.cache_key(standins.MINIATURE_SIZES, {f: getattr(settings, f) for f in fields})
    cache = Path(settings.cache_dir).expanduser() / key if settings.cache_dir else None
    pretrained = standins.load_cached(cache) if cache is not None else None
    cached = pretrained is not None
    if pretrained is None:
        pretrained = standins.pretrain(
            base,
            tokenizer,
            processor,
            vit_images=settings.vit_images,
            vit_steps=settings.vit_steps,
            lm_scenes=settings.lm_scenes,
            lm_steps=settings.lm_steps,
            batch_size=settings.pretrain_batch_size,
            lr=settings.pretrain_lr,
            seed=settings.seed,
        )
        if cache is not None:
            standins.save_cached(cache, pretrained)
    log(f"stand-ins {'loaded' if cached else 'pretrained'}: {pretrained.report}")
    sizes = {"train": settings.train_images, "dev": settings.dev_images, "test": settings.test_images}
    scenes = {split: sample_scenes(n, f"{split}:{settings.seed}") for split, n in sizes.items()}
    captions = {split: [s.captions() for s in ss] for split, ss in scenes.items()}
    pixels = {split: standins.render(processor, ss) for split, ss in scenes.items()}
    buffers = {}
    for variant in sorted(variants | {"specialist"}):
        encoder = standins.assemble(variant, tokenizer, pretrained, settings.seed)
        for split, px in pixels.items():
            buffers[variant, split] = loop.encode(encoder, px)
    return World(tokenizer, processor, pretrained, scenes, captions, buffers, standins_cached=cached)


def dev_exact(world: World, model, variant: str = "specialist", max_new_tokens: int = 24) -> float:
    """Exact match (%) of the first glance on the dev images."""
    ids = scoring.caption_ids(model, world.processor, world.buffers[variant, "dev"], max_new_tokens=max_new_tokens)
    hits = scoring.exact(scoring.decode(world.processor, ids), world.captions["dev"])
    return round(100 * sum(hits) / len(hits), 1)


def _first_examples(world: World) -> list[loop.Example]:
    return loop.first_glance_examples(range(len(world.captions["train"])), world.captions["train"])


def connector_pretrain(world: World, settings, seed: int):
    model = standins.assemble("specialist", world.tokenizer, world.pretrained, seed)
    firsts = [loop.Example(i, caps[0]) for i, caps in enumerate(world.captions["train"])]
    loop.train(
        model,
        world.processor,
        world.buffers["specialist", "train"],
        loop.Recipe("pretrain", 0.0),
        firsts,
        [],
        steps=settings.connector_steps,
        batch_size=settings.batch_size,
        lr=settings.connector_lr,
        seed=seed,
    )
    return model


def train_stage1(world: World, settings, pretrained_model, steps: int, seed: int, curve: bool) -> tuple[Any, dict]:
    """Stage 1 from the connector-pretrained model: cosine decay to the end of `steps` (no early stop)."""
    model = standins.assemble("specialist", world.tokenizer, world.pretrained, seed)
    standins.load_stage(model, standins.weights(pretrained_model))
    points: list[tuple[int, float]] = []

    def check(step: int) -> bool:
        points.append((step, dev_exact(world, model, max_new_tokens=settings.max_new_tokens)))
        return False  # a curve, never a stopping rule

    log = loop.train(
        model,
        world.processor,
        world.buffers["specialist", "train"],
        loop.Recipe("stage1", 0.0),
        _first_examples(world),
        [],
        steps=steps,
        batch_size=settings.batch_size,
        lr=settings.stage1_lr,
        seed=seed,
        check=check if curve else None,
        check_every=max(1, steps // settings.curve_points),
    )
    final = points[-1][1] if points and points[-1][0] == steps else dev_exact(world, model, "specialist")
    return model, {"schedule_steps": steps, "dev_exact_curve": points, "final_dev_exact": final, "log": asdict(log)}


def choose_stage1_steps(world: World, settings, cache: Cache, log) -> dict[str, Any]:
    """Double stage 1's schedule (cosine to the end each time, from the same connector) until dev exact
    match gains less than `plateau_points`, or `stage1_max_steps`; the last schedule run is kept."""
    found = cache.read("stage1_schedule")
    if found is not None:
        return found
    pretrained_model = connector_pretrain(world, settings, settings.seed)
    runs: list[dict[str, Any]] = []
    steps = settings.stage1_steps
    while True:
        model, run = train_stage1(world, settings, pretrained_model, steps, settings.seed, curve=True)
        runs.append(run)
        log(f"stage 1 schedule {steps} steps: dev exact match {run['final_dev_exact']}%")
        gain = run["final_dev_exact"] - runs[-2]["final_dev_exact"] if len(runs) > 1 else None
        if (gain is not None and gain < settings.plateau_points) or steps * 2 > settings.stage1_max_steps:
            break
        steps *= 2
    result = {
        "chosen_steps": steps,
        "chosen_log": run["log"],
        "plateau_points": settings.plateau_points,
        "plateaued": gain is not None and gain < settings.plateau_points,
        "runs": [{k: v for k, v in r.items() if k != "log"} for r in runs],
    }
    cache.write_weights(f"seed{settings.seed}/stage1", standins.weights(model))
    cache.write("stage1_schedule", result)
    return result


def stage_one(
    world: World, settings, seed: int, steps: int, cache: Cache, log, known_log: dict | None = None
) -> dict[str, Any]:
    """One seed's converged specialist (cached): weights, its held-out drafts, its dev score.
    `known_log`: the training log of weights already on disk (seed 0: the schedule search's last run)."""
    model = standins.assemble("specialist", world.tokenizer, world.pretrained, seed)
    state = cache.read_weights(f"seed{seed}/stage1")
    meta = cache.read(f"seed{seed}/stage1")
    if state is None or meta is None:
        if state is None:
            model, run = train_stage1(world, settings, connector_pretrain(world, settings, seed), steps, seed, False)
            cache.write_weights(f"seed{seed}/stage1", standins.weights(model))
            meta = {"final_dev_exact": run["final_dev_exact"], "log": run["log"]}
        else:
            standins.load_stage(model, state)
            meta = {
                "final_dev_exact": dev_exact(world, model, max_new_tokens=settings.max_new_tokens),
                "log": known_log,
            }
        ids = scoring.caption_ids(
            model, world.processor, world.buffers["specialist", "test"], max_new_tokens=settings.max_new_tokens
        )
        meta |= {"steps": steps, "test_ids": ids, "test_texts": scoring.decode(world.processor, ids)}
        cache.write(f"seed{seed}/stage1", meta)
        log(f"seed {seed}: stage 1 ({steps} steps) dev exact match {meta['final_dev_exact']}%")
    weights = cache.read_weights(f"seed{seed}/stage1") or standins.weights(model)
    return meta | {"weights": weights}


def load_specialist(model, weights: dict[str, torch.Tensor]) -> None:
    """The specialist's weights into any arm's model. A connector that reads more layers
    (single_glance_multilayer) gets the specialist's first-layer weights on the first-glance layer's
    slice (the last of the concatenated layers) and zeros elsewhere: it starts as the specialist."""
    state = dict(weights)
    key = "connector.0.weight"
    wide = model.state_dict()[key]
    if wide.shape != state[key].shape:
        widened = torch.zeros_like(wide)
        widened[:, -state[key].shape[1] :] = state[key]
        state[key] = widened
    standins.load_stage(model, state)


def pair_self_drafts(drafts: list[str], references: list[list[str]]) -> list[list[list[str]]]:
    """Data 1: each image's own draft is paired with the one reference it came closest to (word
    sequences, difflib's ratio), not with every phrasing: drafts[image][caption] = [draft] or []."""

    def closeness(draft: str, reference: str) -> float:
        return difflib.SequenceMatcher(None, draft.split(), reference.split()).ratio()

    out = []
    for draft, refs in zip(drafts, references):
        best = max(range(len(refs)), key=lambda j: closeness(draft, refs[j]))
        out.append([[draft] if j == best else [] for j in range(len(refs))])
    return out


def drafts_for(kind: str, world: World, settings, seed: int, stage1: dict[str, Any]) -> list:
    """Training pseudo-initial captions: drafts[image][caption] = [draft, ...]."""
    from captioner.replication.synth import PERTURB_VOCABULARY
    from captioner.training.pseudo_initial import LexicalPerturber

    captions = world.captions["train"]
    if kind in ("lexical", "one-edit"):
        weights = (0.0, 1.0, 0.0, 0.0) if kind == "one-edit" else (0.15, 0.35, 0.3, 0.2)
        perturber = LexicalPerturber(
            seed=seed, edit_weights=weights, extra_groups=PERTURB_VOCABULARY, default_vocabulary=False
        )
        return [[perturber.perturb_many(c, settings.pseudo_per_caption) for c in caps] for caps in captions]
    if kind != "self":
        raise ValueError(f"unknown pseudo-initial kind {kind!r}")
    # Cross-fitted: a stage-1 model trained on one half drafts the other half (half the steps each).
    own: dict[int, str] = {}
    buffer = world.buffers["specialist", "train"]
    pretrained_model = connector_pretrain(world, settings, seed)
    for fold in (0, 1):
        rows = [i for i in range(len(captions)) if i % 2 != fold]
        model = standins.assemble("specialist", world.tokenizer, world.pretrained, seed)
        standins.load_stage(model, standins.weights(pretrained_model))
        loop.train(
            model,
            world.processor,
            buffer,
            loop.Recipe("stage1", 0.0),
            loop.first_glance_examples(rows, [captions[i] for i in rows]),
            [],
            steps=max(1, stage1["steps"] // 2),
            batch_size=settings.batch_size,
            lr=settings.stage1_lr,
            seed=seed + 7 + fold,
        )
        held = [i for i in range(len(captions)) if i % 2 == fold]
        ids = scoring.caption_ids(model, world.processor, buffer.select(held), max_new_tokens=settings.max_new_tokens)
        own.update(zip(held, scoring.decode(world.processor, ids)))
    return pair_self_drafts([own[i] for i in range(len(captions))], captions)


def test_drafts(world: World, seed: int, one_edit: bool) -> list[str]:
    """Held-out pseudo-initials, one per test image (a reference chosen by the image's index)."""
    from captioner.replication.synth import PERTURB_VOCABULARY
    from captioner.training.pseudo_initial import LexicalPerturber

    weights = (0.0, 1.0, 0.0, 0.0) if one_edit else (0.15, 0.35, 0.3, 0.2)
    perturber = LexicalPerturber(
        seed=1000 + seed, edit_weights=weights, extra_groups=PERTURB_VOCABULARY, default_vocabulary=False
    )
    return [perturber.perturb_many(refs[i % len(refs)], 1)[0] for i, refs in enumerate(world.captions["test"])]


def arm_model(arm: loop.Arm, world: World, seed: int, weights: dict[str, torch.Tensor]):
    model = standins.assemble(arm.variant, world.tokenizer, world.pretrained, seed + 1)  # fresh DeepLens
    load_specialist(model, weights)
    return model


def train_arm(arm: loop.Arm, world: World, settings, seed: int, stage1: dict, steps: int, lr: float, drafts):
    model = arm_model(arm, world, seed, stage1["weights"])
    captions = world.captions["train"]
    refine = [] if arm.drafts is None else loop.refinement_examples(range(len(captions)), captions, drafts)
    log = loop.train(
        model,
        world.processor,
        world.buffers[arm.variant, "train"],
        arm.recipe,
        _first_examples(world),
        refine,
        steps=steps,
        batch_size=settings.batch_size,
        lr=lr,
        seed=seed,
    )
    return model, log


def lr_sweep(world: World, settings, stage1: dict, steps: int, cache: Cache, log) -> dict[str, Any]:
    """The control's dev exact match per learning rate (seed 0); the best (ties: the larger) is used
    by every arm."""
    found = cache.read("lr_sweep")
    if found is not None:
        return found
    dev = {}
    for lr in settings.lr_grid:
        model, _ = train_arm(loop.ARMS["control"], world, settings, settings.seed, stage1, steps, lr, None)
        dev[str(lr)] = dev_exact(world, model, max_new_tokens=settings.max_new_tokens)
        log(f"control at lr {lr:g}: dev exact match {dev[str(lr)]}%")
    chosen = max(settings.lr_grid, key=lambda lr: (dev[str(lr)], lr))
    result = {"dev_exact_by_lr": dev, "chosen_lr": chosen, "start_dev_exact": stage1["final_dev_exact"]}
    cache.write("lr_sweep", result)
    return result


def run_arm(arm: loop.Arm, world: World, settings, seed: int, stage1: dict, steps: int, lr: float, drafts) -> dict:
    """Train one arm and caption the held-out images from every draft source (captions only: the
    scores are computed when the report is assembled, so a cached entry never goes stale)."""
    model, train_log = train_arm(arm, world, settings, seed, stage1, steps, lr, drafts)
    buffer, tokens = world.buffers[arm.variant, "test"], settings.max_new_tokens
    first_ids = scoring.caption_ids(model, world.processor, buffer, max_new_tokens=tokens)
    out: dict[str, Any] = {"first_glance": scoring.decode(world.processor, first_ids), "train": asdict(train_log)}
    if arm.name in loop.REFINERS:
        proc = world.processor

        def refine(drafts_ids) -> list[str]:
            return scoring.decode(proc, scoring.caption_ids(model, proc, buffer, drafts_ids, max_new_tokens=tokens))

        def ids_of(texts: list[str]) -> list[list[int]]:
            return [proc.encode_caption(t) for t in texts]

        lexical, oracle = test_drafts(world, seed, one_edit=False), test_drafts(world, seed, one_edit=True)
        out |= {
            "refined": refine(first_ids),
            "stage1_drafts_refined": refine(stage1["test_ids"]),
            "lexical_drafts": lexical,
            "lexical_refined": refine(ids_of(lexical)),
            "oracle_drafts": oracle,
            "oracle_refined": refine(ids_of(oracle)),
        }
    return out
