"""LLaVA-1.5 as a frame captioner (`llava-1.5`), and the transformers plumbing BLIP-2 shares.

The paper's VideoQA baselines caption every frame with a generalist and the prompt
"Describe this frame within 50 words" (App. H.5); LLaVA-1.5-7B (`llava-hf/llava-1.5-7b-hf`) is
the strongest of them in Tab. 4. Frames are captioned in batches: one prompt for every frame,
left padding, greedy decoding, at most `max_new_tokens` new tokens.

Prompt: the processor's chat template (LLaVA-1.5's "USER: <image>\\n{prompt} ASSISTANT:" for
the llava-hf checkpoints); a checkpoint without one gets that same layout. The original LLaVA
repository also puts a system sentence in front ("A chat between a curious human and an
artificial intelligence assistant. ..."); to reproduce it, set `options.prompt_template`.

Options (`captioner.options` in the YAML):
    prompt_template: the full text prompt, with "<image>" where the image goes and "{prompt}"
        where the captioning prompt goes; default: the processor's chat template.
Images go through the PIL ("slow") image processor on every machine, so captions do not depend
on whether torchvision happens to be installed. torch and transformers are imported when a
captioner is built, not when this module is imported.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from videoqa.captioners.base import Captioner
from videoqa.config import CaptionerConfig
from videoqa.errors import UserError
from videoqa.registry import CAPTIONERS

LLAVA_FALLBACK_TEMPLATE = "USER: <image>\n{prompt} ASSISTANT:"  # LLaVA-1.5's single-turn layout


def processor_image_size(image_processor: Any) -> int:
    """Side length an image processor feeds the vision tower (frames are decoded at this size)."""
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop:
        return int(crop["height"] if isinstance(crop, dict) else crop.height)
    size = image_processor.size
    size = size if isinstance(size, dict) else size.__dict__
    return int(size.get("shortest_edge") or size.get("height"))


def llava_prompt_text(processor: Any, template: str | None, prompt: str) -> str:
    """LLaVA's text for one frame: `template` if given, else the processor's chat template, else
    LLaVA-1.5's layout. "<image>" in a template stands for the checkpoint's image token."""
    if template is None and getattr(processor, "chat_template", None):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True)
    template = template or LLAVA_FALLBACK_TEMPLATE
    return template.replace("<image>", processor.image_token).replace("{prompt}", prompt)


class TransformersCaptioner(Captioner):
    """A transformers image-to-text model + its processor, captioning batches of frames greedily.

    Subclasses name the model class and fill in `prompt_text` (how the captioning prompt is
    wrapped) and `_check_processor` (repairs / refusals for checkpoint quirks).
    """

    kind: str  # registry key
    what: str  # how error messages name the model
    example_model: str  # an HF id for error messages
    model_class: str  # transformers class name
    known_options: frozenset[str] = frozenset({"prompt_template"})

    def __init__(self, config: CaptionerConfig):
        import torch
        import transformers

        from captioner.inference import resolve_device, resolve_dtype
        from videoqa.captioners.ser import resolve_model_dir
        from videoqa.llm import resolve_model

        unknown = set(config.options) - self.known_options
        if unknown:
            raise UserError(
                f"captioner {config.name!r}: unknown options {sorted(unknown)} (known: {sorted(self.known_options)})"
            )
        if not config.model:
            raise UserError(
                f"captioner {config.name!r}: field 'model' is empty; set an HF id such as "
                f"{self.example_model} or a local model directory"
            )
        template = config.options.get("prompt_template")
        if template is not None and not isinstance(template, str):
            raise UserError(f"captioner {config.name!r}: options.prompt_template must be a string")
        self.config = config
        self.prompt_template: str | None = template
        if template is not None:
            self._check_template(template)
        # never downloads: an HF id must already be in the local cache, a directory must hold weights
        self.resolved = resolve_model(str(resolve_model_dir(config.model)), config.revision, what=self.what)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        model_class = getattr(transformers, self.model_class)
        # straight onto the device: a 7B checkpoint is not staged in CPU memory first
        self.model = model_class.from_pretrained(
            str(self.resolved.path), dtype=self.dtype, device_map=str(self.device)
        ).eval()
        # the PIL backend everywhere: the "fast" torchvision one resizes slightly differently
        self.processor = transformers.AutoProcessor.from_pretrained(str(self.resolved.path), backend="pil")
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # prompts end where generation starts
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._check_processor()
        self.image_size = self._image_size()
        self._torch = torch

    # ------------------------------------------------------------------ per-model parts

    def _check_template(self, template: str) -> None:
        """Refuse an `options.prompt_template` this model cannot use (before loading anything)."""

    def _check_processor(self) -> None:
        """Make the processor agree with the model, or refuse the checkpoint with a clear message."""

    def _image_size(self) -> int:
        return processor_image_size(self.processor.image_processor)

    def prompt_text(self, prompt: str) -> str:
        """The text the model reads for one frame (including its image placeholder, if any)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Captioner

    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        text = self.prompt_text(prompt)
        captions: list[str] = []
        for start in range(0, len(images), self.config.batch_size):
            batch = [np.asarray(image) for image in images[start : start + self.config.batch_size]]
            captions.extend(self._generate(batch, text))
        return captions

    def _generate(self, images: list[np.ndarray], text: str) -> list[str]:
        inputs = self.processor(
            images=images, text=[text] * len(images), return_tensors="pt", padding=True,
            input_data_format="channels_last",  # frames are (H, W, 3); do not guess from tiny shapes
        ).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with self._torch.inference_mode():
            output = self.model.generate(
                **inputs, do_sample=False, num_beams=1, max_new_tokens=self.config.max_new_tokens,
                pad_token_id=self.processor.tokenizer.pad_token_id,
            )
        # a decoder-only LM returns the prompt before the new tokens; an encoder-decoder only new ones
        echoed = 0 if self.model.config.get_text_config().is_encoder_decoder else inputs["input_ids"].shape[1]
        new_tokens = output[:, echoed:]
        return [caption.strip() for caption in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]

    def identity(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "model": self.resolved.ref,
            "path": str(self.resolved.path),
            "revision": self.resolved.revision,  # HF commit hash, or a content fingerprint of a local dir
            "source": self.resolved.source,
            "prompt": self.config.prompt,
            "prompt_text": self.prompt_text(self.config.prompt),
            "decoding": "greedy",
            "max_new_tokens": self.config.max_new_tokens,
            "dtype": str(self.dtype).removeprefix("torch."),
            "image_size": self.image_size,
            "image_processor": type(self.processor.image_processor).__name__,
        }

    def num_parameters(self) -> int:
        return self.model.num_parameters()


@CAPTIONERS.register("llava-1.5")
class LlavaCaptioner(TransformersCaptioner):
    """LLaVA-1.5 (CLIP ViT-L/14-336 + MLP + Vicuna), e.g. `llava-hf/llava-1.5-7b-hf` (7.1B)."""

    kind = "llava-1.5"
    what = "LLaVA-1.5 captioner"
    example_model = "llava-hf/llava-1.5-7b-hf"
    model_class = "LlavaForConditionalGeneration"

    def _check_template(self, template: str) -> None:
        if "<image>" not in template:
            raise UserError(f"captioner {self.config.name!r}: options.prompt_template must contain '<image>'")

    def _check_processor(self) -> None:
        processor, config = self.processor, self.model.config
        if processor.patch_size is None:
            # processors saved while the model (not the processor) expanded <image> lack the
            # numbers: take them from the model (CLIP adds one CLS token, "default" drops it again)
            processor.patch_size = config.vision_config.patch_size
            processor.vision_feature_select_strategy = config.vision_feature_select_strategy
            processor.num_additional_image_tokens = 1
        if processor.image_token_id != config.image_token_id:
            raise UserError(
                f"{self.resolved.path}: the tokenizer's image token {processor.image_token!r} has id "
                f"{processor.image_token_id}, the model expects {config.image_token_id}"
            )

    def prompt_text(self, prompt: str) -> str:
        return llava_prompt_text(self.processor, self.prompt_template, prompt)

