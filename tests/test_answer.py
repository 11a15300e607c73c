"""The answering stage with the transformers backend on a tiny random-weight Qwen2.

A recording wrapper keeps every prompt the stage actually sends, so the tests can check that
nothing over-long ever reaches the model and that failed videos are never sent.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest

from videoqa.answering.answer import answer_questions
from videoqa.answering.llm.base import LLMBackend
from videoqa.answering.prompts import build_messages, load_prompt, parse_letter
from videoqa.config import AnswerConfig, LLMConfig
from videoqa.fixtures.tiny_llm import build_tiny_llm
from videoqa.types import Question

MAX_CONTEXT = 2048  # the few-shot prompt alone is ~930 tokens with the tiny tokenizer
OPTIONS = ("cooking", "cleaning", "reading", "writing", "walking")


class Recording(LLMBackend):
    """Delegates to a real backend and remembers what was sent."""

    def __init__(self, inner: LLMBackend):
        self.inner = inner
        self.chosen: list = []  # (messages, choices)
        self.generated: list = []  # (messages, max_tokens)

    def choose(self, prompts, choices):
        self.chosen += list(zip(prompts, choices))
        return self.inner.choose(prompts, choices)

    def generate(self, prompts, max_tokens):
        self.generated += [(p, max_tokens) for p in prompts]
        return self.inner.generate(prompts, max_tokens)

    def count_tokens(self, messages):
        return self.inner.count_tokens(messages)

    @property
    def max_context(self):
        return self.inner.max_context

    def identity(self):
        return self.inner.identity()


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="module")
def hf_backend(tiny_llm_dir):
    from videoqa.registry import LLM_BACKENDS

    config = LLMConfig(name="tiny", backend="transformers", model=str(tiny_llm_dir), max_model_len=MAX_CONTEXT)
    return LLM_BACKENDS.get("transformers")(config)


@pytest.fixture
def backend(hf_backend):
    return Recording(hf_backend)


def _transcript(lines: int) -> str:
    return "\n".join(f"[{t}.0s] line {t}: a man cuts an onion in the kitchen" for t in range(lines))


def _question(qid: str, video_id: str, n_options: int = 5) -> Question:
    return Question(qid, video_id, Path(f"{video_id}.mp4"), "What is the man doing?", OPTIONS[:n_options])


def _sent_lengths(backend: Recording) -> list[int]:
    return [backend.count_tokens(m) for m, _ in backend.chosen] + [
        backend.count_tokens(m) for m, _ in backend.generated
    ]


# ---------------------------------------------------------------------------- transformers backend


def test_transformers_backend_choices_and_generation(hf_backend, tiny_llm_dir):
    prompts = [[{"role": "user", "content": "What is the man doing? " * k}] for k in (1, 5, 2)]
    # Batched (left-padded) scoring equals one prompt at a time.
    batched = hf_backend.choose(prompts, [list("ABCDE")] * 3)
    single = [hf_backend.choose([p], [list("ABCDE")])[0] for p in prompts]
    for b, s in zip(batched, single):
        assert b.text == s.text and b.text in "ABCDE" and b.error is None
        assert all(abs(b.choice_logprobs[c] - s.choice_logprobs[c]) < 1e-4 for c in "ABCDE")
        assert b.choice_logprobs[b.text] == max(b.choice_logprobs.values())
    # Multi-token choices sharing a first token are scored by their whole sequence.
    words = hf_backend.choose(prompts[:1], [["A1", "A2", "Bx"]])[0]  # "A1" = "A" + "1", "A2" = "A" + "2"
    assert words.text in ("A1", "A2", "Bx")
    assert words.choice_logprobs["A1"] != words.choice_logprobs["A2"]  # not just the shared first token
    assert abs(sum(math.exp(v) for v in words.choice_logprobs.values()) - 1) < 1e-4
    generated = hf_backend.generate(prompts, max_tokens=6)
    for messages, done in zip(prompts, generated):
        assert done.error is None and done.prompt_tokens == hf_backend.count_tokens(messages)
        assert len(hf_backend.tokenizer.encode(done.text, add_special_tokens=False)) <= 8  # ~6 new tokens
    overlong = hf_backend.choose([[{"role": "user", "content": "onion " * 3000}]], [list("AB")])[0]
    assert overlong.error.startswith("context_overflow")
    ident = hf_backend.identity()
    assert ident["backend"] == "transformers" and ident["revision"].startswith("sha256:")
    assert ident["max_model_len"] == MAX_CONTEXT and ident["dtype"] == "float32"


# ---------------------------------------------------------------------------- choice mode


def test_choice_mode_answers_and_skips_failed_videos(backend):
    questions = [_question("q0", "a"), _question("q1", "gone"), _question("q2", "b", 3), _question("q3", "a", 4)]
    transcripts = {"a": _transcript(3), "b": _transcript(5)}
    answers = answer_questions(backend, questions, transcripts, AnswerConfig(), progress=False)
    assert [a.qid for a in answers] == ["q0", "q1", "q2", "q3"]
    assert answers[1].status == "video_failed" and answers[1].pred is None
    sent_questions = [m[-1]["content"] for m, _ in backend.chosen]
    assert len(sent_questions) == 3  # the failed video's question was never sent
    assert [choices for _, choices in backend.chosen] == [tuple("ABCDE"), tuple("ABC"), tuple("ABCD")]
    template = load_prompt("standard")
    for answer, question in zip([answers[0], answers[2], answers[3]], [questions[0], questions[2], questions[3]]):
        assert answer.status == "ok" and answer.detail == ""
        assert answer.raw in question.letters and answer.pred == question.letters.index(answer.raw)
        expected = build_messages(template, transcripts[question.video_id], question)
        assert answer.prompt_tokens == backend.count_tokens(expected)


def test_batching_does_not_change_answers(hf_backend):
    questions = [_question(f"q{i}", f"v{i}", 2 + i % 4) for i in range(5)]
    transcripts = {f"v{i}": _transcript(1 + i) for i in range(5)}
    one_batch = answer_questions(hf_backend, questions, transcripts, AnswerConfig(), progress=False)
    small = answer_questions(hf_backend, questions, transcripts, AnswerConfig(), progress=False, batch_size=2)
    assert [(a.pred, a.raw) for a in one_batch] == [(a.pred, a.raw) for a in small]


# ---------------------------------------------------------------------------- context policies


def test_policy_error_reports_overflow_and_sends_nothing(backend):
    answers = answer_questions(
        backend, [_question("long", "v")], {"v": _transcript(200)}, AnswerConfig(context_policy="error"), progress=False
    )
    assert answers[0].status == "invalid" and answers[0].pred is None
    assert answers[0].detail.startswith("context_overflow:")
    assert answers[0].prompt_tokens > MAX_CONTEXT - AnswerConfig().context_margin
    assert backend.chosen == [] and backend.generated == []


def test_policy_subsample_keeps_every_other_line_until_it_fits(backend):
    config = AnswerConfig(context_policy="subsample")
    lines = _transcript(200).splitlines()
    answers = answer_questions(backend, [_question("long", "v")], {"v": "\n".join(lines)}, config, progress=False)
    answer = answers[0]
    assert answer.status == "ok" and answer.detail.startswith("context_subsample: kept ")
    assert max(_sent_lengths(backend)) <= MAX_CONTEXT - config.context_margin
    sent = backend.chosen[0][0][-1]["content"]
    kept = [line for line in lines if line in sent.splitlines()]
    stride = int(answer.detail.split("stride ")[1].rstrip(")"))
    assert kept == lines[::stride] and stride > 1
    assert f"kept {len(kept)}/200 lines" in answer.detail


def test_policy_summarize_condenses_chunks_that_fit(backend):
    config = AnswerConfig(context_policy="summarize", max_tokens=24)
    answers = answer_questions(backend, [_question("long", "v")], {"v": _transcript(200)}, config, progress=False)
    answer = answers[0]
    assert len(backend.generated) >= 2  # the transcript was split into several chunks
    assert all(max_tokens == 24 for _, max_tokens in backend.generated)
    assert all(backend.count_tokens(m) <= MAX_CONTEXT - config.context_margin for m, _ in backend.generated)
    # 24-token chunk summaries always fit, whatever the random weights say
    assert answer.status == "ok" and answer.pred in range(5)
    assert answer.detail.startswith(f"context_summarize: 200 lines -> {len(backend.generated)} chunk summaries")
    assert max(backend.count_tokens(m) for m, _ in backend.chosen) <= MAX_CONTEXT - config.context_margin


def test_a_single_overlong_line_cannot_be_subsampled(backend):
    answers = answer_questions(
        backend,
        [_question("q", "v")],
        {"v": "an onion " * 2000},
        AnswerConfig(context_policy="subsample"),
        progress=False,
    )
    assert answers[0].status == "invalid" and "context_overflow" in answers[0].detail
    assert backend.chosen == []


# ---------------------------------------------------------------------------- other prompt modes


def test_cot_mode_parses_or_counts_invalid(backend):
    config = AnswerConfig(prompt="cot", max_tokens=16)
    questions = [_question(f"q{i}", "v") for i in range(3)]
    answers = answer_questions(backend, questions, {"v": _transcript(2)}, config, progress=False)
    assert len(backend.generated) == 3 and backend.chosen == []
    for answer, question in zip(answers, questions):
        assert answer.raw  # the free text is always kept
        letter = parse_letter(answer.raw, question.letters)
        if letter is None:
            assert answer.status == "invalid" and answer.detail == "unparsable" and answer.pred is None
        else:
            assert answer.status == "ok" and answer.pred == question.letters.index(letter)


def test_summarize_mode_makes_two_calls_and_keeps_the_summary(backend):
    config = AnswerConfig(prompt="summarize", max_tokens=12)
    answers = answer_questions(backend, [_question("q", "v", 4)], {"v": _transcript(4)}, config, progress=False)
    assert len(backend.generated) == 1 and len(backend.chosen) == 1
    summary_prompt, answer_prompt = backend.generated[0][0], backend.chosen[0][0]
    assert "[0.0s] line 0" in summary_prompt[-1]["content"]
    assert "[0.0s] line 0" not in answer_prompt[-1]["content"]  # the answer sees only the summary
    answer = answers[0]
    assert answer.status == "ok" and answer.raw.startswith("Summary: ")
    assert answer.raw.endswith(f"Answer: {'ABCD'[answer.pred]}")


def test_fewshot_prompt_answers(backend):
    answers = answer_questions(
        backend, [_question("q", "v")], {"v": _transcript(2)}, AnswerConfig(prompt="fewshot"), progress=False
    )
    assert answers[0].status == "ok" and answers[0].pred in range(5)
    assert len(backend.chosen[0][0]) == 1 + 2 * 2 + 1  # system, two worked examples, the question


def test_overflow_without_transcript_is_named(backend):
    # 1500 reserved answer tokens leave too little room for even the bare few-shot prompt
    config = AnswerConfig(prompt="fewshot", context_margin=1500)
    answers = answer_questions(backend, [_question("q", "v")], {"v": _transcript(2)}, config, progress=False)
    assert answers[0].status == "invalid" and answers[0].prompt_tokens > MAX_CONTEXT - 1500
    assert answers[0].detail.endswith("(the prompt is too long even without a transcript)")


def test_server_failures_become_llm_failed_answers(tiny_llm_dir):
    from videoqa.answering.llm.openai_server import OpenAIServerBackend

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = LLMConfig(
        name="down",
        backend="openai",
        model=str(tiny_llm_dir),
        base_url=f"http://127.0.0.1:{port}/v1",
        max_model_len=MAX_CONTEXT,
        max_retries=1,
        timeout_s=5,
    )
    backend = OpenAIServerBackend(config)
    answers = answer_questions(backend, [_question("q", "v")], {"v": _transcript(2)}, AnswerConfig(), progress=False)
    assert answers[0].status == "llm_failed" and answers[0].pred is None
    assert "failed after 2 attempts" in answers[0].detail
