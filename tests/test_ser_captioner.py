"""SeR inference (captioner/modeling/inference.py) and the pipeline adapter (videoqa/captioners/ser.py)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from captioner.modeling.inference import CaptionResult, first_glance, generate_captions, load_model, refine_once
from captioner.modeling.presets import build_tiny_checkpoint
from tests.conftest import random_images
from videoqa.config import CaptionerConfig
from videoqa.registry import CAPTIONERS
from videoqa_base.device import dtype_name, resolve_dtype
from videoqa_base.errors import MissingModelError, UserError

PROMPT = "Describe this frame within 50 words"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


images = random_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ser") / "tiny-ser", seed=0)


@pytest.fixture(scope="module")
def ser(checkpoint):
    return load_model(checkpoint)


@pytest.fixture(scope="module")
def early_stopping_ser(checkpoint):
    """The tiny SeR with a louder EOS embedding, so random captions end at different lengths and
    batched refinement prompts really are left-padded (the first scale that does this is used)."""
    pictures = images(6, seed=1)
    for scale in (1.5, 2.0, 1.75, 2.25, 1.25, 2.5):
        model, processor = load_model(checkpoint)
        with torch.no_grad():
            model.language_model.get_input_embeddings().weight[processor.eos_token_id] *= scale
        buffer = model.encode_images(processor.preprocess_images(pictures))
        if len({len(d) for d in first_glance(model, processor, buffer, PROMPT, max_new_tokens=12)}) > 2:
            break
    return model, processor, pictures


def test_vit_runs_once_per_image(ser):
    model, processor = ser
    seen = []
    hook = model.vision_tower.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    try:
        result = generate_captions(
            model, processor, images(5), PROMPT, max_new_tokens=6, batch_size=2, refine_steps=2, return_initial=True
        )
    finally:
        hook.remove()
    assert seen == [2, 2, 1]  # one ViT pass per batch, none for the two refinement passes
    assert isinstance(result, CaptionResult) and len(result.steps) == 2
    assert result.refined == result.steps[-1] and len(result.initial) == 5


def test_greedy_captions_do_not_depend_on_the_batch(early_stopping_ser):
    model, processor, pictures = early_stopping_ser
    buffer = model.encode_images(processor.preprocess_images(pictures))
    drafts = first_glance(model, processor, buffer, PROMPT, max_new_tokens=12)
    assert len({len(d) for d in drafts}) > 1  # the refinement prompts have different lengths
    mixed = generate_captions(model, processor, pictures, PROMPT, max_new_tokens=12, batch_size=6, return_initial=True)
    for i, picture in enumerate(pictures):
        alone = generate_captions(model, processor, [picture], PROMPT, max_new_tokens=12, return_initial=True)
        assert (alone.initial[0], alone.refined[0]) == (mixed.initial[i], mixed.refined[i])
    assert len(set(mixed.refined)) > 1  # captions depend on the image


def test_refinement_is_batch_invariant_with_padded_drafts(ser):
    model, processor = ser
    buffer = model.encode_images(processor.preprocess_images(images(4, seed=2)))
    drafts = [[40, 41, 42], [50], [60, 61, 62, 63, 64, 65, 66, 67], []]
    batched = refine_once(model, processor, buffer, PROMPT, drafts, max_new_tokens=10)
    for i, draft in enumerate(drafts):
        assert refine_once(model, processor, buffer.select(slice(i, i + 1)), PROMPT, [draft], 10)[0] == batched[i]


def test_refinement_reads_the_initial_caption(ser):
    model, processor = ser
    buffer = model.encode_images(processor.preprocess_images(images(1, seed=3)))
    a = refine_once(model, processor, buffer, PROMPT, [[40, 41, 42, 43]], max_new_tokens=10)
    b = refine_once(model, processor, buffer, PROMPT, [[90, 91]], max_new_tokens=10)
    assert a != b


def test_specialist_checkpoint_runs_a_single_glance(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "specialist", preset="tiny-specialist", seed=5)
    model, processor = load_model(path)
    result = generate_captions(model, processor, images(2), PROMPT, max_new_tokens=5, return_initial=True)
    assert result.refined == result.initial and result.steps == []
    with pytest.raises(UserError, match="single-pass"):
        generate_captions(model, processor, images(1), PROMPT, refine_steps=1)
    # a `ser` captioner given a stage-1 checkpoint takes its single glance and says so
    captioner = CAPTIONERS.get("ser")(CaptionerConfig(name="s", type="ser", model=str(path), max_new_tokens=5))
    assert captioner.caption(images(2), PROMPT) == result.initial
    assert captioner.identity()["type"] == "specialist" and captioner.identity()["refine_steps"] == 0
    with pytest.raises(UserError, match="needs DeepLens"):
        CAPTIONERS.get("ser")(CaptionerConfig(name="s", type="ser", model=str(path), options={"refine_steps": 1}))


def test_adapter_through_the_captioner_interface(checkpoint, ser):
    config = CaptionerConfig(name="tiny", type="ser", model=str(checkpoint), max_new_tokens=7, batch_size=3)
    captioner = CAPTIONERS.get("ser")(config)
    assert captioner.image_size == 64
    texts = captioner.caption(images(4), PROMPT)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    model, processor = ser
    assert texts == generate_captions(model, processor, images(4), PROMPT, max_new_tokens=7)
    assert captioner.caption([], PROMPT) == []

    identity = captioner.identity()
    expected_sha = hashlib.sha256(b"model.safetensors\0" + (checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert identity["weights_sha256"] == expected_sha
    assert identity["model"] == str(checkpoint.resolve()) and identity["refine_steps"] == 1
    assert {"revision", "decoding", "max_new_tokens", "dtype", "image_size"} <= set(identity)
    # the dtype is the host's choice (bf16 where the CPU has native bf16, else fp32): ask the resolver
    assert identity["dtype"] == dtype_name(resolve_dtype("auto", "cpu")) and identity["max_new_tokens"] == 7
    assert captioner.num_parameters() == model.num_parameters()

    specialist = CAPTIONERS.get("specialist")(config.model_copy(update={"type": "specialist"}))
    first = generate_captions(model, processor, images(2), PROMPT, max_new_tokens=7, refine_steps=0)
    assert specialist.caption(images(2), PROMPT) == first
    deeplens = sum(p.numel() for p in model.deeplens.parameters())
    assert specialist.num_parameters() == model.num_parameters() - deeplens
    assert specialist.identity()["type"] == "specialist" and specialist.identity()["refine_steps"] == 0

    two_steps = CAPTIONERS.get("ser")(config.model_copy(update={"options": {"refine_steps": 2}}))
    assert two_steps.identity()["refine_steps"] == 2
    with pytest.raises(UserError, match="unknown options"):
        CAPTIONERS.get("ser")(config.model_copy(update={"options": {"beams": 3}}))


def test_adapter_missing_checkpoint_says_how_to_train(tmp_path):
    config = CaptionerConfig(name="ser", type="ser", model=str(tmp_path / "nowhere"))
    with pytest.raises(MissingModelError) as error:
        CAPTIONERS.get("ser")(config)
    message = str(error.value)
    assert "\n" not in message and "captioner train --config configs/train/stage2.yaml" in message
    spec = CaptionerConfig(name="specialist", type="specialist", model="outputs/checkpoints/definitely-missing")
    with pytest.raises(MissingModelError, match="configs/train/stage1.yaml"):
        CAPTIONERS.get("specialist")(spec)


def test_importing_the_captioner_registry_does_not_import_torch():
    code = (
        "import sys; import videoqa.captioning; from videoqa.registry import CAPTIONERS; "
        "names = CAPTIONERS.names(); assert {'ser', 'specialist'} <= set(names), names; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_follows_the_cpu_both_ways(checkpoint, monkeypatch, native_bf16, expected):
    """Both branches of the CPU dtype rule, forced, whatever this host's CPU is."""
    import videoqa_base.device as device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native_bf16)
    assert device.resolve_dtype("auto", "cpu") == expected
    assert device.resolve_dtype("auto", "cpu", native_bf16=not native_bf16) != expected
    assert (
        device.resolve_dtype("fp32", "cpu") == torch.float32 and device.resolve_dtype("bf16", "cpu") == torch.bfloat16
    )
    captioner = CAPTIONERS.get("ser")(CaptionerConfig(name="tiny", type="ser", model=str(checkpoint), device="cpu"))
    assert captioner.identity()["dtype"] == dtype_name(expected)
    assert not captioner.loaded  # identity needs no weights
    captioner.load()
    assert next(captioner.model.parameters()).dtype == expected
