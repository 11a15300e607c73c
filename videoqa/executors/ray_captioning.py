"""The caption stage on a pool of Ray actors.

Each actor holds one captioner (one GPU on a GPU cluster, `captioner_num_cpus` logical CPUs
otherwise) and runs the local stage, `videoqa.captioning.videos.caption_videos`, on its share of
the videos: cache lookup, decoding (inside the actor), pooled caption batches, cache writes. So
the cache keys and the captions are the local executor's. The driver hands out shares of
`videos_per_task` videos, collects each share's result as soon as it is done and reports its
failures through `on_failure` (the run's durable failures.jsonl) right away.

Plain Ray actors rather than Ray Data's `map_batches`: a share's result (captions, failures,
timings) is one Python object that must reach the driver as soon as it exists, and nothing needs
a shuffle or a dataset; an actor that dies is restarted by Ray and its unfinished share retried
(videos it had finished come from the shared cache then).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from videoqa.captioning.base import Captioner
from videoqa.captioning.videos import CaptionResult, caption_videos
from videoqa.executors.ray_cluster import actor_options, cluster_has_gpus, enter_driver_directory
from videoqa.registry import CAPTIONERS
from videoqa.types import VideoFailure

# timing entries of a share that do not add up over shares (every other number does)
MERGED_OTHERWISE = {"caption_stage_wall_s", "caption_batch_size", "captioner_loaded", "per_video"}


class CaptionerWorker:
    """One captioner in one actor process; `caption` runs the local stage on a share of videos."""

    def __init__(self, config, cwd: str):
        enter_driver_directory(cwd)
        self.config = config
        self.captioner = CAPTIONERS.get(config.captioner.type)(config.captioner)  # kept loaded between shares

    def caption(
        self, videos: list[tuple[str, Path]], known_failures: dict[str, VideoFailure], stage_options: dict
    ) -> tuple[CaptionResult, list[VideoFailure]]:
        """The share's result, and the failures the stage reported as new (for the driver's `on_failure`)."""
        new_failures: list[VideoFailure] = []
        result = caption_videos(
            self.config,
            self.captioner,
            videos,
            known_failures,
            new_failures.append,
            progress=False,
            **stage_options,
        )
        return result, new_failures

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.captioner.close()


def captioner_gpus(config) -> float:
    if config.ray.captioner_num_gpus is not None:
        return config.ray.captioner_num_gpus
    return 1.0 if not config.captioner.device.startswith("cpu") and cluster_has_gpus() else 0.0


def start_captioners(config, count: int) -> list:
    import ray

    worker = ray.remote(CaptionerWorker)
    options = dict(
        num_cpus=config.ray.captioner_num_cpus, num_gpus=captioner_gpus(config), max_restarts=config.ray.max_restarts
    )
    # unique per attempt: a resumed run must not wait for the killed driver's actors to release their names
    prefix = f"{config.run_id}/{config.captioner.name}/captioner-{uuid.uuid4().hex[:8]}"
    return [
        worker.options(**actor_options(f"{prefix}-{i}", **options)).remote(config, os.getcwd()) for i in range(count)
    ]


def merge_results(results: Sequence[CaptionResult], videos: Sequence[tuple[str, Path]], wall_s: float) -> dict:
    """One timing record over every share, as the local stage would report it for the whole run:
    counts and seconds add up, the stage's wall time is the driver's."""
    order = {vid: i for i, (vid, _) in enumerate(videos)}
    per_video = {vid: t for r in results for vid, t in r.timing["per_video"].items()}
    timing = {name: sum(r.timing[name] for r in results) for name in results[0].timing if name not in MERGED_OTHERWISE}
    timing |= {
        "caption_stage_wall_s": wall_s,
        "caption_batch_size": min(r.timing["caption_batch_size"] for r in results),  # after any OOM backoff
        "captioner_loaded": any(r.timing["captioner_loaded"] for r in results),
        "per_video": dict(sorted(per_video.items(), key=lambda item: order[item[0]])),
    }
    return timing


def caption_on_ray(
    config,
    captioner: Captioner,
    videos: Sequence[tuple[str, Path]],
    known_failures: dict[str, VideoFailure] | None = None,
    on_failure: Callable[[VideoFailure], None] | None = None,
    progress: bool = True,
    **stage_options,
) -> CaptionResult:
    """The executor's caption stage: same arguments and result as the local `caption_videos`."""
    import ray

    if not videos:  # nothing to hand out: the local stage reports the empty result
        return caption_videos(config, captioner, videos, known_failures, on_failure, progress, **stage_options)
    known_failures = known_failures or {}
    size = config.ray.videos_per_task
    shares = [list(videos[i : i + size]) for i in range(0, len(videos), size)]
    started = time.perf_counter()
    results: list[CaptionResult] = []
    actors = start_captioners(config, min(config.ray.captioners, len(shares)))
    try:
        pending = {}  # object ref -> the actor running it
        idle = list(actors)
        with tqdm(total=len(videos), desc="caption (ray)", unit="video", disable=not progress) as bar:
            while shares or pending:
                while shares and idle:
                    share, actor = shares.pop(0), idle.pop()
                    share_failures = {vid: known_failures[vid] for vid, _ in share if vid in known_failures}
                    pending[actor.caption.remote(share, share_failures, stage_options)] = actor
                done, _ = ray.wait(list(pending), num_returns=1)
                idle.append(pending.pop(done[0]))
                result, new_failures = ray.get(done[0])
                results.append(result)
                for failure in new_failures if on_failure is not None else ():
                    on_failure(failure)
                bar.update(len(result.captions) + len(result.failures))
                bar.set_postfix(failed=sum(len(r.failures) for r in results))
        ray.get([actor.close.remote() for actor in actors])
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)  # frees its GPU / memory before an LLM engine starts
    order = {vid: i for i, (vid, _) in enumerate(videos)}
    captions = {vid: vc for r in results for vid, vc in r.captions.items()}
    failures = {vid: f for r in results for vid, f in r.failures.items()}
    return CaptionResult(
        captions=dict(sorted(captions.items(), key=lambda item: order[item[0]])),
        failures=dict(sorted(failures.items(), key=lambda item: order[item[0]])),
        timing=merge_results(results, videos, time.perf_counter() - started),
        identity=captioner.identity(),
        parameters=captioner.num_parameters(),
        retried_videos=[vid for r in results for vid in r.retried_videos],
    )
