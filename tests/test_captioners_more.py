"""The swappable captioners: LLaVA-1.5 and BLIP-2 (tiny random-weight checkpoints in HF format,
loaded through the registry) and caption files imported with `precomputed`."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import videoqa.captioners.blip2  # noqa: F401  (registers "blip2")
import videoqa.captioners.llava  # noqa: F401  (registers "llava-1.5")
import videoqa.captioners.precomputed  # noqa: F401  (registers "precomputed")
from videoqa.config import CaptionerConfig, DatasetConfig, FramesConfig, LLMConfig, RunConfig, _component
from videoqa.errors import AnnotationError, MissingModelError, UserError
from videoqa.registry import CAPTIONERS
from videoqa.types import Caption

PROMPT = "Describe this frame within 50 words"
TINY_INIT_STD = 0.25  # wider than the usual 0.02, so random tiny models caption each image differently

# the tiny tokenizers' training text: the prompt layouts and caption-like sentences
CORPUS = [
    PROMPT, "Question: Answer:", "USER: ASSISTANT:",
    "a man in a red shirt is riding a bicycle down the street",
    "a woman in a room with a cat sitting on a brown chair",
    "the camera wearer opens the door and walks into the room",
]
# LLaVA-1.5's single-turn layout as a chat template: "USER: <image>\n{text} ASSISTANT:"
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are dominated by per-op overhead; one thread avoids spin-waiting on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- tiny checkpoints


def tiny_tokenizer(specials: list[str], bos: str, declare_image_token: bool):
    """A byte-level BPE tokenizer trained on CORPUS; `bos` is prepended to every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(CORPUS, trainer)
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, specials.index(bos))])
    extra = {"extra_special_tokens": {"image_token": "<image>"}} if declare_image_token else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token=bos, eos_token="</s>", unk_token="<unk>", **extra
    )


def build_tiny_llava(out_dir: Path, seed: int = 0) -> Path:
    """LLaVA-1.5 layout: CLIP vision tower (32 px, patch 8 -> 16 image tokens) + MLP + Llama (head_dim 64)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = tiny_tokenizer(["<pad>", "<s>", "</s>", "<unk>", "<image>"], "<s>", declare_image_token=True)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
        num_key_value_heads=1, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        initializer_range=TINY_INIT_STD,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=16,
        initializer_range=TINY_INIT_STD,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_blip2(out_dir: Path, seed: int = 0, declare_image_token: bool = False) -> Path:
    """BLIP-2 layout: ViT (32 px) + Q-Former with 4 queries + OPT. The released tokenizers do not
    declare `image_token`; `declare_image_token` builds one that does (a Blip2Processor quirk)."""
    from transformers import (
        Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig,
    )
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokenizer = tiny_tokenizer(["<pad>", "</s>", "<unk>", "<image>"], "</s>", declare_image_token)
    vision = Blip2VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    qformer = Blip2QFormerConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
        vocab_size=100,
    )
    text = OPTConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
        max_position_embeddings=256, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=1, eos_token_id=1,
        init_std=TINY_INIT_STD,
    )
    config = Blip2Config(
        vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
        num_query_tokens=4, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        initializer_range=TINY_INIT_STD,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Blip2ForConditionalGeneration(config)
    processor = Blip2Processor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer, num_query_tokens=4
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("llava") / "tiny-llava")


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory) -> Path:
    return build_tiny_blip2(tmp_path_factory.mktemp("blip2") / "tiny-blip2")


def captioner_config(kind: str, model: str | Path, **fields) -> CaptionerConfig:
    fields = {"batch_size": 3, "max_new_tokens": 8} | fields
    return CaptionerConfig(name=f"tiny-{kind}", type=kind, model=str(model), **fields)


@pytest.fixture(scope="module")
def llava(llava_dir):
    return CAPTIONERS.get("llava-1.5")(captioner_config("llava-1.5", llava_dir))


@pytest.fixture(scope="module")
def blip2(blip2_dir):
    return CAPTIONERS.get("blip2")(captioner_config("blip2", blip2_dir))


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[np.ndarray]:
    """Real decoded frames (a synthetic test-pattern video, 4 fps, shorter side 48) plus two
    random images of other sizes, as frames of different videos arrive in one batch."""
    from videoqa.frames import decode_frames
    from videoqa.synthetic_video import make_video

    video = make_video(tmp_path_factory.mktemp("video") / "pattern.mp4", seconds=2, fps=8, width=96, height=64)
    decoded = np.concatenate([batch.images for batch in decode_frames(video, fps=2, size=48)])
    rng = np.random.default_rng(0)
    return [*decoded, rng.integers(0, 256, (40, 70, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]


# ---------------------------------------------------------------------------- LLaVA-1.5 and BLIP-2


@pytest.mark.parametrize("kind", ["llava-1.5", "blip2"])
def test_one_caption_per_frame_batch_invariant_and_image_dependent(kind, request, frames):
    captioner = request.getfixturevalue("llava" if kind == "llava-1.5" else "blip2")
    assert captioner.config.batch_size < len(frames)  # several generate() batches
    captions = captioner.caption(frames, PROMPT)
    assert len(captions) == len(frames) and all(isinstance(c, str) for c in captions)
    assert not any(PROMPT in c for c in captions)  # only the new tokens, not the echoed prompt
    # greedy decoding: a frame's caption does not depend on which frames share its batch
    assert [captioner.caption([frame], PROMPT)[0] for frame in frames] == captions
    # the caption comes from the image (random weights, but different pictures -> different text)
    assert len(set(captions)) >= 3
    assert captioner.caption([], PROMPT) == []


def test_llava_prompt_uses_the_chat_template(llava):
    assert llava.prompt_text(PROMPT) == f"USER: <image>\n{PROMPT} ASSISTANT:"


def test_blip2_prompt_is_asked_as_a_question(blip2):
    assert blip2.prompt_text(PROMPT) == f"Question: {PROMPT} Answer:"


@pytest.mark.parametrize("kind", ["llava-1.5", "blip2"])
def test_identity_and_parameters(kind, request, llava_dir, blip2_dir):
    captioner = request.getfixturevalue("llava" if kind == "llava-1.5" else "blip2")
    model_dir = llava_dir if kind == "llava-1.5" else blip2_dir
    identity = captioner.identity()
    assert identity["type"] == kind
    assert identity["model"] == str(model_dir) and identity["path"] == str(model_dir.resolve())
    assert identity["source"] == "local-dir" and identity["revision"].startswith("sha256:")
    assert identity["prompt"] == PROMPT and PROMPT in identity["prompt_text"]
    assert (identity["decoding"], identity["max_new_tokens"], identity["dtype"]) == ("greedy", 8, "float32")
    assert identity["image_processor"].endswith("Pil")  # the slow PIL processor, never torchvision
    assert captioner.image_size == identity["image_size"] == 32  # the processor's input size
    json.dumps(identity)  # goes into manifests and cache keys
    assert captioner.num_parameters() == sum(p.numel() for p in captioner.model.parameters())


def test_identity_changes_with_the_weights(llava, tmp_path):
    other = build_tiny_llava(tmp_path / "seed1", seed=1)
    assert CAPTIONERS.get("llava-1.5")(captioner_config("llava-1.5", other)).identity()["revision"] != llava.identity()["revision"]


def test_llava_without_chat_template_or_processor_numbers(llava, llava_dir, frames, tmp_path):
    """Older llava-hf snapshots: no chat template, and a processor without patch_size (the numbers
    needed to expand <image>) - the LLaVA-1.5 layout and the model's own numbers are used."""
    legacy = tmp_path / "legacy"
    shutil.copytree(llava_dir, legacy)
    (legacy / "chat_template.jinja").unlink()
    config = json.loads((legacy / "processor_config.json").read_text())
    for key in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
        config.pop(key)
    (legacy / "processor_config.json").write_text(json.dumps(config))
    captioner = CAPTIONERS.get("llava-1.5")(captioner_config("llava-1.5", legacy))
    assert captioner.prompt_text(PROMPT) == f"USER: <image>\n{PROMPT} ASSISTANT:"
    assert captioner.caption(frames[:3], PROMPT) == llava.caption(frames[:3], PROMPT)


def test_prompt_template_option(llava_dir, blip2_dir, frames):
    system = "A chat between a curious human and an artificial intelligence assistant. USER: <image>\n{prompt} ASSISTANT:"
    llava = CAPTIONERS.get("llava-1.5")(captioner_config("llava-1.5", llava_dir, options={"prompt_template": system}))
    assert llava.prompt_text("Hi") == system.replace("{prompt}", "Hi")
    assert len(llava.caption(frames[:2], "Hi")) == 2
    # BLIP-2 without a prompt: its own unconditional captioning
    blip2 = CAPTIONERS.get("blip2")(captioner_config("blip2", blip2_dir, options={"prompt_template": ""}))
    assert blip2.prompt_text(PROMPT) == ""
    assert blip2.identity()["prompt_text"] == ""
    assert len(blip2.caption(frames[:4], PROMPT)) == 4


def test_bad_options_fail_before_loading(tmp_path):
    missing = str(tmp_path / "never-read")  # options are checked before the model is looked up
    with pytest.raises(UserError, match="unknown options"):
        CAPTIONERS.get("llava-1.5")(captioner_config("llava-1.5", missing, options={"refine_steps": 1}))
    with pytest.raises(UserError, match="must contain '<image>'"):
        CAPTIONERS.get("llava-1.5")(captioner_config("llava-1.5", missing, options={"prompt_template": "{prompt}"}))
    with pytest.raises(UserError, match="must be a string"):
        CAPTIONERS.get("blip2")(captioner_config("blip2", missing, options={"prompt_template": 3}))
    with pytest.raises(UserError, match="'model' is empty"):
        CAPTIONERS.get("blip2")(captioner_config("blip2", ""))


@pytest.mark.parametrize(("kind", "hf_id"), [("llava-1.5", "llava-hf/llava-1.5-7b-hf"), ("blip2", "Salesforce/blip2-opt-2.7b")])
def test_missing_model_is_a_one_line_error(kind, hf_id, tmp_path):
    with pytest.raises(MissingModelError) as err:
        CAPTIONERS.get(kind)(captioner_config(kind, "videoqa-tests/no-such-captioner"))
    assert "\n" not in str(err.value) and "huggingface-cli download videoqa-tests/no-such-captioner" in str(err.value)
    with pytest.raises(MissingModelError, match="local model directory"):
        CAPTIONERS.get(kind)(captioner_config(kind, tmp_path / "nope"))
    # the shipped YAML names the real checkpoint
    data, _ = _component("captioners", kind)
    assert data["type"] == kind and data["model"] == hf_id and data["prompt"] == PROMPT


def test_model_directory_maps_to_its_captioner_type(llava_dir, blip2_dir):
    assert _component("captioners", str(llava_dir))[0]["type"] == "llava-1.5"
    assert _component("captioners", str(blip2_dir))[0]["type"] == "blip2"


def test_blip2_tokenizer_declaring_the_image_token(blip2, frames, tmp_path):
    """A tokenizer with `image_token` set trips Blip2Processor (it needs an AddedToken); the
    adapter repairs that, and the captions are the same as with the released layout."""
    declared = build_tiny_blip2(tmp_path / "declared", declare_image_token=True)
    captioner = CAPTIONERS.get("blip2")(captioner_config("blip2", declared))
    assert captioner.caption(frames[:3], PROMPT) == blip2.caption(frames[:3], PROMPT)


def test_blip2_snapshot_without_image_tokens_is_refused(blip2_dir, tmp_path):
    """Without num_query_tokens the processor adds no image placeholders and BLIP-2 would caption
    without looking at the image: refuse the checkpoint instead."""
    legacy = tmp_path / "legacy"
    shutil.copytree(blip2_dir, legacy)
    config = json.loads((legacy / "processor_config.json").read_text())
    config.pop("num_query_tokens")
    (legacy / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="predates image placeholder tokens"):
        CAPTIONERS.get("blip2")(captioner_config("blip2", legacy))


# ---------------------------------------------------------------------------- precomputed


def precomputed(path: Path | str, **options):
    return CAPTIONERS.get("precomputed")(
        CaptionerConfig(name="imported", type="precomputed", model=str(path), options=options)
    )


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_llovi_plain_lists(tmp_path):
    file = write(tmp_path / "lavila.json", {"v1": ["#C C opens a door", "#C C walks in"], "v2": [], "v3": "C cooks."})
    captioner = precomputed(file)
    v1 = captioner.precomputed("v1")
    assert v1.captions == [Caption(0.0, "#C C opens a door"), Caption(1.0, "#C C walks in")]
    assert (v1.video_id, v1.duration, v1.caption_s) == ("v1", 2.0, 0.0)
    assert captioner.precomputed("v2").captions == []
    assert captioner.precomputed("v3").captions == [Caption(0.0, "C cooks.")]  # a summary: one text per video
    # timestamps follow seconds_per_caption
    spaced = precomputed(file, seconds_per_caption=4).precomputed("v1")
    assert [c.t for c in spaced.captions] == [0.0, 4.0] and spaced.duration == 8.0


def test_timed_entries(tmp_path):
    file = write(tmp_path / "timed.json", {
        "a": [{"start": 3, "text": "later"}, {"start": 0.5, "text": "first", "end": 2}],
        "b": [{"t": 10, "caption": "only"}],
    })
    captioner = precomputed(file, seconds_per_caption=2)
    a = captioner.precomputed("a")
    assert a.captions == [Caption(0.5, "first"), Caption(3.0, "later")]  # sorted by time
    assert a.duration == 5.0  # the last caption ends at 3 + 2 s
    assert captioner.precomputed("b").captions == [Caption(10.0, "only")]


def test_jsonl_and_a_runs_captions_file(tmp_path):
    lines = [
        {"video_id": 7, "captions": ["x", "y"]},  # numeric ids (NExT-QA) become strings
        {"video_id": "clip", "duration": 30.0, "captions": [{"t": 1.0, "text": "z"}]},  # finish_run's layout
    ]
    for name in ("captions.jsonl", "captions_as.json"):  # a JSONL under a .json name is recognised too
        captioner = precomputed(write(tmp_path / name, "\n".join(json.dumps(r) for r in lines) + "\n\n"))
        assert [c.text for c in captioner.precomputed("7").captions] == ["x", "y"]
        clip = captioner.precomputed("clip")
        assert clip.captions == [Caption(1.0, "z")] and clip.duration == 30.0


def test_missing_video_and_frames(tmp_path):
    file = write(tmp_path / "c.json", {"v1": ["a"]})
    captioner = precomputed(file)
    assert captioner.image_size is None
    assert captioner.precomputed("absent") is None
    failure = captioner.missing_precomputed("absent", tmp_path / "absent.mp4")
    assert (failure.video_id, failure.reason) == ("absent", "no_precomputed_captions")
    assert str(file.resolve()) in failure.message and failure.path == str(tmp_path / "absent.mp4")
    assert captioner.missing_precomputed("v1", tmp_path / "v1.mp4") is None
    # a pipeline that decodes the missing video anyway gets a clear refusal, naming the video
    with pytest.raises(UserError, match=r"cannot caption frames.*'absent'"):
        captioner.caption([np.zeros((8, 8, 3), np.uint8)], PROMPT)
    assert captioner.caption([], PROMPT) == []


def test_identity_and_parameters_of_an_imported_file(tmp_path):
    file = write(tmp_path / "c.json", {"v1": ["a"]})
    captioner = precomputed(file, parameters=150_000_000, source="LaViLa")
    identity = captioner.identity()
    assert identity["file"] == str(file.resolve())
    assert identity["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert (identity["source"], identity["parameters"]) == ("LaViLa", 150_000_000)
    assert captioner.num_parameters() == 150_000_000
    assert precomputed(file).num_parameters() == 0
    write(file, {"v1": ["b"]})  # other captions, another identity (and so another cache key)
    assert precomputed(file).identity()["sha256"] != identity["sha256"]


@pytest.mark.parametrize(
    ("name", "content", "key"),
    [
        ("broken.json", '{"v1": ["a",', "(top level)"),
        ("list.json", '[["a"]]', "(top level)"),
        ("notlist.json", '{"v1": {"caption": "a"}}', "v1"),
        ("mixed.json", '{"v1": ["a", {"t": 1, "text": "b"}]}', "v1[0]"),
        ("notext.json", '{"v1": [{"t": 1, "words": "b"}]}', "v1[0].caption"),
        ("notime.json", '{"v1": [{"caption": "b"}]}', "v1[0].t"),
        ("negative.json", '{"v1": [{"start": -1, "caption": "b"}]}', "v1[0].start"),
        ("endbefore.json", '{"v1": [{"t": 5, "caption": "b", "end": 2}]}', "v1[0].end"),
        ("noid.jsonl", '{"video_id": "a", "captions": []}\n{"captions": ["x"]}\n', "line 2.video_id"),
        ("badline.jsonl", '{"video_id": "a", "captions": []}\nnot json\n', "line 2"),
        ("dupe.jsonl", '{"video_id": "a", "captions": []}\n{"video_id": "a", "captions": []}\n', "line 2.video_id"),
        ("badcaps.jsonl", '{"video_id": "a", "captions": [1, 2]}\n', "line 1.captions[0]"),
        ("duration.jsonl", '{"video_id": "a", "captions": [], "duration": "long"}\n', "line 1.duration"),
    ],
)
def test_malformed_files_name_file_and_key(tmp_path, name, content, key):
    file = write(tmp_path / name, content)
    with pytest.raises(AnnotationError) as err:
        precomputed(file)
    assert err.value.key == key and err.value.path == str(file.resolve())
    assert "\n" not in str(err.value)


def test_precomputed_config_errors(tmp_path):
    with pytest.raises(MissingModelError, match="caption file") as err:
        precomputed(tmp_path / "nope.json")
    assert "\n" not in str(err.value)
    file = write(tmp_path / "c.json", {"v1": ["a"]})
    for options, match in [
        ({"seconds_per_caption": 0}, "seconds_per_caption must be a number > 0"),
        ({"parameters": 1.5}, "parameters must be an integer"),
        ({"source": 3}, "source must be a string"),
        ({"fps": 1}, "unknown options"),
    ]:
        with pytest.raises(UserError, match=match):
            precomputed(file, **options)
    with pytest.raises(UserError, match="'model' is empty"):
        precomputed("")


def test_shipped_yaml():
    data, _ = _component("captioners", "precomputed")
    config = CaptionerConfig(**data)
    assert config.type == "precomputed" and config.options["seconds_per_caption"] == 1.0


def test_caption_stage_reads_the_file_instead_of_decoding(tmp_path):
    """Through the pipeline's caption stage: no video file exists, yet the covered video has its
    captions (nothing was decoded) and the captioner's identity/size reach the result."""
    from videoqa.pipeline import caption_videos

    file = write(tmp_path / "c.json", {"v1": ["a", "b", "c"]})
    config = RunConfig(
        dataset=DatasetConfig(name="d", type="jsonl", data_root=str(tmp_path)),
        captioner=CaptionerConfig(name="imported", type="precomputed", model=str(file), options={"parameters": 42}),
        llm=LLMConfig(name="unused", model="unused"),
        frames=FramesConfig(fps=1.0),
        output_dir=str(tmp_path / "outputs"),
    )
    result = caption_videos(config, [("v1", tmp_path / "v1.mp4")], progress=False)
    assert [c.text for c in result.captions["v1"].captions] == ["a", "b", "c"]
    assert result.failures == {} and result.parameters == 42
    assert result.identity["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert result.timing["frames_captioned"] == 0


# ---------------------------------------------------------------------------- LLaVA-1.5 on vLLM


def test_vllm_llava_missing_model_and_options_fail_before_any_engine(tmp_path):
    import videoqa.captioners.vllm_llava  # noqa: F401  (registers "llava-1.5-vllm")

    factory = CAPTIONERS.get("llava-1.5-vllm")
    with pytest.raises(MissingModelError) as err:
        factory(captioner_config("llava-1.5-vllm", "videoqa-tests/no-such-captioner"))
    assert "\n" not in str(err.value) and "huggingface-cli download" in str(err.value)
    with pytest.raises(UserError, match="unknown options"):
        factory(captioner_config("llava-1.5-vllm", tmp_path, options={"tensor_parallel": 2}))
    with pytest.raises(UserError, match="must be a string containing '<image>'"):
        factory(captioner_config("llava-1.5-vllm", tmp_path, options={"prompt_template": "{prompt}"}))
    data, _ = _component("captioners", "llava-1.5-vllm")
    assert (data["type"], data["model"], data["prompt"]) == ("llava-1.5-vllm", "llava-hf/llava-1.5-7b-hf", PROMPT)


def test_vllm_llava_counts_parameters_from_safetensors_headers(llava, llava_dir):
    from videoqa.captioners.vllm_llava import count_parameters

    assert count_parameters(llava_dir) == llava.num_parameters()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_vllm_llava_without_torchvision_is_a_one_line_refusal(llava_dir):
    """vLLM 0.32's LLaVA module needs torchvision (via transformers' Pixtral processor); without
    it the captioner refuses before starting an engine, instead of a pydantic traceback."""
    import videoqa.captioners.vllm_llava  # noqa: F401

    with pytest.raises(UserError, match="vLLM's LLaVA support cannot be loaded here.*use captioner type 'llava-1.5'") as err:
        CAPTIONERS.get("llava-1.5-vllm")(captioner_config("llava-1.5-vllm", llava_dir))
    assert "\n" not in str(err.value)
