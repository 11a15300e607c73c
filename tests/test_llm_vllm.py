"""The vLLM offline backend on a tiny random-weight Qwen2 (one engine for the whole module)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from videoqa.config import AnswerConfig, LLMConfig
from videoqa.fixtures.tiny_llm import build_tiny_llm
from videoqa.models.resolve import fingerprint_dir, resolve_model
from videoqa.types import Question
from videoqa_base.errors import MissingModelError

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="module")
def engine(tiny_llm_dir):
    from videoqa.registry import LLM_BACKENDS

    config = LLMConfig(
        name="tiny",
        model=str(tiny_llm_dir),
        max_model_len=512,
        dtype="float32",
        cpu_kvcache_gib=1,
        engine_kwargs={"enforce_eager": True},  # skip torch.compile warm-up: tens of seconds per start
    )
    backend = LLM_BACKENDS.get("vllm")(config)
    yield backend
    backend.close()


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer with one letter."}, {"role": "user", "content": text}]


# ---------------------------------------------------------------------------- no engine needed


def test_missing_hf_model_is_one_line_error_before_engine_start():
    from videoqa.registry import LLM_BACKENDS

    config = LLMConfig(name="x", model="videoqa-tests/no-such-model-anywhere")
    with pytest.raises(MissingModelError) as err:
        LLM_BACKENDS.get("vllm")(config)
    message = str(err.value)
    assert "\n" not in message
    assert "huggingface-cli download videoqa-tests/no-such-model-anywhere" in message


def test_missing_local_dir_is_missing_model_error(tmp_path):
    with pytest.raises(MissingModelError, match="local model directory"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingModelError):  # a directory without config.json / weights
        resolve_model(str(tmp_path / "empty"))


def test_local_dir_revision_is_a_content_fingerprint(tiny_llm_dir, tmp_path):
    resolved = resolve_model(str(tiny_llm_dir))
    assert resolved.source == "local-dir" and resolved.revision.startswith("sha256:")
    assert resolved.revision == fingerprint_dir(tiny_llm_dir)  # stable
    other = build_tiny_llm(tmp_path / "other", seed=1)  # same files, different weights
    assert resolve_model(str(other)).revision != resolved.revision


def test_hf_id_resolves_to_the_cached_snapshot_commit(tiny_llm_dir, tmp_path):
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--videoqa-tests--tiny"
    shutil.copytree(tiny_llm_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    resolved = resolve_model("videoqa-tests/tiny", cache_dir=tmp_path / "hub")
    assert (resolved.source, resolved.revision) == ("hf-cache", commit)
    assert resolved.path == repo / "snapshots" / commit
    assert resolve_model("videoqa-tests/tiny", revision=commit, cache_dir=tmp_path / "hub").revision == commit
    with pytest.raises(MissingModelError, match="huggingface-cli download videoqa-tests/tiny"):
        resolve_model("videoqa-tests/tiny", revision="f" * 40, cache_dir=tmp_path / "hub")


def test_llm_yaml_config_validates():
    from videoqa.config import CONFIG_DIR
    from videoqa_base.config import read_yaml, validate

    config = validate(LLMConfig, read_yaml(CONFIG_DIR / "llms" / "qwen2.5-14b-instruct.yaml"), "qwen yaml")
    assert config.model == "Qwen/Qwen2.5-14B-Instruct" and config.backend == "vllm"


# ---------------------------------------------------------------------------- engine


@pytest.mark.slow
def test_choose_returns_only_allowed_letters_with_logprobs(engine, tiny_llm_dir):
    from videoqa.answering.llm.hf_transformers import TransformersBackend

    prompts = [_user(f"Question {i}: what happens in the video?" * (1 + i)) for i in range(5)]
    choices = [list("AB"), list("ABC"), list("ABCD"), list("ABCDE"), ["C", "E"]]
    completions = engine.choose(prompts, choices)
    reference = TransformersBackend(LLMConfig(name="t", backend="transformers", model=str(tiny_llm_dir))).choose(
        prompts, choices
    )
    assert len(completions) == 5
    for done, ref, allowed in zip(completions, reference, choices):
        # same weights and chat template: vLLM's constrained pick is the transformers argmax
        assert done.text == ref.text
        assert all(math.isclose(done.choice_logprobs[c], ref.choice_logprobs[c], abs_tol=1e-3) for c in allowed)
        assert done.error is None
        assert done.text in allowed
        # The constraint renormalises over the allowed letters: they carry all probability mass.
        assert set(done.choice_logprobs) <= set(allowed)
        assert math.isclose(sum(math.exp(v) for v in done.choice_logprobs.values()), 1.0, abs_tol=1e-3)
        assert done.choice_logprobs[done.text] == max(done.choice_logprobs.values())  # greedy


@pytest.mark.slow
def test_unconstrained_generation_and_token_counts(engine):
    prompts = [_user("Describe the video."), _user("What is on the table in the kitchen?")]
    completions = engine.generate(prompts, max_tokens=6)
    for messages, done in zip(prompts, completions):
        assert done.error is None and isinstance(done.text, str)
        # count_tokens (our chat-template count) agrees with what the engine actually saw
        assert done.prompt_tokens == engine.count_tokens(messages)
    assert engine.count_tokens(prompts[1]) > engine.count_tokens(prompts[0])


@pytest.mark.slow
def test_over_long_prompt_is_reported_not_sent(engine):
    long_prompt = _user("the man cuts an onion " * 400)
    assert engine.count_tokens(long_prompt) > engine.max_context
    done = engine.choose([_user("short question"), long_prompt], [list("AB"), list("AB")])
    assert done[0].error is None and done[0].text in "AB"
    assert done[1].error and done[1].error.startswith("context_overflow")


@pytest.mark.slow
def test_identity_records_model_revision_and_versions(engine, tiny_llm_dir):
    ident = engine.identity()
    assert ident["backend"] == "vllm" and ident["model_path"] == str(tiny_llm_dir.resolve())
    assert ident["revision"] == fingerprint_dir(tiny_llm_dir)
    assert ident["dtype"] == "float32" and ident["max_model_len"] == engine.max_context == 512
    assert ident["vllm_version"]


@pytest.mark.slow
def test_answer_questions_end_to_end(engine):
    from videoqa.answering.answer import answer_questions

    options = ("cooking", "cleaning", "reading", "writing", "walking")
    questions = [
        Question("q0", "short", Path("short.mp4"), "What is the man doing?", options),
        Question("q1", "long", Path("long.mp4"), "What is the man doing?", options[:3]),
        Question("q2", "failed", Path("failed.mp4"), "What is the man doing?", options),
    ]
    transcripts = {
        "short": "\n".join(f"[{t}.0s] a man cuts an onion in the kitchen" for t in range(3)),
        "long": "\n".join(f"[{t}.0s] a man cuts an onion in the kitchen" for t in range(200)),
    }
    answers = answer_questions(engine, questions, transcripts, AnswerConfig(context_policy="subsample"), progress=False)
    assert [a.qid for a in answers] == ["q0", "q1", "q2"]
    assert answers[0].status == "ok" and answers[0].pred in range(5) and answers[0].raw in "ABCDE"
    assert answers[1].status == "ok" and answers[1].pred in range(3)
    assert answers[1].detail.startswith("context_subsample")
    assert answers[1].prompt_tokens <= engine.max_context - AnswerConfig().context_margin
    assert answers[2].status == "video_failed" and answers[2].pred is None
