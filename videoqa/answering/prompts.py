"""Prompt templates for the answering stage, kept as YAML in configs/prompts/.

A template turns (transcript, question) into chat messages. Its `mode` says how the answer is
obtained (the structure follows LLoVi's prompt families; the wording is ours):

- choice:     one call, the LLM picks an option letter under a choice constraint.
- cot:        zero-shot chain of thought: free text, then `parse_letter` extracts the letter.
- summarize:  (C,Q)->S: first summarise the transcript with the question in mind, then answer
              from the summary with a constrained choice (two calls).

`examples` turns any mode into few-shot: each worked example becomes a user/assistant turn pair
before the real question. Placeholders: {transcript}, {question}, {options}, and in the answer
step of `summarize` also {summary}.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from videoqa.answering.llm.base import Messages
from videoqa.config import CONFIG_DIR
from videoqa.types import OPTION_LETTERS, Question
from videoqa_base.config import read_yaml, validate
from videoqa_base.errors import UserError

PROMPT_FIELDS = frozenset({"transcript", "question", "options", "summary"})


class FewShotExample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transcript: str
    question: str
    options: list[str]
    answer: str  # the option letter
    # cot examples: the worked reasoning shown before the answer line;
    # summarize examples: the summary the model should write
    reasoning: str = ""

    @model_validator(mode="after")
    def _answer_is_an_option(self):
        letters = OPTION_LETTERS[: len(self.options)]
        if self.answer not in letters:
            raise ValueError(f"answer {self.answer!r} is not one of the option letters {list(letters)}")
        return self


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    mode: Literal["choice", "cot", "summarize"] = "choice"
    system: str | None = None
    user: str  # the answering turn
    option_format: str = "{letter}. {text}"  # one line per option
    # cot: how a worked example's answer is written (the parser also accepts other phrasings)
    answer_format: str = "Answer: {letter}"
    # summarize mode: the first call's turn (may use {transcript}, {question}, {options})
    summary_user: str | None = None
    summary_max_tokens: int | None = None  # default: AnswerConfig.max_tokens
    # "summarize" context policy: how one chunk of an over-long transcript is condensed
    chunk_summary_user: str = (
        "Here is part of a video transcript, one caption per line with its time in seconds:\n"
        "{transcript}\n\n"
        "Condense it into a shorter transcript that keeps the times, the people, the objects and "
        "the actions, especially anything that may help answer: {question}"
    )
    examples: list[FewShotExample] = []

    @field_validator("user", "summary_user", "chunk_summary_user", "system")
    @classmethod
    def _known_placeholders(cls, text: str | None) -> str | None:
        if text is None:
            return text
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        unknown = names - PROMPT_FIELDS
        if unknown or "" in names:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown) or ['{}']}; allowed: {sorted(PROMPT_FIELDS)}")
        return text

    @model_validator(mode="after")
    def _mode_fields(self):
        if self.mode == "summarize":
            if not self.summary_user:
                raise ValueError("mode 'summarize' needs summary_user (the summarising turn)")
            if "{summary}" not in self.user:
                raise ValueError("mode 'summarize': the answering turn (user) must contain {summary}")
        elif "{summary}" in self.user:
            raise ValueError(f"{{summary}} is only available in mode 'summarize', not {self.mode!r}")
        return self


def load_prompt(ref: str) -> PromptTemplate:
    """A registered name (configs/prompts/<ref>.yaml) or a path to a YAML file."""
    path = CONFIG_DIR / "prompts" / f"{ref}.yaml"
    if not path.is_file():
        path = Path(ref).expanduser()
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            known = sorted(p.stem for p in (CONFIG_DIR / "prompts").glob("*.yaml"))
            raise UserError(f"prompt {ref!r}: not a registered name ({', '.join(known) or 'none'}) or a YAML file")
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    return validate(PromptTemplate, data, str(path))


def format_options(template: PromptTemplate, options: tuple[str, ...] | list[str]) -> str:
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"{len(options)} options, at most {len(OPTION_LETTERS)} supported")
    return "\n".join(
        template.option_format.format(letter=letter, text=text) for letter, text in zip(OPTION_LETTERS, options)
    )


def _fill(text: str, **fields: str) -> str:
    # str.format only parses the template; braces inside transcripts/questions are left alone.
    return text.format(**{name: fields.get(name, "") for name in PROMPT_FIELDS})


def _example_turns(template: PromptTemplate) -> Messages:
    turns: Messages = []
    for ex in template.examples:
        user = template.summary_user if template.mode == "summarize" else template.user
        turns.append(
            {
                "role": "user",
                "content": _fill(
                    user, transcript=ex.transcript, question=ex.question, options=format_options(template, ex.options)
                ),
            }
        )
        answer = template.answer_format.format(letter=ex.answer) if template.mode == "cot" else ex.answer
        if template.mode == "cot" and ex.reasoning:
            answer = f"{ex.reasoning.strip()}\n{answer}"
        if template.mode == "summarize":  # examples teach the summary step; keep it short
            answer = ex.reasoning.strip() or answer
        turns.append({"role": "assistant", "content": answer})
    return turns


def _with_system(template: PromptTemplate, turns: Messages) -> Messages:
    return ([{"role": "system", "content": template.system.strip()}] if template.system else []) + turns


def build_messages(template: PromptTemplate, transcript: str, question: Question, summary: str = "") -> Messages:
    """The chat messages of the answering call (system, few-shot turns, the question)."""
    user = _fill(
        template.user,
        transcript=transcript,
        question=question.question,
        options=format_options(template, question.options),
        summary=summary,
    )
    examples = [] if template.mode == "summarize" else _example_turns(template)
    return _with_system(template, examples + [{"role": "user", "content": user}])


def build_summary_messages(template: PromptTemplate, transcript: str, question: Question) -> Messages:
    """`summarize` mode, first call: condense the transcript with the question in mind."""
    if template.summary_user is None:
        raise ValueError(f"prompt {template.name!r} has no summary_user (mode {template.mode!r})")
    user = _fill(
        template.summary_user,
        transcript=transcript,
        question=question.question,
        options=format_options(template, question.options),
    )
    return _with_system(template, _example_turns(template) + [{"role": "user", "content": user}])


def build_chunk_summary_messages(template: PromptTemplate, transcript_chunk: str, question: Question) -> Messages:
    """ "summarize" context policy: condense one chunk of an over-long transcript."""
    user = _fill(
        template.chunk_summary_user,
        transcript=transcript_chunk,
        question=question.question,
        options=format_options(template, question.options),
    )
    return [{"role": "user", "content": user}]


# ---------------------------------------------------------------------------- answer parsing

# Ordered from most to least explicit; the first rule that matches decides.
_LETTER = r"[\s*_(\[]*([A-J])(?![A-Za-z0-9])"  # "B", "(B)", "**B**", "[B]", "B." ...
_PARSE_RULES = [
    # "Answer: B", "the answer is (B)", "Final answer:** C", "the correct option is D"
    re.compile(
        r"(?:final\s+answer|answer|correct\s+(?:option|choice)|best\s+(?:option|choice))"
        r"(?:\s+(?:is|would\s+be|should\s+be))?\s*[:=\-]?\s*(?:(?:option|choice)\s+)?" + _LETTER,
        re.IGNORECASE,
    ),
    # "Option C" / "choice (B)" anywhere
    re.compile(r"\b(?:option|choice)\s+" + _LETTER, re.IGNORECASE),
    # the whole reply is a letter, or starts with one as a label: "B", "(B)", "B.", "B) text"
    re.compile(r"^[\s*_(\[]*([A-J])(?:[.):\]*_]|\s*$)"),
    # the reasoning ends with a line holding only a letter
    re.compile(r"^[\s*_(\[]*([A-J])[.)\]*_]*\s*\Z", re.MULTILINE),
]


def parse_letter(text: str, letters: tuple[str, ...] | list[str]) -> str | None:
    """The option letter a free-text (chain-of-thought) reply commits to, or None.

    Explicit statements ("Answer: C") win over mentions; when several explicit statements
    disagree the last one counts (models revise themselves while reasoning). Letters outside
    `letters` are ignored. Case-insensitive on the cue words, not on the letter itself, so the
    article "a" is never read as option A.
    """
    allowed = set(letters)
    for rule in _PARSE_RULES:
        found = [m.group(1) for m in rule.finditer(text) if m.group(1) in allowed]
        if found:
            return found[-1]
    return None


def letter_to_index(letter: str, num_options: int) -> int | None:
    """'A' -> 0, 'B' -> 1 ...; None when the letter is not one of the first `num_options`."""
    letter = letter.strip()
    if len(letter) != 1 or letter not in OPTION_LETTERS[:num_options]:
        return None
    return OPTION_LETTERS.index(letter)
