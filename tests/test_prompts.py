"""Prompt templates, option letters and the chain-of-thought answer parser (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from videoqa.answering.prompts import (
    PromptTemplate,
    build_chunk_summary_messages,
    build_messages,
    build_summary_messages,
    format_options,
    letter_to_index,
    load_prompt,
    parse_letter,
)
from videoqa.config import CONFIG_DIR
from videoqa.types import OPTION_LETTERS, Question
from videoqa_base.errors import UserError

QUESTION = Question(
    qid="q1",
    video_id="v1",
    video_path=Path("v1.mp4"),
    question="What does the person do after opening the fridge?",
    options=("takes out milk", "closes the door", "washes a cup", "sits down", "leaves the room"),
)
TRANSCRIPT = "[0.0s] a person opens a fridge {not a placeholder}\n[1.0s] the person takes out a bottle of milk"
PROMPT_NAMES = sorted(p.stem for p in (CONFIG_DIR / "prompts").glob("*.yaml"))


# ---------------------------------------------------------------------------- letters


def test_letter_to_index():
    assert [letter_to_index(c, 5) for c in "ABCDE"] == [0, 1, 2, 3, 4]
    assert letter_to_index(" C\n", 5) == 2  # surrounding whitespace from a raw reply
    assert letter_to_index("E", 4) is None  # beyond this question's options
    for bad in ("", "a", "AB", "Z", "1", "A."):
        assert letter_to_index(bad, 5) is None


@given(st.integers(min_value=1, max_value=len(OPTION_LETTERS)), st.data())
def test_letter_index_round_trip(num_options, data):
    i = data.draw(st.integers(min_value=0, max_value=num_options - 1))
    assert letter_to_index(OPTION_LETTERS[i], num_options) == i


def test_question_letters_match_options():
    assert QUESTION.letters == ("A", "B", "C", "D", "E")


# ---------------------------------------------------------------------------- templates


def test_shipped_prompts_cover_every_mode():
    assert {"standard", "cot", "summarize", "fewshot"} <= set(PROMPT_NAMES)
    assert {load_prompt(name).mode for name in PROMPT_NAMES} == {"choice", "cot", "summarize"}


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_shipped_prompt_builds_messages(name):
    template = load_prompt(name)
    assert template.name == name
    messages = build_messages(template, TRANSCRIPT, QUESTION, summary="the person takes out milk")
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
    roles = [m["role"] for m in messages[1:-1]]
    assert roles == ["user", "assistant"] * (len(roles) // 2)  # few-shot turns come in pairs
    last = messages[-1]["content"]
    assert QUESTION.question in last
    for letter, option in zip("ABCDE", QUESTION.options):
        assert f"{letter}. {option}" in last
    if template.mode == "summarize":
        assert "the person takes out milk" in last and TRANSCRIPT not in last
        assert TRANSCRIPT in build_summary_messages(template, TRANSCRIPT, QUESTION)[-1]["content"]
    else:
        assert TRANSCRIPT in last  # braces inside the transcript survive formatting


def test_fewshot_examples_become_turns():
    template = load_prompt("fewshot")
    messages = build_messages(template, TRANSCRIPT, QUESTION)
    assert len(messages) == 1 + 2 * len(template.examples) + 1
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert answers == [ex.answer for ex in template.examples]


def test_cot_example_shows_reasoning_then_answer_line():
    template = PromptTemplate(
        name="t",
        mode="cot",
        user="{transcript}\n{question}\n{options}",
        examples=[{"transcript": "x", "question": "q?", "options": ["a", "b"], "answer": "B", "reasoning": "Because."}],
    )
    reply = build_messages(template, "t", QUESTION)[1]["content"]
    assert reply == "Because.\nAnswer: B"
    assert parse_letter(reply, ("A", "B")) == "B"  # what we teach is what we parse


def test_option_format_and_chunk_summary():
    template = PromptTemplate(name="t", user="{options}", option_format="({letter}) {text}")
    assert format_options(template, ("x", "y")) == "(A) x\n(B) y"
    chunk = build_chunk_summary_messages(template, "[3s] a dog", QUESTION)
    assert chunk[-1]["role"] == "user" and "[3s] a dog" in chunk[-1]["content"]


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


def test_bad_templates_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown placeholder"):
        load_prompt(_write(tmp_path, "user: 'Q: {questoin}'\n"))
    with pytest.raises(UserError, match="summary_user"):
        load_prompt(_write(tmp_path, "mode: summarize\nuser: '{summary} {options}'\n"))
    with pytest.raises(UserError, match="only available in mode 'summarize'"):
        load_prompt(_write(tmp_path, "user: '{summary}'\n"))
    with pytest.raises(UserError, match="field 'mode'"):
        load_prompt(_write(tmp_path, "mode: telepathy\nuser: '{question}'\n"))
    with pytest.raises(UserError, match="answer"):
        load_prompt(
            _write(
                tmp_path,
                "user: '{question}'\nexamples:\n  - {transcript: t, question: q, options: [a, b], answer: C}\n",
            )
        )
    with pytest.raises(UserError, match="not a registered name"):
        load_prompt("no-such-prompt")


# ---------------------------------------------------------------------------- answer parsing


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Answer: B", "B"),
        ("**Answer:** C", "C"),
        ("The correct answer is: (D).", "D"),
        ("Final answer: **A**", "A"),
        ("The best choice would be C because the captions say so.", "C"),
        ("Option E fits best.", "E"),
        ("B) takes out milk", "B"),
        ("(A)", "A"),
        ("First the fridge opens.\nThen milk.\nB", "B"),
        ("The answer is A.\nWait, that is wrong.\nFinal answer: D", "D"),  # the last statement wins
        ("A man opens the fridge, so the answer is B.", "B"),  # the article "A" is not option A
        ("the answer is a bottle of milk", None),  # lower-case "a" is a word, not a letter
        ("Answer: F", None),  # not one of this question's five letters
        ("I cannot tell from the captions.", None),
        ("", None),
    ],
)
def test_parse_letter_examples(reply, expected):
    assert parse_letter(reply, ("A", "B", "C", "D", "E")) == expected


_letters = st.integers(min_value=1, max_value=len(OPTION_LETTERS)).map(lambda n: tuple(OPTION_LETTERS[:n]))


@given(_letters, st.text(max_size=300), st.data())
def test_explicit_final_answer_is_always_found(letters, reasoning, data):
    letter = data.draw(st.sampled_from(letters))
    style = data.draw(st.sampled_from(["Answer: {}", "Final answer: ({})", "The answer is **{}**.", "answer = {}"]))
    assert parse_letter(f"{reasoning}\n{style.format(letter)}", letters) == letter


@given(_letters, st.text(max_size=300))
def test_parse_result_is_none_or_an_allowed_letter(letters, reply):
    assert parse_letter(reply, letters) in (None, *letters)


@given(st.text(alphabet=st.characters(blacklist_categories=("Lu",)), max_size=300))
def test_no_capital_letters_means_no_answer(reply):
    # cue words may appear ("answer: a"), but without a capital option letter nothing is parsed
    assert parse_letter(reply, tuple(OPTION_LETTERS)) is None


def test_every_prompts_worked_examples_use_the_transcript_format_the_code_writes():
    """A few-shot example teaches a format: it must be the one build_transcript gives the model."""
    from videoqa.answering.prompts import load_prompt
    from videoqa.answering.transcript import build_transcript
    from videoqa.config import CONFIG_DIR
    from videoqa.types import Caption, VideoCaptions

    checked = 0
    for path in sorted((CONFIG_DIR / "prompts").glob("*.yaml")):
        for example in load_prompt(path.stem).examples:
            lines = example.transcript.splitlines()
            captions = [Caption(float(t), text.strip()) for t, text in (line.split(":", 1) for line in lines)]
            rendered = build_transcript(VideoCaptions("example", captions, duration=captions[-1].t + 1))
            assert rendered == example.transcript, f"{path.name}: an example's transcript is not in the code's format"
            checked += 1
    assert checked >= 2  # fewshot.yaml's examples were seen


def test_a_prompt_extends_a_shared_file_and_overrides_its_keys(tmp_path):
    from videoqa.answering.prompts import load_prompt

    (tmp_path / "base.yaml").write_text("mode: choice\nsystem: shared system\nuser: '{transcript} {options}'\n")
    (tmp_path / "mine.yaml").write_text("extends: base.yaml\nsystem: my system\n")
    prompt = load_prompt(str(tmp_path / "mine.yaml"))
    assert (prompt.system, prompt.user, prompt.mode) == ("my system", "{transcript} {options}", "choice")
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(UserError, match="loop.yaml: field 'extends'"):
        load_prompt(str(tmp_path / "loop.yaml"))
