"""SeR model (captioner/modeling/modeling_ser.py, processing_ser.py, presets.py, describe.py) on tiny presets."""

from __future__ import annotations

import json

import pytest
import torch

from captioner.modeling.configuration_ser import SeRConfig
from captioner.modeling.describe import describe_preset
from captioner.modeling.describe import run as describe_run
from captioner.modeling.modeling_ser import SeRForCaptioning
from captioner.modeling.presets import build_tiny_checkpoint, get_config, tiny_tokenizer
from captioner.modeling.processing_ser import IGNORE_INDEX, SeRProcessor, clip_image_processor
from tests.conftest import random_images

CAPTIONS = ["a cat sitting on a brown chair", "a man rides a red bike", "two dogs play on the grass"]
PSEUDO_INITIAL = ["a dog sitting on a brown chair", "a woman rides a red bike", "two cats play"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


images = random_images


def tiny(preset: str = "tiny-ser", seed: int = 0, **overrides) -> tuple[SeRForCaptioning, SeRProcessor]:
    tokenizer = tiny_tokenizer()
    config = get_config(
        preset,
        text_config={"vocab_size": len(tokenizer)},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        **overrides,
    )
    processor = SeRProcessor(
        clip_image_processor(64),
        tokenizer,
        num_image_tokens=config.num_visual_tokens,
        max_caption_tokens=config.deeplens_max_caption_tokens,
    )
    torch.manual_seed(seed)
    return SeRForCaptioning(config).eval(), processor


@pytest.fixture(scope="module")
def ser():
    return tiny("tiny-ser")


def test_shapes_through_both_passes(ser):
    model, processor = ser
    config = model.config
    n, width, lm_dim = (
        config.num_visual_tokens,
        config.vision_config.hidden_size,
        config.text_config.word_embed_proj_dim,
    )
    buffer = model.encode_images(processor.preprocess_images(images(2)))
    assert buffer.first_glance.shape == (2, n, width)  # CLS dropped: 64 px / patch 16 -> 16 tokens
    assert buffer.deeplens.shape == (2, n, 3 * width)  # layers {1, 2, 3} concatenated on channels
    assert model.first_glance_tokens(buffer).shape == (2, n, lm_dim)
    drafts = processor.generation_inputs(2, None, [processor.encode_caption(c) for c in PSEUDO_INITIAL[:2]])
    assert model.refine_tokens(buffer, drafts["initial_caption_ids"], drafts["initial_caption_mask"]).shape == (
        2,
        n,
        lm_dim,
    )
    for initial in (None, PSEUDO_INITIAL):
        batch = processor.build_training_batch(images(3), CAPTIONS, initial)
        out = model(**batch)
        assert out.logits.shape == (*batch["input_ids"].shape, config.text_config.vocab_size)
        assert torch.isfinite(out.loss)


def test_vision_features_follow_llava_and_the_paper(ser):
    model, processor = ser
    pixels = processor.preprocess_images(images(2))
    states = model.vision_tower(pixels, output_hidden_states=True).hidden_states
    buffer = model.encode_images(pixels)
    assert torch.equal(buffer.first_glance, states[-2][:, 1:])  # penultimate layer, CLS dropped
    assert torch.equal(buffer.deeplens, torch.cat([states[i][:, 1:] for i in (1, 2, 3)], dim=-1))
    full = get_config("ser")
    assert full.multilayer_feature_layers == [13, 18, 23] and full.num_visual_tokens == 576
    assert full.vision_feature_layer == -2 and full.vision_config.num_hidden_layers == 24
    assert sum(isinstance(m, torch.nn.Linear) for m in model.connector) == full.connector_depth == 4


def test_training_batch_layout_and_labels(ser):
    _, processor = ser
    batch = processor.build_training_batch(images(3), CAPTIONS, PSEUDO_INITIAL)
    for row in range(3):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        target = processor.encode_caption(CAPTIONS[row]) + [processor.eos_token_id]
        trained = labels != IGNORE_INDEX
        assert labels[trained].tolist() == target and ids[trained].tolist() == target
        assert int((ids == processor.image_token_id).sum()) == processor.num_image_tokens
        assert mask.sum() == len(processor.prompt_ids(None, processor.encode_caption(PSEUDO_INITIAL[row]))) + len(
            target
        )
        draft = processor.encode_caption(PSEUDO_INITIAL[row])
        assert batch["initial_caption_ids"][row, : len(draft)].tolist() == draft
        prompt = ids[mask.bool()].tolist()
        assert any(prompt[i : i + len(draft)] == draft for i in range(len(prompt)))  # draft is in the LM prompt
    stage1 = processor.build_text_batch(CAPTIONS)
    assert "initial_caption_ids" not in stage1 and stage1["input_ids"].shape[1] < batch["input_ids"].shape[1]


def test_variant_switches_change_the_computation():
    drafts = [[10, 11, 12, 13], [40, 41]]

    def lens_output(model, processor, caption_ids):
        buffer = model.encode_images(processor.preprocess_images(images(1)))
        inputs = processor.generation_inputs(1, None, [caption_ids])
        return model.refine_tokens(buffer, inputs["initial_caption_ids"], inputs["initial_caption_mask"])

    with torch.no_grad():
        model, processor = tiny("tiny-ser")  # (1) + (2): the caption steers DeepLens
        assert not torch.allclose(lens_output(model, processor, drafts[0]), lens_output(model, processor, drafts[1]))

        model, processor = tiny("tiny-ser-multilayer-only")  # (2) only: the caption input is ignored
        assert model.deeplens.caption_proj is None
        assert torch.equal(lens_output(model, processor, drafts[0]), lens_output(model, processor, drafts[1]))
        assert model.encode_images(processor.preprocess_images(images(1))).deeplens.shape[-1] == 3 * 32

        model, processor = tiny("tiny-ser-caption-only")  # (1) only: one ViT layer, the first glance's
        buffer = model.encode_images(processor.preprocess_images(images(1)))
        assert buffer.deeplens is buffer.first_glance and buffer.deeplens.shape[-1] == 32
        assert model.deeplens.visual_proj[0].in_features == 32
        assert not torch.allclose(lens_output(model, processor, drafts[0]), lens_output(model, processor, drafts[1]))

        model, processor = tiny("tiny-specialist")  # single pass: no DeepLens at all
        assert model.deeplens is None and model.encode_images(processor.preprocess_images(images(1))).deeplens is None
        with pytest.raises(ValueError, match="single-pass"):
            lens_output(model, processor, drafts[0])

        model, processor = tiny("tiny-single-glance-multilayer")  # multi-layer features through the connector
        buffer = model.encode_images(processor.preprocess_images(images(1)))
        assert model.deeplens is None and buffer.first_glance.shape[-1] == 3 * 32
        assert model.connector[0].in_features == 3 * 32

    with pytest.raises(ValueError, match="refine_steps"):
        get_config("tiny-ser", refine_steps=0)
    with pytest.raises(ValueError, match="does not exist"):
        get_config("tiny-ser", multilayer_feature_layers=[1, 2, 9])


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_a_few_training_steps_lower_the_loss(stage):
    model, processor = tiny("tiny-ser", seed=1)
    counts = model.set_trainable(stage)
    assert counts["vision_tower"] == 0 and counts["language_model"] > 0
    assert (counts["deeplens"] > 0, counts["connector"] > 0) == ((True, False) if stage == "stage2" else (False, True))
    model.gradient_checkpointing_enable()
    model.train()
    batch = processor.build_training_batch(images(3), CAPTIONS, PSEUDO_INITIAL if stage == "stage2" else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(p.grad is None for p in model.vision_tower.parameters())


def test_set_trainable_stages(ser):
    model, _ = ser
    assert model.set_trainable("pretrain") == {"vision_tower": 0, "connector": 4224, "deeplens": 0, "language_model": 0}
    everything = model.set_trainable("all")
    assert sum(everything.values()) == model.num_parameters()
    with pytest.raises(ValueError, match="unknown training stage"):
        model.set_trainable("stage3")
    specialist, _ = tiny("tiny-specialist")
    with pytest.raises(ValueError, match="DeepLens"):
        specialist.set_trainable("stage2")
    model.set_trainable("stage1")


def test_checkpoint_round_trip_and_stage2_start(tmp_path):
    from captioner.modeling.inference import generate_captions

    path = build_tiny_checkpoint(tmp_path / "ckpt", seed=3)
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    model = SeRForCaptioning.from_pretrained(path).eval()
    processor = SeRProcessor.from_pretrained(path)
    assert isinstance(model.config, SeRConfig) and processor.num_image_tokens == 16 and processor.image_size == 64
    lm = model.language_model
    assert lm.get_output_embeddings().weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()
    before = generate_captions(model, processor, images(3), max_new_tokens=8, return_initial=True)

    model.save_pretrained(tmp_path / "again")
    processor.save_pretrained(tmp_path / "again")
    again = SeRForCaptioning.from_pretrained(tmp_path / "again").eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    after = generate_captions(
        again, SeRProcessor.from_pretrained(tmp_path / "again"), images(3), max_new_tokens=8, return_initial=True
    )
    assert after == before
    # the same seed builds the same weights
    twin = SeRForCaptioning.from_pretrained(build_tiny_checkpoint(tmp_path / "twin", seed=3))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))

    # stage 2 starts from a stage-1 specialist checkpoint: same connector/LM, fresh DeepLens
    stage1 = build_tiny_checkpoint(tmp_path / "stage1", preset="tiny-specialist", seed=4)
    start = SeRForCaptioning.from_pretrained(stage1, refine=True)
    reference = SeRForCaptioning.from_pretrained(stage1)
    assert start.deeplens is not None and reference.deeplens is None
    assert torch.equal(start.connector[0].weight, reference.connector[0].weight)


def test_from_pretrained_parts(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel, OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast

    from videoqa_base.errors import MissingModelError

    torch.manual_seed(0)
    vision = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=64,
            patch_size=16,
        )
    )
    vision.save_pretrained(tmp_path / "clip")
    clip_image_processor(64).save_pretrained(tmp_path / "clip")
    tokenizer = tiny_tokenizer()
    plain = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer,
        pad_token="<pad>",
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    plain.save_pretrained(tmp_path / "opt")
    lm = OPTForCausalLM(
        OPTConfig(
            vocab_size=len(plain),
            hidden_size=32,
            num_hidden_layers=2,
            ffn_dim=64,
            num_attention_heads=4,
            max_position_embeddings=256,
            word_embed_proj_dim=32,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=1,
        )
    )
    lm.save_pretrained(tmp_path / "opt")

    processor = SeRProcessor.from_pretrained_parts(tmp_path / "clip", tmp_path / "opt")
    model = SeRForCaptioning.from_pretrained_parts(
        tmp_path / "clip",
        tmp_path / "opt",
        processor=processor,
        multilayer_feature_layers=[1, 2, 3],
        deeplens_config={
            "model_type": "bert",
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 64,
        },
    )
    assert processor.num_image_tokens == 16 and model.config.image_token_id == processor.image_token_id
    assert torch.equal(model.vision_tower.embeddings.patch_embedding.weight, vision.embeddings.patch_embedding.weight)
    assert torch.equal(model.language_model.model.decoder.layers[0].fc1.weight, lm.model.decoder.layers[0].fc1.weight)
    assert model.config.variant == "ser"
    batch = processor.build_training_batch(images(2), CAPTIONS[:2], PSEUDO_INITIAL[:2])
    assert torch.isfinite(model(**batch).loss)

    with pytest.raises(MissingModelError, match="huggingface-cli download openai/clip-vit-large-patch14-336"):
        SeRProcessor.from_pretrained_parts("openai/clip-vit-large-patch14-336", tmp_path / "opt")


def test_describe_full_presets_match_the_paper(capsys):
    specialist, ser = describe_preset("specialist"), describe_preset("ser")
    assert specialist["deeplens"] == 0 and specialist["lm"] == 125_239_296  # OPT-125M, tied head counted once
    assert abs(specialist["total"] / 450e6 - 1) < 0.05
    assert abs(ser["total"] / 500e6 - 1) < 0.05
    assert abs(ser["deeplens"] / 50e6 - 1) < 0.05
    assert ser["total"] == sum(ser[k] for k in ("vision", "connector", "deeplens", "lm"))
    assert 0.65 < specialist["vision"] / specialist["total"] < 0.72  # "67% of total parameters" (Sec. 3.3)

    class Args:
        preset = "tiny-ser"

    assert describe_run(Args()) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"vision", "connector", "deeplens", "lm", "total"} and printed["deeplens"] > 0


def test_configuration_stands_alone_with_the_papers_defaults(tmp_path):
    """SeRConfig lives in configuration_ser.py (no model import needed) and loads through AutoConfig."""
    from transformers import AutoConfig

    config = SeRConfig()  # the defaults are the paper's model
    assert (config.vision_config.model_type, config.text_config.model_type, config.deeplens_config.model_type) == (
        "clip_vision_model",
        "opt",
        "bert",
    )
    assert config.num_visual_tokens == 576 and config.multilayer_feature_layers == [13, 18, 23]
    assert config.vision_layers_used == 23  # the last ViT-L layer is never read
    get_config("tiny-ser-caption-only").save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SeRConfig) and loaded.variant == "ser-caption-only"
    with pytest.raises(ValueError, match="ViT feature layer 30 does not exist"):
        SeRConfig(multilayer_feature_layers=[13, 30])


def test_one_bpe_trainer_is_deterministic_and_encodes_any_text():
    from videoqa_base.tokenizer import train_bpe_tokenizer

    corpus = ["a red ball on the grass", "a blue car in the street"]
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    first = train_bpe_tokenizer(corpus, 280, specials, prepend_token="<s>", pad_token="<pad>", eos_token="</s>")
    again = train_bpe_tokenizer(corpus, 280, specials, prepend_token="<s>", pad_token="<pad>", eos_token="</s>")
    assert first.backend_tokenizer.to_str() == again.backend_tokenizer.to_str()  # same vocab and merges
    assert [first.convert_tokens_to_ids(t) for t in specials] == [0, 1, 2, 3]  # specials first, in order
    ids = first("a red car, 東京 ✓")["input_ids"]
    assert ids[0] == 1 and 3 not in ids  # "<s>" prepended; byte-level: never <unk>
    assert first.decode(ids, skip_special_tokens=True) == "a red car, 東京 ✓"
    plain = train_bpe_tokenizer(corpus, 280, specials)
    assert plain("a red car")["input_ids"][0] != 1  # nothing prepended unless asked
    assert tiny_tokenizer().convert_tokens_to_ids("<image>") == 3  # the tiny preset's ids 0..3
