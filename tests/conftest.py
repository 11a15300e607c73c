"""Shared fixtures: tiny models and generated data, built once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_CLIP = SHARED / "videos" / "flipping_a_pancake.mkv"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny SeR captioner dir, tiny Qwen2 LLM dir), random weights, HF format."""
    from videoqa.fixtures.demo import build_demo_models

    return build_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are dominated by per-op overhead; one thread avoids spin-waiting on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_images(n: int, seed: int = 0, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
