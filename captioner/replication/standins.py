"""Stand-ins for the pretrained parts SeR starts from, at a size a CPU trains in seconds.

The paper starts from CLIP ViT-L/14-336 (frozen in every stage) and OPT-125M. Here:

* the vision tower is a 6-layer ViT (64 px, patch 16: 16 visual tokens) pretrained on rendered
  scenes of the synthetic world (its own images, never a caption) by classification: the pooled
  last layer learns which coloured shapes appear (`synth.CONCEPTS`, a bag of objects, the role of
  CLIP's image-level objective); the patch tokens of layer 5 (-2, what the first glance reads)
  learn only each patch's colour; the patch tokens of layer 3 learn what each patch shows (empty
  or which coloured shape: `synth.PATCH_CLASSES`; every small shape sits in its own patch). Counts
  and positions are never labels (they follow from which patches are occupied). So the late layer
  is coarse - colour and occupancy kept, the shape of each object blurred - and layer 3 keeps the
  detail: the paper's premise (Sec. 4, Analysis 2; Fig. 6) built in, so that the miniature measures
  what each training recipe makes of it. The ViT is then frozen for every later stage
  (`SeRConfig.freeze_vision`);
* the LM is a 2-layer OPT pretrained (causal LM loss) on caption-like text: sentences describing
  random scenes of the same world that have no image (OPT saw web text, not COCO's captions).

Layer choice mirrors LLaVA-1.5 / the paper on a 24-layer ViT: the first glance reads the
penultimate layer (-2, layer 5 of 6); DeepLens reads layers {3, 4, 5}, the paper's {13, 18, 23}
scaled to 6 layers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from captioner.replication.synth import COLOURS

# Sizes of the miniature (SeRConfig fields); the variant switches of Tab. 3 come from the preset.
MINIATURE_SIZES: dict[str, Any] = {
    "vision_config": dict(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=6,
        num_attention_heads=4,
        image_size=64,
        patch_size=16,
        projection_dim=48,
        hidden_act="quick_gelu",
    ),
    "text_config": dict(
        hidden_size=64,
        num_hidden_layers=2,
        ffn_dim=128,
        num_attention_heads=4,
        max_position_embeddings=128,
        word_embed_proj_dim=64,
        do_layer_norm_before=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        dropout=0.0,
        attention_dropout=0.0,
    ),
    "deeplens_config": dict(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    ),
    "vision_feature_layer": -2,
    "multilayer_feature_layers": [3, 4, 5],
    "deeplens_max_caption_tokens": 32,
    "connector_depth": 4,
}
DETAIL_LAYER = 3  # the ViT layer that learns what each patch shows (colour and shape)
COARSE_LAYER = 5  # the layer the first glance reads (-2 of 6): learns only each patch's colour
PATCH_COLOURS = ("empty", *COLOURS)
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", "<image>"]  # ids 0..3: pad 0, bos = eos 1 as in text_config
VOCAB_SIZE = 512
INSTRUCTION = "Describe."


def world_tokenizer():
    """Byte-level BPE over the prompt template and the world's words (whole-word tokens)."""
    from captioner.modeling.presets import TINY_TOKENIZER_CORPUS
    from captioner.modeling.processing_ser import IMAGE_TOKEN
    from captioner.replication.synth import vocabulary_text
    from videoqa_base.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(
        TINY_TOKENIZER_CORPUS + vocabulary_text(),
        VOCAB_SIZE,
        SPECIAL_TOKENS,
        pad_token="<pad>",
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )


def miniature_config(variant: str, tokenizer, **overrides: Any):
    """SeRConfig of a Tab. 3 variant ("specialist", "ser", "ser-caption-only", "ser-multilayer-only")."""
    from captioner.modeling.presets import get_config

    fields = copy.deepcopy(MINIATURE_SIZES)
    fields["text_config"]["vocab_size"] = len(tokenizer)
    fields.update(overrides)
    return get_config(variant, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), **fields)


def miniature_processor(config, tokenizer):
    """The SeR processor with a short instruction (the prompt template is the real one): the default
    VideoQA instruction would be a third of every training row here, for nothing."""
    from captioner.modeling.processing_ser import SeRProcessor, clip_image_processor

    return SeRProcessor(
        clip_image_processor(config.vision_config.image_size),
        tokenizer,
        default_instruction=INSTRUCTION,
        num_image_tokens=config.num_visual_tokens,
        max_caption_tokens=config.deeplens_max_caption_tokens,
    )


def render(processor, scenes: Sequence[Any], chunk: int = 256) -> torch.Tensor:
    """Scenes drawn in memory and CLIP-normalised: (N, 3, S, S)."""
    from captioner.replication.synth import render_scene

    size = processor.image_size
    return torch.cat(
        [
            processor.preprocess_images([render_scene(s, size) for s in scenes[i : i + chunk]])
            for i in range(0, len(scenes), chunk)
        ]
    )


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


def colour_codes(hidden_size: int, seed: int) -> torch.Tensor:
    """One fixed random vector per `PATCH_COLOURS` entry: what the coarse layer's patch tokens become."""
    return torch.randn(len(PATCH_COLOURS), hidden_size, generator=torch.Generator().manual_seed(seed))


def pretrain_vit(
    vision_config,
    pixels: torch.Tensor,
    patches: torch.Tensor,
    held_out: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    coarse_weight: float = 4.0,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Caption-free pretraining on the world's images, two per-patch objectives:

    * `DETAIL_LAYER`'s patch tokens classify what the patch shows (`synth.PATCH_CLASSES`: empty or
      which coloured shape; a linear head), so that layer keeps every shape;
    * `COARSE_LAYER`'s patch tokens regress onto a fixed code of the patch's colour alone
      (`colour_codes`, mean squared error): a token that equals its colour's code holds nothing
      else, so the layers after `DETAIL_LAYER` must wash the shape out of the residual stream. A
      classification head would not: a layer can keep its colour class and every shape beside it.
    `captioner.replication.probes` measures what each layer ended up holding.
    """
    from captioner.modeling.modeling_ser import SeRVisionTower
    from captioner.replication.synth import PATCH_CLASSES

    torch.manual_seed(seed)
    tower = SeRVisionTower(vision_config)
    patch_head = nn.Linear(vision_config.hidden_size, len(PATCH_CLASSES))
    codes = colour_codes(vision_config.hidden_size, seed)
    params = [*tower.parameters(), *patch_head.parameters()]
    optimizer, schedule = _optimizer(params, lr, steps)
    generator = torch.Generator().manual_seed(seed)
    colour_of = torch.tensor([PATCH_COLOURS.index(c.split()[0] if c != "empty" else c) for c in PATCH_CLASSES])

    def forward(px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = tower(px, keep_states=[DETAIL_LAYER, COARSE_LAYER])
        return patch_head(states[DETAIL_LAYER][:, 1:]), states[COARSE_LAYER][:, 1:]

    def losses(px: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local, coarse = forward(px)
        detail_loss = nn.functional.cross_entropy(local.flatten(0, 1), labels.flatten())
        return detail_loss, nn.functional.mse_loss(coarse, codes[colour_of[labels]])

    tower.train()
    for _ in range(steps):
        rows = torch.randint(0, len(pixels), (batch_size,), generator=generator)
        detail_loss, coarse_loss = losses(pixels[rows], patches[rows])
        loss = detail_loss + coarse_weight * coarse_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    tower.eval()
    with torch.no_grad():
        local, _ = forward(held_out[0])
        _, coarse_loss = losses(*held_out)
    patches_ok = local.argmax(-1).eq(held_out[1]).all(dim=1).float().mean().item()
    return tower.state_dict(), {
        "final_loss": round(float(loss.detach()), 4),
        "held_out_all_patches_accuracy": round(100 * patches_ok, 1),
        "held_out_coarse_code_mse": round(float(coarse_loss), 5),
    }


def pretrain_lm(
    text_config, tokenizer, corpus: Sequence[str], steps: int, batch_size: int, lr: float, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Causal LM loss on `[BOS] caption [EOS]` rows, captions as they follow a prompt (leading space)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(text_config)
    rows = [
        [tokenizer.bos_token_id]
        + tokenizer(" " + text, add_special_tokens=False)["input_ids"]
        + [tokenizer.eos_token_id]
        for text in corpus
    ]
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
    from captioner.replication.synth import sample_scenes

    return [caption for scene in sample_scenes(n_scenes, f"lm-corpus:{seed}") for caption in scene.captions()]


def pretrain(
    base,
    tokenizer,
    processor,
    *,
    vit_images: int,
    vit_steps: int,
    lm_scenes: int,
    lm_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> Pretrained:
    """The ViT (classification on its own images, no captions) and the LM (caption-like text)."""
    import time

    from captioner.replication.synth import patch_labels, sample_scenes

    started = time.perf_counter()
    scenes = sample_scenes(vit_images + 200, f"vit:{seed}")  # the last 200 are held out
    patches = torch.tensor([patch_labels(s) for s in scenes])
    pixels = render(processor, scenes)
    vision, vit_report = pretrain_vit(
        base.vision_config,
        pixels[:-200],
        patches[:-200],
        (pixels[-200:], patches[-200:]),
        steps=vit_steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
    )
    corpus = caption_like_corpus(lm_scenes, seed)
    lm, lm_report = pretrain_lm(base.text_config, tokenizer, corpus, lm_steps, batch_size, lr, seed)
    report = {
        "vit": vit_report,
        "lm": {**lm_report, "sentences": len(corpus)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    return Pretrained(vision, lm, report)


def cache_key(*parts: Any) -> str:
    """A short digest of everything that determines the stand-ins (sizes, settings, this file's code)."""
    import hashlib
    import json

    from captioner.replication import synth

    digest = hashlib.sha256(Path(__file__).read_bytes() + Path(synth.__file__).read_bytes())
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def load_cached(directory: Path) -> Pretrained | None:
    from safetensors.torch import load_file

    if not (directory / "report.json").is_file():
        return None
    import json

    return Pretrained(
        load_file(str(directory / "vision.safetensors")),
        load_file(str(directory / "lm.safetensors")),
        json.loads((directory / "report.json").read_text()),
    )


def save_cached(directory: Path, pretrained: Pretrained) -> None:
    """Written like a downloaded checkpoint: safetensors, the report last (it marks the entry complete)."""
    import json

    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in pretrained.vision.items()}, str(directory / "vision.safetensors"))
    # OPT ties its output head to the input embedding: store the tensor once, as save_pretrained does
    lm = {k: v.contiguous() for k, v in pretrained.language_model.items() if k != "lm_head.weight"}
    save_file(lm, str(directory / "lm.safetensors"))
    (directory / "report.json").write_text(json.dumps(pretrained.report, indent=2) + "\n")


def assemble(variant: str, tokenizer, pretrained: Pretrained, seed: int):
    """A SeR of `variant` with the pretrained ViT and LM; connector (and DeepLens) fresh from `seed`."""
    from captioner.modeling.modeling_ser import SeRForCaptioning

    config = miniature_config(variant, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SeRForCaptioning(config)
    model.vision_tower.load_state_dict(pretrained.vision)
    missing, unexpected = model.language_model.load_state_dict(pretrained.language_model, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # the head is tied to the input embedding
        raise RuntimeError(f"LM weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.language_model.tie_weights()
    return model


def load_stage(model, state: dict[str, torch.Tensor]) -> None:
    """Load a previous stage's weights; only DeepLens may be missing (stage 2 adds it fresh)."""
    result = model.load_state_dict(state, strict=False)
    # the LM head is tied to the input embedding (stored once on disk)
    missing = [k for k in result.missing_keys if not k.startswith("deeplens.") and k != "language_model.lm_head.weight"]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("deeplens.")]
    if missing or unexpected:
        raise RuntimeError(f"stage weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")


def weights(model, without: str = "deeplens.") -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (DeepLens left out: each stage-2 arm starts it fresh)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(without)}
