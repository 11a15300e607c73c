"""Stand-ins for the pretrained parts SeR starts from, at a size a CPU trains in seconds.

The paper starts from CLIP ViT-L/14-336 (frozen in every stage) and OPT-125M. Here:

* the vision tower is a 6-layer ViT (64 px, patch 16: 16 visual tokens) pretrained on rendered
  scenes of the synthetic world (its own images) by two caption-free objectives: which coloured
  shapes appear (`synth.CONCEPTS`, multi-label, from the pooled last layer, the role of CLIP's
  image-level contrastive loss) and which colours each patch shows (from the patch tokens of layer
  3, standing in for the local detail early CLIP layers keep). Counts and positions are never
  supervised, so the late layers have no reason to keep them while layer 3 holds patch-level
  detail: the paper's "the last layer is coarse, multi-level features keep detail" (Sec. 4,
  Analysis 2). It is then frozen for every later stage (`SeRConfig.freeze_vision`);
* the LM is a 2-layer OPT pretrained (causal LM loss) on caption-like text: sentences describing
  random scenes of the same world that have no image (OPT saw web text, not COCO's captions).

Layer choice mirrors LLaVA-1.5 / the paper on a 24-layer ViT: the first glance reads the
penultimate layer (-2, layer 5 of 6); DeepLens reads layers {3, 4, 5}, the paper's {13, 18, 23}
scaled to 6 layers.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

# Sizes of the miniature (SeRConfig fields); the variant switches of Tab. 3 come from the preset.
MINIATURE_SIZES: dict[str, Any] = {
    "vision_config": dict(
        hidden_size=48, intermediate_size=96, num_hidden_layers=6, num_attention_heads=4,
        image_size=64, patch_size=16, projection_dim=48, hidden_act="quick_gelu",
    ),
    "text_config": dict(
        hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4, max_position_embeddings=128,
        word_embed_proj_dim=64, do_layer_norm_before=True, pad_token_id=0, bos_token_id=1, eos_token_id=1,
        dropout=0.0, attention_dropout=0.0,
    ),
    "deeplens_config": dict(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, vocab_size=1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    ),
    "vision_feature_layer": -2,
    "multilayer_feature_layers": [3, 4, 5],
    "deeplens_max_caption_tokens": 32,
    "connector_depth": 4,
}
DENSE_LAYER = 3  # the ViT layer the dense (per-patch) pretraining objective reads
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", "<image>"]  # ids 0..3: pad 0, bos = eos 1 as in text_config
VOCAB_SIZE = 512


def world_tokenizer():
    """Byte-level BPE over the prompt template and the world's words (whole-word tokens)."""
    from captioner.presets import TINY_TOKENIZER_CORPUS
    from captioner.processing_ser import IMAGE_TOKEN
    from captioner.synth import vocabulary_text
    from videoqa_base.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(
        TINY_TOKENIZER_CORPUS + vocabulary_text(), VOCAB_SIZE, SPECIAL_TOKENS,
        pad_token="<pad>", bos_token="</s>", eos_token="</s>", unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )


def miniature_config(variant: str, tokenizer, **overrides: Any):
    """SeRConfig of a Tab. 3 variant ("specialist", "ser", "ser-caption-only", "ser-multilayer-only")."""
    from captioner.presets import get_config

    fields = copy.deepcopy(MINIATURE_SIZES)
    fields["text_config"]["vocab_size"] = len(tokenizer)
    fields.update(overrides)
    return get_config(variant, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), **fields)


def miniature_processor(config, tokenizer):
    from captioner.processing_ser import SeRProcessor, clip_image_processor

    return SeRProcessor(
        clip_image_processor(config.vision_config.image_size), tokenizer,
        num_image_tokens=config.num_visual_tokens, max_caption_tokens=config.deeplens_max_caption_tokens,
    )


def render(processor, scenes: Sequence[Any], *, patch_labels: bool = False, chunk: int = 256):
    """Scenes drawn in memory and CLIP-normalised, (N, 3, S, S); with `patch_labels` also the
    per-patch colour labels (N, patches, colours) of the ViT's dense pretraining objective."""
    from captioner.synth import patch_colour_labels, render_scene

    size, patch = processor.image_size, processor.image_size // int(processor.num_image_tokens ** 0.5)
    pixels, labels = [], []
    for start in range(0, len(scenes), chunk):
        images = [render_scene(s, size) for s in scenes[start : start + chunk]]
        pixels.append(processor.preprocess_images(images))
        if patch_labels:
            labels += [patch_colour_labels(image, patch) for image in images]
    return (torch.cat(pixels), torch.tensor(labels)) if patch_labels else torch.cat(pixels)


def _optimizer(params, lr: float, steps: int):
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, math.ceil(0.03 * steps), steps)


@dataclass
class Pretrained:
    """The frozen-to-be ViT and the pretrained LM (state dicts), with what their pretraining reached."""

    vision: dict[str, torch.Tensor]
    language_model: dict[str, torch.Tensor]
    report: dict[str, Any]


def pretrain_vit(vision_config, pixels: torch.Tensor, concepts: torch.Tensor, patches: torch.Tensor,
                 held_out: tuple[torch.Tensor, torch.Tensor], *, steps: int, batch_size: int, lr: float,
                 seed: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Caption-free pretraining: which coloured shapes the image holds (multi-label, pooled last layer)
    plus which colours each patch shows (multi-label, patch tokens of layer `DENSE_LAYER`)."""
    from captioner.modeling_ser import SeRVisionTower

    torch.manual_seed(seed)
    tower = SeRVisionTower(vision_config)
    head = nn.Linear(vision_config.hidden_size, concepts.shape[1])
    dense_head = nn.Linear(vision_config.hidden_size, patches.shape[2])
    params = [*tower.parameters(), *head.parameters(), *dense_head.parameters()]
    optimizer, schedule = _optimizer(params, lr, steps)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.BCEWithLogitsLoss()
    tower.train()
    for _ in range(steps):
        rows = torch.randint(0, len(pixels), (batch_size,), generator=generator)
        out = tower(pixels[rows], output_hidden_states=True)
        loss = loss_fn(head(out.pooler_output), concepts[rows])
        loss = loss + loss_fn(dense_head(out.hidden_states[DENSE_LAYER][:, 1:]), patches[rows])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    tower.eval()
    with torch.no_grad():
        predicted = head(tower(held_out[0]).pooler_output) > 0
    exact = (predicted == held_out[1].bool()).all(dim=1).float().mean().item()
    return tower.state_dict(), {"final_loss": round(float(loss.detach()), 4),
                                "held_out_concept_set_accuracy": round(100 * exact, 1)}


def pretrain_lm(text_config, tokenizer, corpus: Sequence[str], steps: int, batch_size: int, lr: float,
                seed: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Causal LM loss on `[BOS] caption [EOS]` rows, captions as they follow a prompt (leading space)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(text_config)
    rows = [[tokenizer.bos_token_id] + tokenizer(" " + text, add_special_tokens=False)["input_ids"]
            + [tokenizer.eos_token_id] for text in corpus]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, 1 : len(row)] = torch.tensor(row[1:])  # no loss on BOS (it is never predicted)
    optimizer, schedule = _optimizer(lm.parameters(), lr, steps)
    generator = torch.Generator().manual_seed(seed)
    lm.train()
    for _ in range(steps):
        pick = torch.randint(0, len(rows), (batch_size,), generator=generator)
        loss = lm(input_ids=ids[pick], attention_mask=ids[pick] != tokenizer.pad_token_id, labels=labels[pick]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return lm.state_dict(), {"final_loss": round(float(loss.detach()), 4)}


def caption_like_corpus(n_scenes: int, seed: int) -> list[str]:
    """All three phrasings of `n_scenes` random scenes that are never rendered (the LM's "web text")."""
    from captioner.synth import sample_scenes

    return [caption for scene in sample_scenes(n_scenes, f"lm-corpus:{seed}") for caption in scene.captions()]


def assemble(variant: str, tokenizer, pretrained: Pretrained, seed: int):
    """A SeR of `variant` with the pretrained ViT and LM; connector (and DeepLens) fresh from `seed`."""
    from captioner.modeling_ser import SeRForCaptioning

    config = miniature_config(variant, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SeRForCaptioning(config)
    model.vision_tower.load_state_dict(pretrained.vision)
    model.language_model.load_state_dict(pretrained.language_model)
    return model


def load_stage(model, state: dict[str, torch.Tensor]) -> None:
    """Load a previous stage's weights; only DeepLens may be missing (stage 2 adds it fresh)."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("deeplens.")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("deeplens.")]
    if missing or unexpected:
        raise RuntimeError(f"stage weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")


def weights(model, without: str = "deeplens.") -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (DeepLens left out: each stage-2 arm starts it fresh)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(without)}
