"""Which decoded frames get captioned: the per-frame cache, and `frames.select: adaptive`.

    decoded chunks -> [adaptive: embed every frame, cluster, keep one representative per cluster]
                   -> [skip the frames whose caption is in the per-frame cache]
                   -> caption_stream (batched captioning)
                   -> finish(): cached and new captions merged in time order, with spans

`FrameStage.wrap` transforms the decoded stream before the caption stage; `FrameStage.finish` completes each
video's captions after it. Both run where the caption stage runs (the local process or one Ray actor),
so a video's embedding and captioning use the same captioner.

Adaptive selection holds a video's decoded frames until its last chunk arrives (clustering needs
them all): about 0.45 MB per frame at 336 px, so 1.6 GB for an hour at 1 fps.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoqa.captioning.base import Captioner
from videoqa.captioning.cache import FrameCaptionCache, frame_key
from videoqa.captioning.selection import Selection, pixel_embedding, select_frames
from videoqa.types import Caption, FrameBatch, VideoCaptions, VideoFailure


def frame_cache_context(config, captioner: Captioner) -> dict[str, Any]:
    """What a frame's caption depends on besides the video and the frame time."""
    return captioner.identity() | {"prompt": config.captioner.prompt, "size": captioner.image_size}


def selection_key(config, captioner: Captioner) -> dict[str, Any]:
    """The adaptive settings the per-video cache key adds (nothing for uniform sampling)."""
    if config.frames.select != "adaptive":
        return {}
    settings = config.adaptive.model_dump()  # relevance llm also captions the clusters' children
    embedding = captioner.embedding_identity() if settings["embedding"] == "captioner" else {}
    return {"select": "adaptive", "adaptive": settings, "embedding": embedding or {"embedding": "pixel"}}


@dataclass
class _Pending:
    """A video's frames so far (adaptive selection waits for the last chunk)."""

    images: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    decoder: str = "decord"


@dataclass
class FrameStageStats:
    frames_decoded: int = 0
    frames_embedded: int = 0
    frames_from_frame_cache: int = 0
    embed_s: float = 0.0  # time embedding frames (inside the captioner for a vision tower)
    select_s: float = 0.0  # time clustering
    per_video: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))


class FrameStage:
    """One caption stage's frame choice (module docstring). `paths`: video_id -> file."""

    def __init__(self, config, captioner: Captioner, paths: dict[str, Path], cache_root: Path):
        self.config, self.captioner, self.paths = config, captioner, paths
        self.adaptive = config.frames.select == "adaptive"
        self.cache = FrameCaptionCache(cache_root, frame_cache_context(config, captioner))
        self.stats = FrameStageStats()
        self.reused: dict[str, list[Caption]] = {}  # captions from the per-frame cache, per video
        self.reused_s: dict[str, float] = defaultdict(float)  # what those captions cost when they were made
        self.selections: dict[str, Selection] = {}
        self.times: dict[str, list[float]] = {}
        self.embedding: str = "none"

    # ------------------------------------------------------------------ before captioning

    def wrap(self, stream: Iterable[FrameBatch | VideoFailure]) -> Iterator[FrameBatch | VideoFailure]:
        return self._skip_cached(self._select(stream) if self.adaptive else self._count(stream))

    def _count(self, stream: Iterable[FrameBatch | VideoFailure]) -> Iterator[FrameBatch | VideoFailure]:
        for item in stream:
            if isinstance(item, FrameBatch):
                self.stats.frames_decoded += len(item.timestamps)
                video = self.stats.per_video[item.video_id]
                video["frames_decoded"] = video.get("frames_decoded", 0) + len(item.timestamps)
            yield item

    def embed(self, images: np.ndarray) -> np.ndarray:
        """The captioner's vision tower where it has one (and `adaptive.embedding` allows), else pixels."""
        if self.config.adaptive.embedding == "captioner":
            self.captioner.load()
            features = self.captioner.embed(list(images))
            if features is not None:
                self.embedding = "captioner"
                return np.asarray(features, dtype=np.float32)
        self.embedding = "pixel"
        return pixel_embedding(images)

    def _select(self, stream: Iterable[FrameBatch | VideoFailure]) -> Iterator[FrameBatch | VideoFailure]:
        pending: dict[str, _Pending] = defaultdict(_Pending)
        settings = self.config.adaptive
        for item in self._count(stream):
            if isinstance(item, VideoFailure):
                pending.pop(item.video_id, None)
                yield item
                continue
            video = pending[item.video_id]
            if len(item.timestamps):
                started = time.perf_counter()
                video.embeddings.append(self.embed(item.images))
                elapsed = time.perf_counter() - started
                self.stats.embed_s += elapsed
                self.stats.frames_embedded += len(item.timestamps)
                record = self.stats.per_video[item.video_id]
                record["embed_s"] = record.get("embed_s", 0.0) + elapsed
                record["frames_embedded"] = record.get("frames_embedded", 0) + len(item.timestamps)
                video.images.extend(item.images)
                video.times.extend(item.timestamps)
                video.decoder = item.decoder
            if not item.final:
                continue
            del pending[item.video_id]
            started = time.perf_counter()
            embeddings = np.concatenate(video.embeddings) if video.embeddings else np.zeros((0, 1), np.float32)
            selection = select_frames(
                embeddings,
                video.times,
                item.duration,
                max_captions=settings.max_captions,
                explained=settings.explained,
                seed=settings.seed,
                branch=settings.branch,
            )
            self.stats.select_s += time.perf_counter() - started
            self.selections[item.video_id], self.times[item.video_id] = selection, video.times
            chosen = self._captioned(selection)
            images = np.stack([video.images[i] for i in chosen]) if chosen else item.images[:0]
            yield FrameBatch(item.video_id, images, [video.times[i] for i in chosen], item.duration, video.decoder)

    def _captioned(self, selection: Selection) -> list[int]:
        """The frames to caption: every cluster's representative; with `relevance: llm` also the
        representatives of the clusters' children (larger clusters first, a cluster's children
        all or none) while `max_captions` allows, so that answering can expand the relevant ones."""
        chosen = set(selection.representatives)
        expandable = []
        if self.config.adaptive.relevance == "llm":
            budget = self.config.adaptive.max_captions
            by_size = sorted(range(len(selection.clusters)), key=lambda i: -len(selection.clusters[i].members))
            for i in by_size:
                children = {child.representative for child in selection.clusters[i].children} - chosen
                if selection.clusters[i].children and len(chosen) + len(children) <= budget:
                    chosen |= children
                    expandable.append(i)
        selection.stats["expandable"] = sorted(expandable)
        return sorted(chosen)

    def _skip_cached(self, stream: Iterable[FrameBatch | VideoFailure]) -> Iterator[FrameBatch | VideoFailure]:
        known: dict[str, dict[str, tuple[str, float]]] = {}
        for item in stream:
            if isinstance(item, VideoFailure):
                self.reused.pop(item.video_id, None)
                self.reused_s.pop(item.video_id, None)
                yield item
                continue
            if item.video_id not in known:
                known[item.video_id] = self.cache.get(self.paths[item.video_id])
            cached = known[item.video_id]
            keep = [i for i, t in enumerate(item.timestamps) if frame_key(t) not in cached]
            reused = [Caption(t, cached[frame_key(t)][0]) for t in item.timestamps if frame_key(t) in cached]
            self.reused_s[item.video_id] += sum(cached[frame_key(c.t)][1] for c in reused)
            self.reused.setdefault(item.video_id, []).extend(reused)
            self.stats.frames_from_frame_cache += len(reused)
            if len(keep) < len(item.timestamps):
                item = FrameBatch(
                    item.video_id,
                    item.images[keep],
                    [item.timestamps[i] for i in keep],
                    item.duration,
                    item.decoder,
                    item.start,
                    item.final,
                )
            if item.final:
                known.pop(item.video_id, None)
            yield item

    # ------------------------------------------------------------------ after captioning

    def finish(self, captioned: VideoCaptions) -> VideoCaptions:
        """The video's captions: new ones (written to the per-frame cache) and reused ones, in time
        order; with adaptive selection each carries its cluster's spans and the record of the choice."""
        video_id = captioned.video_id
        new = captioned.captions
        self.cache.put(self.paths[video_id], new, captioned.caption_s / len(new) if new else 0.0)
        reused = self.reused.pop(video_id, [])
        captions = sorted([*new, *reused], key=lambda c: c.t)
        record = self.stats.per_video.get(video_id, {})
        # what this video's captions cost: made now, made by an earlier run (reused), and the embedding
        caption_s = captioned.caption_s + self.reused_s.pop(video_id, 0.0) + record.get("embed_s", 0.0)
        selection = self.selections.pop(video_id, None)
        if selection is None:
            return VideoCaptions(video_id, captions, captioned.duration, caption_s)
        times = self.times.pop(video_id)
        spans = {frame_key(times[c.representative]): c.spans for c in selection.clusters}
        top = set(spans)
        for i in selection.stats.get("expandable", []):
            for child in selection.clusters[i].children:
                spans.setdefault(frame_key(times[child.representative]), child.spans)
        captions = [Caption(c.t, c.text, spans.get(frame_key(c.t), ())) for c in captions]
        summary = {
            "frames_decoded": record.get("frames_decoded", 0),
            "frames_embedded": record.get("frames_embedded", 0),
            "frames_captioned": len(captioned.captions),  # by the captioner in this run (not cached)
            "captions": len(captions),
            "embedding": self.embedding,
            "embed_s": record.get("embed_s", 0.0),
            "k": len(selection.clusters),
            "top_level": len(top),  # captions of the clusters themselves; the rest are children's
            "expandable": selection.stats.get("expandable", []),  # clusters whose children are captioned
            "explained": round(selection.explained, 4),
            "times": [round(t, 4) for t in times],
            "clusters": [c.to_dict() for c in selection.clusters],
        }
        return VideoCaptions(video_id, captions, captioned.duration, caption_s, summary)

    def timing(self) -> dict[str, Any]:
        return {
            "frames_decoded": self.stats.frames_decoded,
            "frames_embedded": self.stats.frames_embedded,
            "frames_from_frame_cache": self.stats.frames_from_frame_cache,
            "embed_s": self.stats.embed_s,
            "select_s": self.stats.select_s,
        }


def video_counts(vc: VideoCaptions, decoded_now: int | None = None) -> dict[str, int]:
    """Per video: frames decoded, embedded and captioned (from the selection record when adaptive)."""
    if vc.selection is not None:
        return {
            "frames_decoded": vc.selection["frames_decoded"],
            "frames_embedded": vc.selection["frames_embedded"],
            "frames_captioned": vc.selection["captions"],
        }
    n = len(vc.captions)
    return {"frames_decoded": n if decoded_now is None else decoded_now, "frames_embedded": 0, "frames_captioned": n}
