"""Configuration of the SeR captioner (`SeRConfig`), as Hugging Face models keep theirs beside
`modeling_ser.py`: the three sub-configs, the switches of Tab. 3 and the paper's sizes.

The defaults are the paper's model: CLIP ViT-L/14-336, OPT-125M and a ~50M-parameter DeepLens
reading ViT layers {13, 18, 23}. Named configurations (tiny ones, the Tab. 3 variants) are in
captioner/modeling/presets.py.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

# CLIP ViT-L/14-336 ("openai/clip-vit-large-patch14-336"), vision half
PAPER_VISION = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
)
# OPT-125M ("facebook/opt-125m")
PAPER_TEXT = dict(
    vocab_size=50272,
    hidden_size=768,
    num_hidden_layers=12,
    ffn_dim=3072,
    num_attention_heads=12,
    max_position_embeddings=2048,
    word_embed_proj_dim=768,
    do_layer_norm_before=True,
    pad_token_id=1,
    bos_token_id=2,
    eos_token_id=2,
    dropout=0.1,
)
# DeepLens: BERT-base-width layers; 6 of them put DeepLens at ~48M parameters (paper: ~50M)
PAPER_DEEPLENS = dict(
    hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072, vocab_size=1
)
# the ViT layers DeepLens reads (App. C), as indices into `hidden_states`
PAPER_MULTILAYER_FEATURE_LAYERS = [13, 18, 23]


class SeRConfig(PreTrainedConfig):
    r"""Configuration of a SeR captioner: three sub-configs plus the switches of Tab. 3.

    Sub-configs:
        vision_config: `CLIPVisionConfig` of the vision encoder (ViT-L/14-336 in the paper).
        text_config: config of the causal LM (`OPTConfig`, OPT-125M in the paper).
        deeplens_config: `BertConfig` of DeepLens's Transformer layers (hidden size, depth, heads,
            dropout). Its vocab_size / max_position_embeddings / type_vocab_size are unused: caption
            tokens are embedded with the LM's own table, positions and types by DeepLens itself.

    First glance (LLaVA-1.5):
        vision_feature_layer: index into the ViT's `hidden_states` tuple (index 0 = patch embeddings,
            i = output of layer i); -2 is the penultimate layer, i.e. layer 23 of ViT-L.
        connector_depth: number of Linear layers of the MLP connector (GELU between them). Paper: 4.

    Sharp-Eyed Refinement:
        refine: build DeepLens and run the second glance. False = single-pass specialist.
        deeplens_caption_input: DeepLens input (1), the initial caption.
        deeplens_multilayer_input: DeepLens input (2), ViT layers `multilayer_feature_layers`
            concatenated on channels. When False DeepLens reads the single `vision_feature_layer`.
        first_glance_multilayer: the connector reads the multi-layer features ("single glance with (2)").
        multilayer_feature_layers: indices into `hidden_states`; paper: (13, 18, 23).
        deeplens_max_caption_tokens: longest initial caption DeepLens reads (longer ones are cut).
        refine_steps: how many refinement passes inference runs (App. B.6); the paper uses 1.

    Other:
        image_token_id: id of the `<image>` placeholder token whose positions receive visual tokens.
        freeze_vision: keep the vision encoder frozen (the paper never trains it).
    """

    model_type = "ser"
    # transformers types sub_configs as PreTrainedConfig classes, yet its own composite models
    # (LLaVA, ...) register AutoConfig here exactly like this
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig, "deeplens_config": AutoConfig}  # type: ignore[dict-item]

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    deeplens_config: dict | PreTrainedConfig | None = None
    vision_feature_layer: int = -2
    connector_depth: int = 4
    refine: bool = True
    deeplens_caption_input: bool = True
    deeplens_multilayer_input: bool = True
    first_glance_multilayer: bool = False
    multilayer_feature_layers: list[int] | None = None
    deeplens_max_caption_tokens: int = 256
    refine_steps: int = 1
    image_token_id: int | None = None
    freeze_vision: bool = True
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False  # the LM ties its own head; nothing is tied across parts

    def __post_init__(self, **kwargs: Any) -> None:
        # the defaults are the paper's sizes: CLIP ViT-L/14-336, OPT-125M, a ~50M-parameter DeepLens
        self.vision_config = _as_config(self.vision_config, "clip_vision_model", PAPER_VISION)
        self.text_config = _as_config(self.text_config, "opt", PAPER_TEXT)
        self.deeplens_config = _as_config(self.deeplens_config, "bert", PAPER_DEEPLENS)
        if self.multilayer_feature_layers is None:
            self.multilayer_feature_layers = PAPER_MULTILAYER_FEATURE_LAYERS
        self.multilayer_feature_layers = [int(i) for i in self.multilayer_feature_layers]
        super().__post_init__(**kwargs)
        self._check()

    # The fields above keep the types __init__ accepts (transformers validates them at run time);
    # after __post_init__ each sub-config is a config object and the layer list is set. These
    # typed views say so once, instead of every reader narrowing the unions.

    @property
    def vision(self) -> PreTrainedConfig:
        """`vision_config` as the config object __post_init__ built."""
        return _built(self.vision_config, "vision_config")

    @property
    def text(self) -> PreTrainedConfig:
        """`text_config` as the config object __post_init__ built."""
        return _built(self.text_config, "text_config")

    @property
    def deeplens(self) -> PreTrainedConfig:
        """`deeplens_config` as the config object __post_init__ built."""
        return _built(self.deeplens_config, "deeplens_config")

    @property
    def multilayer_layers(self) -> list[int]:
        """`multilayer_feature_layers`, which __post_init__ always sets."""
        assert self.multilayer_feature_layers is not None, "set in __post_init__"
        return self.multilayer_feature_layers

    def _check(self) -> None:
        n_states = self.vision.num_hidden_layers + 1  # embeddings + one per layer
        for index in [self.vision_feature_layer, *self.multilayer_layers]:
            if not -n_states <= index < n_states:
                raise ValueError(f"ViT feature layer {index} does not exist (the encoder has {n_states} hidden states)")
        if self.connector_depth < 1:
            raise ValueError("connector_depth must be >= 1")
        if self.refine_steps < 1:
            raise ValueError("refine_steps must be >= 1 (set refine=False for a single-pass specialist)")

    @property
    def num_visual_tokens(self) -> int:
        """Patch tokens per image (CLS dropped): 576 for ViT-L/14 at 336 px."""
        return (self.vision.image_size // self.vision.patch_size) ** 2

    @property
    def vision_feature_indices(self) -> list[int]:
        """Indices into the ViT's `hidden_states` that some glance reads (negative ones as given)."""
        multilayer, single = list(self.multilayer_layers), [self.vision_feature_layer]
        indices = multilayer if self.first_glance_multilayer else single
        if self.refine:
            indices = indices + (multilayer if self.deeplens_multilayer_input else single)
        return sorted(set(indices))

    @property
    def vision_layers_used(self) -> int:
        """ViT layers that have to run: up to the deepest one read. hidden_states[i] is the output
        of layer i, so LLaVA's -2 and DeepLens's {13, 18, 23} leave the last layer of ViT-L unused."""
        n_states = self.vision.num_hidden_layers + 1
        return max(index % n_states for index in self.vision_feature_indices)

    @property
    def variant(self) -> str:
        """Name of the Tab. 3 row this config implements."""
        if not self.refine:
            return "single-glance-multilayer" if self.first_glance_multilayer else "specialist"
        inputs = {(True, True): "ser", (True, False): "ser-caption-only", (False, True): "ser-multilayer-only"}
        name = inputs.get((self.deeplens_caption_input, self.deeplens_multilayer_input), "ser-no-deeplens-inputs")
        return name + ("+multilayer-first-glance" if self.first_glance_multilayer else "")


def _built(value: dict | PreTrainedConfig | None, field: str) -> PreTrainedConfig:
    assert isinstance(value, PreTrainedConfig), f"SeRConfig.{field} is built in __post_init__"
    return value


def _as_config(value: Any, default_type: str, default: dict[str, Any]) -> PreTrainedConfig:
    if isinstance(value, PreTrainedConfig):
        return value
    value = dict(default if value is None else value)
    return AutoConfig.for_model(value.pop("model_type", default_type), **value)


AutoConfig.register("ser", SeRConfig, exist_ok=True)

__all__ = ["SeRConfig", "PAPER_VISION", "PAPER_TEXT", "PAPER_DEEPLENS", "PAPER_MULTILAYER_FEATURE_LAYERS"]
