"""Any transformers image-text-to-text checkpoint as a frame captioner (`hf-vlm`).

The paper's VideoQA baselines caption every frame with a generalist VLM and the prompt "Describe
this frame within 50 words" (App. H.5). One adapter covers the checkpoints that
`AutoModelForImageTextToText` loads: LLaVA-1.5 (`llava-1.5` preset), BLIP-2 (`blip2`), LLaVA-NeXT,
SmolVLM / Idefics3, Qwen2-VL / Qwen2.5-VL, ... Frames are captioned in batches of
`batch_size`: one prompt for every frame, left padding, greedy decoding, at most `max_new_tokens`
new tokens, so a frame's caption does not depend on the frames that share its batch.

Prompt: the checkpoint's chat template with one user turn [image, prompt]; a checkpoint without
one gets its family's layout (LLaVA-1.5: "USER: <image>\\n{prompt} ASSISTANT:"; BLIP-2:
"Question: {prompt} Answer:"), or `options.prompt_template`.

Options (`captioner.options` in the YAML):
    prompt_template: the full text prompt, "{prompt}" where the captioning prompt goes and "<image>"
        where the image goes (BLIP-2 places its image tokens itself and takes no "<image>"); e.g.
        the original LLaVA system sentence "A chat between a curious human and ... USER: <image>\\n
        {prompt} ASSISTANT:". Default: the chat template.
    image_size: shorter side (pixels) frames are decoded at. Default: the image processor's fixed
        input size (LLaVA 336, BLIP-2 224, SmolVLM's 512 px tiles); for dynamic-resolution models
        (Qwen-VL), where it sets the number of visual tokens per frame, 448 (within the processor's
        pixel budget).

The constructor reads config.json, tokenizer and image processor only; `identity()` and
`num_parameters()` (from the safetensors headers) need no weights; `load()` loads them. Missing
weights are a one-line MissingModelError (nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from videoqa.captioning.base import Captioner
from videoqa.config import CaptionerConfig
from videoqa.models.vlm import (
    FALLBACK_TEMPLATES,
    IMAGE,
    SELF_PLACING,
    VLMInputs,
    load_vlm_model,
    open_vlm,
    processor_image_size,
)
from videoqa.registry import CAPTIONERS
from videoqa_base.checkpoints import checkpoint_parameters
from videoqa_base.errors import UserError

EXAMPLE_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"


def check_prompt_template(name: str, template: Any, model_type: str | None = None) -> str | None:
    """A valid `options.prompt_template`, None if unset, else a one-line UserError."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise UserError(f"captioner {name!r}: options.prompt_template must be a string")
    if model_type is not None and model_type not in SELF_PLACING and IMAGE not in template:
        raise UserError(f"captioner {name!r}: options.prompt_template must contain '{IMAGE}' (where the image goes)")
    return template


def caption_prompt_text(inputs: VLMInputs, model_type: str, template: str | None, prompt: str) -> str:
    """The text a VLM reads for one frame: `template` if given, else the chat template, else the
    family's layout (see FALLBACK_TEMPLATES); "<image>" becomes the checkpoint's placeholder."""
    if template is None and inputs.chat_template:
        return inputs.chat_text([{"type": "image"}, {"type": "text", "text": prompt}])
    template = template if template is not None else FALLBACK_TEMPLATES.get(model_type)
    if template is None:
        raise UserError(
            f"model type {model_type!r} has no chat template; set captioner.options.prompt_template "
            f'(e.g. "USER: {IMAGE}\\n{{prompt}} ASSISTANT:")'
        )
    return template.replace(IMAGE, inputs.image_placeholder).replace("{prompt}", prompt)


@CAPTIONERS.register("hf-vlm")
class HFVLMCaptioner(Captioner):
    """A transformers VLM + its processor, captioning batches of frames greedily."""

    kind = "hf-vlm"
    known_options = frozenset({"prompt_template", "image_size"})

    def __init__(self, config: CaptionerConfig):
        from videoqa_base.device import resolve_device, resolve_dtype

        super().__init__(config)
        if not config.model:
            raise UserError(
                f"captioner {config.name!r}: field 'model' is empty; set an HF id such as {EXAMPLE_MODEL} "
                f"or a local model directory"
            )
        check_prompt_template(config.name, config.options.get("prompt_template"))  # before any file is read
        # relative model paths are taken from the working directory, like every other captioner's
        self.resolved, self.model_config, self.inputs = open_vlm(
            config.model, config.revision, what=f"{config.name} captioner"
        )
        self.model_type = self.model_config.model_type
        self.prompt_template = check_prompt_template(
            config.name, config.options.get("prompt_template"), self.model_type
        )
        self.prompt_text(config.prompt)  # a checkpoint without any prompt layout fails now, not mid-run
        self.image_size = self._image_size(config.options.get("image_size"))
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.model: Any = None
        self._parameters: int | None = None

    def _image_size(self, requested: Any) -> int:
        if requested is not None:
            if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
                raise UserError(f"captioner {self.config.name!r}: options.image_size must be an integer >= 1")
            return requested
        size = processor_image_size(self.inputs.image_processor)
        if size is None:
            raise UserError(
                f"captioner {self.config.name!r}: {type(self.inputs.image_processor).__name__} names no input size; "
                f"set options.image_size (the frames' shorter side in pixels, e.g. 448)"
            )
        return size

    def prompt_text(self, prompt: str) -> str:
        return caption_prompt_text(self.inputs, self.model_type, self.prompt_template, prompt)

    # ------------------------------------------------------------------ cheap: no weights

    def identity(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "model": self.resolved.ref,
            "path": str(self.resolved.path),
            "revision": self.resolved.revision,  # HF commit hash, or a content fingerprint of a local dir
            "source": self.resolved.source,
            "model_type": self.model_type,
            "prompt": self.config.prompt,
            "prompt_text": self.prompt_text(self.config.prompt),
            "decoding": "greedy",
            "max_new_tokens": self.config.max_new_tokens,
            "dtype": str(self.dtype).removeprefix("torch."),
            "image_size": self.image_size,
            "image_processor": type(self.inputs.image_processor).__name__,
        }

    def num_parameters(self) -> int:
        if self._parameters is None:
            self._parameters = checkpoint_parameters(self.resolved.path)
        return self._parameters

    # ------------------------------------------------------------------ model work

    def _load(self) -> None:
        self.model = load_vlm_model(self.resolved.path, self.dtype, self.device)

    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        if len(images) > 0:
            self.load()  # normally done by the caption stage; idempotent
        text, size = self.prompt_text(prompt), self.config.batch_size
        batches = [images[start : start + size] for start in range(0, len(images), size)]
        return [caption for batch in batches for caption in self._generate([text] * len(batch), [[i] for i in batch])]

    def _generate(self, texts: list[str], images: list[list[np.ndarray]]) -> list[str]:
        import torch

        inputs = self.inputs.encode(texts, images).to(self.device)
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.dtype)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                do_sample=False,
                num_beams=1,
                max_new_tokens=self.config.max_new_tokens,
                pad_token_id=self.inputs.tokenizer.pad_token_id,
            )
        # a decoder-only LM returns the prompt before the new tokens; an encoder-decoder only new ones
        echoed = 0 if self.model.config.get_text_config().is_encoder_decoder else inputs["input_ids"].shape[1]
        new_tokens = output[:, echoed:]
        return [text.strip() for text in self.inputs.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def close(self) -> None:
        self.model = None
        self.loaded = False
