"""SeRProcessor: CLIP image preprocessing + tokenizer + the prompt layout of both glances.

The LM reads one flat token sequence per image (LLaVA-1.5 style, visual tokens in place of
`<image>` placeholders):

    first glance   [BOS] <image>*N "\\nUSER: {instruction}" "\\nASSISTANT:" " {caption}" [EOS]
    refinement     [BOS] <image>*N "\\nUSER: {instruction}" "\\nInitial caption:" " {initial}"
                   "\\nASSISTANT:" " {refined caption}" [EOS]

Everything before the caption is the prompt; only the caption and its EOS are trained on. Pieces
are tokenized separately and joined as ids, so the initial caption produced by the first glance is
spliced into the refinement prompt exactly as it was generated (no decode / re-encode round trip).
In the refinement pass DeepLens additionally reads the initial caption ids (input (1) of Fig. 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, CLIPVisionConfig, ProcessorMixin

from videoqa_base.errors import MissingModelError

IMAGE_TOKEN = "<image>"
DEFAULT_INSTRUCTION = "Describe this frame within 50 words"  # the prompt of the paper's VideoQA setup (App. H.5)
IGNORE_INDEX = -100  # label of positions that are not trained on (HF / PyTorch cross-entropy convention)

try:  # transformers >= 5: the PIL ("slow") backend is its own class; the default one needs torchvision
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as CLIPImageProcessorSlow
except ImportError:  # pragma: no cover - transformers 4.x
    # the 4.x class stands in under the 5.x name; mypy sees the 5.x stubs, where the two differ
    from transformers import CLIPImageProcessor as CLIPImageProcessorSlow  # type: ignore[assignment]


def load_part(cls: Any, ref: str | Path, what: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(ref)` from a local directory or the local HF cache (never the network)."""
    path = Path(ref).expanduser()
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if path.is_dir():
        return cls.from_pretrained(str(path), **kwargs)
    try:
        return cls.from_pretrained(str(ref), local_files_only=True, **kwargs)
    except OSError:
        raise MissingModelError(what, str(ref)) from None


def clip_image_processor(image_size: int) -> Any:
    """CLIP preprocessing (resize shortest edge, centre crop, CLIP mean/std) at `image_size` pixels."""
    return CLIPImageProcessorSlow(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


class SeRProcessor(ProcessorMixin):
    """Turns images and captions into model inputs, and generated ids back into captions.

    Saved with the model (`save_pretrained` / `from_pretrained`): the image processor config, the
    tokenizer and the prompt template below.
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        num_image_tokens: int = 576,
        image_token: str = IMAGE_TOKEN,
        default_instruction: str = DEFAULT_INSTRUCTION,
        user_prefix: str = "\nUSER: ",
        initial_caption_prefix: str = "\nInitial caption:",
        answer_prefix: str = "\nASSISTANT:",
        max_caption_tokens: int = 256,
        **kwargs: Any,
    ):
        self.num_image_tokens = num_image_tokens
        self.image_token = image_token
        self.default_instruction = default_instruction
        self.user_prefix = user_prefix
        self.initial_caption_prefix = initial_caption_prefix
        self.answer_prefix = answer_prefix
        self.max_caption_tokens = max_caption_tokens
        super().__init__(image_processor, tokenizer, **kwargs)
        if self.tokenizer.convert_tokens_to_ids(image_token) in (None, self.tokenizer.unk_token_id):
            raise ValueError(f"the tokenizer has no {image_token!r} token (add it as a special token)")

    @classmethod
    def from_pretrained_parts(cls, vision: str | Path, lm: str | Path, **kwargs: Any) -> SeRProcessor:
        """Processor for a fresh model from pretrained parts: CLIP preprocessing of `vision`, the
        tokenizer of `lm` plus an `<image>` special token (and a pad token if it had none)."""
        vision_config = load_part(CLIPVisionConfig, vision, "CLIP vision tower")
        try:
            image_processor = load_part(CLIPImageProcessorSlow, vision, "CLIP image processor")
        except (OSError, MissingModelError):  # a bare vision checkpoint without preprocessor_config.json
            image_processor = clip_image_processor(vision_config.image_size)
        tokenizer = load_part(AutoTokenizer, lm, "tokenizer of the language model")
        image_token = kwargs.get("image_token", IMAGE_TOKEN)
        if image_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([image_token], special_tokens=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        num_image_tokens = (vision_config.image_size // vision_config.patch_size) ** 2
        return cls(image_processor, tokenizer, num_image_tokens=num_image_tokens, **kwargs)

    # -- ids ----------------------------------------------------------------------------------------

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    @property
    def image_size(self) -> int:
        """Side length (pixels) of the images the vision tower sees."""
        crop = self.image_processor.crop_size
        return int(crop["height"])

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_caption(self, caption: str) -> list[int]:
        """Caption ids as they follow a prompt (leading space, no special tokens), truncated."""
        return self._text_ids(" " + caption.strip())[: self.max_caption_tokens]

    def prompt_ids(self, instruction: str | None = None, initial_caption_ids: Sequence[int] | None = None) -> list[int]:
        """The prompt of the first glance, or of the refinement pass when an initial caption is given."""
        instruction = self.default_instruction if instruction is None else instruction
        ids = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
        ids += [self.image_token_id] * self.num_image_tokens
        ids += self._text_ids(self.user_prefix + instruction)
        if initial_caption_ids is not None:
            ids += self._text_ids(self.initial_caption_prefix) + list(initial_caption_ids)
        return ids + self._text_ids(self.answer_prefix)

    def clean_generated(self, ids: Sequence[int] | torch.Tensor) -> list[int]:
        """Generated ids up to (not including) the first EOS, without padding or other special tokens."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if self.eos_token_id in ids:
            ids = ids[: ids.index(self.eos_token_id)]
        special = set(self.tokenizer.all_special_ids) | {self.image_token_id}
        return [i for i in ids if i not in special][: self.max_caption_tokens]

    def decode_caption(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.tokenizer.decode(self.clean_generated(ids), skip_special_tokens=True).strip()

    # -- batches ------------------------------------------------------------------------------------

    def preprocess_images(self, images: Sequence[Any]) -> torch.Tensor:
        """(H, W, 3) uint8 RGB arrays or PIL images -> pixel_values (B, 3, S, S), CLIP-normalised."""
        images = [np.asarray(im) if not hasattr(im, "convert") else im for im in images]
        return self.image_processor(images, return_tensors="pt")["pixel_values"]

    def _pad(self, rows: list[list[int]], side: str, value: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), value, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if not row:
                continue
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[i, span] = torch.tensor(row, dtype=torch.long)
            mask[i, span] = 1
        return ids, mask

    def _batch(self, rows: list[list[int]], side: str, drafts: list[list[int]] | None) -> dict[str, torch.Tensor]:
        """input_ids / attention_mask padded on `side`, plus the right-padded initial captions DeepLens
        reads when there are any (`drafts`)."""
        input_ids, attention_mask = self._pad(rows, side, self.pad_token_id)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if drafts is not None:
            batch["initial_caption_ids"], batch["initial_caption_mask"] = self._pad(drafts, "right", self.pad_token_id)
        return batch

    def generation_inputs(
        self,
        batch_size: int,
        instruction: str | None = None,
        initial_caption_ids: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Left-padded prompts for `batch_size` images (plus, for a refinement pass, the right-padded
        initial captions DeepLens reads): input_ids, attention_mask[, initial_caption_ids/_mask]."""
        drafts = None
        if initial_caption_ids is None:
            rows = [self.prompt_ids(instruction)] * batch_size
        else:
            if len(initial_caption_ids) != batch_size:
                raise ValueError(f"{len(initial_caption_ids)} initial captions for {batch_size} images")
            drafts = [list(c)[: self.max_caption_tokens] for c in initial_caption_ids]
            rows = [self.prompt_ids(instruction, draft) for draft in drafts]
        return self._batch(rows, "left", drafts)

    def __call__(
        self,
        images: Sequence[Any],
        instruction: str | None = None,
        initial_captions: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Inputs for one teacher-free glance: pixel_values + `generation_inputs` (captions as text)."""
        drafts = None if initial_captions is None else [self.encode_caption(c) for c in initial_captions]
        batch = self.generation_inputs(len(images), instruction, drafts)
        batch["pixel_values"] = self.preprocess_images(images)
        return batch

    def build_text_batch(
        self,
        captions: Sequence[str],
        initial_captions: Sequence[str] | None = None,
        instruction: str | Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Right-padded teacher-forcing rows; see `build_training_batch` (this is it without images)."""
        n = len(captions)
        instructions = [instruction] * n if instruction is None or isinstance(instruction, str) else list(instruction)
        if len(instructions) != n or (initial_captions is not None and len(initial_captions) != n):
            raise ValueError("captions, initial_captions and instructions must have the same length")
        rows, label_rows, drafts = [], [], []
        for i, caption in enumerate(captions):
            draft = None if initial_captions is None else self.encode_caption(initial_captions[i])
            prompt = self.prompt_ids(instructions[i], draft)
            target = self.encode_caption(caption) + [self.eos_token_id]
            rows.append(prompt + target)
            label_rows.append([IGNORE_INDEX] * len(prompt) + target)
            if draft is not None:
                drafts.append(draft)
        batch = self._batch(rows, "right", None if initial_captions is None else drafts)
        batch["labels"], _ = self._pad(label_rows, "right", IGNORE_INDEX)
        return batch

    def build_training_batch(
        self,
        images: Sequence[Any],
        captions: Sequence[str],
        initial_captions: Sequence[str] | None = None,
        instruction: str | Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """A batch for `SeRForCaptioning.forward` (all tensors, right-padded).

        Stage 1 / pretraining (no `initial_captions`): pixel_values, input_ids, attention_mask, labels.
        Stage 2 (with the pseudo-initial captions): additionally initial_caption_ids and
        initial_caption_mask, and the prompt in input_ids contains the initial caption.
        labels equal input_ids on the ground-truth caption and its EOS, and -100 elsewhere.
        """
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images for {len(captions)} captions")
        batch = self.build_text_batch(captions, initial_captions, instruction)
        batch["pixel_values"] = self.preprocess_images(images)
        return batch


__all__ = ["SeRProcessor", "IMAGE_TOKEN", "DEFAULT_INSTRUCTION", "IGNORE_INDEX", "load_part", "clip_image_processor"]
