"""vLLM video-LLM backend ("vllm-video"), for GPUs: frames go in as the model's native VIDEO input.

Every prompt is one request {"prompt": <chat template with one video placeholder>,
"multi_modal_data": {"video": (frames, metadata)}} with `limit_mm_per_prompt={"video": 1}`; vLLM
expands the placeholder into the visual tokens itself. The metadata gives the sampled frame rate
and `do_sample_frames: False`, so vLLM keeps exactly our frames and their spacing (Qwen2.5-VL
encodes absolute time from it). The answer is constrained with structured outputs (`choice`) over
the option letters, with the letters' first-token logprobs, as in the text `vllm` backend.

Supported: the Qwen2-VL / Qwen2.5-VL family (the token count before sending - `video_tokens` -
follows their patching: 2-frame temporal patches of 14 px, 2x2 merged). Other video LLMs need
their own count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from videoqa.answering.llm import ChoiceCompletion
from videoqa.answering.llm.video import PreparedPrompt, VideoLLMBackend, VideoPrompt
from videoqa.answering.llm.vllm_offline import VLLMOfflineBackend
from videoqa.config import LLMConfig
from videoqa.models.vlm import QWEN_VL_TYPES, QwenVLInputs, open_vlm
from videoqa.registry import LLM_BACKENDS
from videoqa_base.errors import UserError


def sampled_fps(timestamps: Sequence[float]) -> float:
    """Frames per second of the sampled frames (1.0 for a single frame)."""
    if len(timestamps) < 2 or timestamps[-1] <= timestamps[0]:
        return 1.0
    return (len(timestamps) - 1) / (timestamps[-1] - timestamps[0])


def video_tokens(inputs: QwenVLInputs, num_frames: int, height: int, width: int) -> int:
    """Visual tokens of a Qwen-VL video input: ceil(frames / temporal patch) x patches per frame / merge^2."""
    processor = inputs.image_processor
    patches = processor.get_number_of_image_patches(height, width, {})
    return math.ceil(num_frames / processor.temporal_patch_size) * patches // processor.merge_size**2


def build_video_request(inputs: QwenVLInputs, video_token: str, prompt: VideoPrompt) -> tuple[dict[str, Any], int]:
    """The vLLM request for `prompt` and its length in tokens (visual tokens included)."""
    text = inputs.chat_text([{"type": "video"}, {"type": "text", "text": prompt.text}])
    if text.count(video_token) != 1:
        raise UserError(f"the chat template does not place one video placeholder {video_token!r} (got: {text[:200]!r})")
    frames = np.ascontiguousarray(prompt.frames, dtype=np.uint8)
    fps = sampled_fps(prompt.timestamps)
    metadata = {
        "fps": fps,
        "duration": len(frames) / fps,
        "total_num_frames": len(frames),
        "frames_indices": list(range(len(frames))),
        "video_backend": "videoqa",
        "do_sample_frames": False,  # these are the frames: no resampling by vLLM / the HF processor
    }
    text_tokens = len(inputs.tokenizer.encode(text, add_special_tokens=False)) - 1  # minus the placeholder
    tokens = text_tokens + video_tokens(inputs, len(frames), frames.shape[1], frames.shape[2])
    return {"prompt": text, "multi_modal_data": {"video": (frames, metadata)}}, tokens


@LLM_BACKENDS.register("vllm-video")
class VLLMVideoBackend(VLLMOfflineBackend, VideoLLMBackend):
    frames_as = "video"

    @classmethod
    def check_available(cls, config: LLMConfig) -> None:
        open_vlm(config.model, config.revision, what="video LLM")  # fit_memory (inherited) checks the engine

    def __init__(self, config: LLMConfig):
        _, model_config, inputs = open_vlm(config.model, config.revision, what="video LLM")
        if model_config.model_type not in QWEN_VL_TYPES:
            raise UserError(
                f"{config.model}: backend vllm-video supports {sorted(QWEN_VL_TYPES)}, not "
                f"{model_config.model_type!r}; "
                f"use backend transformers-video (frames as images)"
            )
        self.inputs = inputs
        self.video_token = inputs.tokenizer.convert_ids_to_tokens(int(model_config.video_token_id))
        engine_kwargs = {"limit_mm_per_prompt": {"video": 1, "image": 0}, **config.engine_kwargs}
        super().__init__(config.model_copy(update={"engine_kwargs": engine_kwargs}))

    def prepare(self, prompt: VideoPrompt) -> PreparedPrompt:
        request, tokens = build_video_request(self.inputs, self.video_token, prompt)
        return PreparedPrompt(prompt, tokens, request)

    def choose_frames(self, prepared: Sequence[PreparedPrompt]) -> list[ChoiceCompletion]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=self._longest_choice_tokens(item.prompt.choices) + 1,
                logprobs=len(item.prompt.choices),
                seed=self.config.seed,
                structured_outputs=StructuredOutputsParams(choice=list(item.prompt.choices)),
            )
            for item in prepared
        ]
        outputs = self.llm.generate([item.payload for item in prepared], params, use_tqdm=False)
        results = []
        for item, out in zip(prepared, outputs):
            sample = out.outputs[0]
            results.append(
                ChoiceCompletion(
                    text=sample.text,
                    prompt_tokens=len(out.prompt_token_ids),
                    error=None
                    if sample.text in item.prompt.choices
                    else f"constrained output {sample.text!r} not a choice",
                    choice_logprobs=self._first_token_logprobs(sample, item.prompt.choices),
                )
            )
        return results

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            "backend": "vllm-video",
            "frames_as": "native video input (frames + fps metadata)",
        }
