"""LLM backends for the answering stage (vLLM offline, OpenAI-compatible server, transformers).

This package module stays light (no torch / vllm imports): the registry imports every backend
module on first lookup, and each backend imports its heavy library only when constructed.
Shared here: the option-letter helpers every backend and the answer stage use. Finding a model's
files and its revision is videoqa.models.resolve (the captioners need it too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from videoqa.answering.llm.base import Completion, LLMBackend


@dataclass
class ChoiceCompletion(Completion):
    """A constrained answer plus the log-probabilities the backend saw for each choice.

    `choice_logprobs` maps choice -> log-probability of its first token at the answer position
    (after the choice constraint, so only the allowed choices are finite); it may be empty when
    the backend does not return them.
    """

    choice_logprobs: dict[str, float] = field(default_factory=dict)


def validate_choices(choices: list[str] | tuple[str, ...]) -> None:
    if not choices:
        raise ValueError("choose() needs at least one choice per prompt")
    if len(set(choices)) != len(choices):
        raise ValueError(f"duplicate choices: {list(choices)}")


def load_backend(config) -> LLMBackend:
    """The registered backend named by `config.backend`, built from an `LLMConfig`."""
    from videoqa.registry import LLM_BACKENDS

    return LLM_BACKENDS.get(config.backend)(config)
