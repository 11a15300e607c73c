"""`captioner synth-bench [--quick] [--json FILE]`: does one more glance help a tiny captioner?

A CPU-sized version of the paper's experiment (Tab. 3) on synthetic images (captioner/synth.py):

1. stage 1: a tiny random-init SeR (vision tower trainable too: no CLIP weights offline) is
   trained single-pass on (image, GT caption) for N epochs;
2. from that checkpoint, two arms with the SAME number of optimizer steps and batch size:
   (a) ser: stage 2 - DeepLens + LM on (image, pseudo-initial caption) -> GT caption, with
       pseudo-initial captions from the seeded lexical perturber restricted to the synthetic
       world's words (shapes, colours, counts, relations), three per caption as in App. F.1;
   (b) control: stage 1 continued (single pass) for the same steps;
3. held-out images are captioned greedily: stage 1 and control single-pass, ser with its first
   glance then one refinement; BLEU-4 / METEOR / CIDEr (pycocoevalcap) and exact match.

Everything runs through the real code paths (`captioner.train.train`, the JSONL reader, the
processor, `captioner.inference.generate_captions`, `eval.caption_metrics`). Seeded: the same
settings give the same numbers on the same machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The tiny preset, a bit wider than the unit-test one so that it can learn the synthetic world.
SYNTH_MODEL_CONFIG: dict[str, Any] = {
    "text_config": {"hidden_size": 64, "ffn_dim": 128, "word_embed_proj_dim": 64, "num_hidden_layers": 2},
    "vision_config": {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4},
    "deeplens_config": {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4},
}


@dataclass
class SynthSettings:
    train_images: int = 1500
    test_images: int = 200
    stage1_epochs: float = 12  # paper: 10 (on 113K images; more passes help a from-scratch model)
    # Epochs over the stage-2 pairs (pseudo_per_caption per GT caption), as the paper counts them:
    # 2 epochs x 3 pseudo-initials = 6 passes over the GT captions. The control runs the same
    # number of optimizer steps at the same batch size (= 6 more stage-1 epochs).
    stage2_epochs: float = 2  # paper: 2
    batch_size: int = 32
    stage1_lr: float = 1e-3
    stage2_lr: float = 1e-3  # both arms; the paper uses one fine-tuning rate for stages 1 and 2
    pseudo_per_caption: int = 3  # App. F.1
    # "all": DeepLens + LM + the ViT, like the control (the ViT is random-init here, so both arms keep
    # training it); "stage2" = the paper's parts only (DeepLens + LM, ViT frozen)
    stage2_trainable: str = "all"
    preset: str = "tiny-specialist"  # stage 1 is single-pass; stage 2 adds DeepLens (as in the paper)
    model_config: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(SYNTH_MODEL_CONFIG)))
    max_new_tokens: int = 40
    metrics: tuple[str, ...] = ("BLEU-4", "METEOR", "CIDEr")
    seed: int = 0
    # One intra-op thread: on a shared 2-core machine two threads stall each other (measured: a
    # training step 0.07 s with 1 thread vs 3 s with 2 under load); tiny matmuls gain little anyway.
    threads: int = 1


QUICK = dict(train_images=400, test_images=100, stage1_epochs=10, stage2_epochs=2, metrics=("BLEU-4", "CIDEr"))


def synth_tokenizer(vocab_size: int = 512):
    """Byte-level BPE trained on the prompt template plus the synthetic captions.

    The tiny preset's tokenizer never saw these words and spells them letter by letter
    (~30 tokens per caption); whole-word tokens make sequences ~4x shorter on the CPU.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from captioner.presets import TINY_TOKENIZER_CORPUS
    from captioner.processing_ser import IMAGE_TOKEN
    from captioner.synth import vocabulary_text

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>", IMAGE_TOKEN],  # ids as the tiny preset's
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(TINY_TOKENIZER_CORPUS + vocabulary_text(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="</s>", eos_token="</s>", unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )


def build_synth_checkpoint(out_dir: Path, settings: "SynthSettings") -> Path:
    """A random-init tiny SeR (preset + `settings.model_config`) with the synthetic-world tokenizer."""
    import copy

    import torch

    from captioner.modeling_ser import SeRForCaptioning
    from captioner.presets import get_config
    from captioner.processing_ser import IMAGE_TOKEN, SeRProcessor, clip_image_processor

    tokenizer = synth_tokenizer()
    overrides = copy.deepcopy(settings.model_config)
    overrides.setdefault("text_config", {})["vocab_size"] = len(tokenizer)
    config = get_config(settings.preset, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), **overrides)
    processor = SeRProcessor(
        clip_image_processor(config.vision_config.image_size), tokenizer,
        num_image_tokens=config.num_visual_tokens, max_caption_tokens=config.deeplens_max_caption_tokens,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = SeRForCaptioning(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def _train_config(stage: str, init: dict[str, Any], data_path: Path, image_root: Path, out: Path, lr: float,
                  settings: SynthSettings, *, epochs: float | None = None, max_steps: int = -1,
                  trainable: str | None = None):
    from captioner.train import TrainConfig
    from videoqa.config import validate

    data = {
        "stage": stage,
        "model": {**init, "trainable": trainable},
        "data": {"train": [{"path": str(data_path), "image_root": str(image_root), "format": "jsonl"}]},
        "training": {
            "output_dir": str(out),
            "num_train_epochs": epochs or 1,
            "max_steps": max_steps,
            "per_device_train_batch_size": settings.batch_size,
            "learning_rate": lr,
            "save_steps": 10**9,  # only the final checkpoint: nothing to resume in a benchmark
            "save_total_limit": 1,
            "logging_steps": 10,
            "seed": settings.seed,
            "dataloader_num_workers": 0,
            "resume_from_checkpoint": False,
            "disable_tqdm": True,
        },
    }
    return validate(TrainConfig, data, f"synth-bench {stage}")


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def exact_match(predictions: dict[str, str], references: dict[str, list[str]]) -> float:
    """% of images whose caption equals one of its references (case and punctuation ignored)."""
    hits = sum(_normalise(predictions[k]) in {_normalise(r) for r in references[k]} for k in predictions)
    return 100.0 * hits / max(1, len(predictions))


def _caption(model_dir: Path, images: list, refine_steps: int, settings: SynthSettings):
    from captioner.inference import generate_captions, load_model

    model, processor = load_model(model_dir, dtype="fp32", device="cpu")
    return generate_captions(
        model, processor, images, max_new_tokens=settings.max_new_tokens, batch_size=64,
        refine_steps=refine_steps, return_initial=True,
    )


def _refine(model_dir: Path, images: list, initial: list[str], settings: SynthSettings) -> list[str]:
    """One refinement pass of `model_dir` over given initial captions (tokenized as in training)."""
    import torch

    from captioner.inference import load_model, refine_once

    model, processor = load_model(model_dir, dtype="fp32", device="cpu")
    refined: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(images), 64):
            buffer = model.encode_images(processor.preprocess_images(images[start : start + 64]))
            drafts = [processor.encode_caption(c) for c in initial[start : start + 64]]
            ids = refine_once(model, processor, buffer, processor.default_instruction, drafts, settings.max_new_tokens)
            refined += [processor.decode_caption(row) for row in ids]
    return refined


def _score(predictions: dict[str, str], references: dict[str, list[str]], settings: SynthSettings) -> dict[str, float]:
    from eval.caption_metrics import compute_caption_metrics

    scores = compute_caption_metrics(predictions, references, settings.metrics).scores
    scores["exact_match"] = exact_match(predictions, references)
    return {k: round(v, 2) for k, v in scores.items()}


def run_benchmark(settings: SynthSettings, workdir: Path, log=print) -> dict[str, Any]:
    """The whole experiment in `workdir`; returns the JSON report."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # e.g. the expected "MISSING deeplens.*" report when stage 2 adds DeepLens
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run(settings, workdir, log)
    finally:
        torch.set_num_threads(threads)


def _run(settings: SynthSettings, workdir: Path, log) -> dict[str, Any]:
    from captioner.data import CaptionDataset, expand_pairs, read_jsonl, write_jsonl
    from captioner.pseudo_initial import LexicalPerturber
    from captioner.synth import PERTURB_VOCABULARY, write_synthetic_dataset
    from captioner.train import train

    times: dict[str, float] = {}
    started = time.perf_counter()

    # -- data
    tick = time.perf_counter()
    data_dir = workdir / "data"
    paths = write_synthetic_dataset(data_dir, settings.train_images, settings.test_images, 64, settings.seed)
    train_records = read_jsonl(paths["train"])
    perturber = LexicalPerturber(seed=settings.seed, extra_groups=PERTURB_VOCABULARY, default_vocabulary=False)
    for record in train_records:
        record.initial_captions = [perturber.perturb_many(c, settings.pseudo_per_caption) for c in record.captions]
    stage2_path = data_dir / "train_stage2.jsonl"
    write_jsonl(train_records, stage2_path)
    edited = sum(x != gt for r in train_records for gt, xs in zip(r.captions, r.initial_captions) for x in xs)
    total_initial = sum(len(xs) for r in train_records for xs in r.initial_captions)
    times["data_s"] = time.perf_counter() - tick
    log(f"data: {settings.train_images} train / {settings.test_images} test images; "
        f"{edited}/{total_initial} pseudo-initial captions differ from their GT")

    # -- stage 1
    fresh = {"init_from": str(build_synth_checkpoint(workdir / "init", settings))}
    stage1_dir = workdir / "stage1"
    config = _train_config("stage1", fresh, paths["train"], data_dir, stage1_dir, settings.stage1_lr, settings,
                           epochs=settings.stage1_epochs, trainable="all")
    result1 = train(config)
    times["stage1_s"] = result1.runtime_s
    log(f"stage 1: {result1.global_step} steps, loss {result1.losses[0] if result1.losses else float('nan'):.3f} -> "
        f"{result1.losses[-1] if result1.losses else float('nan'):.3f} ({result1.runtime_s:.0f}s)")

    # -- the two arms: same optimizer steps, same batch size
    stage2_pairs = sum(len(r.captions) for r in train_records) * settings.pseudo_per_caption
    arm_steps = max(1, math.ceil(settings.stage2_epochs * math.ceil(stage2_pairs / settings.batch_size)))
    init = {"init_from": str(stage1_dir)}
    control_cfg = _train_config("stage1", init, paths["train"], data_dir, workdir / "control", settings.stage2_lr,
                                settings, max_steps=arm_steps, trainable="all")
    result_c = train(control_cfg)
    times["control_s"] = result_c.runtime_s
    ser_cfg = _train_config("stage2", init, stage2_path, data_dir, workdir / "ser", settings.stage2_lr, settings,
                            max_steps=arm_steps, trainable=settings.stage2_trainable)
    result_s = train(ser_cfg)
    times["ser_s"] = result_s.runtime_s
    log(f"control: {result_c.global_step} steps ({result_c.runtime_s:.0f}s); ser: {result_s.global_step} steps "
        f"({result_s.runtime_s:.0f}s)")

    # -- held-out evaluation
    tick = time.perf_counter()
    test_records = read_jsonl(paths["test"])
    test_set = CaptionDataset(expand_pairs(test_records), data_dir)
    images = [test_set.load_image(r.image) for r in test_records]
    references = {r.image_id: r.captions for r in test_records}
    ids = [r.image_id for r in test_records]
    stage1_caps = _caption(stage1_dir, images, 0, settings)
    control_caps = _caption(workdir / "control", images, 0, settings)
    ser_caps = _caption(workdir / "ser", images, 1, settings)
    refined_stage1 = _refine(workdir / "ser", images, stage1_caps.refined, settings)
    systems = {
        "stage1": stage1_caps.refined,
        "control": control_caps.refined,
        "ser": ser_caps.refined,  # the paper's inference: first glance, then one more glance, one model
        "ser_first_glance": ser_caps.initial,  # the same model's initial captions (before refining)
        "ser_refining_stage1": refined_stage1,  # diagnostic: the stage-1 model's captions refined
    }
    report_scores = {name: _score(dict(zip(ids, caps)), references, settings) for name, caps in systems.items()}
    changed = sum(a != b for a, b in zip(ser_caps.initial, ser_caps.refined))
    changed_stage1 = sum(a != b for a, b in zip(stage1_caps.refined, refined_stage1))
    times["eval_s"] = time.perf_counter() - tick
    times["total_s"] = time.perf_counter() - started

    settings_json = dataclasses.asdict(settings)
    settings_json["metrics"] = list(settings.metrics)
    return {
        **report_scores,
        "ser_refinement_changed": f"{changed}/{len(ids)} captions",
        "ser_refining_stage1_changed": f"{changed_stage1}/{len(ids)} captions",
        "examples": [
            {"id": ids[i], "references": references[ids[i]], "stage1": stage1_caps.refined[i],
             "control": control_caps.refined[i], "ser_initial": ser_caps.initial[i], "ser": ser_caps.refined[i],
             "ser_refining_stage1": refined_stage1[i]}
            for i in range(min(5, len(ids)))
        ],
        "settings": {**settings_json, "arm_steps": arm_steps, "stage1_steps": result1.global_step,
                     "train_pairs_stage1": result1.pairs, "train_pairs_stage2": result_s.pairs},
        "losses": {"stage1": [result1.losses[0], result1.losses[-1]] if result1.losses else [],
                   "control": [result_c.losses[0], result_c.losses[-1]] if result_c.losses else [],
                   "ser": [result_s.losses[0], result_s.losses[-1]] if result_s.losses else []},
        "times_s": {k: round(v, 1) for k, v in times.items()},
        "scale": "x100 (as papers print); CIDEr is CIDEr-D; exact_match in %",
    }


def results_table(report: dict[str, Any]) -> str:
    from captioner.evaluate import scores_table

    names = ("stage1", "control", "ser_first_glance", "ser", "ser_refining_stage1")
    return scores_table({name: report[name] for name in names if name in report})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help=f"smaller setting (~1.5 min on 2 cores): {QUICK}")
    parser.add_argument("--json", dest="json_out", help="write the report here")
    parser.add_argument("--workdir", help="keep data and checkpoints here (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=None)
    for name in ("train_images", "test_images", "batch_size", "max_new_tokens", "threads"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in ("stage1_epochs", "stage2_epochs", "stage1_lr", "stage2_lr"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)
    parser.add_argument("--stage2-trainable", choices=["stage2", "all"], default=None)
    parser.add_argument("--metrics", default=None, help="comma-separated, default BLEU-4,METEOR,CIDEr")


def settings_from_args(args: argparse.Namespace) -> SynthSettings:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for f in dataclasses.fields(SynthSettings):
        if getattr(args, f.name, None) is not None and f.name != "metrics":
            values[f.name] = getattr(args, f.name)
    if args.metrics:
        values["metrics"] = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    return SynthSettings(**values)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ser-synth-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report = run_benchmark(settings, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["quick"] = bool(args.quick)
    print(results_table(report))
    print(f"total {report['times_s']['total_s']:.0f}s")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0
