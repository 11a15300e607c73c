"""Shared fixtures: tiny models and generated data, built once per test session."""

from __future__ import annotations

import json
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
def dataset(tmp_path_factory) -> Path:
    """EgoSchema layout: three generated videos, one garbage file, one missing video; five questions."""
    from videoqa.fixtures.demo import build_demo_dataset

    root = build_demo_dataset(tmp_path_factory.mktemp("ego") / "egoschema", shared_clip=None)
    questions = json.loads((root / "questions.json").read_text())
    answers = json.loads((root / "subset_answers.json").read_text())
    for uid in ("broken-video", "missing-video"):
        questions.append(dict(questions[0], q_uid=uid))
        answers[uid] = 1
    (root / "videos" / "broken-video.mp4").write_bytes(os.urandom(50_000))
    (root / "questions.json").write_text(json.dumps(questions))
    (root / "subset_answers.json").write_text(json.dumps(answers))
    return root


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
