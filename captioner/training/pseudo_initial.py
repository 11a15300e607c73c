"""Pseudo-initial captions for stage-2 (refinement) training, App. F.1 and D.5 of the paper.

Stage 2 teaches the model to turn an initial caption into the ground truth (GT). Using the
stage-1 model's own captions as inputs can be misleading (they may share little with the GT),
so the paper feeds slightly wrong versions of each GT caption instead: 0-3 edits of entities,
attributes (colour, material, count, size, ...), relations or actions, structure unchanged,
sometimes identical, three per caption.

Methods (`captioner pseudo-initial --method ...`):

* `llm` (default, as in the paper): an instruction-following LLM (any object with the `ChatLLM`
  shape; the `captioner` command passes one of videoqa's LLM backends) with a prompt written to
  App. F.1's rules and Tab. 13's few-shot pairs. Every output is validated against its source
  (`captioner.caption_edits.validate_pseudo_initial`); a rejected or missing output is replaced
  by the lexical perturber's, and the counts are reported.
* `lexical`: a deterministic, seeded perturber from word lists (captioner/training/edits.py).
* `self` (Data 1 in Tab. 12): the stage-1 model's own caption of each image.
* `gt-mix` (Data 4 in Tab. 12): one pseudo-initial caption (lexical or LLM) plus the GT itself.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from captioner.data.readers import CaptionDataset, CaptionPair, load_records, read_jsonl
from captioner.modeling.inference import generate_captions, load_model
from captioner.training.edits import LexicalPerturber, ValidationRules, caption_words, validate_pseudo_initial
from videoqa_base import jsonl
from videoqa_base.errors import UserError

# ---------------------------------------------------------------------------- LLM generation

SYSTEM_PROMPT = """You write pseudo-initial captions: slightly wrong versions of a ground-truth image caption, like a weaker captioning model might produce, used to train a model that corrects captions.

Rules:
- Modify 0 to 3 points of the ground-truth caption.
- Each modification changes exactly one of: an entity (e.g. chair -> sofa, cat -> dog); an attribute (colour, material such as wooden, count such as three cups, texture, shape, size); a relation (e.g. "A in front of B" -> "B in front of A", on -> under); an action (e.g. eating -> drinking, sitting -> standing).
- Except for the modifications, keep the caption word for word: the same sentence structure, style and length.
- A version may occasionally be identical to the ground truth.
- Write exactly {n} versions, one per line, numbered "1.", "2.", ..., and nothing else."""

# Tab. 13 of the paper.
FEW_SHOT: list[tuple[str, list[str]]] = [
    (
        "A woman in a room with a cat",
        ["A woman in a room with two cats", "A woman in a room with a dog", "A woman in a room with a cat"],
    ),
    (
        "A multicolored motorcycle rests outside of a sheep farm",
        [
            "A multicolored bicycle rests inside a sheep farm",
            "A bright red motorcycle rests outside of a sheep farm",
            "A multicolored motorcycle races around a sheep farm",
        ],
    ),
]


def build_messages(caption: str, n: int = 3) -> list[dict[str, str]]:
    """Chat messages asking for `n` pseudo-initial captions of `caption` (system + few-shot + query)."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(n=n)}]
    for gt, examples in FEW_SHOT:
        shown = (examples * n)[:n]
        messages.append({"role": "user", "content": f"Ground-truth caption: {gt}"})
        messages.append({"role": "assistant", "content": "\n".join(f"{i + 1}. {e}" for i, e in enumerate(shown))})
    messages.append({"role": "user", "content": f"Ground-truth caption: {' '.join(caption.split())}"})
    return messages


_NUMBERED = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s*")


def parse_completion(text: str) -> list[str]:
    """Numbered / bulleted lines -> captions (quotes and numbering stripped, blank lines dropped)."""
    lines = []
    for line in text.splitlines():
        line = _NUMBERED.sub("", line).strip().strip('"').strip("'").strip()
        if line and not line.lower().startswith(("ground-truth", "here are", "sure")):
            lines.append(line)
    return lines


@dataclass
class PseudoInitialResult:
    captions: list[str]  # exactly n
    sources: list[str]  # "llm" or "fallback" per caption
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (LLM output, reason)


class ChatLLM(Protocol):
    """What pseudo-initial generation needs of an LLM (videoqa's LLM backends have this shape):
    `generate(prompts, max_tokens)` takes a batch of chat-message lists and returns one completion
    per prompt, each with `.text` and `.error` (None, or why that prompt failed); `close()` frees it."""

    def generate(self, prompts: Sequence[list[dict[str, str]]], max_tokens: int) -> Sequence[Any]: ...

    def close(self) -> None: ...


class LLMPseudoInitialGenerator:
    """Pseudo-initial captions from an LLM, validated, with a lexical fallback."""

    def __init__(
        self,
        backend: ChatLLM,
        n: int = 3,
        rules: ValidationRules | None = None,
        fallback: LexicalPerturber | None = None,
        batch_size: int = 64,
    ):
        self.backend, self.n, self.rules = backend, n, rules or ValidationRules()
        self.fallback = fallback or LexicalPerturber()
        self.batch_size = batch_size

    def max_tokens(self, captions: Sequence[str]) -> int:
        """Room for n numbered copies of the longest caption (about 2 tokens per word, generous)."""
        longest = max(len(c.split()) for c in captions)
        return self.n * (2 * longest + 8) + 16

    def generate(self, captions: Sequence[str]) -> list[PseudoInitialResult]:
        results: list[PseudoInitialResult] = []
        for start in range(0, len(captions), self.batch_size):
            batch = list(captions[start : start + self.batch_size])
            completions = self.backend.generate([build_messages(c, self.n) for c in batch], self.max_tokens(batch))
            for caption, completion in zip(batch, completions):
                results.append(self._accept(caption, completion))
        return results

    def _accept(self, caption: str, completion) -> PseudoInitialResult:
        accepted, rejected = [], []
        if completion.error:
            rejected.append(("", f"LLM error: {completion.error}"))
        else:
            for candidate in parse_completion(completion.text):
                reason = validate_pseudo_initial(caption, candidate, self.rules)
                if reason is None and len(accepted) < self.n:
                    accepted.append(candidate)
                elif reason is not None:
                    rejected.append((candidate, reason))
        sources = ["llm"] * len(accepted)
        index = 0
        while len(accepted) < self.n:  # fill up with seeded lexical edits
            accepted.append(self.fallback.perturb(caption, index=len(accepted) + index)[0])
            sources.append("fallback")
        return PseudoInitialResult(accepted, sources, rejected)


# ---------------------------------------------------------------------------- dataset level


@dataclass
class PseudoInitialStats:
    """Counts for the run summary (`<output>.summary.json`)."""

    method: str
    images: int = 0
    captions: int = 0
    initial_captions: int = 0
    identical: int = 0  # pseudo-initial == GT
    sources: Counter = field(default_factory=Counter)
    rejections: Counter = field(default_factory=Counter)  # reason (without numbers) -> count

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "images": self.images,
            "captions": self.captions,
            "initial_captions": self.initial_captions,
            "identical_to_gt": self.identical,
            "sources": dict(self.sources),
            "rejections": dict(self.rejections),
        }


def add_lexical(records, perturber: LexicalPerturber, n: int, stats: PseudoInitialStats) -> None:
    for record in records:
        record.initial_captions = [perturber.perturb_many(c, n) for c in record.captions]
        stats.sources["lexical"] += n * len(record.captions)


def add_llm(records, generator: LLMPseudoInitialGenerator, stats: PseudoInitialStats) -> None:
    flat = [(r, i) for r in records for i in range(len(r.captions))]
    results = generator.generate([r.captions[i] for r, i in flat])
    for record in records:
        record.initial_captions = [[] for _ in record.captions]
        record.meta.pop("initial_sources", None)
    for (record, i), result in zip(flat, results):
        record.initial_captions[i] = result.captions
        record.meta.setdefault("initial_sources", [[] for _ in record.captions])[i] = result.sources
        stats.sources.update(result.sources)
        for _, reason in result.rejected:
            stats.rejections[re.sub(r"[\d.]+", "N", reason)] += 1


def add_gt_mix(records) -> None:
    """Data 4: keep the first pseudo-initial caption of each GT and add the GT itself."""
    for record in records:
        record.initial_captions = [[initial[0], gt] for initial, gt in zip(record.initial_captions, record.captions)]


def add_self_captions(records, model, processor, image_root: str, batch_size: int, max_new_tokens: int, stats) -> None:
    """Data 1: the stage-1 model's own (single-pass) caption of each image, for all its GT captions."""
    dataset = CaptionDataset([CaptionPair(r.image, r.captions[0]) for r in records], image_root)
    by_image: dict[str, str] = {}
    images = list(dict.fromkeys(r.image for r in records))
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pil = [dataset.load_image(i) for i in chunk]
        captions = generate_captions(
            model, processor, pil, max_new_tokens=max_new_tokens, batch_size=batch_size, refine_steps=0
        )
        by_image.update(zip(chunk, captions))
    for record in records:
        record.initial_captions = [[by_image[record.image]] for _ in record.captions]
    stats.sources["self"] += sum(len(r.captions) for r in records)


# ---------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="GT captions: JSONL, LLaVA JSON or Karpathy COCO JSON")
    parser.add_argument("--output", required=True, help="JSONL with 'initial_captions' added")
    parser.add_argument("--format", default="auto", choices=["auto", "llava", "coco-karpathy", "jsonl"])
    parser.add_argument("--split", default="train", help="split of a Karpathy COCO file (default: train)")
    parser.add_argument(
        "--method",
        default="llm",
        choices=["llm", "lexical", "self", "gt-mix"],
        help="llm (paper, default), lexical (no model), self (Data 1: stage-1 captions), gt-mix (Data 4)",
    )
    parser.add_argument("--n", type=int, default=3, help="pseudo-initial captions per GT caption (paper: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the lexical perturber")
    parser.add_argument("--batch-size", type=int, default=64, help="LLM prompts / images per batch")
    parser.add_argument(
        "--mix-base", default="lexical", choices=["lexical", "llm"], help="gt-mix: how to make the edited one"
    )
    parser.add_argument("--model", help="--method self: the stage-1 checkpoint directory")
    parser.add_argument("--image-root", default=".", help="--method self: directory the image paths are relative to")
    parser.add_argument("--max-new-tokens", type=int, default=60, help="--method self: caption length limit")
    parser.add_argument("--max-changed-words", type=int, default=ValidationRules.max_changed_words)
    parser.add_argument("--max-changed-fraction", type=float, default=ValidationRules.max_changed_fraction)
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument("--chunk-size", type=int, default=1024, help="images per chunk appended to the output")
    parser.add_argument("--resume", action="store_true", help="keep the images already in --output, do the rest")


def make_pseudo_initial(
    records,
    args: argparse.Namespace,
    load_llm: Callable[[], ChatLLM] | None = None,
    on_chunk: Callable[[list], None] | None = None,
) -> PseudoInitialStats:
    """Fill `initial_captions` of every record with the chosen method, `args.chunk_size` images at a
    time (`on_chunk(records)` after each, e.g. to append them to the output); return counts.

    `load_llm` builds the LLM the `llm` method uses (called once, only when that method runs; the
    LLM is closed at the end). The caller decides which LLM: `captioner pseudo-initial --llm`."""
    stats = PseudoInitialStats(method=args.method)
    perturber = LexicalPerturber(seed=args.seed)
    base = args.mix_base if args.method == "gt-mix" else args.method
    n = 1 if args.method == "gt-mix" else args.n
    backend = model = processor = None
    if base == "llm":
        if load_llm is None:
            raise UserError(
                "--method llm needs --llm NAME|YAML|MODEL_DIR (or use --method lexical, which needs no model)"
            )
        rules = ValidationRules(
            max_changed_words=args.max_changed_words, max_changed_fraction=args.max_changed_fraction
        )
        backend = load_llm()
        generator = LLMPseudoInitialGenerator(backend, n, rules, perturber, args.batch_size)
    elif base == "self":
        if not args.model:
            raise UserError("--method self needs --model STAGE1_CHECKPOINT_DIR")
        model, processor = load_model(
            args.model, train_hint="train stage 1 with `captioner train --config configs/train/stage1.yaml`"
        )
    try:
        for start in range(0, len(records), args.chunk_size):
            chunk = records[start : start + args.chunk_size]
            if base == "lexical":
                add_lexical(chunk, perturber, n, stats)
            elif base == "llm":
                add_llm(chunk, generator, stats)
            else:
                add_self_captions(chunk, model, processor, args.image_root, args.batch_size, args.max_new_tokens, stats)
            if args.method == "gt-mix":
                add_gt_mix(chunk)
                stats.sources["gt"] += sum(len(r.captions) for r in chunk)
            stats.images += len(chunk)
            for record in chunk:
                stats.captions += len(record.captions)
                for gt, initials in zip(record.captions, record.initial_captions):
                    stats.initial_captions += len(initials)
                    stats.identical += sum(1 for x in initials if caption_words(x) == caption_words(gt))
            if on_chunk is not None:
                on_chunk(chunk)
    finally:
        if backend is not None:
            backend.close()
    return stats


def run(args: argparse.Namespace, load_llm: Callable[[], ChatLLM] | None = None) -> int:
    """`captioner pseudo-initial`: read GT captions, write them with `initial_captions` as JSONL.
    Chunks are appended (fsynced) as they finish, so `--resume` continues an interrupted job."""
    records = load_records(args.input, args.format, split=args.split)
    if args.limit:
        records = records[: args.limit]
    output = Path(args.output)
    done: set[tuple[str, str]] = set()
    if args.resume and output.is_file() and output.stat().st_size:
        done = {(r.image_id, r.image) for r in read_jsonl(output)}
        records = [r for r in records if (r.image_id, r.image) not in done]
        print(f"resuming: {len(done)} images already in {output}, {len(records)} to go")
    else:
        jsonl.write_jsonl(output, [])  # a fresh job starts from an empty file

    def append(chunk: list) -> None:
        jsonl.append_jsonl(output, [record.to_json() for record in chunk])

    stats = make_pseudo_initial(records, args, load_llm, on_chunk=append)
    summary = stats.to_json()
    print(json.dumps(summary, indent=2))
    Path(str(output) + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


__all__ = [
    "SYSTEM_PROMPT",
    "FEW_SHOT",
    "build_messages",
    "parse_completion",
    "ChatLLM",
    "PseudoInitialResult",
    "LLMPseudoInitialGenerator",
    "PseudoInitialStats",
    "make_pseudo_initial",
    "add_arguments",
    "run",
]
