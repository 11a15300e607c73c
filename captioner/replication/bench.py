"""`captioner synth-bench [--quick] [--seeds N] [--json F]`: does one more glance help, at equal compute?

A faithful CPU-sized miniature of the paper's training (Sec. 5, App. H.1, Tab. 3, Tab. 15, App. D.5)
on rendered shapes (captioner/replication/synth.py), with the real SeR model code:

1. pretrained stand-ins (captioner/replication/standins.py, cached): a tiny ViT pretrained on the
   image domain by classification (never sees a caption), frozen from then on, as CLIP is; a tiny
   OPT pretrained on caption-like text, as OPT is;
2. connector pretraining (connector only; LCS-558K's role), then stage 1 (connector + LM), stopped
   at the first check where at most `stage1_target_wrong` % of held-out (dev) drafts are wrong, so
   that stage 1 leaves fine-detail errors (counts, colours, shapes, positions) to fix;
3. from the stage-1 weights, every arm (captioner/replication/loop.py) runs the same optimiser steps
   (`stage2_ratio` x stage 1's, or `arm_steps`) at the same batch size; SeR arms add a fresh
   DeepLens and train DeepLens + LM, the ViT frozen;
4. the best of ser_paper / ser_protected is rerun with the other pseudo-initial captions of App. D.5:
   `gt-mix` (Data 4: one lexical edit + the GT itself) and `self` (Data 1: the stage-1 model's own
   drafts, cross-fitted: two half-data stage-1 models each draft the half they did not train on);
5. held-out images are captioned by each arm: its first glance, its refinement of that, and its
   refinement of the stage-1 model's drafts; BLEU-4, CIDEr-D, exact match, fixes vs breaks; mean ± sd
   over seeds. As in the paper, one set of pretrained parts and one stage-1 specialist are the common
   starting point (stand-ins, data and stage 1 are shared); the seeds vary what the arms compare:
   DeepLens's initialisation, batch order and the sampled pseudo-initial captions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioner.replication import loop, scoring, standins


@dataclass
class SynthSettings:
    train_images: int = 1200
    dev_images: int = 100  # stage 1's stopping rule reads these (never the test images)
    test_images: int = 200
    seeds: int = 3
    # pretrained stand-ins (shared by --quick and the full run, so one cached copy serves both)
    vit_images: int = 4000  # the ViT's own pretraining images (class labels, no captions)
    vit_steps: int = 1000
    lm_scenes: int = 1500  # caption-like text: 3 sentences per scene
    lm_steps: int = 300
    pretrain_batch_size: int = 32
    pretrain_lr: float = 2e-3
    connector_steps: int = 300  # connector pretraining (paper: 1 epoch of LCS-558K)
    connector_lr: float = 3e-3
    stage1_max_steps: int = 4000
    stage1_target_wrong: float = 50.0  # % of dev drafts wrong at which stage 1 stops (issue 10: 30-50 %)
    check_every: int = 100
    # Every arm's optimiser steps: stage2_ratio x stage 1's (Tab. 14 / 15: stage 2 is 2 epochs over 3
    # pseudo-initials per caption = 6 passes over the captions, stage 1 is 10: 0.6), or arm_steps if set.
    stage2_ratio: float = 0.6
    arm_steps: int | None = None
    batch_size: int = 32
    lr: float = 3e-3  # stage 1 and every arm (the paper uses one fine-tuning rate for both stages)
    pseudo_per_caption: int = 3  # App. F.1
    arms: tuple[str, ...] = tuple(loop.ARMS)
    data_variants: bool = True  # rerun the best SeR arm with gt-mix and self drafts
    max_new_tokens: int = 24
    seed: int = 0
    # the pretrained stand-ins are cached here like downloaded checkpoints (None: always pretrain)
    cache_dir: str | None = "~/.cache/videoqa/synth-standins"
    # One intra-op thread: on a shared 2-core machine two threads stall each other, and the tiny
    # matmuls gain little from a second one anyway.
    threads: int = 1


# --quick: fewer images, and the arms get a fixed 250 steps instead of 0.6 x stage 1's (same for all arms)
QUICK = dict(train_images=600, test_images=100, stage1_max_steps=2000, arm_steps=250)


@dataclass
class World:
    """Data, tokenizer, processor and frozen features shared by every seed."""

    tokenizer: Any
    processor: Any
    pretrained: standins.Pretrained
    captions: dict[str, list[list[str]]]  # split -> per-image references
    buffers: dict[tuple[str, str], Any]  # (variant, split) -> VisionBuffer of the frozen ViT
    standins_cached: bool = False


def build_world(settings: SynthSettings, log) -> World:
    from captioner.replication.synth import sample_scenes

    tokenizer = standins.world_tokenizer()
    base = standins.miniature_config("ser", tokenizer)
    processor = standins.miniature_processor(base, tokenizer)
    pretrain_fields = ("vit_images", "vit_steps", "lm_scenes", "lm_steps", "pretrain_batch_size", "pretrain_lr", "seed")
    key = standins.cache_key(standins.MINIATURE_SIZES, {f: getattr(settings, f) for f in pretrain_fields})
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
        log(f"stand-ins pretrained: {pretrained.report}")
    else:
        log(f"stand-ins loaded from {cache}: {pretrained.report}")
    sizes = {"train": settings.train_images, "dev": settings.dev_images, "test": settings.test_images}
    scenes = {split: sample_scenes(n, f"{split}:{settings.seed}") for split, n in sizes.items()}
    captions = {split: [s.captions() for s in ss] for split, ss in scenes.items()}
    split_pixels = {split: standins.render(processor, ss) for split, ss in scenes.items()}
    variants = {"specialist"} | {loop.ARMS[a].variant for a in settings.arms}
    buffers = {}
    for variant in sorted(variants):
        encoder = standins.assemble(variant, tokenizer, pretrained, settings.seed)
        for split, px in split_pixels.items():
            buffers[variant, split] = loop.encode(encoder, px)
    return World(tokenizer, processor, pretrained, captions, buffers, standins_cached=cached)


def _first_examples(world: World) -> list[loop.Example]:
    return loop.first_glance_examples(range(len(world.captions["train"])), world.captions["train"])


def _wrong_pct(world: World, model, split: str, max_new_tokens: int) -> float:
    drafts = scoring.decode(
        world.processor,
        scoring.caption_ids(model, world.processor, world.buffers["specialist", split], max_new_tokens=max_new_tokens),
    )
    hits = scoring.exact(drafts, world.captions[split])
    return 100.0 * (1 - sum(hits) / len(hits))


def stage_one(world: World, settings: SynthSettings, seed: int, log) -> dict[str, Any]:
    """Connector pretraining, then stage 1 up to the error-rate target; returns weights and logs."""
    model = standins.assemble("specialist", world.tokenizer, world.pretrained, seed)
    buffer = world.buffers["specialist", "train"]
    firsts = [loop.Example(i, caps[0]) for i, caps in enumerate(world.captions["train"])]
    pre = loop.train(
        model,
        world.processor,
        buffer,
        loop.Recipe("pretrain", 0.0),
        firsts,
        [],
        steps=settings.connector_steps,
        batch_size=settings.batch_size,
        lr=settings.connector_lr,
        seed=seed,
    )
    pretrain_weights = standins.weights(model)
    checks: list[tuple[int, float]] = []

    def check(step: int) -> bool:
        checks.append((step, round(_wrong_pct(world, model, "dev", settings.max_new_tokens), 1)))
        if len(checks) % 5 == 0:
            log(f"stage 1 step {step}: {checks[-1][1]}% of dev drafts wrong")
        return checks[-1][1] <= settings.stage1_target_wrong

    log_1 = loop.train(
        model,
        world.processor,
        buffer,
        loop.Recipe("stage1", 0.0),
        _first_examples(world),
        [],
        steps=settings.stage1_max_steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=seed,
        schedule="constant_with_warmup",
        check=check,
        check_every=settings.check_every,
    )
    log(
        f"stage 1 stopped at step {log_1.steps}, dev drafts wrong {checks[-1][1] if checks else '?'}% "
        f"({log_1.seconds:.0f}s)"
    )
    test_ids = scoring.caption_ids(
        model, world.processor, world.buffers["specialist", "test"], max_new_tokens=settings.max_new_tokens
    )
    return {
        "pretrain": pretrain_weights,
        "weights": standins.weights(model),
        "log": log_1,
        "connector_log": pre,
        "checks": checks,
        "test_ids": test_ids,
        "test_texts": scoring.decode(world.processor, test_ids),
    }


def drafts_for(kind: str, world: World, settings: SynthSettings, seed: int, stage1: dict[str, Any]) -> list:
    """Pseudo-initial captions per training caption: drafts[image][caption] = [draft, ...]."""
    from captioner.replication.synth import PERTURB_VOCABULARY
    from captioner.training.pseudo_initial import LexicalPerturber

    captions = world.captions["train"]
    if kind in ("lexical", "gt-mix"):
        perturber = LexicalPerturber(seed=seed, extra_groups=PERTURB_VOCABULARY, default_vocabulary=False)
        n = settings.pseudo_per_caption if kind == "lexical" else 1
        drafts = [[perturber.perturb_many(c, n) for c in caps] for caps in captions]
        return (
            drafts if kind == "lexical" else [[d + [c] for d, c in zip(ds, caps)] for ds, caps in zip(drafts, captions)]
        )
    if kind != "self":
        raise ValueError(f"unknown pseudo-initial kind {kind!r}")
    # Data 1, cross-fitted: a stage-1 model trained on one half drafts the other half. Each half-data
    # model gets half of stage 1's steps: the same epochs, and together the same compute.
    own: dict[int, str] = {}
    buffer = world.buffers["specialist", "train"]
    for fold in (0, 1):
        model = standins.assemble("specialist", world.tokenizer, world.pretrained, seed)
        standins.load_stage(model, stage1["pretrain"])
        rows = [i for i in range(len(captions)) if i % 2 != fold]
        loop.train(
            model,
            world.processor,
            buffer,
            loop.Recipe("stage1", 0.0),
            loop.first_glance_examples(rows, [captions[i] for i in rows]),
            [],
            steps=max(1, stage1["log"].steps // 2),
            batch_size=settings.batch_size,
            lr=settings.lr,
            seed=seed + 7 + fold,
            schedule="constant_with_warmup",
        )
        held = [i for i in range(len(captions)) if i % 2 == fold]
        ids = scoring.caption_ids(model, world.processor, buffer.select(held), max_new_tokens=settings.max_new_tokens)
        own.update(zip(held, scoring.decode(world.processor, ids)))
    return [[[own[i]] for _ in caps] for i, caps in enumerate(captions)]


def arm_steps(settings: SynthSettings, stage1: dict[str, Any]) -> int:
    if settings.arm_steps is not None:
        return settings.arm_steps
    return max(1, round(settings.stage2_ratio * stage1["log"].steps))


def run_arm(
    arm: loop.Arm, world: World, settings: SynthSettings, seed: int, stage1: dict[str, Any], drafts: dict[str, list]
) -> dict[str, Any]:
    """Train one arm from the stage-1 weights and caption the held-out images with it."""
    model = standins.assemble(arm.variant, world.tokenizer, world.pretrained, seed + 1)  # fresh DeepLens
    standins.load_stage(model, stage1["weights"])
    captions = world.captions["train"]
    refine = [] if arm.drafts is None else loop.refinement_examples(range(len(captions)), captions, drafts[arm.drafts])
    log = loop.train(
        model,
        world.processor,
        world.buffers[arm.variant, "train"],
        arm.recipe,
        _first_examples(world),
        refine,
        steps=arm_steps(settings, stage1),
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=seed,
    )
    return evaluate(model, arm.variant, world, settings, stage1) | {"train": dataclasses.asdict(log)}


def evaluate(model, variant: str, world: World, settings: SynthSettings, stage1: dict[str, Any]) -> dict[str, Any]:
    buffer, refs, tokens = world.buffers[variant, "test"], world.captions["test"], settings.max_new_tokens
    first_ids = scoring.caption_ids(model, world.processor, buffer, max_new_tokens=tokens)
    first = scoring.decode(world.processor, first_ids)
    result: dict[str, Any] = {"first_glance": scoring.corpus_scores(first, refs)}
    if variant == "specialist":  # no second glance: the first glance is the output
        examples = [{"references": refs[i], "caption": first[i]} for i in range(3)]
        return result | {
            "refined": result["first_glance"],
            "refine_stage1_drafts": None,
            "fixes": 0,
            "breaks": 0,
            "examples": examples,
        }
    refined = scoring.decode(
        world.processor, scoring.caption_ids(model, world.processor, buffer, first_ids, max_new_tokens=tokens)
    )
    on_stage1 = scoring.decode(
        world.processor, scoring.caption_ids(model, world.processor, buffer, stage1["test_ids"], max_new_tokens=tokens)
    )
    fixes, breaks = scoring.fixes_breaks(first, refined, refs)
    s1_fixes, s1_breaks = scoring.fixes_breaks(stage1["test_texts"], on_stage1, refs)
    examples = [
        {
            "references": refs[i],
            "first_glance": first[i],
            "refined": refined[i],
            "stage1_draft": stage1["test_texts"][i],
            "refined_stage1_draft": on_stage1[i],
        }
        for i in range(3)
    ]
    return result | {
        "refined": scoring.corpus_scores(refined, refs),
        "fixes": fixes,
        "breaks": breaks,
        "refine_stage1_drafts": scoring.corpus_scores(on_stage1, refs) | {"fixes": s1_fixes, "breaks": s1_breaks},
        "examples": examples,
    }


def _log(message: str) -> None:
    print(message, flush=True)


def run_benchmark(settings: SynthSettings, log=_log) -> dict[str, Any]:
    """The whole experiment; returns the JSON report (layout: issue 10)."""
    import torch
    from transformers.utils import logging as hf_logging

    unknown = [a for a in settings.arms if a not in loop.ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown} (known: {', '.join(loop.ARMS)})")
    hf_logging.set_verbosity_error()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    load_start = os.getloadavg()
    started = time.perf_counter()
    try:
        world = build_world(settings, log)
        world_s = time.perf_counter() - started
        seeds = [settings.seed + k for k in range(settings.seeds)]
        stage1 = stage_one(world, settings, settings.seed, log)
        model = standins.assemble("specialist", world.tokenizer, world.pretrained, settings.seed)
        standins.load_stage(model, stage1["weights"])
        per_arm = {
            "stage1": [
                evaluate(model, "specialist", world, settings, stage1) | {"train": dataclasses.asdict(stage1["log"])}
            ]
        }
        drafts: dict[int, dict[str, list]] = {seed: {} for seed in seeds}
        arms = [loop.ARMS[name] for name in settings.arms]
        ser_bases = [a for a in arms if a.name in ("ser_paper", "ser_protected")]
        for phase in ("base", "data"):
            if phase == "data":
                if not (settings.data_variants and ser_bases):
                    break
                best = max(ser_bases, key=lambda a: scoring.aggregate(per_arm[a.name])["refined"]["CIDEr"]["mean"])
                arms = [loop.data_arm(best, kind) for kind in loop.DRAFT_KINDS]
            for arm in arms:
                per_arm[arm.name] = []
                for seed in seeds:
                    if arm.drafts == "self" and seed != seeds[0]:  # one stage 1, so one set of own drafts
                        drafts[seed]["self"] = drafts[seeds[0]]["self"]
                    if arm.drafts is not None and arm.drafts not in drafts[seed]:
                        drafts[seed][arm.drafts] = drafts_for(arm.drafts, world, settings, seed, stage1)
                    per_arm[arm.name].append(run_arm(arm, world, settings, seed, stage1, drafts[seed]))
                summary = scoring.aggregate(per_arm[arm.name])
                log(
                    f"{arm.name}: first glance CIDEr {summary['first_glance']['CIDEr']['mean']}, "
                    f"refined {summary['refined']['CIDEr']['mean']} (fixes {summary['fixes']}, breaks "
                    f"{summary['breaks']})"
                )
    finally:
        torch.set_num_threads(threads)
    total_s = time.perf_counter() - started
    wrong_test = [100 - r["first_glance"]["exact_match"] for r in per_arm["stage1"]]
    lexical = [d for seed in seeds for d in [drafts[seed].get("lexical")] if d]
    differ = [
        x != gt for d in lexical for caps, ds in zip(world.captions["train"], d) for gt, xs in zip(caps, ds) for x in xs
    ]
    settings_json = dataclasses.asdict(settings) | {"arms": list(settings.arms)}
    return {
        "arms": {name: scoring.aggregate(runs) for name, runs in per_arm.items()},
        "seeds": len(seeds),
        "steps": {
            "vit_pretrain": settings.vit_steps,
            "lm_pretrain": settings.lm_steps,
            "connector_pretrain": settings.connector_steps,
            "stage1": stage1["log"].steps,
            "arm": arm_steps(settings, stage1),
            "stage2_ratio": settings.stage2_ratio,
            "batch_size": settings.batch_size,
            "pretrain_batch_size": settings.pretrain_batch_size,
        },
        "stage1_stop": {
            "target_wrong_pct": settings.stage1_target_wrong,
            "dev_checks": stage1["checks"],
            "held_out_wrong_pct": scoring.mean_sd(wrong_test),
        },
        "flops_note": "training FLOPs per arm: forward + backward of the first step (torch FlopCounterMode) x steps; "
        "equal compute = equal steps x batch size; SeR steps also run DeepLens and read the draft",
        "pretraining": world.pretrained.report | {"loaded_from_cache": world.standins_cached},
        "pseudo_initial_lexical_edited_pct": round(100 * sum(differ) / max(1, len(differ)), 1),
        "examples": {name: runs[0].get("examples", []) for name, runs in per_arm.items()},
        "times_s": {"stand_ins_and_features": round(world_s, 1), "total": round(total_s, 1)},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": settings.threads,
            "loadavg_1_5_15_start": [round(x, 2) for x in load_start],
            "loadavg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": settings_json,
        "scale": "x100 (as papers print); CIDEr is CIDEr-D; exact_match in %; fixes/breaks summed over seeds",
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help=f"smaller setting (under 10 min on 2 cores): {QUICK}")
    parser.add_argument("--seeds", type=int, default=None, help="seeds of the arms after stage 1 (default 3)")
    parser.add_argument("--json", dest="json_out", help="write the report here")
    parser.add_argument("--markdown", help="write the results table here (it is printed either way)")
    parser.add_argument("--arms", default=None, help=f"comma-separated subset of {','.join(loop.ARMS)}")
    parser.add_argument(
        "--write-data",
        metavar="DIR",
        help="only write the synthetic dataset (PNG + JSONL, for configs/train/tiny-*.yaml) to DIR/data and exit",
    )
    parser.add_argument("--no-data-variants", action="store_true", help="skip the gt-mix / self reruns of the best arm")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--cache-dir", default=None, help=f"pretrained stand-ins cache (default {SynthSettings.cache_dir})"
    )
    parser.add_argument("--no-cache", action="store_true", help="pretrain the stand-ins even if a cached copy exists")
    for name in (
        "train_images",
        "test_images",
        "dev_images",
        "vit_images",
        "vit_steps",
        "lm_scenes",
        "lm_steps",
        "connector_steps",
        "stage1_max_steps",
        "check_every",
        "arm_steps",
        "batch_size",
        "max_new_tokens",
        "threads",
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in ("lr", "connector_lr", "stage1_target_wrong", "stage2_ratio"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)


def settings_from_args(args: argparse.Namespace) -> SynthSettings:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for f in dataclasses.fields(SynthSettings):
        if f.name not in ("arms", "data_variants") and getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    if args.arms:
        values["arms"] = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    values["data_variants"] = not args.no_data_variants
    if args.no_cache:
        values["cache_dir"] = None
    return SynthSettings(**values)


def write_data(directory: str | Path, settings: SynthSettings) -> dict[str, Path]:
    """The world as files for `captioner train`: train/test JSONL + PNGs, and train_stage2.jsonl with
    three lexical pseudo-initial captions per caption (App. F.1)."""
    from captioner.data.readers import read_jsonl, write_jsonl
    from captioner.replication.synth import PERTURB_VOCABULARY, write_synthetic_dataset
    from captioner.training.pseudo_initial import LexicalPerturber

    data = Path(directory) / "data"
    paths = write_synthetic_dataset(data, settings.train_images, settings.test_images, 64, settings.seed)
    records = read_jsonl(paths["train"])
    perturber = LexicalPerturber(seed=settings.seed, extra_groups=PERTURB_VOCABULARY, default_vocabulary=False)
    for record in records:
        record.initial_captions = [perturber.perturb_many(c, settings.pseudo_per_caption) for c in record.captions]
    paths["train_stage2"] = data / "train_stage2.jsonl"
    write_jsonl(records, paths["train_stage2"])
    return paths


def run(args: argparse.Namespace) -> int:
    from videoqa_base.errors import UserError

    settings = settings_from_args(args)
    if args.write_data:
        paths = write_data(args.write_data, settings)
        print("\n".join(f"{name}: {path}" for name, path in paths.items()))
        return 0
    unknown = [a for a in settings.arms if a not in loop.ARMS]
    if unknown:
        raise UserError(f"--arms: unknown arm(s) {unknown} (known: {', '.join(loop.ARMS)})")
    report = run_benchmark(settings)
    report["quick"] = bool(args.quick)
    table = scoring.markdown_table(report)
    print(table)
    print(
        f"total {report['times_s']['total']:.0f}s, load average {report['machine']['loadavg_1_5_15_start']} -> "
        f"{report['machine']['loadavg_1_5_15_end']} on {report['machine']['cpu_count']} cores"
    )
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    return 0
