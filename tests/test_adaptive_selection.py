"""Adaptive frame selection (`frames.select: adaptive`): clustering on a generated video with known
scenes, the caption budget, seeding, the per-frame caption cache shared with uniform runs, the
adaptive stage through `caption_videos` (local) with the tiny SeR's own ViT, and the same choice on
a second run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videoqa.captioning.cache import FrameCaptionCache, frame_key
from videoqa.captioning.selection import frame_spans, kmeans, pixel_embedding, select_frames
from videoqa.config import AdaptiveConfig, CaptionerConfig, DatasetConfig, FramesConfig, LLMConfig, RunConfig
from videoqa.fixtures.synthetic_video import SCENE_PATTERNS, make_scene_video
from videoqa.frames import decode_frames
from videoqa.types import Caption


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory):
    """3 scenes, each shown twice for 8 s, at 2 fps: (path, ground truth)."""
    return make_scene_video(
        tmp_path_factory.mktemp("scenes") / "scenes.mp4", scenes=3, repeats=2, seconds_each=8, fps=2, width=160
    )


def decoded(path: Path, size: int = 64) -> tuple[np.ndarray, list[float], float]:
    images, times, duration = [], [], 0.0
    for batch in decode_frames(path, fps=1.0, size=size):
        images.extend(batch.images)
        times.extend(batch.timestamps)
        duration = batch.duration
    return np.stack(images), times, duration


def scene_at(truth, t: float) -> int:
    return next(s.scene for s in truth if s.start <= t < s.end)


def test_clustering_finds_the_scenes_of_a_generated_video(scene_video):
    path, truth = scene_video
    assert [s.end for s in truth] == [8.0 * i for i in range(1, 7)] and len({s.scene for s in truth}) == 3
    images, times, duration = decoded(path)
    selection = select_frames(pixel_embedding(images), times, duration, max_captions=16)
    assert len(selection.clusters) == 3 and selection.explained >= 0.9
    # each cluster is one scene, every scene has a representative, and the spans are the scene's showings
    for cluster in selection.clusters:
        scenes = {scene_at(truth, times[m]) for m in cluster.members}
        assert len(scenes) == 1
        showings = [(s.start, s.end) for s in truth if s.scene in scenes]
        assert list(cluster.spans) == showings
    assert sorted(scene_at(truth, times[r]) for r in selection.representatives) == [0, 1, 2]
    # clusters in time order of their first span
    starts = [c.spans[0][0] for c in selection.clusters]
    assert starts == sorted(starts)


def test_the_caption_budget_is_respected_and_the_choice_is_seeded():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 48))
    x = np.repeat(centres, 10, axis=0) + 0.01 * rng.normal(size=(200, 48))
    times = [i + 0.5 for i in range(200)]
    selection = select_frames(x, times, 200.0, max_captions=5, seed=3, branch=2)
    assert len(selection.clusters) == 5 and all(len(c.children) <= 2 for c in selection.clusters)
    assert sorted(m for c in selection.clusters for m in c.members) == list(range(200))
    again = select_frames(x, times, 200.0, max_captions=5, seed=3, branch=2)
    assert [c.to_dict() for c in again.clusters] == [c.to_dict() for c in selection.clusters]
    # with room, k = the 20 groups once they explain what is asked; at 0.9 a few groups share a cluster
    assert len(select_frames(x, times, 200.0, max_captions=64, explained=0.99).clusters) == 20
    assert 15 <= len(select_frames(x, times, 200.0, max_captions=64).clusters) < 20
    # nothing varies: one cluster; one frame: one cluster
    assert len(select_frames(np.ones((10, 4)), times[:10], 10.0, max_captions=8).clusters) == 1
    assert len(select_frames(x[:1], times[:1], 1.0, max_captions=8).clusters) == 1
    with pytest.raises(ValueError, match="max_captions"):
        select_frames(x, times, 200.0, max_captions=0)


def test_kmeans_separates_blobs_and_spans_merge_consecutive_frames():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (30, 2))])
    labels, centres, inertia = kmeans(x, 2, seed=0)
    assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1 and labels[0] != labels[-1]
    assert inertia < 5.0 and centres.shape == (2, 2)
    assert frame_spans([0.5, 1.5, 2.5, 3.5], [0, 1, 3], 1.0, 4.0) == ((0.0, 2.0), (3.0, 4.0))


def test_pixel_embedding_ignores_brightness_and_sees_content():
    frame = np.random.default_rng(0).integers(0, 200, (48, 64, 3), dtype=np.uint8)
    brighter = (frame.astype(int) + 40).astype(np.uint8)
    other = np.random.default_rng(1).integers(0, 200, (48, 64, 3), dtype=np.uint8)
    e = pixel_embedding(np.stack([frame, brighter, other]))
    assert e.shape == (3, 16 * 16 * 3)
    assert np.linalg.norm(e[0] - e[1]) < 0.1 * np.linalg.norm(e[0] - e[2])


def test_frame_cache_round_trip_and_torn_line(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 1000)
    cache = FrameCaptionCache(tmp_path / "frames", {"model": "m", "prompt": "p", "size": 64})
    assert cache.get(video) == {}
    cache.put(video, [Caption(0.5, "a cat"), Caption(1.5, "a dog")], 2.0)
    cache.put(video, [Caption(7.5, "a bird")])
    entry = next((tmp_path / "frames").rglob("*.jsonl"))
    with entry.open("a") as f:
        f.write('{"t": 9.5, "te')  # a kill mid-write
    assert cache.get(video) == {
        frame_key(0.5): ("a cat", 2.0),
        frame_key(1.5): ("a dog", 2.0),
        frame_key(7.5): ("a bird", 0.0),
    }
    assert FrameCaptionCache(tmp_path / "frames", {"model": "m", "prompt": "q", "size": 64}).get(video) == {}


def stage_config(root: Path, models: tuple[Path, Path], select: str, **adaptive) -> RunConfig:
    return RunConfig(
        dataset=DatasetConfig(name="d", type="jsonl", data_root=str(root)),
        captioner=CaptionerConfig(name="tiny-ser", type="ser", model=str(models[0]), max_new_tokens=4, batch_size=4),
        llm=LLMConfig(name="unused", model="unused"),
        frames=FramesConfig(fps=1.0, select=select),
        adaptive=AdaptiveConfig(**adaptive),
        output_dir=str(root / "outputs"),
    )


def test_adaptive_stage_shares_frame_captions_with_uniform_and_repeats_its_choice(
    scene_video, tiny_models, tmp_path, one_torch_thread
):
    from videoqa.captioning.videos import caption_videos
    from videoqa.registry import CAPTIONERS

    path, truth = scene_video
    videos = [("scenes", path)]
    adaptive = stage_config(tmp_path, tiny_models, "adaptive", max_captions=4)
    captioner = CAPTIONERS.get("ser")(adaptive.captioner)
    first = caption_videos(adaptive, captioner, videos, progress=False)
    captions = first.captions["scenes"]
    record = captions.selection
    assert record["embedding"] == "captioner"  # the tiny SeR's own ViT
    assert record["frames_decoded"] == record["frames_embedded"] == 48
    assert 1 <= len(captions.captions) == record["captions"] == record["k"] <= 4  # the budget
    assert first.timing["frames_captioned"] == len(captions.captions) and first.timing["frames_embedded"] == 48
    assert first.timing["per_video"]["scenes"]["frames_embedded"] == 48
    assert first.timing["per_video"]["scenes"]["frames_captioned"] == len(captions.captions)
    # every caption stands for its cluster's spans, which cover the video once, in time order
    spans = sorted(s for c in captions.captions for s in c.spans)
    assert spans[0][0] == 0.0 and spans[-1][1] == 48.0
    assert sum(b - a for a, b in spans) == pytest.approx(48.0)
    assert [c.t for c in captions.captions] == sorted(c.t for c in captions.captions)

    # the same run again (a resume): the per-video cache gives the same choice, no model work
    again = caption_videos(adaptive, CAPTIONERS.get("ser")(adaptive.captioner), videos, progress=False)
    assert again.captions["scenes"] == captions and again.timing["videos_from_cache"] == 1
    assert not again.timing["captioner_loaded"]

    # uniform after adaptive: the frames adaptive captioned come from the per-frame cache
    uniform = stage_config(tmp_path, tiny_models, "uniform")
    full = caption_videos(uniform, CAPTIONERS.get("ser")(uniform.captioner), videos, progress=False)
    texts = {c.t: c.text for c in full.captions["scenes"].captions}
    assert len(texts) == 48 and full.timing["frames_from_frame_cache"] == len(captions.captions)
    assert full.timing["frames_captioned"] == 48 - len(captions.captions)
    assert all(texts[c.t] == c.text for c in captions.captions)
    assert full.timing["per_video"]["scenes"]["frames_embedded"] == 0

    # another adaptive setting (pixel embedding) is another per-video entry; its frames are all cached now
    pixels = stage_config(tmp_path, tiny_models, "adaptive", max_captions=4, embedding="pixel")
    other = caption_videos(pixels, CAPTIONERS.get("ser")(pixels.captioner), videos, progress=False)
    assert other.captions["scenes"].selection["embedding"] == "pixel"
    assert other.timing["frames_captioned"] == 0 and other.timing["videos_from_cache"] == 0
    represented = {scene_at(truth, c.t) for c in other.captions["scenes"].captions}
    assert represented == {0, 1, 2}


def test_ser_embedding_options(tiny_models, one_torch_thread):
    from videoqa.registry import CAPTIONERS
    from videoqa_base.errors import UserError

    config = CaptionerConfig(name="tiny-ser", type="ser", model=str(tiny_models[0]))
    captioner = CAPTIONERS.get("ser")(config)
    assert captioner.embedding_identity() == {"embedding": "vit", "embed_size": 16, "embed_layer": 3}
    frames = [np.full((64, 80, 3), v, dtype=np.uint8) for v in (0, 128, 128)]
    features = captioner.embed(frames)
    assert features.shape == (3, 32) and np.allclose(features[1], features[2])
    assert not np.allclose(features[0], features[1])
    with pytest.raises(UserError, match="embed_size"):
        CAPTIONERS.get("ser")(config.model_copy(update={"options": {"embed_size": 4}}))
    assert len(SCENE_PATTERNS) >= 4


def test_adaptive_on_ray_embeds_and_captions_in_one_actor_like_the_local_stage(scene_video, tiny_models, tmp_path):
    """The Ray executor's actors run the same caption stage: the same selection and captions as the
    local executor, each video embedded and captioned by the actor that decoded it."""
    ray = pytest.importorskip("ray")
    from videoqa.captioning.videos import caption_videos
    from videoqa.registry import CAPTIONERS, get_executor

    path, _ = scene_video
    other, _ = make_scene_video(tmp_path / "other.mp4", scenes=2, repeats=1, seconds_each=6, fps=2, width=160, seed=1)
    videos = [("scenes", path), ("other", other)]
    local = stage_config(tmp_path / "local", tiny_models, "adaptive", max_captions=4)
    on_ray = local.model_copy(
        update={
            "executor": "ray",
            "output_dir": str(tmp_path / "ray" / "outputs"),
            "ray": local.ray.model_copy(update={"num_cpus": 2, "captioners": 2, "videos_per_task": 1}),
        }
    )
    try:
        executor = get_executor(on_ray)
        remote = executor.caption_videos(on_ray, CAPTIONERS.get("ser")(on_ray.captioner), videos, progress=False)
    finally:
        ray.shutdown()
    here = caption_videos(local, CAPTIONERS.get("ser")(local.captioner), videos, progress=False)
    assert {vid: vc.captions for vid, vc in remote.captions.items()} == {
        vid: vc.captions for vid, vc in here.captions.items()
    }
    assert remote.captions["scenes"].selection["clusters"] == here.captions["scenes"].selection["clusters"]
    assert remote.timing["frames_embedded"] == here.timing["frames_embedded"] == 48 + 12
    assert remote.timing["per_video"]["other"]["frames_embedded"] == 12
