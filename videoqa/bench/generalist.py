"""generalist_over_ser: LLaVA-1.5-7B's time per caption over SeR's, both at batch 1 with random
weights. A LLaVA with fewer decoder layers than the real one is timed and its layers' clocked
time scaled to the full depth: t = t_rest + L * t_layer (decoder layers are identical, so their
time is linear in L)."""

from __future__ import annotations

import gc
import time
from typing import Any

import torch
from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from captioner.modeling.presets import get_config, tiny_tokenizer
from captioner.modeling.processing_ser import SeRProcessor, clip_image_processor
from videoqa.bench.caption import frames_like_decoded, materialise
from videoqa.bench.flops import llava_caption_flops
from videoqa.bench.peak import sync
from videoqa.bench.settings import PROMPT, BenchSettings, say
from videoqa_base.device import dtype_name, resolve_dtype

LLAVA_FULL_LAYERS = {"7b": 32, "tiny": 4}


def llava_config(size: str, layers: int) -> LlavaConfig:
    """transformers' LLaVA-1.5 config: CLIP ViT-L/14-336 + LLaMA-2-7B with `layers` decoder layers
    (size "7b"), or a tiny one of the same layout for tests ("tiny"). The vision tower is the one of
    the SeR preset of the same size (SeR and LLaVA-1.5 share CLIP ViT-L/14-336)."""
    if size == "7b":
        vision = get_config("ser").vision_config
        text = LlamaConfig(
            vocab_size=32064,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=layers,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
        image_token = 32000
    elif size == "tiny":
        vision = get_config("tiny-ser").vision_config
        text = LlamaConfig(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
        image_token = 255
    else:
        raise ValueError(f"unknown LLaVA size {size!r} (7b, tiny)")
    patches = (vision.image_size // vision.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=patches,
    )


def instruction_tokens(prompt: str = PROMPT) -> int:
    """Text tokens of SeR's first-glance prompt (BOS and image tokens excluded), tiny tokenizer."""
    processor = SeRProcessor(clip_image_processor(64), tiny_tokenizer(), num_image_tokens=1)
    return len(processor.prompt_ids(prompt)) - 2


class LayerClock:
    """Wall time spent inside a list of modules (forward pre/post hooks), e.g. the decoder layers."""

    def __init__(self, modules, device: str = "cpu"):
        self.seconds, self.device = 0.0, device
        self.entered = 0.0
        self.hooks = []
        for module in modules:
            self.hooks.append(module.register_forward_pre_hook(self.enter))
            self.hooks.append(module.register_forward_hook(self.leave))

    def enter(self, *args) -> None:
        sync(self.device)
        self.entered = time.perf_counter()

    def leave(self, *args) -> None:
        sync(self.device)
        self.seconds += time.perf_counter() - self.entered

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def time_llava(config, pixel_values, text_tokens: int, new_tokens: int, dtype, device: str = "cpu") -> dict[str, Any]:
    """Build a random-weight LLaVA and time one caption (batch 1, exactly `new_tokens` tokens),
    clocking the decoder layers apart from the rest (ViT, projector, embeddings, LM head, Python)."""
    started = time.perf_counter()
    torch.manual_seed(0)
    model = materialise(LlavaForConditionalGeneration, config, dtype, device)
    build_s = time.perf_counter() - started
    patches = config.image_seq_length
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, config.image_token_index - 1, (1, text_tokens), generator=generator)
    ids = torch.cat([torch.tensor([[1]]), torch.full((1, patches), config.image_token_index), text], dim=1).to(device)
    pixels = pixel_values.to(device=device, dtype=dtype)

    def caption(tokens: int, model: Any = model) -> tuple[float, float]:
        clock = LayerClock(model.model.language_model.layers, device)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    pixel_values=pixels,
                    do_sample=False,
                    max_new_tokens=tokens,
                    min_new_tokens=tokens,
                    pad_token_id=0,
                    eos_token_id=2,
                )
            sync(device)
        finally:
            clock.remove()
        if out.shape[1] - ids.shape[1] != tokens:
            raise RuntimeError(f"generation stopped after {out.shape[1] - ids.shape[1]} of {tokens} tokens")
        return time.perf_counter() - t0, clock.seconds

    warm_s, _ = caption(1)
    seconds, layer_seconds = caption(new_tokens)
    layers = config.text_config.num_hidden_layers
    flops = llava_caption_flops(config, prompt_tokens=ids.shape[1], new_tokens=new_tokens)
    del model
    gc.collect()
    return {
        "layers": layers,
        "build_s": build_s,
        "warm_up_s": warm_s,
        "seconds": seconds,
        "decoder_layer_seconds": layer_seconds,
        "seconds_per_layer": layer_seconds / layers,
        "seconds_rest": seconds - layer_seconds,
        "prompt_tokens": ids.shape[1],
        "flops": flops,
    }


def generalist_step(
    settings: BenchSettings, ser_seconds_per_caption: float | None, peak: dict | None, device: str = "cpu"
) -> dict[str, Any]:
    """LLaVA-1.5 per-caption time at batch 1, extrapolated to the full depth (module docstring)."""
    dtype = resolve_dtype(settings.dtype, device)
    full_layers = LLAVA_FULL_LAYERS[settings.llava]
    text_tokens = instruction_tokens()  # the same instruction length as SeR's first glance
    runs = []
    for layers in sorted(set(settings.llava_layers)):
        config = llava_config(settings.llava, layers)
        image = frames_like_decoded(1, config.vision_config.image_size, seed=1)
        pixels = clip_image_processor(config.vision_config.image_size)(image, return_tensors="pt")["pixel_values"]
        run = time_llava(config, pixels, text_tokens, settings.new_tokens, dtype, device)
        run["extrapolated"] = run["seconds_rest"] + full_layers * run["seconds_per_layer"]
        runs.append(run)
        say(
            f"LLaVA-1.5 ({settings.llava}) with {layers} decoder layers: {run['seconds']:.2f} s per caption "
            f"({run['seconds_per_layer']:.2f} s per layer) -> {run['extrapolated']:.1f} s with {full_layers}"
        )
    deepest = runs[-1]  # the most layers: the least extrapolation
    if deepest["layers"] == full_layers:
        how = f"all {full_layers} decoder layers timed directly"
    else:
        how = f"t = t_rest + {full_layers} x t_layer, decoder layers clocked in a {deepest['layers']}-layer model"
    out = {
        "architecture": "LLaVA-1.5-7B (CLIP ViT-L/14-336 + LLaMA-2-7B)" if settings.llava == "7b" else "tiny LLaVA",
        "dtype": dtype_name(dtype),
        "runs": runs,
        "extrapolation": how,
        "seconds_per_layer": None if deepest["layers"] == full_layers else deepest["seconds_per_layer"],
        "seconds_rest": deepest["seconds_rest"],
        "seconds_per_caption": deepest["extrapolated"],
        "flops_per_caption": llava_caption_flops(
            llava_config(settings.llava, full_layers),
            prompt_tokens=deepest["prompt_tokens"],
            new_tokens=settings.new_tokens,
        ),
        "new_tokens": settings.new_tokens,
    }
    if len(runs) > 1:  # cross-check: the slope between two depths (noisier: a difference of totals)
        (k1, t1), (k2, t2) = (runs[0]["layers"], runs[0]["seconds"]), (runs[-1]["layers"], runs[-1]["seconds"])
        slope = (t2 - t1) / (k2 - k1)
        out["two_depth_fit"] = {"seconds_per_layer": slope, "seconds_per_caption": t1 + (full_layers - k1) * slope}
    if peak:
        out["mfu"] = out["flops_per_caption"]["total"] / out["seconds_per_caption"] / peak["flops"]
    if ser_seconds_per_caption:
        out["ser_seconds_per_caption"] = ser_seconds_per_caption
        out["generalist_over_ser"] = out["seconds_per_caption"] / ser_seconds_per_caption
    return out
