"""Transformers vision-language checkpoints: find one, turn (prompt text, images) into model inputs,
load its weights. Shared by the `hf-vlm` captioner (one frame per prompt) and the transformers
video-LLM backend (a video's frames as an image sequence in one prompt).

Nothing here loads weights except `load_vlm_model`: `open_vlm` reads config.json, the tokenizer
and the image processor only, so a captioner can report its identity and size without a model.

Two ways to build inputs, chosen by the checkpoint's `model_type`:
- `ProcessorInputs`: the checkpoint's own processor (`AutoProcessor`, PIL image backend on every
  machine, so results do not depend on whether torchvision is installed) - LLaVA, LLaVA-NeXT,
  BLIP-2, Idefics3/SmolVLM and the other image-text-to-text models whose processors load here.
- `QwenVLInputs`: Qwen2-VL / Qwen2.5-VL. Their processors also need a torchvision video processor
  and do not load without torchvision, so we use the tokenizer and the PIL image processor and do
  the processor's remaining work ourselves: each image placeholder is repeated once per merged
  patch (`image_grid_thw.prod() // merge_size**2`) and `mm_token_type_ids` marks the image tokens
  (the model needs them to place its 3D rotary positions).
Checkpoint quirks are repaired or refused with one-line errors (`repair_processor`).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoqa.models.resolve import ResolvedModel, resolve_model
from videoqa_base.errors import UserError

QWEN_VL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl"})
DYNAMIC_SIDE = 448  # dynamic-resolution models: frames' shorter side (448 x 796 px -> 448 Qwen-VL tokens)
IMAGE = "<image>"  # stands for the checkpoint's image placeholder in `prompt_template`s
# layouts for checkpoints without a chat template, by model_type
FALLBACK_TEMPLATES = {
    "llava": "USER: <image>\n{prompt} ASSISTANT:",  # LLaVA-1.5's single-turn layout
    "blip-2": "Question: {prompt} Answer:",  # BLIP-2's prompted (VQA-style) format
}
# processors that put the image tokens in front of the text themselves (no placeholder in the text)
SELF_PLACING = frozenset({"blip-2"})


class VLMInputs(ABC):
    """Prompt text + images -> tensors for `model.generate` / `model(...)`, left padded."""

    tokenizer: Any
    image_processor: Any
    chat_template: str | None
    image_placeholder: str  # what "<image>" in a prompt template becomes

    def chat_text(self, content: list[dict[str, str]]) -> str:
        """The chat template applied to one user turn (`{"type": "image"}` / `{"type": "text", ...}`
        items), ending where the assistant's reply starts."""
        conversation = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(
            conversation, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    @abstractmethod
    def encode(self, texts: Sequence[str], images: Sequence[Sequence[np.ndarray]]) -> dict[str, Any]:
        """Tensors for a batch: `texts[i]` holds one placeholder per image of `images[i]`."""


class ProcessorInputs(VLMInputs):
    def __init__(self, processor: Any):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.chat_template = getattr(processor, "chat_template", None)
        image_token = getattr(processor, "image_token", None)
        self.image_placeholder = getattr(image_token, "content", image_token) or IMAGE

    def chat_text(self, content: list[dict[str, str]]) -> str:
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    def encode(self, texts: Sequence[str], images: Sequence[Sequence[np.ndarray]]) -> dict[str, Any]:
        flat = [np.asarray(image) for group in images for image in group]
        nested = [[np.asarray(image) for image in group] for group in images]
        # BLIP-2 / LLaVA take one image per text as a flat list; the multi-image processors nest
        many = any(len(group) != 1 for group in images)
        return self.processor(
            images=nested if many else flat,
            text=list(texts),
            return_tensors="pt",
            padding=True,
            input_data_format="channels_last",  # frames are (H, W, 3); do not guess from tiny shapes
        )


class QwenVLInputs(VLMInputs):
    def __init__(self, path: Path, model_config: Any):
        from transformers import AutoImageProcessor, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        self.tokenizer.padding_side = "left"  # prompts end where generation starts
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.image_processor = AutoImageProcessor.from_pretrained(str(path), backend="pil")
        # the processor's template (what Qwen's processor would use) before the tokenizer's
        self.chat_template = read_chat_template(path) or self.tokenizer.chat_template
        if not self.chat_template:
            raise UserError(f"{path}: no chat template (tokenizer_config.json or chat_template.json/.jinja)")
        self.image_token_id = int(model_config.image_token_id)
        self.image_token = self.tokenizer.convert_ids_to_tokens(self.image_token_id)
        start = self.tokenizer.convert_ids_to_tokens(int(model_config.vision_start_token_id))
        end = self.tokenizer.convert_ids_to_tokens(int(model_config.vision_end_token_id))
        self.image_placeholder = f"{start}{self.image_token}{end}"

    def encode(self, texts: Sequence[str], images: Sequence[Sequence[np.ndarray]]) -> dict[str, Any]:
        flat = [np.asarray(image) for group in images for image in group]
        features = self.image_processor(images=flat, return_tensors="pt", input_data_format="channels_last")
        per_image = (features["image_grid_thw"].prod(-1) // self.image_processor.merge_size**2).tolist()
        expanded, used = [], 0
        for text, group in zip(texts, images):
            parts = text.split(self.image_token)
            if len(parts) - 1 != len(group):
                raise ValueError(f"{len(parts) - 1} image placeholders in the prompt for {len(group)} images")
            counts = per_image[used : used + len(group)]
            used += len(group)
            expanded.append(parts[0] + "".join(self.image_token * n + part for n, part in zip(counts, parts[1:])))
        batch = self.tokenizer(expanded, return_tensors="pt", padding=True)
        batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_token_id).long()
        batch.update(features)
        return batch


def read_chat_template(path: Path) -> str | None:
    """A processor-level chat template saved beside the weights (.jinja, or .json as older saves)."""
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text()).get("chat_template")
    return None


def open_vlm(ref: str, revision: str | None, what: str) -> tuple[ResolvedModel, Any, VLMInputs]:
    """(where the checkpoint is, its config, its input builder) - no weights are read. Never downloads."""
    from transformers import AutoConfig, AutoProcessor
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    resolved = resolve_model(ref, revision, what=what)
    if not any(resolved.path.glob("*.safetensors")):
        raise UserError(f"{resolved.path}: no *.safetensors weights (only safetensors checkpoints are loaded)")
    model_config = AutoConfig.from_pretrained(str(resolved.path), trust_remote_code=False)
    if model_config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise UserError(
            f"{resolved.path}: model type {model_config.model_type!r} is not an image-text-to-text model "
            f"(AutoModelForImageTextToText cannot load it)"
        )
    if model_config.model_type in QWEN_VL_TYPES:
        return resolved, model_config, QwenVLInputs(resolved.path, model_config)
    try:
        processor = AutoProcessor.from_pretrained(str(resolved.path), backend="pil", trust_remote_code=False)
    except (ImportError, OSError, ValueError) as exc:
        raise UserError(f"{resolved.path}: its processor cannot be loaded here ({type(exc).__name__}: {exc})") from None
    if not hasattr(processor, "image_processor"):
        raise UserError(f"{resolved.path}: {type(processor).__name__} is not an image-text processor")
    repair_processor(processor, model_config, resolved.path)
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return resolved, model_config, ProcessorInputs(processor)


def repair_processor(processor: Any, model_config: Any, path: Path) -> None:
    """Make older processor saves agree with the model, or refuse them with a clear message."""
    if model_config.model_type == "llava" and getattr(processor, "patch_size", 0) is None:
        # saved while the model (not the processor) expanded <image>: take the numbers from the
        # model (CLIP adds one CLS token, "default" drops it again)
        processor.patch_size = model_config.vision_config.patch_size
        processor.vision_feature_select_strategy = model_config.vision_feature_select_strategy
        processor.num_additional_image_tokens = 1
    if model_config.model_type == "blip-2":
        from transformers import AddedToken

        if processor.num_query_tokens is None or model_config.image_token_id is None:
            # the Q-Former outputs would have no placeholders: BLIP-2 would caption without the image
            raise UserError(
                f"{path}: this BLIP-2 snapshot predates image placeholder tokens (no num_query_tokens / "
                f"image_token_index); fetch the current revision with `hf download <model id>`"
            )
        if isinstance(processor.image_token, str):
            # Blip2Processor needs an AddedToken (`.content`) where tokenizers may declare a string
            processor.image_token = AddedToken(processor.image_token, normalized=False, special=True)
    token = getattr(processor, "image_token", None)
    expected = getattr(model_config, "image_token_id", None)
    if token is not None and expected is not None:
        found = processor.tokenizer.convert_tokens_to_ids(getattr(token, "content", token))
        if found != expected:
            raise UserError(
                f"{path}: the tokenizer's image token {token!r} has id {found}, the model expects {expected}"
            )
    processor.tokenizer.padding_side = "left"  # prompts end where generation starts


def processor_image_size(image_processor: Any) -> int | None:
    """The shorter side frames are decoded at: the side an image processor feeds its vision tower,
    or for dynamic-resolution processors (Qwen-VL) DYNAMIC_SIDE px within their pixel budget;
    None when the processor says neither."""
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop:
        return int(crop["height"] if isinstance(crop, dict) else crop.height)
    tile = getattr(image_processor, "max_image_size", None)  # Idefics3 / SmolVLM: square tiles
    if tile:
        return int(tile["longest_edge"] if isinstance(tile, dict) else tile.longest_edge)
    size = image_processor.size
    size = size if isinstance(size, dict) else dict(size.items()) if hasattr(size, "items") else size.__dict__
    if hasattr(image_processor, "merge_size"):  # Qwen-VL: `size` bounds the pixel count, not a side
        return min(DYNAMIC_SIDE, math.isqrt(int(size["longest_edge"])))
    side = size.get("shortest_edge") or size.get("height")
    return int(side) if side else None


def load_vlm_model(path: Path, dtype: Any, device: Any) -> Any:
    """The weights, straight onto the device (a 7B checkpoint is not staged in CPU memory first)."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=dtype, device_map=str(device), use_safetensors=True, trust_remote_code=False
    ).eval()
