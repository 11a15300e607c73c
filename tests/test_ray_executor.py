"""The Ray executor: the same run as the local executor, on a Ray cluster, with identical results.

The end-to-end tests start a real cluster (`ray start --head` on 127.0.0.1 in a subprocess) and run
`videoqa run --ray-address HOST:PORT` against it with two captioner actors, the tiny demo models
and the real vLLM engine, beside a local-executor run of the same inputs. The Ray run is hit by
both faults: its driver is killed with SIGKILL mid-captioning and resumed with the same run id,
and during the resume a captioner actor's process is killed while it captions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from videoqa.cli.main import build_parser, overrides_from_args
from videoqa.config import load_run_config
from videoqa.executors.ray_llm import split

ray = pytest.importorskip("ray")  # the `ray` extra (installed by scripts/install.sh)

RAY_CPUS = 6  # logical CPUs: two captioner actors and an LLM replica never wait for each other


def videoqa(*args: str, **popen) -> subprocess.Popen:
    # RAY_AUTH_MODE=token: `ray start` enables token authentication, and a driver that joins by
    # address sends the token (`ray start` keeps it in ~/.ray/auth_token)
    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_AUTH_MODE": "token"}
    return subprocess.Popen(
        [sys.executable, "-m", "videoqa.cli.main", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if found := predicate():
            return found
        time.sleep(every)
    return None


def busy_captioner_pid() -> int | None:
    """The process of a captioner actor that is inside a `caption` call right now (its title says so)."""
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        pid, _, title = line.strip().partition(" ")
        if "CaptionerWorker.caption" in title:
            return int(pid)
    return None


@pytest.fixture(scope="module")
def cluster():
    """A real single-node cluster, as `ray start --head` makes it; `ray stop` afterwards."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [
            ray_cli,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            str(RAY_CPUS),
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)


def run_args(dataset: Path, models, out: Path, run_id: str, *extra: str) -> list[str]:
    captioner, llm = models
    return [
        "run",
        "--dataset",
        "egoschema",
        "--data-root",
        str(dataset),
        "--captioner",
        str(captioner),
        "--llm",
        str(llm),
        "--output-dir",
        str(out),
        "--run-id",
        run_id,
        "--quiet",
        "--set",
        "captioner.max_new_tokens=12",
        "--set",
        "llm.engine_kwargs={enforce_eager: true}",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs(dataset, tiny_models, cluster, tmp_path_factory):
    """(local run dir, Ray run dir, what happened to the Ray run): both runs side by side."""
    local_out, ray_out = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("ray")
    local = videoqa(*run_args(dataset, tiny_models, local_out, "ref"))
    ray_args = run_args(
        dataset,
        tiny_models,
        ray_out,
        "faults",
        "--ray-address",
        cluster,
        "--set",
        "ray.captioners=2",
        "--set",
        "ray.videos_per_task=1",
    )
    events = {}

    # 1) the driver, killed with SIGKILL once the first video's captions reached the (shared) cache
    cache = ray_out / "cache" / "captions"
    driver = videoqa(*ray_args, start_new_session=True)
    cached = wait_for(lambda: cache.is_dir() and any(cache.rglob("*.json")), driver)
    events["driver_killed_mid_captioning"] = bool(cached)
    assert driver.poll() is None, driver.communicate()[0][-3000:]
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    events["videos_cached_before_resume"] = len(list(cache.rglob("*.json")))

    # 2) resumed with the same run id; a captioner actor's process is killed inside a caption call
    resumed = videoqa(*ray_args)
    killed = []

    def kill_a_busy_captioner():
        if (pid := wait_for(busy_captioner_pid, resumed, timeout=300, every=0.02)) is not None:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_a_busy_captioner)
    killer.start()
    log = finish(resumed)
    killer.join()
    events["captioner_killed"] = killed
    finish(local)
    return next(local_out.glob("egoschema/*/ref")), next(ray_out.glob("egoschema/*/faults")), events, log


@pytest.mark.slow
def test_ray_run_equals_the_local_run(runs):
    local_dir, ray_dir, _, _ = runs
    fields = lambda p: (p["pred"], p["status"], p["raw"])  # noqa: E731
    want = {p["qid"]: fields(p) for p in read_jsonl(local_dir / "predictions.jsonl")}
    got = {p["qid"]: fields(p) for p in read_jsonl(ray_dir / "predictions.jsonl")}
    assert got == want and len(want) == 5
    assert sorted(status for _, status, _ in got.values()) == ["ok"] * 3 + ["video_failed"] * 2
    captions = lambda d: {c["video_id"]: c["captions"] for c in read_jsonl(d / "captions.jsonl")}  # noqa: E731
    assert captions(ray_dir) == captions(local_dir) and len(captions(local_dir)) == 3
    failures = lambda d: sorted((f["video_id"], f["reason"]) for f in read_jsonl(d / "failures.jsonl"))  # noqa: E731
    assert failures(ray_dir) == failures(local_dir)


@pytest.mark.slow
def test_killed_driver_and_killed_actor_end_with_one_record_per_question(runs):
    _, ray_dir, events, _ = runs
    assert events["driver_killed_mid_captioning"]
    assert 1 <= events["videos_cached_before_resume"] < 3  # the resume had videos left to caption
    assert len(events["captioner_killed"]) == 1  # ... and lost an actor in the middle of one
    predictions = read_jsonl(ray_dir / "predictions.jsonl")
    assert len(predictions) == 5 and len({p["qid"] for p in predictions}) == 5
    metrics = json.loads((ray_dir / "metrics.json").read_text())
    assert metrics["questions"] == 5 and metrics["timing"]["frames_captioned"] > 0


@pytest.mark.slow
def test_manifest_records_ray_and_the_cluster(runs, cluster):
    _, ray_dir, _, _ = runs
    environment = json.loads((ray_dir / "manifest.json").read_text())["environment"]
    assert environment["executor"] == "ray" and environment["ray_address"] == cluster
    assert environment["ray_version"] == ray.__version__
    assert environment["ray_cluster"]["cpus"] == RAY_CPUS and environment["ray_cluster"]["nodes"] == 1
    config = (ray_dir / "config.yaml").read_text()
    assert "executor: ray" in config and f"address: {cluster}" in config


def test_caption_stage_on_an_in_process_instance_matches_the_local_stage_and_shares_its_cache(
    dataset, tiny_models, tmp_path
):
    """Two captioner actors on a Ray instance started in this process (no address): same captions,
    failures streamed to `on_failure`, and cache entries the local stage then reads."""
    from videoqa.captioning.videos import caption_videos
    from videoqa.registry import CAPTIONERS, get_executor
    from videoqa.run import VideoQA, unique_videos

    def config(out: Path, executor: str):
        overrides = [
            f"dataset.data_root={dataset}",
            f"output_dir={out}",
            f"executor={executor}",
            "run_id=stage",
            "captioner.max_new_tokens=12",
            f"ray.num_cpus={RAY_CPUS}",
            "ray.videos_per_task=2",
        ]
        return load_run_config(
            dataset="egoschema", captioner=str(tiny_models[0]), llm=str(tiny_models[1]), overrides=overrides
        )

    ray_config = config(tmp_path / "ray", "ray")
    videos = unique_videos(VideoQA(ray_config, progress=False).questions())
    streamed = []
    try:
        executor = get_executor(ray_config)
        captioner = CAPTIONERS.get(ray_config.captioner.type)(ray_config.captioner)
        on_ray = executor.caption_videos(ray_config, captioner, videos, {}, streamed.append, progress=False)
        description = executor.describe()
    finally:
        ray.shutdown()
    local_config = config(tmp_path / "local", "local")
    local = caption_videos(
        local_config, CAPTIONERS.get(local_config.captioner.type)(local_config.captioner), videos, progress=False
    )

    texts = lambda result: {vid: vc.captions for vid, vc in result.captions.items()}  # noqa: E731
    assert texts(on_ray) == texts(local) and len(local.captions) == 3
    assert list(on_ray.captions) == [vid for vid, _ in videos if vid in local.captions]  # in the questions' order
    assert sorted(on_ray.failures) == sorted(local.failures) == ["broken-video", "missing-video"]
    assert sorted(f.video_id for f in streamed) == ["broken-video", "missing-video"]
    assert on_ray.identity == local.identity and on_ray.parameters == local.parameters
    assert on_ray.timing["frames_captioned"] == local.timing["frames_captioned"] == 18
    assert set(on_ray.timing["per_video"]) == set(local.timing["per_video"]) and set(on_ray.timing) == set(local.timing)
    assert description["ray_address"] is None and description["ray_cluster"]["cpus"] == RAY_CPUS

    again = caption_videos(
        ray_config, CAPTIONERS.get(ray_config.captioner.type)(ray_config.captioner), videos, progress=False
    )
    assert again.timing["videos_from_cache"] == 3 and not again.timing["captioner_loaded"]


def test_cli_flags_select_the_executor_and_the_cluster():
    def config(*flags: str):
        args = build_parser("run").parse_args(["run", "--dataset", "egoschema", "--captioner", "ser", *flags])
        return load_run_config(dataset="egoschema", captioner="ser", overrides=overrides_from_args(args))

    assert config().executor == "local" and config().ray.address is None
    assert config("--executor", "ray").executor == "ray"
    joined = config("--ray-address", "10.0.0.5:6379")
    assert joined.executor == "ray" and joined.ray.address == "10.0.0.5:6379"
    assert config("--ray-address", "auto").ray.address == "auto"
    assert (
        build_parser("compare")
        .parse_args(["compare", "--dataset", "d", "--captioners", "a,b", "--executor", "ray", "--ray-address", "auto"])
        .ray_address
        == "auto"
    )


def test_split_gives_contiguous_shares_in_order():
    items = list(range(10))
    assert split(items, 3) == [(0, 3), (3, 7), (7, 10)]
    assert split(items[:2], 4) == [(0, 1), (1, 2)]
    assert split([], 2) == []
    assert [i for a, b in split(items, 4) for i in items[a:b]] == items


def test_the_video_llm_answerer_is_refused_on_ray_through_its_declared_capability():
    from videoqa.answering.answerers import FramesAnswerer, make_answerer
    from videoqa_base.errors import UserError

    assert "ray" not in FramesAnswerer.executors  # the capability the answerer declares
    config = load_run_config(dataset="egoschema", captioner=None, overrides=["executor=ray", "answerer=video-llm"])
    with pytest.raises(UserError, match=r"answerer 'video-llm' runs only with \['local'\]"):
        make_answerer(config)
