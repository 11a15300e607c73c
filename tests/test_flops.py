"""Analytic FLOP counts (videoqa/bench/flops.py): hand-computed values for tiny shapes, the paper's
architectures against transformers' own modules, and whole captioning runs against torch's
FLOP counter (eager attention, so every product is a visible matmul)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, LlamaConfig, LlavaForConditionalGeneration, OPTConfig, Qwen2Config

from captioner.modeling.inference import first_glance, refine_once
from captioner.modeling.modeling_ser import SeRForCaptioning
from captioner.modeling.presets import get_config, tiny_tokenizer
from captioner.modeling.processing_ser import SeRProcessor, clip_image_processor
from videoqa.bench import flops
from videoqa.bench.flops import TransformerShape
from videoqa.bench.generalist import llava_config

PROMPT = "Describe this frame within 50 words"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# a shape small enough to count by hand: 2 layers, width 4, MLP 8, 2 heads of 2, vocabulary 10
TINY = TransformerShape(layers=2, hidden=4, ffn=8, heads=2, head_dim=2, kv_heads=2, vocab=10)


def test_tiny_shape_by_hand():
    # Q, K, V, O: 4 matrices 4x4 -> 4 * 2*4*4 = 128; MLP 4x8 and 8x4 -> 2 * 2*4*8 = 128
    assert TINY.layer_linear_flops == 128 + 128
    # 3 pairs, 2 heads of 2: Q.K^T 2*3*2*2 = 24 and A.V 24
    assert TINY.attention_flops(3) == 48
    assert TINY.lm_head_flops == 2 * 4 * 10
    assert flops.causal_pairs(4) == 1 + 2 + 3 + 4


def test_decoder_generation_by_hand():
    # prompt 3, 2 new tokens: prefill of 3 + one decode step = 4 tokens forwarded, pairs 1+2+3+4 = 10
    per_layer = 4 * 256 + 4 * 2 * 2 * 10
    assert flops.decoder_flops(TINY, 3, 2) == 2 * per_layer + 2 * 80
    # prefill that produces a single token: 3 tokens, pairs 6, one LM-head row
    assert flops.decoder_flops(TINY, 3, 1) == 2 * (3 * 256 + 4 * 2 * 2 * 6) + 80
    # a decode step at context c costs c pairs: the difference of two generation lengths
    assert flops.decoder_flops(TINY, 3, 3) - flops.decoder_flops(TINY, 3, 2) == flops.token_flops(TINY, 5)
    assert flops.token_flops(TINY, 5) == 2 * (256 + 4 * 2 * 2 * 5) + 80
    with pytest.raises(ValueError):
        flops.decoder_flops(TINY, 0, 1)


def test_encoder_gqa_gated_and_opt_projections_by_hand():
    assert flops.encoder_flops(TINY, 5) == 2 * (5 * 256 + 4 * 2 * 2 * 25)
    assert flops.encoder_flops(TINY, 5, layers=1) == 5 * 256 + 4 * 2 * 2 * 25
    # grouped-query attention (1 KV head of 2) and a gated MLP (3 matrices)
    gqa = TransformerShape(layers=1, hidden=4, ffn=8, heads=2, head_dim=2, kv_heads=1, gated_mlp=True, vocab=10)
    assert gqa.layer_linear_flops == 2 * 4 * (4 + 2 * 2) + 2 * 4 * 4 + 3 * 2 * 4 * 8
    # OPT-350M style: embeddings of width 3 projected in and out of width 4
    opt = TransformerShape(layers=1, hidden=4, ffn=8, heads=2, head_dim=2, kv_heads=2, vocab=10, embed_dim=3)
    assert opt.io_projection_flops == 2 * 3 * 4 and opt.lm_head_flops == 2 * 3 * 10
    # 2 tokens forwarded (project_in twice), 2 generated (project_out twice)
    assert flops.decoder_flops(opt, 1, 2) == (2 * 256 + 4 * 2 * 2 * 3) + 2 * 24 + 2 * 24 + 2 * 60


def test_mlp_and_paper_vit_by_hand():
    assert flops.mlp_flops(5, [3, 4, 2]) == 2 * 5 * 3 * 4 + 2 * 5 * 4 * 2
    config = get_config("ser")
    assert config.vision_layers_used == 23 and get_config("specialist").vision_layers_used == 23
    per_token_layer = 2 * 4 * 1024 * 1024 + 2 * 2 * 1024 * 4096  # Q K V O + MLP
    expected = 2 * 576 * (3 * 14 * 14) * 1024 + 23 * (577 * per_token_layer + 4 * 1024 * 577 * 577)
    assert flops.vision_flops(config.vision_config, 23) == expected
    assert abs(expected / 1e9 - 366.0) < 0.1  # ~366 GFLOPs per frame


@pytest.mark.parametrize("name", ["opt-125m", "llama-2-7b", "qwen2.5-14b"])
def test_paper_shapes_match_transformers_modules(name):
    """Per-token linear FLOPs = 2 x the weights of every Linear inside the decoder layers."""
    config, shape = {
        "opt-125m": (OPTConfig(), flops.OPT_125M),  # OPTConfig's defaults are OPT-125M
        "llama-2-7b": (
            LlamaConfig(
                hidden_size=4096,
                intermediate_size=11008,
                num_hidden_layers=32,
                num_attention_heads=32,
                num_key_value_heads=32,
                vocab_size=32000,
            ),
            flops.LLAMA2_7B,
        ),
        "qwen2.5-14b": (
            Qwen2Config(
                hidden_size=5120,
                intermediate_size=13824,
                num_hidden_layers=48,
                num_attention_heads=40,
                num_key_value_heads=8,
                vocab_size=152064,
            ),
            flops.QWEN25_14B,
        ),
    }[name]
    assert flops.shape_of(config) == shape
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    layers = model.model.decoder.layers if name == "opt-125m" else model.model.layers
    weights = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
    assert shape.layers * shape.layer_linear_flops == 2 * weights
    assert shape.lm_head_flops == 2 * model.get_output_embeddings().weight.numel()


# ---------------------------------------------------------------------------- against torch's counter


def _eager_tiny_ser(preset: str):
    tokenizer = tiny_tokenizer()
    config = get_config(
        preset, text_config={"vocab_size": len(tokenizer)}, image_token_id=tokenizer.convert_tokens_to_ids("<image>")
    )
    config._attn_implementation = "eager"  # attention as plain matmuls the counter sees
    torch.manual_seed(0)
    model = SeRForCaptioning(config).eval()
    processor = SeRProcessor(
        clip_image_processor(64),
        tokenizer,
        num_image_tokens=config.num_visual_tokens,
        max_caption_tokens=config.deeplens_max_caption_tokens,
    )
    return model, processor


def _counted(action) -> tuple[int, object]:
    with FlopCounterMode(display=False) as counter:
        result = action()
    return counter.get_total_flops(), result


def test_tiny_ser_vision_by_hand_and_by_counter():
    model, processor = _eager_tiny_ser("tiny-ser")
    config = model.config
    # 64 px / patch 16 -> 16 patches + CLS = 17 tokens, width 32, MLP 64, layers {1, 2, 3} of 4 read
    per_token_layer = 4 * 2 * 32 * 32 + 2 * 2 * 32 * 64
    by_hand = 2 * 16 * (3 * 16 * 16) * 32 + 3 * (17 * per_token_layer + 4 * 32 * 17 * 17)
    assert config.vision_layers_used == 3
    assert flops.vision_flops(config.vision_config, 3) == by_hand == 1_732_992
    pixels = processor.preprocess_images([np.zeros((64, 64, 3), np.uint8)] * 2)
    counted, _ = _counted(lambda: model.encode_images(pixels))
    assert counted == 2 * by_hand  # the 4th layer is never run


def executed_minus_useful_pairs(prompt: int, new: int) -> int:
    """Attention pairs SeR's generation computes but masks out. Its KV cache is preallocated
    ("static") for the prompt + new - 1 tokens ever fed in, and every forwarded token's scores span
    that whole length (the mask is applied after the product); useful are the causal pairs."""
    forwarded = prompt + new - 1
    return forwarded * forwarded - flops.causal_pairs(forwarded)


@pytest.mark.parametrize("preset", ["tiny-ser", "tiny-specialist"])
def test_ser_caption_flops_match_a_real_run(preset):
    """One image, both glances, fixed length: torch's counter sees every product executed, we
    count the useful ones; the masked-out attention scores are the only difference."""
    model, processor = _eager_tiny_ser(preset)
    config, lm = model.config, flops.shape_of(model.config.text_config)
    image = [np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    buffer = model.encode_images(processor.preprocess_images(image))
    new = 5
    counted, ids = _counted(lambda: first_glance(model, processor, buffer, PROMPT, new, new))
    first_prompt = int(processor.generation_inputs(1, PROMPT)["attention_mask"].sum())
    refine_prompts, drafts, counted_refine = [], [], 0
    if config.refine:
        refine_prompts = [int(processor.generation_inputs(1, PROMPT, ids)["attention_mask"].sum())]
        drafts = [len(ids[0])]
        counted_refine, _ = _counted(lambda: refine_once(model, processor, buffer, PROMPT, ids, new, new))
    parts = flops.ser_caption_flops(
        config, first_prompt=first_prompt, new_tokens=new, refine_prompts=refine_prompts, drafts=drafts
    )
    masked = lambda p: lm.layers * lm.attention_flops(executed_minus_useful_pairs(p, new))  # noqa: E731
    assert counted == parts["connector"] + parts["lm_first_glance"] + masked(first_prompt)
    if config.refine:
        assert counted_refine == parts["deeplens"] + parts["lm_refine"] + masked(refine_prompts[0])
    else:
        assert parts["deeplens"] == parts["lm_refine"] == 0
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


def test_llava_flops_match_a_real_run():
    """transformers' LLaVA runs every ViT layer; we count the ones read (all but the last)."""
    config = llava_config("tiny", 2)
    config.text_config.num_key_value_heads = 2  # grouped-query attention in the real run too
    config._attn_implementation = "eager"
    for sub in (config.text_config, config.vision_config):
        sub._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    ids = torch.cat([torch.tensor([[1]]), torch.full((1, 16), config.image_token_index), torch.tensor([[5, 6, 7]])], 1)
    pixels = torch.randn(1, 3, 64, 64)
    new = 4
    counted, out = _counted(
        lambda: model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=pixels,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=2,
        )
    )
    assert out.shape[1] == ids.shape[1] + new
    parts = flops.llava_caption_flops(config, prompt_tokens=ids.shape[1], new_tokens=new)
    vision = flops.shape_of(config.vision_config)
    unused_layer = flops.encoder_flops(vision, 17, layers=1)
    text = flops.shape_of(config.text_config)
    p = ids.shape[1]
    assert counted == parts["total"] + unused_layer + text.layers * text.attention_flops(p * (p - 1) // 2)


def test_gpu_floor_is_consistent():
    floor = flops.video_floor(peak=1e15, video_s=600, fps=1.0)
    assert floor.frames == 600
    assert 0 < floor.vision_s < floor.caption_s
    assert floor.transcript_tokens == 600 * 64
    table = flops.floor_table()
    assert "Qwen2.5-14B" in table and "| total |" in table
