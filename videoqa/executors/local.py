"""The local executor: every stage in this process, on this machine's devices."""

from __future__ import annotations

from videoqa.answering.llm import load_backend
from videoqa.captioning.videos import caption_videos


class LocalExecutor:
    name = "local"

    caption_videos = staticmethod(caption_videos)
    load_backend = staticmethod(load_backend)

    def describe(self) -> dict:
        """What the manifest records about where the run ran."""
        return {"executor": self.name}


def make_executor(config) -> LocalExecutor:
    return LocalExecutor()
