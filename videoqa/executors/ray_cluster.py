"""Joining a Ray cluster, and what every actor of a run needs to see the driver's world.

Actors run the same code as the local executor, so they must see the same files at the same
paths: the driver's working directory (relative paths in the config: output_dir, data_root,
model directories) is entered by each actor, which assumes shared storage on a multi-node
cluster (docs/scale-out.md). Settings the libraries read from the environment (VLLM_*, HF_*, ...)
travel with the job, secrets excepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from videoqa_base.errors import UserError

# Environment variables the stages read that actors on other nodes must see too.
FORWARDED_PREFIXES = ("VLLM_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "VIDEOQA_")
SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
NAMESPACE = "videoqa"  # actors are named per run in this namespace: `ray list actors` shows what runs


def forwarded_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name.startswith(FORWARDED_PREFIXES) and not any(marker in name for marker in SECRET_MARKERS)
    }


def ray_token_available() -> bool:
    """Whether this machine holds a Ray cluster token where Ray looks for one: RAY_AUTH_TOKEN, the
    file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token (`ray start` writes it there)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    try:
        return bool(path.read_text().strip())
    except OSError:  # no file, or not readable: no token
        return False


def send_token_if_available(address: str | None) -> bool:
    """Turn on Ray's token authentication for a HOST:PORT address when a token is at hand.

    Ray 2.60 finds and sends the token by itself only for a cluster it discovers (`auto`); for an
    explicit address it sends one only when RAY_AUTH_MODE=token is set (ray/_private/worker.py), and
    `ray start` enables token auth by default. A user's own RAY_AUTH_MODE is left as it is."""
    if address in (None, "auto", "local") or "RAY_AUTH_MODE" in os.environ or not ray_token_available():
        return False
    os.environ["RAY_AUTH_MODE"] = "token"  # read by Ray's C++ config: refreshed below, and by child processes
    from ray._raylet import Config  # type: ignore[attr-defined]  # compiled, without stubs

    Config.initialize("")  # Ray caches its config at import: what ray.init checks must see the new mode
    return True


def connect(ray_config) -> None:
    """Join the configured cluster, or start a Ray instance in this process; once per process."""
    import ray

    if ray.is_initialized():
        return
    sends_token = send_token_if_available(ray_config.address)
    # LD_PRELOAD cleared: a vLLM engine that ran in this process before (the bench's local side)
    # leaves LD_PRELOAD=<torch's libgomp> here, and actors started with it captioned ~12x slower on
    # this project's CPU; vLLM in an LLM replica sets its own for its engine processes.
    kwargs: dict[str, Any] = dict(
        namespace=NAMESPACE,
        runtime_env={"env_vars": forwarded_environment() | {"LD_PRELOAD": ""}},
        log_to_driver=False,  # worker output stays in the Ray session's logs, not on the terminal
    )
    if ray_config.address is None:
        # "local": a new instance even when `ray start` runs on this node (ray.init() would join that)
        kwargs |= dict(address="local", num_cpus=ray_config.num_cpus, include_dashboard=False)
    else:
        kwargs["address"] = ray_config.address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        if isinstance(exc.__cause__, RuntimeError) and "InvalidAuthToken" in str(exc.__cause__):
            said = "refused the token found on this machine" if sends_token else "wants its authentication token"
            raise UserError(
                f"ray.address {ray_config.address!r}: the cluster {said} (`ray start` enables token auth): put the "
                "cluster's token (`ray get-auth-token` on its head node) in ~/.ray/auth_token or RAY_AUTH_TOKEN "
                "here, or join with --ray-address auto from a node of the cluster"
            ) from None
        raise UserError(f"ray.address {ray_config.address!r}: no Ray cluster there ({exc})") from None


def cluster_description() -> dict[str, Any]:
    """For the manifest: Ray's version and the cluster's resources (when connected)."""
    import ray

    info: dict[str, Any] = {"ray_version": ray.__version__}
    if ray.is_initialized():
        resources = ray.cluster_resources()
        info["ray_cluster"] = {
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "cpus": resources.get("CPU", 0.0),
            "gpus": resources.get("GPU", 0.0),
            "memory_gib": round(resources.get("memory", 0.0) / 2**30, 1),
        }
    return info


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0.0) > 0


def actor_options(name: str, num_cpus: float, num_gpus: float, max_restarts: int) -> dict[str, Any]:
    """A named, restartable actor: a call it was running when it died is retried on its restart."""
    return dict(
        name=name,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_restarts=max_restarts,
        max_task_retries=max_restarts,
    )


def enter_driver_directory(cwd: str) -> None:
    """Inside an actor: resolve relative paths as the driver does (shared storage on other nodes)."""
    if Path(cwd).is_dir():
        os.chdir(cwd)
