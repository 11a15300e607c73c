"""The OpenAI-compatible backend against a real vLLM server on 127.0.0.1 serving a tiny model.

One server per module (start-up is the slow part), started with an API key so the key path is
exercised, always killed at the end. Failure handling is tested against a closed port and a
stdlib HTTP server that answers 503.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from videoqa.answering.answer import answer_questions
from videoqa.config import AnswerConfig, LLMConfig
from videoqa.fixtures.tiny_llm import build_tiny_llm
from videoqa.types import Question
from videoqa_base.errors import UserError

KEY_ENV = "VIDEOQA_TEST_LLM_KEY"
KEY = "test-key-5f2c9e"  # a throwaway key for the throwaway local server
SERVER_START_TIMEOUT_S = 420  # a loaded 2-core machine can take minutes; the wait is bounded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="module")
def server_port() -> int:
    """The port the module's server will listen on (nothing listens there before it starts)."""
    return _free_port()


@pytest.fixture(scope="module")
def server(tiny_llm_dir, tmp_path_factory, server_port):
    """`python -m vllm.entrypoints.openai.api_server` on a free port; yields its /v1 URL."""
    port = server_port
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_llm_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "512",
        "--dtype",
        "float32",
        "--api-key",
        KEY,
        "--enforce-eager",  # skip torch.compile warm-up: tens of seconds saved per start
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    # Own process group, so the API server and its engine processes are stopped together.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}; see {log.name}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM server not up after {SERVER_START_TIMEOUT_S}s; see {log.name}")
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_resume_after_an_outage_retries_what_can_pass_now(request, tiny_models, tiny_llm_dir, server_port, tmp_path):
    """First attempt: the server is down (connection refused) and one video is missing, so every
    answer fails. Then the server comes up on the same port and the video appears: the same run id
    retries exactly those and ends with every answer `ok`. (This test must run before any other
    test of the module starts the server.)"""
    from videoqa.config import load_run_config
    from videoqa.fixtures.demo import build_demo_dataset
    from videoqa.run import VideoQA

    root = build_demo_dataset(tmp_path / "egoschema", shared_clip=None)
    questions = json.loads((root / "questions.json").read_text())[:3]
    late = questions[0]["q_uid"]
    late_video = root / "videos" / f"{late}.mp4"
    late_video.rename(tmp_path / "late.mp4")  # missing at first
    (root / "questions.json").write_text(json.dumps(questions))
    captioner_dir, _ = tiny_models
    config = load_run_config(
        dataset="egoschema",
        captioner=str(captioner_dir),
        llm=str(tiny_llm_dir),
        overrides=[
            f"dataset.data_root={root}",
            f"output_dir={tmp_path / 'out'}",
            "run_id=outage",
            "llm.backend=openai",
            f"llm.base_url=http://127.0.0.1:{server_port}/v1",
            "llm.max_model_len=512",
            "llm.max_retries=1",
            f"llm.api_key_env={KEY_ENV}",
            "captioner.max_new_tokens=6",
        ],
    )
    os.environ[KEY_ENV] = KEY
    try:
        first = VideoQA(config, progress=False).run()
        assert first.metrics["status_counts"] == {"llm_failed": 2, "video_failed": 1}
        assert first.metrics["retries"] == {"llm_failed": 0, "videos": 0}

        (tmp_path / "late.mp4").rename(late_video)  # the video appears ...
        request.getfixturevalue("server")  # ... and the server starts on the same port
        again = VideoQA(config, progress=False).run()
    finally:
        os.environ.pop(KEY_ENV, None)
    assert again.run_dir == first.run_dir
    assert again.metrics["status_counts"] == {"ok": 3}
    assert again.metrics["retries"] == {"llm_failed": 2, "videos": 1}
    records = [json.loads(line) for line in (again.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 3 and len({r["qid"] for r in records}) == 3
    assert (again.run_dir / "failures.jsonl").read_text() == ""

    # a third attempt has nothing left to retry: no LLM call, no captioning
    third = VideoQA(config, progress=False).run()
    assert third.metrics["retries"] == {"llm_failed": 0, "videos": 0}
    assert not third.metrics["timing"]["captioner_loaded"] and third.metrics["timing"]["answer_s"] == 0


@pytest.fixture(scope="module")
def backend(server, tiny_llm_dir):
    from videoqa.registry import LLM_BACKENDS

    os.environ[KEY_ENV] = KEY
    config = LLMConfig(
        name="tiny-server",
        backend="openai",
        model=str(tiny_llm_dir),
        base_url=server,
        api_key_env=KEY_ENV,
        concurrency=4,
        max_retries=2,
        timeout_s=60,
    )
    backend = LLM_BACKENDS.get("openai")(config)
    yield backend
    backend.close()
    os.environ.pop(KEY_ENV, None)


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer with one letter."}, {"role": "user", "content": text}]


# ---------------------------------------------------------------------------- against the server


@pytest.mark.slow
def test_server_reports_context_and_identity(backend, tiny_llm_dir):
    assert backend.max_context == 512  # from /v1/models, not from our config
    ident = backend.identity()
    assert ident["backend"] == "openai" and ident["server_version"]
    assert ident["token_counting"] == "local tokenizer"
    assert ident["revision"].startswith("sha256:")
    assert KEY not in repr(ident) and KEY not in repr(vars(backend.config))  # the key is never recorded


@pytest.mark.slow
def test_choose_is_constrained_and_matches_transformers(backend, tiny_llm_dir):
    from videoqa.answering.llm.hf_transformers import TransformersBackend

    prompts = [_user(f"Question {i}: what is the man doing?" * (1 + i)) for i in range(6)]
    choices = [list("ABCDE"), list("AB"), ["C", "E"], list("ABCD"), list("ABC"), list("ABCDE")]
    served = backend.choose(prompts, choices)
    local = TransformersBackend(LLMConfig(name="t", backend="transformers", model=str(tiny_llm_dir))).choose(
        prompts, choices
    )
    for s, lo, allowed in zip(served, local, choices):
        assert s.error is None and s.text in allowed
        assert math.isclose(sum(math.exp(v) for v in s.choice_logprobs.values()), 1.0, abs_tol=1e-3)
        # Same weights, same chat template: the server's constrained choice is the transformers argmax.
        assert s.text == lo.text
        for letter in allowed:
            assert math.isclose(s.choice_logprobs[letter], lo.choice_logprobs[letter], abs_tol=1e-3)


@pytest.mark.slow
def test_generate_and_token_counts_agree_three_ways(backend, server, tiny_llm_dir):
    prompts = [_user("Describe the video." * k) for k in (1, 4, 2, 8, 3)]  # concurrency 4, order kept
    done = backend.generate(prompts, max_tokens=5)
    # A backend that cannot resolve the model locally counts with the server's /tokenize.
    os.environ[KEY_ENV] = KEY
    remote = LLMConfig(
        name="remote", backend="openai", model="videoqa-tests/served-elsewhere", base_url=server, api_key_env=KEY_ENV
    )
    from videoqa.answering.llm.openai_server import OpenAIServerBackend

    via_server = OpenAIServerBackend(remote)
    assert via_server.identity()["token_counting"] == "server /tokenize"
    for messages, completion in zip(prompts, done):
        assert completion.error is None and isinstance(completion.text, str)
        assert completion.prompt_tokens == backend.count_tokens(messages) == via_server.count_tokens(messages)


@pytest.mark.slow
def test_overlong_request_is_a_recorded_failure(backend):
    done = backend.choose([_user("onion " * 600), _user("short")], [list("AB"), list("AB")])
    assert done[0].error and "HTTP 400" in done[0].error and done[0].text == ""
    assert done[1].error is None and done[1].text in "AB"


@pytest.mark.slow
def test_answer_stage_through_the_server(backend):
    questions = [Question(f"q{i}", "v", Path("v.mp4"), "What is happening?", ("a", "b", "c", "d")) for i in range(3)]
    answers = answer_questions(backend, questions, {"v": "[0.0s] a dog\n[1.0s] a cat"}, AnswerConfig(), progress=False)
    assert all(a.status == "ok" and a.pred in range(4) for a in answers)


@pytest.mark.slow
def test_wrong_api_key_is_a_one_line_error(server, tiny_llm_dir, monkeypatch):
    from videoqa.answering.llm.openai_server import OpenAIServerBackend

    monkeypatch.setenv(KEY_ENV, "wrong-key")
    with pytest.raises(UserError, match="HTTP 401") as err:
        OpenAIServerBackend(
            LLMConfig(name="x", backend="openai", model=str(tiny_llm_dir), base_url=server, api_key_env=KEY_ENV)
        )
    assert "wrong-key" not in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------- failure handling (no vLLM)


def test_unreachable_server(tiny_llm_dir):
    from videoqa.answering.llm.openai_server import OpenAIServerBackend

    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    with pytest.raises(UserError, match="not reachable"):
        OpenAIServerBackend(LLMConfig(name="x", backend="openai", model=str(tiny_llm_dir), base_url=url, max_retries=1))
    backend = OpenAIServerBackend(
        LLMConfig(name="x", backend="openai", model=str(tiny_llm_dir), base_url=url, max_retries=2, max_model_len=512)
    )
    done = backend.choose([_user("q1"), _user("q2")], [list("AB"), list("ABC")])
    done += backend.generate([_user("q3")], max_tokens=4)
    for completion in done:
        assert completion.text == "" and completion.error.startswith("failed after 3 attempts: APIConnectionError")


class _Always503(http.server.BaseHTTPRequestHandler):
    hits = 0

    def _fail(self):
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "overloaded"}}')

    do_GET = do_POST = _fail

    def log_message(self, *args):  # keep test output clean
        pass


def test_transient_errors_are_retried_a_bounded_number_of_times(tiny_llm_dir):
    from videoqa.answering.llm.openai_server import OpenAIServerBackend

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        config = LLMConfig(
            name="x", backend="openai", model=str(tiny_llm_dir), base_url=url, max_retries=2, max_model_len=512
        )
        backend = OpenAIServerBackend(config)  # /v1/models: 3 attempts, then falls back to max_model_len
        _Always503.hits = 0
        done = backend.choose([_user("q")], [list("AB")])
        assert _Always503.hits == 3  # one try + max_retries retries, then it gives up
        assert done[0].error.startswith("failed after 3 attempts: InternalServerError (HTTP 503)")
    finally:
        httpd.shutdown()
        httpd.server_close()
