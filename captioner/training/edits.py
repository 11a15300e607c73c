"""Slightly wrong versions of a caption (App. F.1 of the paper): the seeded lexical perturber and the
validation every pseudo-initial caption must pass, whichever method made it.

An edit changes one entity, attribute (colour, material, count, size, ...), relation or action and
keeps the rest of the caption word for word; `validate_pseudo_initial` rejects rewrites (too many
changed words, a different length) so that stage-2 training always sees near misses of the GT.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

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
    "man": "men",
    "woman": "women",
    "child": "children",
    "person": "people",
    "sheep": "sheep",
    "mouse": "mice",
    "knife": "knives",
    "foot": "feet",
    "tooth": "teeth",
    "goose": "geese",
    "shelf": "shelves",
    "leaf": "leaves",
    "fish": "fish",
    "deer": "deer",
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
        rules: ValidationRules | None = None,
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
                    sites.append(
                        _Site(
                            i, noun[0] + 1, "count", tuple(c + " \0" + pluralize(noun[1]) for c in self.count_words[:3])
                        )
                    )
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


def caption_words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped: what edits are counted on."""
    return re.findall(r"\w+", text.lower())


def changed_words(source: str, candidate: str) -> int:
    """Word-level difference: words replaced, inserted or deleted (difflib alignment)."""
    a, b = caption_words(source), caption_words(candidate)
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
    a, b = caption_words(source), caption_words(candidate)
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


__all__ = [
    "ENTITY_GROUPS",
    "ATTRIBUTE_GROUPS",
    "COUNT_WORDS",
    "RELATION_OPPOSITES",
    "ACTION_GROUPS",
    "CATEGORIES",
    "pluralize",
    "LexicalPerturber",
    "caption_words",
    "changed_words",
    "ValidationRules",
    "validate_pseudo_initial",
]
