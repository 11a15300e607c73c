"""Video-LLM backends: sampled frames + a multiple-choice question in, one option letter out.

A `VideoLLMBackend` answers `VideoPrompt`s in two steps, so the answerer can apply its context
policy between them: `prepare()` builds the model input and counts its tokens (visual tokens
included), `choose_frames()` runs prepared prompts. The answer is constrained to the option letters.

`transformers-video` (this module): any image-text-to-text checkpoint with a chat template
(Qwen2.5-VL, SmolVLM, LLaVA-NeXT, ...). Frames go to the model as an IMAGE SEQUENCE - one image
placeholder per frame, each preceded by its time ("12.5s:") - not as the model's native video
input: transformers' video processors need torchvision, and the image path (PIL) works for every
VLM. For Qwen2.5-VL this costs twice the visual tokens of its video mode (no 2-frame temporal
patches). The answer: one forward pass, log-softmax over the option letters' tokens at the
answer position (renormalised over the letters), the most likely letter wins.
Options (`llm.engine_kwargs`): device (default: cuda if available).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from videoqa.answering.llm import ChoiceCompletion, validate_choices
from videoqa.config import LLMConfig
from videoqa.models.resolve import ResolvedModel, model_config_summary
from videoqa.models.vlm import load_vlm_model, open_vlm
from videoqa.registry import LLM_BACKENDS
from videoqa_base.checkpoints import checkpoint_parameters
from videoqa_base.errors import UserError


@dataclass
class VideoPrompt:
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB, in time order
    timestamps: list[float]  # seconds, one per frame
    text: str  # the question turn that follows the frames (question, options, instruction)
    choices: tuple[str, ...]  # the option letters


@dataclass
class PreparedPrompt:
    prompt: VideoPrompt
    tokens: int  # prompt length in tokens, visual tokens included
    payload: Any  # backend-specific input (tensors, a vLLM request)


class VideoLLMBackend(ABC):
    resolved: ResolvedModel  # where the checkpoint is

    #: "images" (frames as an image sequence) or "video" (the model's native video input)
    frames_as: str = "images"

    @property
    @abstractmethod
    def max_context(self) -> int:
        """Context length in tokens."""

    @abstractmethod
    def prepare(self, prompt: VideoPrompt) -> PreparedPrompt:
        """The model input for `prompt` and its length in tokens (no generation)."""

    @abstractmethod
    def choose_frames(self, prepared: Sequence[PreparedPrompt]) -> list[ChoiceCompletion]:
        """One of its choices per prompt (constrained), with the choices' log-probabilities."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Model, revision and settings, for the run manifest."""

    def num_parameters(self) -> int:
        """The model's size for the tables, from its safetensors headers."""
        return checkpoint_parameters(self.resolved.path)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model / engine."""


def frame_label(t: float) -> str:
    return f"{t:.1f}s:"


@LLM_BACKENDS.register("transformers-video")
class TransformersVideoBackend(VideoLLMBackend):
    frames_as = "images"

    @classmethod
    def check_available(cls, config: LLMConfig) -> None:
        """Raise MissingModelError now if the weights are not on this machine (nothing loads)."""
        open_vlm(config.model, config.revision, what="video LLM")

    def __init__(self, config: LLMConfig):
        import torch
        import transformers

        from videoqa_base.device import resolve_device, resolve_dtype

        self.config = config
        self.resolved, self.model_config, self.inputs = open_vlm(config.model, config.revision, what="video LLM")
        if not self.inputs.chat_template:
            raise UserError(
                f"{self.resolved.path}: no chat template (a video LLM needs one to place frames and question)"
            )
        options = dict(config.engine_kwargs)
        self.device = resolve_device(str(options.pop("device", "auto")))
        if options:
            raise UserError(
                f"LLM {config.name!r}: unknown engine_kwargs {sorted(options)} for transformers-video (known: device)"
            )
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.model = load_vlm_model(self.resolved.path, self.dtype, self.device)
        text_config = self.model_config.get_text_config()
        self._max_context = int(config.max_model_len or text_config.max_position_embeddings)
        self._torch = torch
        self._versions = {"transformers": transformers.__version__, "torch": torch.__version__}

    @property
    def max_context(self) -> int:
        return self._max_context

    def prompt_text(self, prompt: VideoPrompt) -> str:
        content: list[dict[str, str]] = []
        for t in prompt.timestamps:
            content += [{"type": "text", "text": frame_label(t)}, {"type": "image"}]
        return self.inputs.chat_text(content + [{"type": "text", "text": prompt.text}])

    def prepare(self, prompt: VideoPrompt) -> PreparedPrompt:
        batch = self.inputs.encode([self.prompt_text(prompt)], [list(prompt.frames)])
        return PreparedPrompt(prompt, int(batch["input_ids"].shape[1]), batch)

    def choose_frames(self, prepared: Sequence[PreparedPrompt]) -> list[ChoiceCompletion]:
        torch = self._torch
        results = []
        for item in prepared:
            choices = list(item.prompt.choices)
            validate_choices(choices)
            token_ids = self._choice_tokens(choices)
            batch = item.payload.to(self.device)
            for key in ("pixel_values", "pixel_values_videos"):
                if key in batch:
                    batch[key] = batch[key].to(self.dtype)
            with torch.inference_mode():
                logits = self.model(**batch, logits_to_keep=1).logits[0, -1].float()
            scores = torch.log_softmax(logits, dim=-1)[token_ids].cpu()
            normalised = (scores - torch.logsumexp(scores, 0)).tolist()
            best = choices[int(np.argmax(normalised))]
            results.append(
                ChoiceCompletion(
                    text=best,
                    prompt_tokens=item.tokens,
                    choice_logprobs={c: s for c, s in zip(choices, normalised) if math.isfinite(s)},
                )
            )
        return results

    def _choice_tokens(self, choices: list[str]) -> list[int]:
        """Each choice's first token; the letters must start with different tokens."""
        firsts = [self.inputs.tokenizer.encode(c, add_special_tokens=False)[:1] for c in choices]
        if any(not f for f in firsts) or len({f[0] for f in firsts}) != len(choices):
            raise ValueError(f"choices {choices} do not start with distinct tokens")
        return [f[0] for f in firsts]

    def identity(self) -> dict[str, Any]:
        return {
            "backend": "transformers-video",
            "name": self.config.name,
            "model": self.config.model,
            "model_path": str(self.resolved.path),
            "revision": self.resolved.revision,
            "revision_source": self.resolved.source,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "max_model_len": self._max_context,
            "frames_as": "image sequence, each frame preceded by its time",
            "image_processor": type(self.inputs.image_processor).__name__,
            **{f"{k}_version": v for k, v in self._versions.items()},
            "model_config": model_config_summary(self.resolved.path),
            "decoding": "choice by the option letters' next-token log-probabilities",
        }

    def close(self) -> None:
        self.model = None
