"""OpenAI-compatible server backend ("openai"), e.g. for a running `vllm serve`.

Requests go out concurrently (a thread pool of `LLMConfig.concurrency`), each with a timeout and
up to `max_retries` retries with exponential backoff on transient failures (connection errors,
timeouts, 429, 5xx). A request that still fails becomes `Completion(error=...)` - one dead
request never aborts a run of thousands of questions.

`choose()` asks the server for vLLM structured outputs (`structured_outputs: {choice: [...]}`
in the request body, vLLM >= 0.11; older servers called it `guided_choice`). Token counts come
from a local copy of the tokenizer when the model is on this machine, else from the server's
/tokenize endpoint. The API key is read from the env var named by `LLMConfig.api_key_env` and
is never logged or recorded.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from videoqa.answering.llm import ChoiceCompletion, validate_choices
from videoqa.answering.llm.base import Completion, LLMBackend, Messages
from videoqa.config import LLMConfig
from videoqa.models.resolve import resolve_model
from videoqa.registry import LLM_BACKENDS
from videoqa_base.errors import MissingModelError, UserError

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
_MAX_TOP_LOGPROBS = 20  # the OpenAI API's limit


class _Transient(Exception):
    """A failure worth retrying (the server may come back or catch up)."""


@LLM_BACKENDS.register("openai")
class OpenAIServerBackend(LLMBackend):
    def __init__(self, config: LLMConfig):
        import openai

        if not config.base_url:
            raise UserError(f"LLM {config.name!r}: backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.server_root = self.base_url.removesuffix("/v1")
        self._api_key = os.environ.get(config.api_key_env) or "EMPTY"  # vLLM accepts any key unless --api-key
        # Retries are ours (below) so that every failure is counted and recorded the same way.
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=self._api_key, timeout=config.timeout_s, max_retries=0
        )
        self._openai = openai

        self.served_model, self._max_context = config.model, config.max_model_len
        try:
            card = self._served_model_card()
        except _Transient as exc:
            if config.max_model_len is None:
                raise UserError(
                    f"LLM server {self.base_url} is not reachable ({exc}); start it, e.g. "
                    f"`python -m vllm.entrypoints.openai.api_server --model {config.model} --port 8000`, "
                    f"or set max_model_len"
                ) from None
            card = None
        if card is not None:
            self.served_model = card["id"]
            self._max_context = config.max_model_len or card.get("max_model_len")
        if not self._max_context:
            raise UserError(f"LLM server {self.base_url} does not report max_model_len; set max_model_len")
        self.server_version = self._server_version() if card is not None else None

        # A local tokenizer (no network) when the weights are here, else the server's /tokenize.
        self.tokenizer, self.resolved = None, None
        try:
            self.resolved = resolve_model(config.model, config.revision)
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.path, trust_remote_code=False)
        except MissingModelError:
            pass

    # ------------------------------------------------------------------ LLMBackend

    @property
    def max_context(self) -> int:
        return int(self._max_context)

    def count_tokens(self, messages: Messages) -> int:
        if self.tokenizer is not None:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        body = {"model": self.served_model, "messages": list(messages), "add_generation_prompt": True}
        try:
            return int(self._with_retries(lambda: self._post_json("/tokenize", body))["count"])
        except _Transient as exc:
            raise UserError(f"LLM server {self.server_root}: /tokenize failed after retries ({exc})") from None

    def choose(self, prompts: Sequence[Messages], choices: Sequence[Sequence[str]]) -> list[Completion]:
        if len(prompts) != len(choices):
            raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
        for options in choices:
            validate_choices(list(options))

        def one(messages: Messages, options: Sequence[str]) -> Completion:
            response = self._chat(
                messages,
                max_tokens=16,
                logprobs=True,
                top_logprobs=min(len(options), _MAX_TOP_LOGPROBS),
                extra_body={"structured_outputs": {"choice": list(options)}},
            )
            if isinstance(response, Completion):
                return response
            text = response.choices[0].message.content or ""
            return ChoiceCompletion(
                text=text,
                prompt_tokens=getattr(response.usage, "prompt_tokens", None),
                error=None if text in options else f"server returned {text!r}, not one of the choices",
                choice_logprobs=_first_token_logprobs(response, options),
            )

        return self._parallel(one, list(zip(prompts, choices)))

    def generate(self, prompts: Sequence[Messages], max_tokens: int) -> list[Completion]:
        def one(messages: Messages) -> Completion:
            response = self._chat(messages, max_tokens=max_tokens)
            if isinstance(response, Completion):
                return response
            return Completion(
                text=response.choices[0].message.content or "",
                prompt_tokens=getattr(response.usage, "prompt_tokens", None),
            )

        return self._parallel(one, [(p,) for p in prompts])

    def identity(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "name": self.config.name,
            "model": self.config.model,
            "served_model": self.served_model,
            "base_url": self.base_url,
            "revision": self.resolved.revision if self.resolved else self.config.revision,
            "max_model_len": self.max_context,
            "server_version": self.server_version,
            "token_counting": "local tokenizer" if self.tokenizer is not None else "server /tokenize",
            "seed": self.config.seed,
            "decoding": "greedy; choose() via structured_outputs choice",
        }

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ requests

    def _chat(self, messages: Messages, **kwargs) -> Any:
        """One chat completion, retried on transient errors; a final failure becomes a Completion."""
        openai = self._openai

        def call():
            try:
                return self.client.chat.completions.create(
                    model=self.served_model, messages=list(messages), temperature=0.0, seed=self.config.seed, **kwargs
                )
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
                raise _Transient(_describe(exc)) from exc  # APITimeoutError is an APIConnectionError

        try:
            return self._with_retries(call)
        except _Transient as exc:
            return Completion(text="", error=f"failed after {self.config.max_retries + 1} attempts: {exc}")
        except openai.APIStatusError as exc:  # 4xx: retrying the same request cannot help
            return Completion(text="", error=_describe(exc))

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        for attempt in range(self.config.max_retries + 1):
            try:
                return call()
            except _Transient:
                if attempt == self.config.max_retries:
                    raise
                # Exponential backoff with jitter, so concurrent requests don't retry in lockstep.
                delay = min(MAX_BACKOFF_S, INITIAL_BACKOFF_S * 2**attempt)
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    def _parallel(self, fn: Callable[..., Completion], args: list[tuple]) -> list[Completion]:
        if not args:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(self.config.concurrency, len(args)))) as pool:
            return list(pool.map(lambda a: fn(*a), args))

    def _served_model_card(self) -> dict[str, Any] | None:
        models = self._with_retries(lambda: self._get_json(f"{self.base_url}/models"))["data"]
        names = [m["id"] for m in models]
        for card in models:
            if card["id"] == self.config.model or card.get("root") == self.config.model:
                return card
        if len(models) == 1:
            return models[0]
        raise UserError(f"LLM server {self.base_url} serves {names}, not {self.config.model!r}")

    def _server_version(self) -> str | None:
        try:
            return self._get_json(f"{self.server_root}/version").get("version")
        except (_Transient, UserError):
            return None

    def _get_json(self, url: str) -> dict[str, Any]:
        return self._request(urllib.request.Request(url, headers=self._headers()))

    def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {**self._headers(), "Content-Type": "application/json"}
        return self._request(urllib.request.Request(f"{self.server_root}{path}", data=data, headers=headers))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def _request(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Transient(f"HTTP {exc.code} from {request.full_url}") from None
            raise UserError(f"LLM server: HTTP {exc.code} from {request.full_url}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Transient(f"{request.full_url}: {getattr(exc, 'reason', exc)}") from None


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc).replace("\n", " ")
    return f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {message[:300]}"


def _first_token_logprobs(response: Any, options: Sequence[str]) -> dict[str, float]:
    logprobs = getattr(response.choices[0], "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return {}
    top = {t.token: t.logprob for t in (content[0].top_logprobs or [])}
    return {o: float(top[o]) for o in options if o in top and math.isfinite(top[o])}
