"""Pseudo-initial captions (App. F.1, D.5): validation, the lexical perturber, the LLM path
(an in-test backend and, end to end, vLLM on a tiny Qwen2), and the CLI methods."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from typing import Any

import pytest

from captioner.data.readers import read_jsonl
from captioner.training import pseudo_initial
from captioner.training.edits import LexicalPerturber, ValidationRules, changed_words, validate_pseudo_initial
from captioner.training.pseudo_initial import FEW_SHOT, LLMPseudoInitialGenerator, build_messages, parse_completion
from videoqa.answering.llm.base import Completion, LLMBackend
from videoqa.cli.captioner import main as captioner_main

GT = "A woman in a room with a cat"


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "candidate",
    [
        "A woman in a room with two cats",  # Tab. 13
        "A woman in a room with a dog",
        "A woman in a room with a cat",  # identical is allowed
        "A man in a kitchen with a black cat.",  # three edits
    ],
)
def test_validation_accepts_near_edits(candidate):
    assert validate_pseudo_initial(GT, candidate) is None


@pytest.mark.parametrize(
    "candidate, reason",
    [
        ("A cat sitting on a chair in front of the window.", "changed words"),  # Tab. 11's bad example
        ("Some dogs play on the sunny beach", "words changed"),  # a short rewrite
        ("", "empty"),
        ("A woman", "length ratio"),
        ("A woman in a room with a cat\nA woman in a room with a dog", "several lines"),
    ],
)
def test_validation_rejects_rewrites(candidate, reason):
    assert reason in validate_pseudo_initial(GT, candidate)


def test_changed_words_counts_word_edits():
    assert changed_words(GT, GT + ".") == 0  # punctuation and case do not count
    assert changed_words(GT, "A woman in a room with two cats") == 2
    assert (
        changed_words(
            "a multicolored motorcycle rests outside of a sheep farm",
            "a multicolored bicycle rests inside a sheep farm",
        )
        == 3
    )
    long_gt = " ".join(["word"] * 40)
    assert validate_pseudo_initial(long_gt, " ".join(["other"] * 11 + ["word"] * 29), ValidationRules()) is not None


# ---------------------------------------------------------------------------- lexical perturber


CAPTIONS = [
    GT,
    "A multicolored motorcycle rests outside of a sheep farm",
    "Two red circles to the left of a blue square.",
    "A man riding a horse on a beach, next to three dogs.",
    "An apple on a wooden table",
    "A young boy is eating a sandwich in the kitchen",
]


def test_lexical_perturber_is_seeded_and_order_independent():
    a = LexicalPerturber(seed=3)
    b = LexicalPerturber(seed=3)
    forward = [a.perturb_many(c) for c in CAPTIONS]
    backward = [b.perturb_many(c) for c in reversed(CAPTIONS)][::-1]
    assert forward == backward
    other = [LexicalPerturber(seed=4).perturb_many(c) for c in CAPTIONS]
    assert other != forward


def test_lexical_edits_are_small_valid_and_varied():
    perturber = LexicalPerturber(seed=0)
    categories: set[str] = set()
    identical = 0
    for caption in CAPTIONS:
        for index in range(20):
            text, edited = perturber.perturb(caption, index)
            assert len(edited) <= 3
            assert validate_pseudo_initial(caption, text) is None, (caption, text)
            assert (text == caption) == (not edited)
            identical += text == caption
            categories.update(edited)
    assert categories == {"entity", "attribute", "count", "relation", "action"}
    assert 0 < identical < 60  # sometimes identical (App. F.1), mostly edited


def test_lexical_edit_examples_keep_structure_and_grammar():
    perturber = LexicalPerturber(seed=0)
    # forced single edits, inspected by category
    outputs = [perturber.perturb(GT, i, num_edits=1) for i in range(40)]
    texts = {text for text, _ in outputs}
    for text in texts:
        assert text.startswith(("A ", "An ", "Two ", "Three ", "Four ")) and text.count(" ") >= 6
    count_edits = [t for t, cats in outputs if cats == ["count"]]
    assert count_edits, texts
    for text in count_edits:  # "a cat" -> "two cats": the noun follows the number
        assert re.search(r"\b(two|three|four|five|six|several|many) (women|rooms|cats)\b", text, flags=re.I), text
    # article agreement after an entity swap ("a cat" -> "an elephant", never "a elephant")
    for i in range(60):
        text, _ = perturber.perturb("A man riding a horse", i)
        assert not re.search(r"\ba [aeiou]", text, flags=re.I), text


def test_closed_vocabulary_stays_in_its_world():
    from captioner.replication.synth import COLOURS, PERTURB_VOCABULARY, SHAPES

    perturber = LexicalPerturber(seed=1, extra_groups=PERTURB_VOCABULARY, default_vocabulary=False)
    allowed = (
        set(COLOURS)
        | set(SHAPES)
        | {s + "s" for s in SHAPES}
        | {
            "a",
            "an",
            "two",
            "three",
            "to",
            "the",
            "left",
            "right",
            "of",
            "above",
            "below",
            "on",
            "top",
            "at",
            "bottom",
            "and",
        }
    )
    seen_changes = 0
    for i in range(30):
        text, edited = perturber.perturb("two red circles to the left of a blue square", i)
        assert set(text.split()) <= allowed, text
        seen_changes += bool(edited)
    assert seen_changes > 15


# ---------------------------------------------------------------------------- LLM path


class RuleBackend(LLMBackend):
    """A real (if simple) LLM stand-in: answers from a deterministic rule on the prompt.

    For a GT caption it returns: 1. the caption with its last word replaced (a near edit),
    2. a complete rewrite, and nothing else - so one output is accepted, one rejected, and one
    is missing. A caption containing "fail" gets an error completion.
    """

    def __init__(self):
        self.calls: list[tuple[int, int]] = []
        self.closed = False

    def generate(self, prompts: Sequence[list[dict[str, str]]], max_tokens: int) -> list[Completion]:
        self.calls.append((len(prompts), max_tokens))
        out = []
        for messages in prompts:
            gt = messages[-1]["content"].split(": ", 1)[1]
            if "fail" in gt:
                out.append(Completion(text="", error="server overloaded"))
                continue
            words = gt.split()
            near = " ".join(words[:-1] + ["giraffe"])
            out.append(
                Completion(
                    text=f'Here are the versions:\n1. "{near}"\n2. A bowl of soup sits on a wooden table today\n'
                )
            )
        return out

    def choose(self, prompts, choices):  # not used by pseudo-initial generation
        raise NotImplementedError

    def count_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) for m in messages)

    @property
    def max_context(self) -> int:
        return 4096

    def identity(self) -> dict[str, Any]:
        return {"backend": "rule"}

    def close(self) -> None:
        self.closed = True


def test_prompt_follows_app_f1():
    messages = build_messages("A dog on a sofa", n=3)
    system = messages[0]["content"]
    for rule in ("0 to 3", "entity", "attribute", "relation", "action", "structure", "identical"):
        assert rule in system
    assert messages[1]["content"].endswith(FEW_SHOT[0][0])
    assert messages[2]["content"].splitlines()[1] == "2. A woman in a room with a dog"
    assert messages[-1] == {"role": "user", "content": "Ground-truth caption: A dog on a sofa"}
    assert parse_completion('1. "a cat"\n\n2) a dog\n- a cow\nSure, here you go') == ["a cat", "a dog", "a cow"]


def test_llm_generator_validates_and_falls_back():
    backend = RuleBackend()
    generator = LLMPseudoInitialGenerator(backend, n=3, fallback=LexicalPerturber(seed=0), batch_size=2)
    results = generator.generate([GT, "A red bus parked next to a tree", "this one will fail"])
    assert [len(r.captions) for r in results] == [3, 3, 3]
    assert len(backend.calls) == 2  # batches of 2
    first = results[0]
    assert first.captions[0] == "A woman in a room with a giraffe" and first.sources == ["llm", "fallback", "fallback"]
    assert len(first.rejected) == 1 and "changed" in first.rejected[0][1]
    for caption in first.captions[1:]:
        assert validate_pseudo_initial(GT, caption) is None
    assert results[2].sources == ["fallback"] * 3 and "server overloaded" in results[2].rejected[0][1]


# ---------------------------------------------------------------------------- CLI


@pytest.fixture()
def gt_file(tmp_path):
    path = tmp_path / "gt.jsonl"
    rows = [
        {"image": "a.png", "captions": [GT, "A cat in a room"]},
        {"image": "b.png", "captions": ["Two red circles to the left of a blue square"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_lexical_and_gt_mix(gt_file, tmp_path):
    out = tmp_path / "lexical.jsonl"
    assert captioner_main(["pseudo-initial", "--input", str(gt_file), "--output", str(out), "--method", "lexical"]) == 0
    records = read_jsonl(out)  # the output is valid stage-2 input
    assert [len(x) for r in records for x in r.initial_captions] == [3, 3, 3]
    summary = json.loads((tmp_path / "lexical.jsonl.summary.json").read_text())
    assert summary["initial_captions"] == 9 and summary["sources"] == {"lexical": 9}
    again = tmp_path / "again.jsonl"
    captioner_main(["pseudo-initial", "--input", str(gt_file), "--output", str(again), "--method", "lexical"])
    assert again.read_text() == out.read_text()  # seeded

    # an interrupted job resumes: the first image stays as written, the rest is appended
    partial = tmp_path / "partial.jsonl"
    base = ["pseudo-initial", "--input", str(gt_file), "--output", str(partial), "--method", "lexical"]
    assert captioner_main(base + ["--limit", "1"]) == 0
    assert len(read_jsonl(partial)) == 1
    assert captioner_main(base + ["--resume", "--chunk-size", "1"]) == 0
    assert partial.read_text() == out.read_text()

    mixed = tmp_path / "mix.jsonl"
    assert (
        captioner_main(["pseudo-initial", "--input", str(gt_file), "--output", str(mixed), "--method", "gt-mix"]) == 0
    )
    for record in read_jsonl(mixed):  # Data 4: one edited + the GT itself
        for gt, initials in zip(record.captions, record.initial_captions):
            assert len(initials) == 2 and initials[1] == gt


def test_cli_llm_needs_an_llm(gt_file, tmp_path, capsys):
    code = captioner_main(["pseudo-initial", "--input", str(gt_file), "--output", str(tmp_path / "o.jsonl")])
    assert code == 2 and "--llm" in capsys.readouterr().err


def test_cli_self_captions_data1(gt_file, tmp_path):
    """Data 1: the stage-1 model's own caption of each image becomes the initial caption."""
    import numpy as np
    from PIL import Image

    from captioner.modeling.presets import build_tiny_checkpoint

    model_dir = build_tiny_checkpoint(tmp_path / "specialist", "tiny-specialist", seed=0)
    for i, name in enumerate(("a.png", "b.png")):
        Image.fromarray(np.full((40, 50, 3), 60 * (i + 1), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "self.jsonl"
    code = captioner_main(
        [
            "pseudo-initial",
            "--input",
            str(gt_file),
            "--output",
            str(out),
            "--method",
            "self",
            "--model",
            str(model_dir),
            "--image-root",
            str(tmp_path),
            "--max-new-tokens",
            "8",
        ]
    )
    assert code == 0
    records = read_jsonl(out)
    first = records[0].initial_captions
    assert len(first) == 2 and first[0] == first[1] and len(first[0]) == 1  # one caption per image
    summary = json.loads((tmp_path / "self.jsonl.summary.json").read_text())
    assert summary["sources"] == {"self": 3}


def test_llm_method_uses_the_llm_it_is_given(gt_file, tmp_path):
    """The captioner package builds no LLM: `run` gets a loader, calls it once and closes the LLM."""
    backend, loads = RuleBackend(), []

    def load_llm():
        loads.append(1)
        return backend

    parser = argparse.ArgumentParser()
    pseudo_initial.add_arguments(parser)
    out = tmp_path / "llm.jsonl"
    args = parser.parse_args(["--input", str(gt_file), "--output", str(out), "--chunk-size", "1"])
    assert pseudo_initial.run(args, load_llm) == 0
    assert loads == [1] and backend.closed and len(backend.calls) == 2  # one LLM, one call per chunk
    records = read_jsonl(out)
    assert records[0].initial_captions[0][0] == "A woman in a room with a giraffe"  # the near edit, accepted
    assert records[0].meta["initial_sources"][0] == ["llm", "fallback", "fallback"]
    lexical = parser.parse_args(["--input", str(gt_file), "--output", str(out), "--method", "lexical"])
    assert pseudo_initial.run(lexical, load_llm) == 0 and loads == [1]  # not built when no method needs it


@pytest.mark.slow
def test_cli_llm_end_to_end_with_vllm(gt_file, tmp_path):
    """The default method through the project's vLLM backend on a tiny random Qwen2: its text is
    noise, so validation must reject it and the perturber fill in - every path runs for real."""
    pytest.importorskip("vllm")
    from videoqa.fixtures.tiny_llm import build_tiny_llm

    llm_dir = build_tiny_llm(tmp_path / "tiny-llm")
    out = tmp_path / "llm.jsonl"
    code = captioner_main(
        [
            "pseudo-initial",
            "--input",
            str(gt_file),
            "--output",
            str(out),
            "--llm",
            str(llm_dir),
            "--llm-set",
            "max_model_len=1024",
            "--llm-set",
            "dtype=float32",
            "--llm-set",
            "cpu_kvcache_gib=1",
        ]
    )
    assert code == 0
    records = read_jsonl(out)
    assert [len(x) for r in records for x in r.initial_captions] == [3, 3, 3]
    for record in records:
        for gt, initials in zip(record.captions, record.initial_captions):
            for text in initials:
                assert validate_pseudo_initial(gt, text) is None
    summary = json.loads((tmp_path / "llm.jsonl.summary.json").read_text())
    assert sum(summary["sources"].values()) == 9 and set(summary["sources"]) <= {"llm", "fallback"}
    assert records[0].meta["initial_sources"][0][0] in ("llm", "fallback")
