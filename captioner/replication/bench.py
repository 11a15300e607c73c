"""`captioner synth-bench [--quick] [--seeds N] [--json F]`: does one more glance help, at equal compute,
when the first glance truly misses a detail?

A CPU-sized miniature of the paper's training (Sec. 5, App. H.1, Tab. 3, Tab. 15) on rendered shapes
(captioner/replication/synth.py), with the real SeR model code:

1. pretrained stand-ins (standins.py, cached): a tiny ViT pretrained on the world's images (never a
   caption) so that the layer the first glance reads keeps each patch's colour and occupancy but no
   shape, and an earlier layer keeps every shape; a tiny OPT pretrained on caption-like text;
2. the premise measured, not assumed (probes.py): held-out linear probes of per-patch occupancy,
   colour and shape, group count and position, on every layer the arms read; the headroom (share
   of held-out captions that need a shape the first glance cannot see);
3. a converged stage 1 (experiment.py): cosine decay to the end of its schedule, the schedule
   doubled until dev exact match plateaus (the curve goes into the report); every seed retrains it;
4. the arms' learning rate swept on dev for the control, then every arm (loop.py) from the seed's
   specialist at the same steps x batch size: control, ser_paper, ser_protected,
   single_glance_multilayer, oracle_draft;
5. paired statistics per (seed, image) against the control (stats.py), fixes / breaks on four draft
   sources, and the decision rule of docs/replication.md (`stats.decide`).

Every stage-1 model and every (arm, seed) result is cached under `--run-dir`, so an interrupted run
resumes where it stopped.
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

import numpy as np

from captioner.replication import experiment, loop, probes, report, standins, stats


@dataclass
class SynthSettings:
    train_images: int = 1200
    dev_images: int = 100  # the stage-1 schedule and the learning rate are chosen on these
    test_images: int = 200
    seeds: int = 5  # each retrains stage 1 (connector pretraining included)
    # pretrained stand-ins (shared by --quick and the full run, so one cached copy serves both)
    vit_images: int = 4000
    vit_steps: int = 1000
    lm_scenes: int = 1500
    lm_steps: int = 300
    pretrain_batch_size: int = 32
    pretrain_lr: float = 2e-3  # the LM's (and ViT's) pretraining peak rate
    connector_steps: int = 300
    connector_lr: float = 3e-3
    # stage 1: cosine to the end of `stage1_steps`, doubled while dev exact match gains >= plateau_points
    stage1_steps: int = 500
    stage1_max_steps: int = 4000
    plateau_points: float = 2.0
    curve_points: int = 8  # dev checks per schedule (they never stop training)
    stage1_lr: float = 1e-3  # half the LM's pretraining peak
    lr_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3)  # the arms' rate: swept on dev for the control
    # every arm's steps: stage2_ratio x stage 1's (Tab. 14 / 15: 2 epochs x 3 pseudo-initials = 6 caption
    # passes against stage 1's 10), or arm_steps if set
    stage2_ratio: float = 0.6
    arm_steps: int | None = None
    batch_size: int = 32
    pseudo_per_caption: int = 3  # App. F.1
    arms: tuple[str, ...] = loop.DEFAULT_ARMS
    max_new_tokens: int = 24
    probe_train_images: int = 600
    probe_test_images: int = 300
    seed: int = 0
    cache_dir: str | None = "~/.cache/videoqa/synth-standins"  # the stand-ins, like downloaded checkpoints
    run_dir: str | None = "outputs/synth-bench"  # stage-1 models and (arm, seed) results: the run resumes
    threads: int = 1  # one intra-op thread: two stall each other on a shared 2-core machine


QUICK: dict[str, Any] = dict(
    train_images=600,
    test_images=100,
    seeds=2,
    stage1_steps=400,
    stage1_max_steps=1600,
    arm_steps=250,
    lr_grid=(3e-4, 1e-3),
    curve_points=4,
)
NOT_IN_CACHE_KEY = ("seeds", "arms", "run_dir", "cache_dir", "threads")


def _log(message: str) -> None:
    print(message, flush=True)


def _layers(world: experiment.World) -> list[int]:
    config = standins.miniature_config("ser", world.tokenizer)
    n_states = config.vision_config.num_hidden_layers + 1
    return sorted({config.vision_feature_layer % n_states, *config.multilayer_feature_layers})


def measure_premise(world: experiment.World, settings: SynthSettings) -> dict[str, Any]:
    model = standins.assemble("specialist", world.tokenizer, world.pretrained, settings.seed)
    config = model.config
    layers = _layers(world)
    found = probes.run_probes(
        model.vision_tower, world.processor, layers, settings.probe_train_images, settings.probe_test_images, 0
    )
    first = config.vision_feature_layer % (config.vision_config.num_hidden_layers + 1)
    return {"probes": found, "premise": probes.premise(found, first, config.multilayer_feature_layers)}


def run_benchmark(settings: SynthSettings, log=_log) -> dict[str, Any]:
    """The whole experiment; returns the JSON report."""
    import torch
    from tqdm import tqdm
    from transformers.utils import logging as hf_logging

    unknown = [a for a in settings.arms if a not in loop.ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown} (known: {', '.join(loop.ARMS)})")
    arms = ["control", *[a for a in settings.arms if a != "control"]]
    hf_logging.set_verbosity_error()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    load_start, started = os.getloadavg(), time.perf_counter()
    key = {k: v for k, v in dataclasses.asdict(settings).items() if k not in NOT_IN_CACHE_KEY}
    cache = experiment.Cache(experiment.cache_root(settings.run_dir, key))
    try:
        world = experiment.build_world(settings, {loop.ARMS[a].variant for a in arms}, log)
        premise = measure_premise(world, settings)
        log(f"premise: {premise['premise']}")
        world_s = time.perf_counter() - started
        schedule = experiment.choose_stage1_steps(world, settings, cache, log)
        steps1 = schedule["chosen_steps"]
        steps = settings.arm_steps or max(1, round(settings.stage2_ratio * steps1))
        seeds = [settings.seed + k for k in range(settings.seeds)]
        first = experiment.stage_one(world, settings, seeds[0], steps1, cache, log, schedule["chosen_log"])
        sweep = experiment.lr_sweep(world, settings, first, steps, cache, log)
        lr = sweep["chosen_lr"]
        per_arm: dict[str, list[dict[str, Any]]] = {name: [] for name in ["stage1", *arms]}
        stage1_texts, stage1_dev = [], []
        bar = tqdm(total=len(seeds) * len(arms), desc="arms x seeds", unit="run")
        for seed in seeds:
            stage1 = first if seed == seeds[0] else experiment.stage_one(world, settings, seed, steps1, cache, log)
            stage1_texts.append(stage1["test_texts"])
            stage1_dev.append(stage1["final_dev_exact"])
            per_arm["stage1"].append({"first_glance": stage1["test_texts"], "train": stage1["log"] or {}})
            drafts: dict[str, Any] = {}
            for name in arms:
                arm = loop.ARMS[name]
                result = cache.read(f"seed{seed}/{name}")
                if result is None:
                    if arm.drafts is not None and arm.drafts not in drafts:
                        drafts[arm.drafts] = experiment.drafts_for(arm.drafts, world, settings, seed, stage1)
                    arm_drafts = drafts.get(arm.drafts or "")
                    result = experiment.run_arm(arm, world, settings, seed, stage1, steps, lr, arm_drafts)
                    cache.write(f"seed{seed}/{name}", result)
                per_arm[name].append(result)
                bar.update(1)
        bar.close()
    finally:
        torch.set_num_threads(threads)
    hidden = np.array(_hidden(world))
    built = report.build(per_arm, stage1_texts, world.captions["test"], hidden)
    out: dict[str, Any] = {
        "probes": premise["probes"],
        "premise": premise["premise"],
        "headroom": probes.headroom(world.scenes["test"]),
        "stage1_curve": schedule,
        "stage1_dev_exact_per_seed": stage1_dev,
        "lr_sweep": sweep,
        **built,
        "seeds": len(seeds),
        "seeds_note": (
            f"{len(seeds)} seeds, each retraining connector pretraining and stage 1; the stand-ins and data are shared"
            + (" (--quick: fewer seeds than the full run's 5, wide intervals)" if len(seeds) < 5 else "")
        ),
        "steps": {
            "stage1": steps1,
            "arm": steps,
            "batch_size": settings.batch_size,
            "lr": lr,
            "stage1_lr": settings.stage1_lr,
        },
        "pretraining": world.pretrained.report | {"loaded_from_cache": world.standins_cached},
        "examples": {name: _examples(runs[0], world.captions["test"]) for name, runs in per_arm.items()},
        "resumed_entries": cache.hits,
        "run_dir": str(cache.root) if cache.root else None,
        "times_s": {"stand_ins_features_probes": round(world_s, 1), "total": round(time.perf_counter() - started, 1)},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": settings.threads,
            "loadavg_1_5_15_start": [round(x, 2) for x in load_start],
            "loadavg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": dataclasses.asdict(settings) | {"arms": arms, "lr_grid": list(settings.lr_grid)},
        "scale": "x100; CIDEr is CIDEr-D; exact_match and differences in % points; fixes/breaks summed over seeds",
    }
    out["decision"] = stats.decide(out)
    return out


def _hidden(world: experiment.World) -> list[bool]:
    from captioner.replication.synth import needs_hidden_detail

    return [needs_hidden_detail(scene) for scene in world.scenes["test"]]


def _examples(run: dict[str, Any], references: list[list[str]]) -> list[dict[str, Any]]:
    keys = [k for k, v in run.items() if isinstance(v, list) and v and isinstance(v[0], str)]
    return [{"references": references[i]} | {k: run[k][i] for k in keys} for i in range(min(3, len(references)))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help=f"smaller setting (under 15 min on 2 cores): {QUICK}")
    parser.add_argument("--seeds", type=int, default=None, help="seeds, each retraining stage 1 (default 5)")
    parser.add_argument("--json", dest="json_out", help="write the report here")
    parser.add_argument("--markdown", help="write the results table here (it is printed either way)")
    parser.add_argument("--arms", default=None, help=f"comma-separated subset of {','.join(loop.ARMS)}")
    parser.add_argument(
        "--write-data",
        metavar="DIR",
        help="only write the synthetic dataset (PNG + JSONL, for configs/train/tiny-*.yaml) to DIR/data and exit",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--cache-dir", default=None, help=f"pretrained stand-ins cache (default {SynthSettings.cache_dir})"
    )
    parser.add_argument("--no-cache", action="store_true", help="pretrain the stand-ins even if a cached copy exists")
    parser.add_argument("--run-dir", default=None, help=f"resumable results (default {SynthSettings.run_dir})")
    parser.add_argument("--no-resume", action="store_true", help="recompute everything (no --run-dir cache)")
    parser.add_argument("--lr-grid", default=None, help="comma-separated learning rates swept for the control")
    for name in (
        "train_images",
        "test_images",
        "dev_images",
        "vit_images",
        "vit_steps",
        "lm_scenes",
        "lm_steps",
        "connector_steps",
        "stage1_steps",
        "stage1_max_steps",
        "curve_points",
        "arm_steps",
        "batch_size",
        "max_new_tokens",
        "probe_train_images",
        "probe_test_images",
        "threads",
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in ("connector_lr", "stage1_lr", "plateau_points", "stage2_ratio"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)


def settings_from_args(args: argparse.Namespace) -> SynthSettings:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for f in dataclasses.fields(SynthSettings):
        if f.name not in ("arms", "lr_grid") and getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    if args.arms:
        values["arms"] = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if args.lr_grid:
        values["lr_grid"] = tuple(float(x) for x in args.lr_grid.split(",") if x.strip())
    if args.no_cache:
        values["cache_dir"] = None
    if args.no_resume:
        values["run_dir"] = None
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
    if not settings.lr_grid or min(settings.lr_grid) <= 0:
        raise UserError(f"--lr-grid: needs positive learning rates, got {list(settings.lr_grid)}")
    result = run_benchmark(settings)
    result["quick"] = bool(args.quick)
    table = report.markdown_table(result)
    print(table)
    print(f"decision: {result['decision']['verdict']}")
    machine = result["machine"]
    print(
        f"total {result['times_s']['total']:.0f}s, load average {machine['loadavg_1_5_15_start']} -> "
        f"{machine['loadavg_1_5_15_end']} on {machine['cpu_count']} cores"
    )
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    return 0
