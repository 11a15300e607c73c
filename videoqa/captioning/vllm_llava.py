"""LLaVA-1.5 served by vLLM (`llava-1.5-vllm`): the same checkpoint, prompt and greedy decoding as
`llava-1.5`, with vLLM's continuous batching and paged KV cache for throughput on GPUs.

Every frame is one request {"prompt": <LLaVA-1.5 prompt with one <image>>, "multi_modal_data":
{"image": <frame>}}; vLLM expands <image> into the 576 visual tokens itself and schedules all
requests of a `caption()` call together (so a large `batch_size` in the YAML helps).

Options (`captioner.options` in the YAML):
    prompt_template: as for `llava-1.5` (default: the processor's chat template)
    max_model_len: context length to reserve per request (default 2048: 576 image tokens + prompt
        + caption fit easily; LLaVA-1.5 itself allows 4096)
    gpu_memory_utilization: fraction of GPU memory vLLM may take (default 0.9); the caption stage
        ends (and `close()` frees the engine) before the answering LLM starts
    cpu_kvcache_gib: KV cache size for CPU builds of vLLM (VLLM_CPU_KVCACHE_SPACE)
    seed: engine seed (default 0; decoding is greedy anyway)
    engine_kwargs: anything else for `vllm.LLM(...)`, e.g. {enforce_eager: true}

The constructor reads the checkpoint's config and processor only (identity and size need no
engine); the engine starts in `load()`.

vLLM preprocesses images with the checkpoint's Hugging Face processor (transformers picks the
torchvision backend when it is installed, PIL otherwise), so captions can differ in rare tokens
from the transformers `llava-1.5` captioner. vLLM 0.32's LLaVA module imports transformers'
Pixtral image processor, which needs torchvision: without torchvision this captioner refuses to
start with a one-line error (use `llava-1.5` there).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from videoqa.captioning.base import Captioner
from videoqa.captioning.hf_vlm import caption_prompt_text, check_prompt_template
from videoqa.config import CaptionerConfig
from videoqa.models.vlm import open_vlm, processor_image_size
from videoqa.registry import CAPTIONERS
from videoqa_base.checkpoints import checkpoint_parameters
from videoqa_base.errors import UserError


def check_vllm_llava() -> str:
    """vLLM's version, or a UserError if its LLaVA model cannot be imported on this machine."""
    try:
        import vllm

        importlib.import_module("vllm.model_executor.models.llava")
    except ImportError as exc:
        raise UserError(
            f"vLLM's LLaVA support cannot be loaded here ({type(exc).__name__}: {exc}); "
            f"use the transformers captioner (llava-1.5.yaml, type hf-vlm) instead"
        ) from None
    return vllm.__version__


@CAPTIONERS.register("llava-1.5-vllm")
class VLLMLlavaCaptioner(Captioner):
    """LLaVA-1.5 through `vllm.LLM`, greedy, one request per frame."""

    kind = "llava-1.5-vllm"
    known_options = frozenset(
        {"prompt_template", "max_model_len", "gpu_memory_utilization", "cpu_kvcache_gib", "seed", "engine_kwargs"}
    )

    def __init__(self, config: CaptionerConfig):
        from videoqa_base.device import resolve_device, resolve_dtype

        super().__init__(config)
        options = dict(config.options)
        if not config.model:
            raise UserError(
                f"captioner {config.name!r}: field 'model' is empty; set an HF id such as "
                f"llava-hf/llava-1.5-7b-hf or a local model directory"
            )
        self.prompt_template = check_prompt_template(config.name, options.get("prompt_template"), "llava")
        engine_kwargs = options.get("engine_kwargs", {})
        if not isinstance(engine_kwargs, dict):
            raise UserError(f"captioner {config.name!r}: options.engine_kwargs must be a mapping")
        # one-line errors before paying for an engine start; the processor gives prompt layout and size
        self.resolved, self.model_config, self.inputs = open_vlm(
            config.model, config.revision, what="LLaVA-1.5 captioner"
        )
        self.image_size = processor_image_size(self.inputs.image_processor)
        # same policy as the transformers captioners (bf16 / fp16 on GPU; on CPU per videoqa_base.device)
        self.dtype = str(resolve_dtype(config.dtype, resolve_device(config.device))).removeprefix("torch.")
        self.cpu_kvcache_gib = options.get("cpu_kvcache_gib")
        self.engine_kwargs: dict[str, Any] = dict(
            model=str(self.resolved.path),  # local files: vLLM never reaches for the hub
            tokenizer=str(self.resolved.path),
            dtype=self.dtype,
            max_model_len=int(options.get("max_model_len", 2048)),
            gpu_memory_utilization=float(options.get("gpu_memory_utilization", 0.9)),
            seed=int(options.get("seed", 0)),
            limit_mm_per_prompt={"image": 1},  # one frame per request
            trust_remote_code=False,
        )
        self.engine_kwargs.update(engine_kwargs)
        self.llm: Any = None
        self.vllm_version: str | None = None

    def prompt_text(self, prompt: str) -> str:
        return caption_prompt_text(self.inputs, "llava", self.prompt_template, prompt)

    def _load(self) -> None:
        self.vllm_version = check_vllm_llava()
        if self.cpu_kvcache_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{float(self.cpu_kvcache_gib):g}"  # read at engine start
        import vllm

        self.llm = vllm.LLM(**self.engine_kwargs)

    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        from PIL import Image
        from vllm import SamplingParams

        if len(images) == 0:
            return []
        self.load()  # normally done by the caption stage; idempotent (and restarts a closed engine)
        text = self.prompt_text(prompt)
        requests = [
            {
                "prompt": text,
                "multi_modal_data": {"image": Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))},
            }
            for image in images
        ]
        params = SamplingParams(temperature=0.0, max_tokens=self.config.max_new_tokens)
        outputs = self.llm.generate(requests, params, use_tqdm=False)  # returned in request order
        return [output.outputs[0].text.strip() for output in outputs]

    def identity(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "model": self.resolved.ref,
            "path": str(self.resolved.path),
            "revision": self.resolved.revision,
            "source": self.resolved.source,
            "prompt": self.config.prompt,
            "prompt_text": self.prompt_text(self.config.prompt),
            "decoding": "greedy",
            "max_new_tokens": self.config.max_new_tokens,
            "dtype": self.dtype,
            "image_size": self.image_size,
        }

    def num_parameters(self) -> int:
        return checkpoint_parameters(self.resolved.path)

    def close(self) -> None:
        """Shut the engine down now (its worker process holds the GPU memory the LLM needs next)."""
        llm, self.llm, self.loaded = self.llm, None, False
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) or getattr(
                getattr(engine, "engine_core", None), "shutdown", None
            )
            if callable(shutdown):
                shutdown()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to free
            pass
