"""The LLM backend interface used by the answering stage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Messages = list[dict[str, str]]  # OpenAI-style chat messages


@dataclass
class Completion:
    text: str
    prompt_tokens: int | None = None
    error: str | None = None  # set when the request failed after retries


class LLMBackend(ABC):
    @abstractmethod
    def choose(self, prompts: Sequence[Messages], choices: Sequence[Sequence[str]]) -> list[Completion]:
        """Answer each prompt with exactly one of its choices (constrained decoding)."""

    @abstractmethod
    def generate(self, prompts: Sequence[Messages], max_tokens: int) -> list[Completion]:
        """Free-text generation (chain of thought, summaries)."""

    @abstractmethod
    def count_tokens(self, messages: Messages) -> int:
        """Prompt length in tokens after the chat template, to detect over-long transcripts."""

    @property
    @abstractmethod
    def max_context(self) -> int:
        """Context length of the served model, in tokens."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Model id/path, revision, backend settings: recorded in every run's manifest."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine processes / connections."""
