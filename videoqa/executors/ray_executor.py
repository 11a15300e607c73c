"""The Ray executor (`executor: ray`, `--executor ray [--ray-address auto|HOST:PORT]`).

The run object decides what needs doing, exactly as with the local executor; this executor runs
it on a Ray cluster:
  - captioning: a pool of captioner actors, each running the local caption stage on its share of
    the videos (videoqa.executors.ray_captioning);
  - answering: the LLM as `ray.concurrency` replicas in actors, each the local backend
    (videoqa.executors.ray_llm).
Predictions, failures and the run directory stay in the driver, so durability and resume are
the local executor's. The manifest also records Ray's version and the cluster's resources.
"""

from __future__ import annotations

from videoqa.executors.ray_captioning import caption_on_ray
from videoqa.executors.ray_cluster import cluster_description, connect
from videoqa.executors.ray_llm import RayLLMBackend


class RayExecutor:
    name = "ray"

    def __init__(self, config):
        self.ray_config = config.ray
        self.run_id = config.run_id

    def caption_videos(self, config, captioner, videos, known_failures=None, on_failure=None, progress=True, **options):
        connect(self.ray_config)
        return caption_on_ray(config, captioner, videos, known_failures, on_failure, progress, **options)

    def load_backend(self, llm_config) -> RayLLMBackend:
        connect(self.ray_config)
        return RayLLMBackend(llm_config, self.ray_config, self.run_id)

    def describe(self) -> dict:
        """What the manifest records about where the run ran."""
        return {"executor": self.name, "ray_address": self.ray_config.address} | cluster_description()


def make_executor(config) -> RayExecutor:
    return RayExecutor(config)  # which answerers run here is the answerer's to say (Answerer.executors)
