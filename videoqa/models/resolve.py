"""Find a model's files on this machine without touching the network, and name their revision."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from videoqa_base.errors import MissingModelError

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ResolvedModel:
    ref: str  # what the config said: an HF id or a directory
    path: Path  # local directory holding config.json, tokenizer and weights
    revision: str  # HF commit hash, or "sha256:<hex>" fingerprint of a local directory
    source: str  # "hf-cache" | "local-dir"


def looks_like_hf_id(ref: str) -> bool:
    return ref.count("/") == 1 and not ref.startswith(("/", ".", "~")) and not Path(ref).exists()


def resolve_model(
    ref: str, revision: str | None = None, what: str = "LLM", cache_dir: str | Path | None = None
) -> ResolvedModel:
    """Find `ref` on this machine without touching the network, or raise MissingModelError.

    An HF id must already be in the local Hugging Face cache (we never download); a directory
    must exist and contain a config.json and weights. `cache_dir` overrides the HF cache location.
    """
    if looks_like_hf_id(ref):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot = Path(snapshot_download(ref, revision=revision, cache_dir=cache_dir, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
            raise MissingModelError(what, ref) from None
        if not _has_model_files(snapshot):
            raise MissingModelError(what, ref)
        # Cache layout: models--org--name/snapshots/<commit hash>/
        return ResolvedModel(ref, snapshot, snapshot.name, "hf-cache")
    path = Path(ref).expanduser()
    if not path.is_dir() or not _has_model_files(path):
        raise MissingModelError(what, ref)
    path = path.resolve()
    rev = path.name if path.parent.name == "snapshots" and _COMMIT_HASH.match(path.name) else fingerprint_dir(path)
    return ResolvedModel(ref, path, rev, "local-dir")


def _has_model_files(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        p.name.endswith(_WEIGHT_SUFFIXES) for p in path.iterdir() if p.is_file()
    )


def fingerprint_dir(path: Path, sample_bytes: int = 1 << 20) -> str:
    """A cheap content fingerprint of a local model directory.

    Hashes config.json and the tokenizer files fully, and each weight file's name, size and its
    first and last MiB - reading a 30 GB checkpoint end to end for every run is too slow, and
    changed weights almost always change those bytes too (fresh training, different shards).
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        name = file.name
        if name.endswith(_WEIGHT_SUFFIXES):
            size = file.stat().st_size
            digest.update(f"{name}:{size}".encode())
            with file.open("rb") as fh:
                digest.update(fh.read(sample_bytes))
                if size > sample_bytes:
                    fh.seek(max(size - sample_bytes, sample_bytes))
                    digest.update(fh.read(sample_bytes))
        elif name.endswith((".json", ".jinja", ".txt", ".model")):
            digest.update(name.encode())
            digest.update(file.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]


def model_config_summary(path: Path) -> dict[str, object]:
    """The few config.json fields worth recording in a manifest."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    keys = ("model_type", "architectures", "num_hidden_layers", "hidden_size", "vocab_size")
    return {k: cfg[k] for k in keys if k in cfg}
