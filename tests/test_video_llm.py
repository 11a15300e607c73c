"""Native video-LLM answering with a tiny random Qwen2.5-VL (frames as an image sequence, answers
constrained to the option letters), the over-long frame policy, and the vLLM request building."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from videoqa.answering.llm.video import TransformersVideoBackend, VideoPrompt
from videoqa.answering.llm.vllm_video import build_video_request, sampled_fps, video_tokens
from videoqa.answering.video_llm import VideoLLMAnswerer, cap_pixels, question_text, video_llm_parameters
from videoqa.config import LLMConfig
from videoqa.fixtures.synthetic_video import make_video
from videoqa.fixtures.tiny_vlm import build_tiny_qwen2_5_vl
from videoqa.models.vlm import open_vlm
from videoqa.registry import LLM_BACKENDS
from videoqa.types import Question

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("vlm") / "tiny-qwen2.5-vl")


def backend_for(model: Path, **fields) -> TransformersVideoBackend:
    config = LLMConfig(
        name="tiny-video",
        backend="transformers-video",
        model=str(model),
        dtype="float32",
        engine_kwargs={"device": "cpu"},
        **fields,
    )
    return LLM_BACKENDS.get("transformers-video")(config)


@pytest.fixture(scope="module")
def backend(qwen_dir):
    return backend_for(qwen_dir)


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> list[Question]:
    root = tmp_path_factory.mktemp("videos")
    clips = [make_video(root / f"clip{i}.mp4", seconds=4 + 2 * i, fps=8, width=96, height=64) for i in range(2)]
    broken = root / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    options = ("cooking", "cleaning", "reading", "writing", "walking")
    return [
        Question("q0", "clip0", clips[0], "What is the person doing?", options, answer=0),
        Question("q1", "clip1", clips[1], "What happens last?", options[:3], answer=2),
        Question("q2", "clip0", clips[0], "What happens first?", options, answer=1),
        Question("q3", "broken", broken, "What is shown?", options, answer=0),
    ]


def answerer(backend, **settings) -> VideoLLMAnswerer:
    return VideoLLMAnswerer(backend, **({"fps": 1.0, "max_frames": 8, "frame_size": 64, "max_pixels": None} | settings))


def test_answers_are_option_letters_from_the_frames(backend, questions):
    answers, timing = answerer(backend).answer(questions, progress=False)
    assert [a.qid for a in answers] == ["q0", "q1", "q2", "q3"]
    for answer, question in zip(answers[:3], questions):
        assert answer.status == "ok" and answer.detail == ""
        assert answer.raw in question.letters and answer.pred == question.letters.index(answer.raw)
        # constrained: log-probabilities over exactly the letters, renormalised, the best one chosen
        assert set(answer.choice_logprobs) == set(question.letters)
        assert math.isclose(sum(math.exp(v) for v in answer.choice_logprobs.values()), 1.0, rel_tol=1e-4)
        assert answer.raw == max(answer.choice_logprobs, key=answer.choice_logprobs.get)
        assert answer.prompt_tokens > 0
    broken = answers[3]
    assert (broken.status, broken.pred) == ("video_failed", None) and broken.detail.startswith("not_a_video")
    assert timing["videos"] == 3 and timing["videos_failed"] == 1
    assert timing["frames"] == 4 + 6  # 1 fps over 4 s and 6 s
    assert timing["video_seconds"] == pytest.approx(4 + 6, abs=0.3) and timing["caption_s"] == 0.0
    assert timing["frames_subsampled_questions"] == 0 and timing["answer_s"] > 0


def test_frames_reach_the_model_as_an_image_sequence_with_times(backend, questions):
    frames = np.zeros((3, 64, 96, 3), np.uint8)
    prompt = VideoPrompt(frames, [0.5, 1.5, 2.5], question_text(questions[0]), questions[0].letters)
    text = backend.prompt_text(prompt)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    assert (
        text.index("0.5s:")
        < text.index("1.5s:")
        < text.index("2.5s:")
        < text.index("Question: What is the person doing?")
    )
    assert "E. walking\nAnswer with the option's letter" in text
    prepared = backend.prepare(prompt)
    assert prepared.tokens == prepared.payload["input_ids"].shape[1]
    assert int((prepared.payload["mm_token_type_ids"] == 1).sum()) == 3 * 6  # 56x84 px: 4x6 patches, 2x2 merged


def test_frame_cap_and_pixel_cap(backend, questions):
    few = answerer(backend, max_frames=2)
    answers, timing = few.answer(questions[:1], progress=False)
    assert answers[0].status == "ok" and timing["frames"] == 2
    frames = np.zeros((2, 64, 96, 3), np.uint8)
    capped = cap_pixels(frames, 1536)
    assert capped.shape[1] * capped.shape[2] <= 1536 and capped.shape[2] / capped.shape[1] == pytest.approx(
        1.5, rel=0.05
    )
    assert cap_pixels(frames, None) is frames and cap_pixels(frames, 96 * 64) is frames


def test_over_long_prompts_are_subsampled_and_recorded(qwen_dir, backend, questions):
    frames = np.zeros((4, 64, 96, 3), np.uint8)
    text = question_text(questions[0])
    full = backend.prepare(VideoPrompt(frames, [0.5, 1.5, 2.5, 3.5], text, questions[0].letters)).tokens
    half = backend.prepare(VideoPrompt(frames[::2], [0.5, 2.5], text, questions[0].letters)).tokens
    margin = 16
    short = backend_for(qwen_dir, max_model_len=half + margin)  # 2 of the 4 frames fit, not all 4
    assert full > half + 0
    answers, timing = answerer(short, context_margin=margin).answer(questions[:1], progress=False)
    assert answers[0].status == "ok"
    assert answers[0].detail == f"frames_subsample: kept 2/4 frames (stride 2) to fit {half} tokens"
    assert answers[0].prompt_tokens == half and timing["frames_subsampled_questions"] == 1
    # policy "error": not sent, and said why
    refused, _ = answerer(short, context_margin=margin, context_policy="error").answer(questions[:1], progress=False)
    assert (refused[0].status, refused[0].pred) == ("invalid", None)
    assert refused[0].detail == f"context_overflow: {full} prompt tokens with 4 frames > {half} available"
    # not even one frame fits: invalid, never truncated
    tiny = backend_for(qwen_dir, max_model_len=margin + 20)
    hopeless, _ = answerer(tiny, context_margin=margin).answer(questions[:1], progress=False)
    assert hopeless[0].status == "invalid" and hopeless[0].detail.endswith("(even one frame is too long)")
    with pytest.raises(ValueError, match="context_policy"):
        answerer(short, context_policy="truncate")


def test_identity_and_missing_model(backend):
    from videoqa_base.errors import MissingModelError

    identity = backend.identity()
    assert identity["backend"] == "transformers-video" and identity["frames_as"].startswith("image sequence")
    assert identity["revision"].startswith("sha256:") and identity["dtype"] == "float32"
    with pytest.raises(MissingModelError) as err:
        backend_for(Path("videoqa-tests/no-such-video-llm"))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- vLLM requests (no engine)


def test_vllm_video_request(qwen_dir, questions):
    _, _, inputs = open_vlm(str(qwen_dir), None, what="video LLM")
    frames = np.full((5, 56, 84, 3), 7, np.uint8)
    prompt = VideoPrompt(frames, [0.5, 1.5, 2.5, 3.5, 4.5], question_text(questions[0]), questions[0].letters)
    request, tokens = build_video_request(inputs, "<|video_pad|>", prompt)
    assert request["prompt"].count("<|vision_start|><|video_pad|><|vision_end|>") == 1
    assert request["prompt"].endswith("directly.<|im_end|>\n<|im_start|>assistant\n")
    video, metadata = request["multi_modal_data"]["video"]
    assert video.shape == (5, 56, 84, 3) and video.dtype == np.uint8
    assert (
        metadata["fps"] == 1.0
        and metadata["frames_indices"] == [0, 1, 2, 3, 4]
        and metadata["do_sample_frames"] is False
    )
    # 5 frames -> 3 temporal patches of 2, each 4x6 patches merged 2x2 -> 6 tokens
    assert video_tokens(inputs, 5, 56, 84) == 3 * 6
    text_only = len(inputs.tokenizer.encode(request["prompt"], add_special_tokens=False)) - 1
    assert tokens == text_only + 18
    assert sampled_fps([0.0, 0.5, 1.0]) == 2.0 and sampled_fps([3.0]) == 1.0


def test_vllm_video_refuses_non_qwen_models_before_any_engine(tmp_path):
    from videoqa.fixtures.tiny_vlm import build_tiny_llava
    from videoqa_base.errors import UserError

    llava = build_tiny_llava(tmp_path / "llava")
    config = LLMConfig(name="x", backend="vllm-video", model=str(llava))
    with pytest.raises(UserError, match="vllm-video supports"):
        LLM_BACKENDS.get("vllm-video")(config)


def test_parameters_failures_and_shipped_yamls(backend, questions):
    from videoqa.config import resolve_component
    from videoqa_base.errors import MissingModelError

    assert backend.num_parameters() == backend.model.num_parameters()  # from the safetensors headers
    assert video_llm_parameters(backend.config) == backend.num_parameters()  # the same, without a backend
    video_llm = answerer(backend)
    video_llm.answer(questions[3:], progress=False)
    assert list(video_llm.failures) == ["broken"] and video_llm.failures["broken"].reason == "not_a_video"
    for name, kind in [("qwen2.5-vl-7b-instruct", "vllm-video"), ("qwen2.5-vl-7b-instruct-hf", "transformers-video")]:
        data, _ = resolve_component("llms", name)
        config = LLMConfig(**data)
        assert (config.backend, config.model) == (kind, "Qwen/Qwen2.5-VL-7B-Instruct")
        with pytest.raises(MissingModelError) as err:  # no real weights here: one line, no engine
            LLM_BACKENDS.get(kind).check_available(config.model_copy(update={"model": "videoqa-tests/absent-vl"}))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("arch", ["llava", "idefics3"])
def test_other_architectures_take_the_frames_as_images(arch, tmp_path, questions):
    """The transformers video backend is not Qwen-specific: any VLM with a chat template answers
    from an image sequence (the processor's own placeholder expansion, one image per frame)."""
    from videoqa.fixtures import tiny_vlm

    model = getattr(tiny_vlm, f"build_tiny_{arch}")(tmp_path / arch)
    vlm = backend_for(model)
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    prompt = VideoPrompt(frames, [0.5, 1.5, 2.5], question_text(questions[1]), questions[1].letters)
    assert vlm.prompt_text(prompt).count("<image>") == 3
    prepared = vlm.prepare(prompt)
    (done,) = vlm.choose_frames([prepared])
    assert done.text in questions[1].letters and set(done.choice_logprobs) == set(questions[1].letters)
    # one frame fewer, fewer tokens: every frame reached the model
    assert vlm.prepare(VideoPrompt(frames[:2], [0.5, 1.5], prompt.text, prompt.choices)).tokens < prepared.tokens
