"""What the backends that hold the model's files locally share: the availability check, the chat
template applied with the model's own tokenizer, token counting, and the over-long-prompt rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from videoqa.answering.llm.base import Completion, LLMBackend, Messages
from videoqa.models.resolve import model_config_summary, resolve_model


class LocalModelBackend(LLMBackend):
    """Subclasses set `self.config`, `self.resolved` (videoqa.answering.llm.ResolvedModel),
    `self.tokenizer` (with a chat template) and `self._max_context`."""

    tokenizer = None
    _max_context: int = 0

    @classmethod
    def check_available(cls, config) -> None:
        """Raise MissingModelError now if the weights are not on this machine (no engine start)."""
        resolve_model(config.model, config.revision)

    def model_identity(self, backend: str) -> dict[str, Any]:
        """The manifest entries every local backend records (subclasses add their settings)."""
        return {
            "backend": backend,
            "name": self.config.name,
            "model": self.config.model,
            "model_path": str(self.resolved.path),
            "revision": self.resolved.revision,
            "revision_source": self.resolved.source,
            "max_model_len": self._max_context,
            "seed": self.config.seed,
            "model_config": model_config_summary(self.resolved.path),
        }

    @property
    def max_context(self) -> int:
        return self._max_context

    def count_tokens(self, messages: Messages) -> int:
        return len(self.prompt_ids(messages))

    def prompt_ids(self, messages: Messages) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def split_overlong(
        self, prompts: Sequence[Messages], reserve: int = 1
    ) -> tuple[list[int], list[Completion | None]]:
        """Indices of the prompts that fit (with `reserve` tokens to spare), and a result list in
        which the others are already recorded as `context_overflow` failures."""
        fits, results = [], [None] * len(prompts)
        for i, messages in enumerate(prompts):
            n = self.count_tokens(messages)
            if n + reserve > self._max_context:
                results[i] = Completion(
                    text="", prompt_tokens=n, error=f"context_overflow: {n} tokens > {self._max_context}"
                )
            else:
                fits.append(i)
        return fits, results
