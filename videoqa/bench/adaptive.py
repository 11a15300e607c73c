"""adaptive_over_uniform: `frames.select: adaptive` over `uniform` on a long video of repeated scenes.

A generated video (`make_scene_video`: a few distinct scenes, each shown several times and held for
minutes; the generator returns which scene is on screen when) goes through the pipeline's caption
stage (`caption_videos`, the function both executors run) twice, with fresh caches: once captioning
every sampled frame, once embedding every sampled frame with the captioner's own ViT at reduced
resolution, clustering, and captioning one frame per cluster. The captioner is the full-size SeR
with random weights (as the captioning figures use), every caption forced to `new_tokens` tokens
per pass. Measured in one run, adaptive / uniform:

    captions per minute of video              target <= 0.4
    caption-stage time (decode + embed + cluster + caption, wall)   target <= 0.5 (the figure)
    answer-prompt tokens (the standard prompt with the transcript)   reported

and every scene of the ground truth must have a caption. The sampling rate is low (the settings'
`adaptive_fps`) to keep the uniform side affordable on a CPU: a sparser sampling makes adaptive's
ratio worse (the clusters stay as many while the uniform captions drop), so the ratio is conservative.
The embedding cost per frame / the caption cost per frame is reported beside it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from captioner.modeling.inference import default_embedding, embed_images, generate_captions
from videoqa.answering.prompts import build_messages, load_prompt
from videoqa.answering.transcript import build_transcript
from videoqa.bench.caption import frames_like_decoded, random_ser
from videoqa.bench.settings import PROMPT, BenchSettings, say
from videoqa.captioning.base import Captioner
from videoqa.captioning.selection import pixel_embedding
from videoqa.captioning.videos import caption_videos
from videoqa.config import AdaptiveConfig, CaptionerConfig, DatasetConfig, FramesConfig, LLMConfig, RunConfig
from videoqa.fixtures.synthetic_video import SceneSegment, make_scene_video
from videoqa.types import Question
from videoqa_base.device import resolve_device, resolve_dtype

QUESTION = "Which pattern is shown most often?"
OPTIONS = ("colour bars", "a test card", "a green screen", "a moving gradient", "a black screen")


class RandomWeightSeR(Captioner):
    """The full-size SeR with random weights, in memory, as a pipeline captioner: captions forced
    to `new_tokens` tokens per pass (random weights would stop anywhere), frames embedded by its ViT."""

    kind = "random-ser"

    def __init__(self, preset: str, dtype: str, device: str, new_tokens: int, batch_size: int, seed: int = 0):
        super().__init__(
            CaptionerConfig(name=f"random-{preset}", type=self.kind, batch_size=batch_size, max_new_tokens=new_tokens)
        )
        self.preset, self.seed, self.new_tokens = preset, seed, new_tokens
        torch_device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, torch_device)
        self.model, self.processor = random_ser(preset, dtype=self.dtype, seed=seed, device=str(torch_device))
        self.side: int = self.processor.image_size  # frames are decoded at this size
        self.image_size = self.side
        self.embed_size, self.embed_layer = default_embedding(self.model.config)
        self.loaded = True

    def identity(self) -> dict[str, Any]:
        return {"type": self.kind, "preset": self.preset, "seed": self.seed, "new_tokens": self.new_tokens}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        return generate_captions(
            self.model,
            self.processor,
            list(images),
            prompt,
            max_new_tokens=self.new_tokens,
            min_new_tokens=self.new_tokens,
            batch_size=self.config.batch_size,
        )

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        features = embed_images(self.model, self.processor, list(images), size=self.embed_size, layer=self.embed_layer)
        return features.numpy()

    def embedding_identity(self) -> dict[str, Any]:
        return {"embedding": "vit", "embed_size": self.embed_size, "embed_layer": self.embed_layer}


def scene_video(settings: BenchSettings, work: Path) -> tuple[Path, list[SceneSegment]]:
    name = f"scenes-{settings.adaptive_scenes}x{settings.adaptive_repeats}x{settings.adaptive_seconds_each:g}s.mp4"
    return make_scene_video(
        work / "videos" / name,
        scenes=settings.adaptive_scenes,
        repeats=settings.adaptive_repeats,
        seconds_each=settings.adaptive_seconds_each,
        fps=2,
    )


def prompt_tokens(captioner: RandomWeightSeR, transcript: str, video: Path) -> int:
    """Tokens of the standard answering prompt with this transcript (the SeR tokenizer counts)."""
    question = Question("q", "scenes", video, QUESTION, OPTIONS)
    messages = build_messages(load_prompt("standard"), transcript, question)
    text = "\n".join(m["content"] for m in messages)
    return len(captioner.processor.tokenizer(text)["input_ids"])


def run_arm(captioner: RandomWeightSeR, select: str, settings: BenchSettings, work: Path, video: Path) -> dict:
    config = RunConfig(
        dataset=DatasetConfig(name="bench-scenes", type="jsonl", data_root=str(work)),
        captioner=captioner.config.model_copy(update={"prompt": PROMPT}),
        llm=LLMConfig(name="unused", model="unused"),
        frames=FramesConfig(fps=settings.adaptive_fps, select=select),
        adaptive=AdaptiveConfig(),
        output_dir=str(work / f"adaptive-{select}"),
    )
    shutil.rmtree(config.output_dir, ignore_errors=True)  # no cache: both arms do all their work
    started = time.perf_counter()
    result = caption_videos(config, captioner, [("scenes", video)], progress=False)
    seconds = time.perf_counter() - started
    if result.failures:
        raise RuntimeError(f"{video}: {result.failures['scenes'].message}")
    captions = result.captions["scenes"]
    timing = result.timing
    return {
        "seconds": seconds,
        "caption_stage_wall_s": timing["caption_stage_wall_s"],
        "caption_s": timing["caption_s_this_run"],
        "embed_s": timing["embed_s"],
        "select_s": timing["select_s"],
        "decode_wait_s": timing["decode_s"],
        "frames_decoded": timing["frames_decoded"],
        "frames_embedded": timing["frames_embedded"],
        "captions": len(captions.captions),
        "captions_per_minute": len(captions.captions) / (captions.duration / 60),
        "prompt_tokens": prompt_tokens(captioner, build_transcript(captions), video),
        "times": [c.t for c in captions.captions],
    }


def embedding_options(captioner: RandomWeightSeR, probe: list, caption_per_frame: float) -> dict[str, float]:
    """The embedding choices measured on the same frames, each as its cost per frame / a caption's:
    the ViT at the captioning size, two thirds and one third of it (the default), and pixels."""
    patch = captioner.model.config.vision_config.patch_size
    sizes = sorted({captioner.side, patch * round(captioner.side * 2 / 3 / patch), captioner.embed_size})
    ratios = {}
    for size in reversed(sizes):
        t0 = time.perf_counter()
        embed_images(captioner.model, captioner.processor, probe, size=size, layer=captioner.embed_layer)
        ratios[f"vit_{size}px"] = (time.perf_counter() - t0) / len(probe) / caption_per_frame
    t0 = time.perf_counter()
    pixel_embedding(np.stack(probe))
    ratios["pixel"] = (time.perf_counter() - t0) / len(probe) / caption_per_frame
    return ratios


def adaptive_step(settings: BenchSettings, work: Path, device: str = "cpu") -> dict[str, Any]:
    """Both arms on one captioner (weights built once); adaptive first, then uniform."""
    video, truth = scene_video(settings, work)
    captioner = RandomWeightSeR(settings.preset, settings.dtype, device, settings.new_tokens, settings.batch_size)
    say(f"adaptive: {video.name}, {settings.preset} (random weights), {settings.adaptive_fps:.3g} fps")
    warm = frames_like_decoded(2, captioner.side)
    captioner.caption(warm[:1], PROMPT)
    captioner.embed(warm)
    # the costs per frame behind the time ratio: one caption batch and one embedding batch, timed apart
    probe = frames_like_decoded(settings.batch_size, captioner.side, seed=1)
    t0 = time.perf_counter()
    captioner.caption(probe, PROMPT)
    caption_per_frame = (time.perf_counter() - t0) / len(probe)
    t0 = time.perf_counter()
    captioner.embed(probe)
    embed_per_frame = (time.perf_counter() - t0) / len(probe)
    options = embedding_options(captioner, probe, caption_per_frame)
    arms = {}
    for select in ("adaptive", "uniform"):
        say(f"adaptive: the {select} arm")
        arms[select] = run_arm(captioner, select, settings, work, video)
    adaptive, uniform = arms["adaptive"], arms["uniform"]
    scenes = {s.scene for s in truth}
    on_screen = lambda t: next(s.scene for s in truth if s.start <= t < s.end)  # noqa: E731
    captioned_scenes = {on_screen(t) for t in adaptive.pop("times")}
    uniform.pop("times")
    return {
        "video": video.name,
        "video_seconds": truth[-1].end,
        "scenes": len(scenes),
        "showings": len(truth),
        "sample_fps": settings.adaptive_fps,
        "preset": settings.preset,
        "new_tokens": settings.new_tokens,
        "batch_size": settings.batch_size,
        "embedding": captioner.embedding_identity(),
        "caption_s_per_frame": caption_per_frame,
        "embed_s_per_frame": embed_per_frame,
        "embed_over_caption": embed_per_frame / caption_per_frame,
        "embedding_options_over_caption": options,
        "adaptive": adaptive,
        "uniform": uniform,
        "captions_ratio": adaptive["captions_per_minute"] / uniform["captions_per_minute"],
        "time_ratio": adaptive["caption_stage_wall_s"] / uniform["caption_stage_wall_s"],
        "prompt_tokens_ratio": adaptive["prompt_tokens"] / uniform["prompt_tokens"],
        "scenes_captioned": len(captioned_scenes & scenes),
        "adaptive_over_uniform": adaptive["caption_stage_wall_s"] / uniform["caption_stage_wall_s"],
    }
