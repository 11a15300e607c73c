"""Shared fixtures: tiny models and generated data, built once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_CLIP = SHARED / "videos" / "flipping_a_pancake.mkv"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny SeR captioner dir, tiny Qwen2 LLM dir), random weights, HF format."""
    from videoqa.demo import build_demo_models

    return build_demo_models(tmp_path_factory.mktemp("models"))
