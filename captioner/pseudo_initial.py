"""Pseudo-initial captions for stage-2 (refinement) training, App. F.1 and D.5 of the paper.

Stage 2 teaches the model to turn an initial caption into the ground truth (GT). Using the
stage-1 model's own captions as inputs can be misleading (they may share little with the GT),
so the paper feeds slightly wrong versions of each GT caption instead: 0-3 edits of entities,
attributes (colour, material, count, size, ...), relations or actions, structure unchanged,
sometimes identical, three per caption.

Methods (`captioner pseudo-initial --method ...`):

* `llm` (default, as in the paper): an instruction-following LLM through the project's LLM
  backends (vLLM offline or an OpenAI-compatible server) with a prompt written to App. F.1's
  rules and Tab. 13's few-shot pairs. Every output is validated against its source (see
  `validate_pseudo_initial`); a rejected or missing output is replaced by the lexical
  perturber's, and the counts are reported.
* `lexical`: a deterministic, seeded perturber from word lists; no model needed.
* `self` (Data 1 in Tab. 12): the stage-1 model's own caption of each image.
* `gt-mix` (Data 4 in Tab. 12): one pseudo-initial caption (lexical or LLM) plus the GT itself.
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from videoqa.errors import UserError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- word lists
# Groups of interchangeable words: an edit swaps a word for another one of its group, so the
# result stays grammatical and plausible ("a cat on a chair" -> "a dog on a chair").

ENTITY_GROUPS: list[list[str]] = [
    ["cat", "dog", "horse", "cow", "sheep", "bird", "elephant", "zebra", "giraffe", "bear", "duck", "goat"],
    ["man", "woman", "boy", "girl", "child", "person", "player", "lady", "guy", "kid"],
    ["car", "truck", "bus", "motorcycle", "bicycle", "bike", "train", "boat", "airplane", "van", "scooter"],
    ["chair", "table", "bench", "couch", "sofa", "bed", "desk", "shelf", "stool"],
    ["pizza", "sandwich", "cake", "banana", "apple", "orange", "donut", "salad", "bread", "burger"],
    ["cup", "bottle", "plate", "bowl", "glass", "mug", "vase", "jar", "basket", "box"],
    ["laptop", "phone", "book", "remote", "keyboard", "camera", "clock", "lamp", "television", "monitor"],
    ["umbrella", "ball", "kite", "frisbee", "bag", "hat", "backpack", "surfboard", "skateboard", "racket"],
    ["room", "kitchen", "bathroom", "street", "field", "beach", "park", "yard", "road", "farm", "garden"],
    ["window", "door", "wall", "fence", "building", "tree", "sign", "pole", "tower", "bridge"],
    ["shirt", "jacket", "dress", "coat", "sweater", "helmet", "cap", "scarf"],
    ["circle", "square", "triangle", "star", "rectangle", "diamond"],
]
ATTRIBUTE_GROUPS: list[list[str]] = [
    ["red", "blue", "green", "yellow", "white", "black", "brown", "orange", "pink", "purple", "gray", "silver"],
    ["wooden", "metal", "plastic", "stone", "leather", "glass", "brick", "concrete"],
    ["small", "large", "big", "tiny", "huge", "little"],
    ["tall", "short", "long"],
    ["round", "square", "rectangular", "oval", "flat"],
    ["striped", "spotted", "plain", "checkered", "fluffy", "shiny"],
    ["old", "new", "young", "empty", "full", "open", "closed", "wet", "dry"],
    ["multicolored", "colorful", "bright", "dark", "pale"],
]
COUNT_WORDS = ["two", "three", "four", "five", "six", "several", "many"]
# Relations: replaced by their opposite first, else by another relation (longest phrases first).
RELATION_OPPOSITES: dict[str, str] = {
    "in front of": "behind",
    "behind": "in front of",
    "on top of": "underneath",
    "underneath": "on top of",
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "left of": "right of",
    "right of": "left of",
    "outside of": "inside",
    "inside": "outside of",
    "outside": "inside",
    "next to": "far from",
    "far from": "next to",
    "above": "below",
    "below": "above",
    "under": "on",
    "on": "under",
    "beside": "behind",
    "near": "far from",
    "into": "out of",
    "across": "along",
    "along": "across",
}
ACTION_GROUPS: list[list[str]] = [
    ["sitting", "standing", "lying", "laying", "kneeling", "leaning", "resting"],
    ["walking", "running", "jumping", "skating", "skiing", "surfing", "swimming", "dancing"],
    ["eating", "drinking", "holding", "carrying", "throwing", "catching", "cutting", "cooking"],
    ["riding", "driving", "pushing", "pulling", "parking", "racing"],
    ["playing", "watching", "reading", "looking", "talking", "smiling", "waving", "pointing"],
    ["flying", "floating", "hanging", "grazing"],
]

CATEGORIES = ("entity", "attribute", "count", "relation", "action")
_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "sheep": "sheep",
    "mouse": "mice", "knife": "knives", "foot": "feet", "tooth": "teeth", "goose": "geese",
    "shelf": "shelves", "leaf": "leaves", "fish": "fish", "deer": "deer",
}


def pluralize(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


@dataclass(frozen=True)
class _Site:
    """A place in the caption an edit can change: token span [start, end) and its options."""

    start: int
    end: int
    category: str
    options: tuple[str, ...]  # replacement texts (already in the right number / case)


class LexicalPerturber:
    """Seeded 0-3 word-list edits of a caption (entity, attribute, count, relation, action).

    The same (seed, caption, index) always gives the same output, whatever the order in which
    captions are processed. `extra_groups` adds domain words: {"entity": [[...], ...], ...};
    a "relation" group [a, b] makes a and b each other's replacement. Edits that together fail
    `validate_pseudo_initial` are dropped one by one (the output is never a rewrite).
    """

    def __init__(
        self,
        seed: int = 0,
        edit_weights: Sequence[float] = (0.15, 0.35, 0.3, 0.2),  # P(0), P(1), P(2), P(3) edits
        extra_groups: dict[str, list[list[str]]] | None = None,
        categories: Sequence[str] = CATEGORIES,
        rules: "ValidationRules | None" = None,
        default_vocabulary: bool = True,
    ):
        self.seed = seed
        self.rules = rules or ValidationRules()
        self.edit_weights = list(edit_weights)
        self.categories = tuple(categories)
        extra = extra_groups or {}
        base = default_vocabulary  # False: only `extra_groups` (a closed world, e.g. synthetic data)
        self.entity_groups = [list(g) for g in ENTITY_GROUPS if base] + extra.get("entity", [])
        self.attribute_groups = [list(g) for g in ATTRIBUTE_GROUPS if base] + extra.get("attribute", [])
        self.action_groups = [list(g) for g in ACTION_GROUPS if base] + extra.get("action", [])
        self.count_words = list(COUNT_WORDS if base else []) + [w for g in extra.get("count", []) for w in g]
        self.relations = dict(RELATION_OPPOSITES if base else {})
        for group in extra.get("relation", []):
            for i, phrase in enumerate(group):  # a group [a, b] means a <-> b
                self.relations.setdefault(phrase, group[(i + 1) % len(group)])
        # word -> (group, is_plural); a word in several groups keeps its first group
        self._nouns: dict[str, tuple[list[str], bool]] = {}
        for group in self.entity_groups:
            for word in group:
                self._nouns.setdefault(word, (group, False))
                self._nouns.setdefault(pluralize(word), (group, True))
        self._singular_of = {pluralize(w): w for g in self.entity_groups for w in g if pluralize(w) != w}
        self._attributes = {w: g for g in self.attribute_groups for w in g}
        self._actions = {w: g for g in self.action_groups for w in g}
        self._relation_phrases = sorted(self.relations, key=lambda p: -len(p.split()))

    # -- finding edit sites
    def _sites(self, words: list[str]) -> list[_Site]:
        lower = [w.lower() for w in words]
        sites: list[_Site] = []
        taken: set[int] = set()
        if "relation" in self.categories:
            for phrase in self._relation_phrases:
                parts = phrase.split()
                for i in range(len(lower) - len(parts) + 1):
                    span = range(i, i + len(parts))
                    if lower[i : i + len(parts)] == parts and not taken.intersection(span):
                        opposite = self.relations[phrase]
                        others = [p for p in self.relations if p != phrase and p != opposite and len(p.split()) <= 3]
                        sites.append(_Site(i, i + len(parts), "relation", (opposite, opposite, *others[:4])))
                        taken.update(span)
        for i, word in enumerate(lower):
            if i in taken:
                continue
            if "count" in self.categories and word in self.count_words:
                noun = self._next_noun(lower, i)
                if noun is not None:
                    options = [c for c in self.count_words if c != word]
                    if noun[1] in self._singular_of:
                        options.append("a \0" + self._singular_of[noun[1]])
                    sites.append(_Site(i, noun[0] + 1, "count", tuple(options)))
                    continue
            if "count" in self.categories and word in ("a", "an", "one"):
                noun = self._next_noun(lower, i)
                if noun is not None and not self._nouns[noun[1]][1]:
                    sites.append(_Site(i, noun[0] + 1, "count", tuple(c + " \0" + pluralize(noun[1]) for c in self.count_words[:3])))
                    continue
            if "entity" in self.categories and word in self._nouns:
                group, plural = self._nouns[word]
                options = tuple(pluralize(w) if plural else w for w in group if w != word and pluralize(w) != word)
                sites.append(_Site(i, i + 1, "entity", options))
            elif "attribute" in self.categories and word in self._attributes:
                sites.append(_Site(i, i + 1, "attribute", tuple(w for w in self._attributes[word] if w != word)))
            elif "action" in self.categories and word in self._actions:
                sites.append(_Site(i, i + 1, "action", tuple(w for w in self._actions[word] if w != word)))
        return sites

    def _next_noun(self, lower: list[str], i: int) -> tuple[int, str] | None:
        """Position of the entity noun a determiner/count at `i` quantifies (adjectives may intervene)."""
        for j in range(i + 1, min(i + 4, len(lower))):
            if lower[j] in self._nouns:
                return j, lower[j]
            if lower[j] not in self._attributes and not lower[j].endswith(("ed", "ful", "y")):
                return None
        return None

    def _apply_count(self, words: list[str], site: _Site, choice: str) -> list[str]:
        """Count edits change the quantity word and, when needed, the noun's number."""
        if "\0" not in choice:  # another count word: the noun stays plural
            return [choice] + words[site.start + 1 : site.end]
        quantity, noun = choice.split("\0")
        middle = words[site.start + 1 : site.end - 1]
        quantity = quantity.split()
        if quantity == ["a"] and (middle or [noun])[0][:1].lower() in "aeiou":
            quantity = ["an"]
        return quantity + middle + [noun]

    # -- public API
    def perturb(self, caption: str, index: int = 0, num_edits: int | None = None) -> tuple[str, list[str]]:
        """One pseudo-initial caption and the categories edited (empty = identical)."""
        rng = random.Random(f"{self.seed}\x1f{index}\x1f{caption}")
        if num_edits is None:
            num_edits = rng.choices(range(len(self.edit_weights)), weights=self.edit_weights)[0]
        tokens = re.split(r"(\w+)", caption)  # odd positions are words, even ones separators
        words = tokens[1::2]
        sites = self._sites(words)
        rng.shuffle(sites)
        chosen: list[_Site] = []
        used: set[int] = set()
        for site in sites:
            if len(chosen) == num_edits:
                break
            if site.options and not used.intersection(range(site.start, site.end)):
                chosen.append(site)
                used.update(range(site.start, site.end))
        edits = [(site, rng.choice(site.options)) for site in chosen]
        # Several multi-word edits can add up to a rewrite of a short caption: drop edits until
        # the result passes the same validation the LLM outputs must pass.
        for keep in range(len(edits), 0, -1):
            text = self._apply(tokens, words, edits[:keep])
            if validate_pseudo_initial(caption, text, self.rules) is None:
                return text, [site.category for site, _ in edits[:keep]]
        return caption, []

    def _apply(self, tokens: list[str], words: list[str], edits: list[tuple[_Site, str]]) -> str:
        replacement: dict[int, tuple[int, list[str]]] = {}  # site start -> (site end, new words)
        for site, choice in edits:
            new = self._apply_count(words, site, choice) if site.category == "count" else choice.split()
            new[0] = _match_case(words[site.start], new[0])
            replacement[site.start] = (site.end, new)
            before = site.start - 1  # "a cat" -> "an elephant"
            if before >= 0 and words[before].lower() in ("a", "an") and before not in replacement:
                article = "an" if new[0][:1].lower() in "aeiou" else "a"
                if article != words[before].lower():
                    replacement[before] = (before + 1, [_match_case(words[before], article)])
        # rebuild: separators inside an edited span go, the one after it stays
        out, k = [tokens[0]], 0
        while k < len(words):
            if k in replacement:
                end, new = replacement[k]
                out += [" ".join(new), tokens[2 * (end - 1) + 2]]
                k = end
            else:
                out += [words[k], tokens[2 * k + 2]]
                k += 1
        return "".join(out)

    def perturb_many(self, caption: str, n: int = 3) -> list[str]:
        return [self.perturb(caption, index=i)[0] for i in range(n)]


# ---------------------------------------------------------------------------- validation


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def changed_words(source: str, candidate: str) -> int:
    """Word-level difference: words replaced, inserted or deleted (difflib alignment)."""
    a, b = _words(source), _words(candidate)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


@dataclass(frozen=True)
class ValidationRules:
    """How far a pseudo-initial caption may drift from its GT (App. F.1: 0-3 local edits)."""

    max_changed_words: int = 10  # 3 edits of up to ~3 words each ("outside of" -> "inside")
    max_changed_fraction: float = 0.6  # of the longer caption's words
    min_length_ratio: float = 0.6  # candidate words / source words
    max_length_ratio: float = 1.6


def validate_pseudo_initial(source: str, candidate: str, rules: ValidationRules = ValidationRules()) -> str | None:
    """None if `candidate` is an acceptable pseudo-initial caption of `source`, else the reason."""
    if not candidate or not candidate.strip():
        return "empty"
    if "\n" in candidate.strip():
        return "several lines"
    a, b = _words(source), _words(candidate)
    if not b:
        return "no words"
    ratio = len(b) / max(1, len(a))
    if ratio < rules.min_length_ratio or ratio > rules.max_length_ratio:
        return f"length ratio {ratio:.2f} outside [{rules.min_length_ratio}, {rules.max_length_ratio}]"
    changed = changed_words(source, candidate)
    if changed > rules.max_changed_words:
        return f"{changed} changed words > {rules.max_changed_words}"
    if changed / max(len(a), len(b)) > rules.max_changed_fraction:
        return f"{changed}/{max(len(a), len(b))} words changed > {rules.max_changed_fraction:.0%}"
    return None


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


class LLMPseudoInitialGenerator:
    """Pseudo-initial captions from an LLM backend, validated, with a lexical fallback."""

    def __init__(
        self,
        backend,  # videoqa.llm.base.LLMBackend
        n: int = 3,
        rules: ValidationRules = ValidationRules(),
        fallback: LexicalPerturber | None = None,
        batch_size: int = 64,
    ):
        self.backend, self.n, self.rules = backend, n, rules
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
    from captioner.data import CaptionDataset, CaptionPair
    from captioner.inference import generate_captions

    dataset = CaptionDataset([CaptionPair(r.image, r.captions[0]) for r in records], image_root)
    by_image: dict[str, str] = {}
    images = list(dict.fromkeys(r.image for r in records))
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pil = [dataset.load_image(i) for i in chunk]
        captions = generate_captions(model, processor, pil, max_new_tokens=max_new_tokens, batch_size=batch_size, refine_steps=0)
        by_image.update(zip(chunk, captions))
    for record in records:
        record.initial_captions = [[by_image[record.image]] for _ in record.captions]
    stats.sources["self"] += sum(len(r.captions) for r in records)


def load_llm_backend(ref: str, overrides: Sequence[str] = ()):
    """An LLM backend from a configs/llms/ name, a YAML file or a local model directory."""
    from videoqa.config import LLMConfig, _component, parse_override, set_dotted, validate

    data, source = _component("llms", ref)
    for item in overrides:
        set_dotted(data, *parse_override(item))
    from videoqa.llm import load_backend

    config = validate(LLMConfig, data, source + (" (+ --llm-set)" if overrides else ""))
    return load_backend(config)


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
    parser.add_argument("--llm", help="LLM: configs/llms/<name>.yaml, a YAML file or a local model directory")
    parser.add_argument("--llm-set", action="append", default=[], metavar="KEY=VALUE", help="override an LLM config field")
    parser.add_argument("--batch-size", type=int, default=64, help="LLM prompts / images per batch")
    parser.add_argument("--mix-base", default="lexical", choices=["lexical", "llm"], help="gt-mix: how to make the edited one")
    parser.add_argument("--model", help="--method self: the stage-1 checkpoint directory")
    parser.add_argument("--image-root", default=".", help="--method self: directory the image paths are relative to")
    parser.add_argument("--max-new-tokens", type=int, default=60, help="--method self: caption length limit")
    parser.add_argument("--max-changed-words", type=int, default=ValidationRules.max_changed_words)
    parser.add_argument("--max-changed-fraction", type=float, default=ValidationRules.max_changed_fraction)
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument("--chunk-size", type=int, default=1024, help="images per chunk appended to the output")
    parser.add_argument("--resume", action="store_true", help="keep the images already in --output, do the rest")


def make_pseudo_initial(records, args: argparse.Namespace, on_chunk=None) -> PseudoInitialStats:
    """Fill `initial_captions` of every record with the chosen method, `args.chunk_size` images at a
    time (`on_chunk(records)` after each, e.g. to append them to the output); return counts."""
    stats = PseudoInitialStats(method=args.method)
    perturber = LexicalPerturber(seed=args.seed)
    base = args.mix_base if args.method == "gt-mix" else args.method
    n = 1 if args.method == "gt-mix" else args.n
    backend = model = processor = None
    if base == "llm":
        if not args.llm:
            raise UserError("--method llm needs --llm NAME|YAML|MODEL_DIR (or use --method lexical, which needs no model)")
        rules = ValidationRules(max_changed_words=args.max_changed_words, max_changed_fraction=args.max_changed_fraction)
        backend = load_llm_backend(args.llm, args.llm_set)
        generator = LLMPseudoInitialGenerator(backend, n, rules, perturber, args.batch_size)
    elif base == "self":
        if not args.model:
            raise UserError("--method self needs --model STAGE1_CHECKPOINT_DIR")
        from captioner.inference import load_model

        model, processor = load_model(args.model, train_hint="train stage 1 with `captioner train --config configs/train/stage1.yaml`")
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
                    stats.identical += sum(1 for x in initials if _words(x) == _words(gt))
            if on_chunk is not None:
                on_chunk(chunk)
    finally:
        if backend is not None:
            backend.close()
    return stats


def run(args: argparse.Namespace) -> int:
    from captioner.data import load_records, read_jsonl

    records = load_records(args.input, args.format, split=args.split)
    if args.limit:
        records = records[: args.limit]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, str]] = set()
    if args.resume and output.is_file() and output.stat().st_size:
        done = {(r.image_id, r.image) for r in read_jsonl(output)}
        records = [r for r in records if (r.image_id, r.image) not in done]
        print(f"resuming: {len(done)} images already in {output}, {len(records)} to go")
    mode = "a" if done else "w"
    with open(output, mode, encoding="utf-8") as f:

        def append(chunk) -> None:  # written as we go: a long LLM job can be resumed with --resume
            for record in chunk:
                f.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            f.flush()

        stats = make_pseudo_initial(records, args, on_chunk=append)
    summary = stats.to_json()
    print(json.dumps(summary, indent=2))
    Path(str(args.output) + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0
