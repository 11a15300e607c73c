"""The `hf-vlm` captioner on tiny random checkpoints of four architectures (LLaVA, BLIP-2,
Idefics3/SmolVLM, Qwen2.5-VL), and the shipped YAML presets of real checkpoints."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import videoqa.captioning.vllm_llava  # noqa: F401  (registers "llava-1.5-vllm")
from videoqa.captioning.hf_vlm import HFVLMCaptioner
from videoqa.config import CaptionerConfig, resolve_component
from videoqa.fixtures.tiny_vlm import (
    PROMPT,
    build_tiny_blip2,
    build_tiny_idefics3,
    build_tiny_llava,
    build_tiny_qwen2_5_vl,
)
from videoqa.registry import CAPTIONERS
from videoqa_base.device import dtype_name, resolve_dtype
from videoqa_base.errors import MissingModelError, UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILDERS = {
    "llava": build_tiny_llava,
    "blip2": build_tiny_blip2,
    "idefics3": build_tiny_idefics3,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
}
OPTIONS = {"blip2": {"prompt_template": "Question: {prompt} Answer:"}, "qwen2_5_vl": {"image_size": 56}}
PROMPT_TEXTS = {
    "llava": f"USER: <image>\n{PROMPT} ASSISTANT:",
    "blip2": f"Question: {PROMPT} Answer:",
    "idefics3": f"<|im_start|>User:<image>{PROMPT}<end_of_utterance>\nAssistant:",
    "qwen2_5_vl": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|image_pad|><|vision_end|>{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    ),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlms")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def config(model, name: str = "tiny", **fields) -> CaptionerConfig:
    # fp32 everywhere: captions of random models are compared token for token
    fields = {"batch_size": 3, "max_new_tokens": 8, "dtype": "float32", "device": "cpu"} | fields
    return CaptionerConfig(name=name, type="hf-vlm", model=str(model), **fields)


def captioner(checkpoints, arch: str, **fields) -> HFVLMCaptioner:
    fields.setdefault("options", OPTIONS.get(arch, {}))
    return CAPTIONERS.get("hf-vlm")(config(checkpoints[arch], name=f"tiny-{arch}", **fields))


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[np.ndarray]:
    """Decoded frames of a synthetic video plus random images of other sizes (frames of different
    videos share a batch)."""
    from videoqa.fixtures.synthetic_video import make_video
    from videoqa.frames import decode_frames

    video = make_video(tmp_path_factory.mktemp("video") / "pattern.mp4", seconds=2, fps=8, width=96, height=64)
    decoded = np.concatenate([batch.images for batch in decode_frames(video, fps=2, size=48)])
    rng = np.random.default_rng(0)
    return [
        *decoded,
        rng.integers(0, 256, (40, 70, 3), dtype=np.uint8),
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
    ]


@pytest.mark.parametrize("arch", BUILDERS)
def test_batched_captions_are_batch_invariant_and_image_dependent(arch, checkpoints, frames):
    vlm = captioner(checkpoints, arch)
    assert vlm.model is None  # built without weights
    assert vlm.prompt_text(PROMPT) == PROMPT_TEXTS[arch]
    assert vlm.caption([], PROMPT) == [] and vlm.model is None  # nothing to caption: nothing loaded
    vlm.load()
    assert vlm.config.batch_size < len(frames)  # several generate() batches, the last one short
    captions = vlm.caption(frames, PROMPT)
    assert len(captions) == len(frames) and all(isinstance(c, str) for c in captions)
    assert not any("Describe" in c for c in captions)  # only the new tokens, not the echoed prompt
    # greedy decoding with left padding: a frame's caption does not depend on its batch
    assert [vlm.caption([frame], PROMPT)[0] for frame in frames] == captions
    assert len(set(captions)) >= 3  # random weights, but different pictures -> different text
    vlm.close()
    assert vlm.model is None and vlm.caption(frames[:2], PROMPT) == captions[:2]  # loads again on demand


@pytest.mark.parametrize("arch", BUILDERS)
def test_identity_and_parameters_without_weights(arch, checkpoints):
    import torch

    vlm = captioner(checkpoints, arch, dtype="auto")
    identity = vlm.identity()
    assert (identity["type"], identity["model"], identity["path"]) == (
        "hf-vlm",
        str(checkpoints[arch]),
        str(checkpoints[arch].resolve()),
    )
    assert identity["source"] == "local-dir" and identity["revision"].startswith("sha256:")
    assert identity["prompt_text"] == PROMPT_TEXTS[arch] and identity["decoding"] == "greedy"
    assert identity["dtype"] == dtype_name(resolve_dtype("auto", torch.device("cpu")))
    assert identity["image_processor"].endswith("Pil")  # the PIL processor on every machine
    assert vlm.image_size == identity["image_size"] == (56 if arch == "qwen2_5_vl" else 32)
    json.dumps(identity)  # manifests and cache keys
    counted = vlm.num_parameters()  # from the safetensors headers
    assert vlm.model is None
    vlm.load()
    assert counted == vlm.model.num_parameters()


def test_auto_dtype_follows_the_cpu(checkpoints):
    import torch

    vlm = captioner(checkpoints, "llava", dtype="auto")
    assert vlm.dtype == resolve_dtype("auto", torch.device("cpu"))
    for native in (True, False):  # both branches, whatever this host is
        assert resolve_dtype("auto", torch.device("cpu"), native_bf16=native) == (
            torch.bfloat16 if native else torch.float32
        )


def test_identity_changes_with_the_weights(checkpoints, tmp_path):
    other = build_tiny_llava(tmp_path / "seed1", seed=1)
    first = captioner(checkpoints, "llava").identity()["revision"]
    assert CAPTIONERS.get("hf-vlm")(config(other)).identity()["revision"] != first


def test_legacy_llava_without_chat_template_or_processor_numbers(checkpoints, frames, tmp_path):
    """Older llava-hf snapshots: no chat template, and a processor without patch_size - LLaVA-1.5's
    layout and the model's own numbers are used."""
    legacy = tmp_path / "legacy"
    shutil.copytree(checkpoints["llava"], legacy)
    (legacy / "chat_template.jinja").unlink()
    processor_config = json.loads((legacy / "processor_config.json").read_text())
    for key in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
        processor_config.pop(key)
    (legacy / "processor_config.json").write_text(json.dumps(processor_config))
    old, new = CAPTIONERS.get("hf-vlm")(config(legacy)), captioner(checkpoints, "llava")
    assert old.prompt_text(PROMPT) == PROMPT_TEXTS["llava"]
    old.load()
    new.load()
    assert old.caption(frames[:3], PROMPT) == new.caption(frames[:3], PROMPT)


def test_prompt_template_option(checkpoints, frames):
    system = (
        "A chat between a curious human and an artificial intelligence assistant. USER: <image>\n{prompt} ASSISTANT:"
    )
    llava = captioner(checkpoints, "llava", options={"prompt_template": system})
    assert llava.prompt_text("Hi") == system.replace("{prompt}", "Hi")
    qwen = captioner(checkpoints, "qwen2_5_vl", options={"prompt_template": "<image>{prompt}", "image_size": 56})
    assert qwen.prompt_text("Hi") == "<|vision_start|><|image_pad|><|vision_end|>Hi"
    # BLIP-2 without a prompt (its own unconditional captioning): the template is empty
    blip2 = captioner(checkpoints, "blip2", options={"prompt_template": ""})
    assert blip2.prompt_text(PROMPT) == "" and blip2.identity()["prompt_text"] == ""
    blip2.load()
    assert len(blip2.caption(frames[:4], PROMPT)) == 4
    # BLIP-2 without any template: its prompted format
    assert captioner(checkpoints, "blip2", options={}).prompt_text(PROMPT) == PROMPT_TEXTS["blip2"]


def test_blip2_tokenizer_declaring_the_image_token(checkpoints, frames, tmp_path):
    """A tokenizer with `image_token` set trips Blip2Processor (it needs an AddedToken); the adapter
    repairs that, and the captions are those of the released layout."""
    declared = CAPTIONERS.get("hf-vlm")(config(build_tiny_blip2(tmp_path / "declared", declare_image_token=True)))
    released = captioner(checkpoints, "blip2", options={})
    declared.load()
    released.load()
    assert declared.caption(frames[:3], PROMPT) == released.caption(frames[:3], PROMPT)


def test_blip2_snapshot_without_image_tokens_is_refused(checkpoints, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(checkpoints["blip2"], legacy)
    processor_config = json.loads((legacy / "processor_config.json").read_text())
    processor_config.pop("num_query_tokens")
    (legacy / "processor_config.json").write_text(json.dumps(processor_config))
    with pytest.raises(UserError, match="predates image placeholder tokens"):
        CAPTIONERS.get("hf-vlm")(config(legacy))


def test_option_errors(checkpoints, tmp_path, monkeypatch):
    missing = tmp_path / "never-read"  # options are checked before the model is looked up
    for options, match in [
        ({"refine_steps": 1}, "unknown options"),
        ({"prompt_template": 3}, "must be a string"),
    ]:
        with pytest.raises(UserError, match=match):
            CAPTIONERS.get("hf-vlm")(config(missing, options=options))
    with pytest.raises(UserError, match="must contain '<image>'"):
        captioner(checkpoints, "llava", options={"prompt_template": "{prompt}"})
    # dynamic resolution (Qwen-VL): 448 px, within the processor's pixel budget (tiny: 112 x 112 at most)
    assert captioner(checkpoints, "qwen2_5_vl", options={}).image_size == 112
    with monkeypatch.context() as patch:  # an image processor that names no input size
        patch.setattr("videoqa.captioning.hf_vlm.processor_image_size", lambda image_processor: None)
        with pytest.raises(UserError, match="names no input size; set options.image_size"):
            captioner(checkpoints, "llava", options={})
    with pytest.raises(UserError, match="image_size must be an integer"):
        captioner(checkpoints, "llava", options={"image_size": "big"})
    with pytest.raises(UserError, match="'model' is empty"):
        CAPTIONERS.get("hf-vlm")(config(""))
    text_only = tmp_path / "text-only"
    shutil.copytree(checkpoints["llava"], text_only)
    (text_only / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="'bert' is not an image-text-to-text model"):
        CAPTIONERS.get("hf-vlm")(config(text_only))
    no_template = tmp_path / "no-template"
    shutil.copytree(checkpoints["idefics3"], no_template)
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(UserError, match="'idefics3' has no chat template; set captioner.options.prompt_template"):
        CAPTIONERS.get("hf-vlm")(config(no_template))
    assert (
        CAPTIONERS.get("hf-vlm")(config(no_template, options={"prompt_template": "<image>{prompt}"})).prompt_text("Hi")
        == "<image>Hi"
    )


def test_missing_weights_are_a_one_line_error(tmp_path):
    with pytest.raises(MissingModelError) as err:
        CAPTIONERS.get("hf-vlm")(config("videoqa-tests/no-such-vlm"))
    assert "\n" not in str(err.value) and "huggingface-cli download videoqa-tests/no-such-vlm" in str(err.value)
    with pytest.raises(MissingModelError, match="local model directory"):
        CAPTIONERS.get("hf-vlm")(config(tmp_path / "nope"))


SHIPPED = {
    "llava-1.5": "llava-hf/llava-1.5-7b-hf",
    "blip2": "Salesforce/blip2-opt-2.7b",
    "smolvlm-256m": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "smolvlm-500m": "HuggingFaceTB/SmolVLM-500M-Instruct",
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "llava-next-7b": "llava-hf/llava-v1.6-vicuna-7b-hf",
}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_presets_name_real_checkpoints(name):
    data, _ = resolve_component("captioners", name)
    preset = CaptionerConfig(**data)
    assert (preset.type, preset.model, preset.prompt) == ("hf-vlm", SHIPPED[name], PROMPT)
    assert "parameters" not in preset.options  # counted from the weights, never configured
    with pytest.raises(MissingModelError) as err:  # this machine has no real weights: one line
        CAPTIONERS.get("hf-vlm")(preset.model_copy(update={"model": f"videoqa-tests/absent-{name}"}))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "source"),
    [("lavila", "LaViLa"), ("smallcap", "SmallCap"), ("tag2text", "Tag2Text"), ("llava-1.0", "LLaVA-1.0")],
)
def test_paper_rows_without_checkpoints_are_imported_caption_files(name, source, tmp_path):
    data, _ = resolve_component("captioners", name)
    preset = CaptionerConfig(**data)
    assert (preset.name, preset.type, preset.options["source"]) == (source, "precomputed", source)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"v1": ["#C C opens a door", "#C C walks in"]}))
    imported = CAPTIONERS.get("precomputed")(preset.model_copy(update={"model": str(captions)}))
    assert [c.text for c in imported.precomputed("v1").captions] == ["#C C opens a door", "#C C walks in"]
    assert imported.identity()["source"] == source


# ---------------------------------------------------------------------------- LLaVA-1.5 on vLLM


def test_vllm_llava_is_cheap_to_build_and_checks_options_first(checkpoints, tmp_path):
    factory = CAPTIONERS.get("llava-1.5-vllm")
    with pytest.raises(MissingModelError) as err:
        factory(config("videoqa-tests/no-such-captioner"))
    assert "\n" not in str(err.value) and "huggingface-cli download" in str(err.value)
    with pytest.raises(UserError, match="unknown options"):
        factory(config(tmp_path, options={"tensor_parallel": 2}))
    with pytest.raises(UserError, match="must contain '<image>'"):
        factory(config(tmp_path, options={"prompt_template": "{prompt}"}))
    data, _ = resolve_component("captioners", "llava-1.5-vllm")
    assert (data["type"], data["model"], data["prompt"]) == ("llava-1.5-vllm", "llava-hf/llava-1.5-7b-hf", PROMPT)
    # no engine until load(): the same prompt, size and parameter count as the transformers captioner
    served, local = factory(config(checkpoints["llava"])), captioner(checkpoints, "llava")
    assert served.llm is None and served.engine_kwargs["limit_mm_per_prompt"] == {"image": 1}
    assert served.prompt_text(PROMPT) == local.prompt_text(PROMPT) and served.image_size == local.image_size
    assert served.num_parameters() == local.num_parameters()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_vllm_llava_without_torchvision_is_a_one_line_refusal(checkpoints):
    """vLLM 0.32's LLaVA module needs torchvision (via transformers' Pixtral processor); without it
    load() refuses before starting an engine, instead of a pydantic traceback."""
    served = CAPTIONERS.get("llava-1.5-vllm")(config(checkpoints["llava"]))
    with pytest.raises(UserError, match="vLLM's LLaVA support cannot be loaded here.*type hf-vlm") as err:
        served.load()
    assert "\n" not in str(err.value)
