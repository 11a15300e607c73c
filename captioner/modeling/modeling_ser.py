"""Sharp-Eyed Refinement (SeR): a lightweight captioner that takes one more glance with sharp eyes.

Reference implementation of "One More Glance with Sharp Eyes: Rethinking Lightweight Captioning as a
Practical Visual Specialist" (the authors released no code). Every box of the paper's figures lives in
this file:

    paper (figure box)                              code
    ---------------------------------------------   ----------------------------------------------
    vision encoder, CLIP ViT-L/14-336 (Fig. 1, 8)   SeRForCaptioning.vision_tower (frozen, SeRVisionTower)
    buffer of ViT features (Sec. 5, inference)      VisionBuffer, filled by encode_images()
    MLP connector, 4 layers + GELU (Tab. 15)        MLPConnector -> SeRForCaptioning.connector
    language model, OPT-125M (Sec. 3.1)             SeRForCaptioning.language_model
    visual tokens as self-attention input (D.1)     SeRForCaptioning.merge_visual_tokens()
    DeepLens (Sec. 5, App. C, Fig. 11)              DeepLens -> SeRForCaptioning.deeplens
      (1) initial caption token embeddings            DeepLens.caption_proj (+ LM embedding table)
      (2) ViT layers {13, 18, 23}, channel concat     DeepLens.visual_proj
      BERT-style Transformer layers                   DeepLens.encoder (transformers' BertEncoder)
    first glance -> initial caption                 first_glance_tokens() + generate_ids()
    one more glance -> refined caption              refine_tokens() + generate_ids()

Variants of Tab. 3 are config switches (SeRConfig, in captioner/modeling/configuration_ser.py): the
single-pass specialist (`refine=False`), SeR with (1)+(2) (default), with (1) only
(`deeplens_multilayer_input=False`), with (2) only (`deeplens_caption_input=False`), "single glance
with (2)" (`refine=False, first_glance_multilayer=True`), and iterative refinement (`refine_steps`, App. B.6).

Prompt layout and batch building live in captioner/modeling/processing_ser.py; batched two-pass generation
(ViT once per image, KV cache, left padding) in captioner/modeling/inference.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, CLIPVisionModel, GenerationConfig, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEncoder
from transformers.utils import ModelOutput

from captioner.modeling.configuration_ser import SeRConfig
from captioner.modeling.processing_ser import SeRProcessor, load_part

TrainingStage = Literal["pretrain", "stage1", "stage2", "all"]


# ----------------------------------------------------------------------------------------------
# building blocks


class MLPConnector(nn.Sequential):
    """LLaVA's `mlp{depth}x_gelu` projector: Linear (GELU Linear) x (depth - 1). Tab. 15: depth 4."""

    def __init__(self, in_dim: int, out_dim: int, depth: int):
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        super().__init__(*layers)


class SeRVisionTower(CLIPVisionModel):
    """CLIP's vision tower that stops at the deepest layer a glance reads.

    Same modules, weights and checkpoint keys as `CLIPVisionModel` (a CLIP checkpoint loads as is).
    `forward(pixel_values, keep_states=[13, 18, 23])` runs layers 1..23 only and returns
    {index: hidden state (B, 1 + N, C)} for the kept indices into `hidden_states` (negative indices
    count from the end, as in `hidden_states[-2]`); CLIP's own forward would run all 24 layers of
    ViT-L although LLaVA (-2) and DeepLens ({13, 18, 23}) never read the last one. Without
    `keep_states` it is exactly `CLIPVisionModel.forward`.
    """

    def forward(self, pixel_values=None, keep_states: list[int] | None = None, **kwargs: Any):
        if keep_states is None:
            return super().forward(pixel_values, **kwargs)
        tower = getattr(self, "vision_model", self)  # transformers 4.x nests the modules one level down
        n_states = self.config.num_hidden_layers + 1
        wanted = {index % n_states for index in keep_states}
        hidden = tower.pre_layrnorm(tower.embeddings(pixel_values))
        states = {0: hidden} if 0 in wanted else {}
        for number, layer in enumerate(tower.encoder.layers[: max(wanted)], start=1):
            hidden = layer(hidden, None)  # no attention mask: every patch sees every patch
            if number in wanted:
                states[number] = hidden
        return states

    def pooled_features(self, pixel_values: torch.Tensor, layer: int) -> torch.Tensor:
        """(B, C) mean patch feature after `layer` layers, at any input size (position embeddings
        interpolated): a cheap frame embedding for choosing which frames to caption."""
        tower = getattr(self, "vision_model", self)
        hidden = tower.pre_layrnorm(tower.embeddings(pixel_values, interpolate_pos_encoding=True))
        for encoder_layer in tower.encoder.layers[:layer]:
            hidden = encoder_layer(hidden, None)
        return hidden[:, 1:].mean(dim=1)


@dataclass
class VisionBuffer:
    """ViT features of one batch of images, computed once and read by both glances (Sec. 5).

    first_glance: (B, N, C1) patch features the MLP connector reads.
    deeplens: (B, N, C2) features DeepLens reads (None for single-pass models). When the two are the
        same layer they are the same tensor, so the buffer costs nothing extra.
    """

    first_glance: torch.Tensor
    deeplens: torch.Tensor | None

    def select(self, rows: slice | torch.Tensor | list[int]) -> VisionBuffer:
        """The buffer of a subset of the batch (used to refine only some images)."""
        return VisionBuffer(self.first_glance[rows], None if self.deeplens is None else self.deeplens[rows])

    @property
    def batch_size(self) -> int:
        return self.first_glance.shape[0]


class DeepLens(nn.Module):
    """The multimodal connector of the second glance (Sec. 5, App. C, Fig. 11).

    Inputs: (1) the initial caption as LM token embeddings, and (2) ViT features of several layers
    concatenated on the channel axis. Both are projected to the DeepLens width, tagged with a type
    embedding (0 = visual, 1 = caption) and a position embedding, and run jointly through BERT layers,
    so every visual token can attend to the words of the draft ("looks at what matters") while
    reading richer multi-level features ("looks in detail"). The visual positions of the output,
    projected to the LM width, are the visual tokens of the refinement pass.
    """

    VISUAL, CAPTION = 0, 1

    def __init__(self, config: SeRConfig, visual_dim: int, lm_embed_dim: int):
        super().__init__()
        lens = config.deeplens
        width = lens.hidden_size
        self.num_visual_tokens = config.num_visual_tokens
        self.max_caption_tokens = config.deeplens_max_caption_tokens
        self.config = lens  # BertEncoder and the attention-mask helper read the attention implementation here
        # (2) multi-layer (or single-layer) ViT features -> DeepLens width
        self.visual_proj = nn.Sequential(nn.Linear(visual_dim, width), nn.GELU(), nn.Linear(width, width))
        # (1) initial-caption token embeddings (from the LM's table) -> DeepLens width
        self.caption_proj = (
            nn.Sequential(nn.Linear(lm_embed_dim, width), nn.GELU(), nn.Linear(width, width))
            if config.deeplens_caption_input
            else None
        )
        self.position_embeddings = nn.Embedding(self.num_visual_tokens + self.max_caption_tokens, width)
        self.type_embeddings = nn.Embedding(2, width)
        self.embed_norm = nn.LayerNorm(width, eps=lens.layer_norm_eps)
        self.embed_dropout = nn.Dropout(lens.hidden_dropout_prob)
        self.encoder = BertEncoder(lens)
        self.out_proj = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, lm_embed_dim))

    def forward(
        self,
        visual_features: torch.Tensor,
        caption_embeds: torch.Tensor | None = None,
        caption_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """visual_features (B, N, C), caption_embeds (B, L, E), caption_mask (B, L) -> (B, N, E_lm)."""
        batch, n_visual, _ = visual_features.shape
        tokens = [self.visual_proj(visual_features) + self.type_embeddings.weight[self.VISUAL]]
        masks = [torch.ones(batch, n_visual, dtype=torch.long, device=visual_features.device)]
        if self.caption_proj is not None and caption_embeds is not None and caption_embeds.shape[1] > 0:
            caption_embeds = caption_embeds[:, : self.max_caption_tokens]
            if caption_mask is None:
                caption_mask = torch.ones(caption_embeds.shape[:2], dtype=torch.long, device=caption_embeds.device)
            tokens.append(self.caption_proj(caption_embeds) + self.type_embeddings.weight[self.CAPTION])
            masks.append(caption_mask[:, : caption_embeds.shape[1]].to(torch.long))
        hidden = torch.cat(tokens, dim=1)
        hidden = hidden + self.position_embeddings.weight[: hidden.shape[1]]
        hidden = self.embed_dropout(self.embed_norm(hidden))
        # padding of the caption is masked out as attention keys (bidirectional, BERT-style)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=torch.cat(masks, 1))
        hidden = self.encoder(hidden, attention_mask=mask).last_hidden_state
        return self.out_proj(hidden[:, :n_visual])


@dataclass
class SeRCausalLMOutput(ModelOutput):
    """loss: mean cross-entropy over label positions (None without labels); logits: (B, T, V)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Any = None
    visual_tokens: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------
# the model


class SeRPreTrainedModel(PreTrainedModel):
    config: SeRConfig
    config_class = SeRConfig
    base_model_prefix = ""
    main_input_name = "input_ids"  # what HF Trainer counts tokens with
    # transformers declares str | list[str], yet its own models (LLaVA, CLIP, ...) set tuples like this
    input_modalities = ("image", "text")  # type: ignore[assignment]
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPEncoderLayer", "OPTDecoderLayer", "BertLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True


class SeRForCaptioning(SeRPreTrainedModel):
    """Vision tower -> (connector | DeepLens) -> language model. See the module docstring for the map.

    Training batches (build them with `SeRProcessor.build_training_batch`):

        pixel_values          float (B, 3, H, W)   images, CLIP-normalised
        input_ids             long  (B, T)         [BOS] [<image>] * N  prompt  target [EOS] [PAD]...
        attention_mask        long  (B, T)         1 on real tokens, 0 on padding
        labels                long  (B, T)         = input_ids on target tokens and the final EOS,
                                                   -100 everywhere else (image, prompt, padding);
                                                   aligned with input_ids (the LM shifts them)
        initial_caption_ids   long  (B, L)         stage 2 only: the (pseudo-)initial caption, right-padded
        initial_caption_mask  long  (B, L)         stage 2 only: 1 on its real tokens

    Without `initial_caption_ids` the forward pass is the first glance (pretraining and stage 1: the
    MLP connector makes the visual tokens). With them it is the refinement pass (stage 2: DeepLens
    makes the visual tokens; the prompt in `input_ids` already contains the initial caption text).
    The loss is the LM's shifted next-token cross-entropy, so the output works with HF `Trainer`.
    """

    def __init__(self, config: SeRConfig):
        super().__init__(config)
        # DeepLens is a plain module, not a sub-model: give it the attention implementation resolved here
        config.deeplens._attn_implementation_internal = config._attn_implementation
        vision_width = config.vision.hidden_size
        n_multilayer = len(config.multilayer_layers)
        # the eyes: CLIP ViT, frozen (Sec. 3.1 "freezing the vision encoder")
        self.vision_tower = SeRVisionTower._from_config(config.vision_config)
        # the writer: a small causal LM (OPT-125M), shared by both glances
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        lm_embed_dim = self.language_model.get_input_embeddings().embedding_dim
        # first glance: MLP connector from ViT features to LM input embeddings (Tab. 15)
        first_glance_dim = vision_width * (n_multilayer if config.first_glance_multilayer else 1)
        self.connector = MLPConnector(first_glance_dim, lm_embed_dim, config.connector_depth)
        # one more glance: DeepLens (Sec. 5); absent in the single-pass specialist
        self.deeplens = None
        if config.refine:
            deeplens_dim = vision_width * (n_multilayer if config.deeplens_multilayer_input else 1)
            self.deeplens = DeepLens(config, deeplens_dim, lm_embed_dim)
        if config.freeze_vision:
            self.vision_tower.requires_grad_(False)
        self.post_init()

    # -- pretrained parts -----------------------------------------------------------------------

    @classmethod
    def from_pretrained_parts(
        cls,
        vision: str | Path,
        lm: str | Path,
        *,
        processor: Any = None,
        dtype: torch.dtype | None = None,
        **config_overrides: Any,
    ) -> SeRForCaptioning:
        """A fresh SeR whose vision tower and LM come from pretrained checkpoints (training start).

        `vision` / `lm` are HF ids (looked up in the local HF cache only) or local directories, e.g.
        "openai/clip-vit-large-patch14-336" and "facebook/opt-125m". The connector and DeepLens are
        randomly initialised. `processor` (a `SeRProcessor` from the same parts) supplies the
        `<image>` token id; it is built from the parts when omitted. Raises `MissingModelError`.
        """
        processor = processor or SeRProcessor.from_pretrained_parts(vision, lm)
        vision_model = load_part(CLIPVisionModel, vision, "CLIP vision tower", dtype=dtype)
        lm_model = load_part(AutoModelForCausalLM, lm, "language model", dtype=dtype)
        text_config = lm_model.config
        text_config.vocab_size = max(text_config.vocab_size, len(processor.tokenizer))  # room for <image>
        for name in ("pad_token_id", "eos_token_id", "bos_token_id"):  # generation reads them from here
            if getattr(text_config, name, None) is None:
                setattr(text_config, name, getattr(processor.tokenizer, name))
        config = SeRConfig(
            vision_config=vision_model.config.to_dict(),
            text_config=text_config.to_dict(),
            image_token_id=processor.image_token_id,
            **config_overrides,
        )
        if config.num_visual_tokens != processor.num_image_tokens:
            raise ValueError(
                f"processor expects {processor.num_image_tokens} image tokens, model makes {config.num_visual_tokens}"
            )
        model = cls(config)
        model.vision_tower.load_state_dict(vision_model.state_dict())
        if lm_model.get_input_embeddings().num_embeddings < config.text.vocab_size:
            lm_model.resize_token_embeddings(config.text.vocab_size)
        model.language_model.load_state_dict(lm_model.state_dict())
        model.language_model.tie_weights()
        # transformers wraps `to` in functools.wraps, whose typeshed type does not bind `self`
        return model.to(dtype) if dtype is not None else model  # type: ignore[arg-type]

    # -- freezing ---------------------------------------------------------------------------------

    def set_trainable(self, stage: TrainingStage) -> dict[str, int]:
        """Freeze everything except what the training stage updates (Tab. 15, Fig. 8).

        pretrain: connector only.   stage1: connector + LM.   stage2: DeepLens + LM.
        all: every parameter, vision tower included (CPU synthetic tests). Returns trainable counts.
        """
        parts = {
            "pretrain": ("connector",),
            "stage1": ("connector", "language_model"),
            "stage2": ("deeplens", "language_model"),
            "all": ("vision_tower", "connector", "deeplens", "language_model"),
        }
        if stage not in parts:
            raise ValueError(f"unknown training stage {stage!r} (known: {', '.join(parts)})")
        if stage == "stage2" and self.deeplens is None:
            raise ValueError("stage2 trains DeepLens, but this model has none (config.refine=False)")
        self.requires_grad_(False)
        for name in parts[stage]:
            module = getattr(self, name)
            if module is not None:
                module.requires_grad_(True)
        return self.trainable_parameters()

    def trainable_parameters(self) -> dict[str, int]:
        counts = {}
        for name in ("vision_tower", "connector", "deeplens", "language_model"):
            module = getattr(self, name)
            counts[name] = 0 if module is None else sum(p.numel() for p in module.parameters() if p.requires_grad)
        return counts

    # -- the two glances --------------------------------------------------------------------------

    def encode_images(self, pixel_values: torch.Tensor) -> VisionBuffer:
        """Run the ViT once and keep the hidden states both glances need (CLS token dropped)."""
        train_vision = torch.is_grad_enabled() and any(p.requires_grad for p in self.vision_tower.parameters())
        with torch.set_grad_enabled(train_vision):
            pixel_values = pixel_values.to(device=self.device, dtype=self.vision_tower.dtype)
            states = self.vision_tower(pixel_values, keep_states=self.config.vision_feature_indices)
        config, n_states = self.config, self.config.vision.num_hidden_layers + 1
        patches = lambda index: states[index % n_states][:, 1:]  # noqa: E731 - drop CLS (LLaVA-1.5 "patch" features)
        multilayer = single = None
        if config.first_glance_multilayer or (config.refine and config.deeplens_multilayer_input):
            multilayer = torch.cat([patches(i) for i in config.multilayer_layers], dim=-1)
        if config.vision_feature_layer % n_states in states:
            single = patches(config.vision_feature_layer)
        first_glance = multilayer if config.first_glance_multilayer else single
        assert first_glance is not None, "vision_feature_indices keeps the layers the first glance reads"
        deeplens = None
        if config.refine:
            deeplens = multilayer if config.deeplens_multilayer_input else single
        return VisionBuffer(first_glance=first_glance, deeplens=deeplens)

    def first_glance_tokens(self, buffer: VisionBuffer) -> torch.Tensor:
        """Visual tokens of the first glance: MLP connector over the buffered features (B, N, E)."""
        first_layer = self.connector[0]
        assert isinstance(first_layer, nn.Linear)  # Sequential indexing is typed as any Module
        return self.connector(buffer.first_glance.to(first_layer.weight.dtype))

    def refine_tokens(
        self,
        buffer: VisionBuffer,
        initial_caption_ids: torch.Tensor | None,
        initial_caption_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Visual tokens of one more glance: DeepLens over buffer + initial caption (B, N, E)."""
        if self.deeplens is None:
            raise ValueError("this model has no DeepLens (config.refine=False): it is a single-pass specialist")
        caption_embeds = None
        if self.config.deeplens_caption_input and initial_caption_ids is not None:
            caption_embeds = self.language_model.get_input_embeddings()(initial_caption_ids.to(self.device))
        assert buffer.deeplens is not None, "a model with DeepLens buffers its features (encode_images)"
        visual_layer = self.deeplens.visual_proj[0]
        assert isinstance(visual_layer, nn.Linear)  # Sequential indexing is typed as any Module
        visual = buffer.deeplens.to(visual_layer.weight.dtype)
        mask = None if initial_caption_mask is None else initial_caption_mask.to(self.device)
        return self.deeplens(visual, caption_embeds, mask)

    def merge_visual_tokens(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        """LM input embeddings with the `<image>` placeholders replaced by the visual tokens (App. D.1:
        visual features enter the LM's self-attention input, not a cross-attention)."""
        if self.config.image_token_id is None:
            raise ValueError("config.image_token_id is not set; build the model with its processor")
        input_ids = input_ids.to(self.device)
        is_image = input_ids == self.config.image_token_id
        expected = visual_tokens.shape[0] * visual_tokens.shape[1]
        if int(is_image.sum()) != expected:
            raise ValueError(
                f"input_ids hold {int(is_image.sum())} <image> tokens but the images give {expected} visual tokens"
            )
        embeds = self.language_model.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
        return embeds.masked_scatter(is_image[..., None], visual_tokens.to(embeds.dtype))

    # -- training / scoring -----------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        initial_caption_ids: torch.Tensor | None = None,
        initial_caption_mask: torch.Tensor | None = None,
        vision_buffer: VisionBuffer | None = None,
        **lm_kwargs: Any,
    ) -> SeRCausalLMOutput:
        """One teacher-forced pass. See the class docstring for the batch keys and label convention.

        `vision_buffer` replaces `pixel_values` when the ViT features were already computed.
        Extra keyword arguments (e.g. `num_items_in_batch` from `Trainer`) go to the LM.
        """
        if vision_buffer is None:
            if pixel_values is None:
                raise ValueError("pass pixel_values (or a vision_buffer)")
            vision_buffer = self.encode_images(pixel_values)
        if initial_caption_ids is None:
            visual_tokens = self.first_glance_tokens(vision_buffer)
        else:
            visual_tokens = self.refine_tokens(vision_buffer, initial_caption_ids, initial_caption_mask)
        assert input_ids is not None, "the prompt ids hold the <image> placeholders"  # None only by HF's keyword order
        inputs_embeds = self.merge_visual_tokens(input_ids, visual_tokens)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        if labels is not None:
            labels = labels.to(self.device)
            lm_kwargs.setdefault("use_cache", False)  # teacher forcing needs no KV cache
        out = self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **lm_kwargs
        )
        return SeRCausalLMOutput(
            loss=out.loss, logits=out.logits, past_key_values=out.past_key_values, visual_tokens=visual_tokens
        )

    # -- generation -------------------------------------------------------------------------------

    def generation_config_for(self, max_new_tokens: int, **overrides: Any) -> GenerationConfig:
        """Greedy decoding with the KV cache; the `<image>` placeholder can never be generated.

        The cache is preallocated for prompt + max_new_tokens ("static"): the default dynamic cache
        concatenates every layer's keys and values at every step, which re-copies the ~600-token
        cache each step (decode steps ~30 % slower for the full-size model on a CPU, same ids).
        """
        text = self.config.text
        settings = dict(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            cache_implementation="static",
            eos_token_id=text.eos_token_id,
            pad_token_id=text.pad_token_id,
            bos_token_id=text.bos_token_id,
            suppress_tokens=[self.config.image_token_id] if self.config.image_token_id is not None else None,
        )
        settings.update(overrides)
        return GenerationConfig(**settings)

    @torch.inference_mode()
    def generate_ids(
        self,
        visual_tokens: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        max_new_tokens: int = 60,
        **generation_overrides: Any,
    ) -> torch.Tensor:
        """Autoregressive decoding after a (left-padded) prompt; returns only the new ids (B, T_new).

        Left padding keeps every row's positions identical to decoding it alone (OPT derives its
        positions from the attention mask), so captions do not depend on the rest of the batch.
        """
        inputs_embeds = self.merge_visual_tokens(input_ids, visual_tokens)
        config = self.generation_config_for(max_new_tokens, **generation_overrides)
        return self.language_model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask.to(self.device), generation_config=config
        )


AutoModel.register(SeRConfig, SeRForCaptioning, exist_ok=True)

__all__ = ["SeRForCaptioning", "SeRVisionTower", "DeepLens", "MLPConnector", "VisionBuffer", "SeRCausalLMOutput"]
