"""`--ray-address HOST:PORT` sends the cluster's token when this machine has it, with nothing exported.

Ray 2.60's `ray start` turns token authentication on, but a driver that joins by explicit address
sends the token only with RAY_AUTH_MODE=token. The unit tests check when the executor turns it on;
the cluster test starts a real `ray start --head --block` on 127.0.0.1 with its own HOME (so the
token it writes is its own) and joins it by address: with the token in ~/.ray/auth_token, with the
token in RAY_AUTH_TOKEN, and without a token (a one-line error saying where to put it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from videoqa.executors.ray_cluster import ray_token_available, send_token_if_available

ray = pytest.importorskip("ray")  # the `ray` extra (installed by scripts/install.sh)

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@pytest.fixture
def clean_auth(monkeypatch, tmp_path) -> Iterator[Path]:
    """No auth settings and an empty HOME; Ray's cached config is refreshed afterwards."""
    from ray._raylet import Config

    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    yield home
    monkeypatch.undo()
    Config.initialize("")  # token mode set by a test must not outlive it in this process


def test_token_file_turns_token_auth_on_for_an_explicit_address(clean_auth):
    assert not ray_token_available()
    assert not send_token_if_available("10.0.0.1:6379") and "RAY_AUTH_MODE" not in os.environ
    (clean_auth / ".ray").mkdir()
    (clean_auth / ".ray" / "auth_token").write_text("a" * 32)
    assert not send_token_if_available("auto")  # Ray finds and sends it by itself there
    assert not send_token_if_available(None)  # a Ray instance of our own
    assert send_token_if_available("10.0.0.1:6379") and os.environ["RAY_AUTH_MODE"] == "token"


def test_token_from_the_environment_or_a_token_path(clean_auth, monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "b" * 32)
    assert ray_token_available()
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    (tmp_path / "token").write_text("c" * 32)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert ray_token_available()
    (tmp_path / "token").write_text("\n")
    assert not ray_token_available()  # an empty file is no token


def test_a_users_own_auth_mode_is_left_alone(clean_auth):
    (clean_auth / ".ray").mkdir()
    (clean_auth / ".ray" / "auth_token").write_text("a" * 32)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    assert not send_token_if_available("10.0.0.1:6379") and os.environ["RAY_AUTH_MODE"] == "disabled"


# ---------------------------------------------------------------------------- a real cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_auth(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES and k != "RAY_ADDRESS"}
    return env | {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"} | extra


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`ray start --head --block` with its own HOME holding a token, so token auth is on (as on any machine
    where Ray made one: `ray get-auth-token --generate`, or an earlier in-process instance); stopped by
    ending the command."""
    home = tmp_path_factory.mktemp("head-home")
    port = free_port()
    ray_cli = str(Path(sys.executable).with_name("ray"))
    made = subprocess.run(
        [ray_cli, "get-auth-token", "--generate"], capture_output=True, text=True, env=without_auth(home)
    )
    assert made.returncode == 0, made.stdout + made.stderr
    args = [ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    args += ["--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats"]
    args += ["--temp-dir", str(tmp_path_factory.mktemp("ray-tmp"))]  # not /tmp/ray: other clusters' `auto`
    log = (home / "ray-start.log").open("w")
    head = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=without_auth(home), start_new_session=True)
    token = home / ".ray" / "auth_token"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and head.poll() is None:
        if "Ray runtime started" in (home / "ray-start.log").read_text():
            break
        time.sleep(0.5)
    try:
        assert head.poll() is None and token.is_file(), (home / "ray-start.log").read_text()[-3000:]
        yield f"127.0.0.1:{port}", token
    finally:
        head.terminate()  # --block: ending the command stops the node's processes
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
            head.wait()
        log.close()


JOIN = (
    "import sys, ray\n"
    "from videoqa.config import RayConfig\n"
    "from videoqa.executors.ray_cluster import connect\n"
    "from videoqa_base.cli import run_guarded\n"
    "def join():\n"
    "    connect(RayConfig(address=sys.argv[1]))\n"
    "    print('cpus', ray.cluster_resources().get('CPU'))\n"
    "    ray.shutdown()\n"
    "sys.exit(run_guarded(join))\n"
)


def join(address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", JOIN, address], capture_output=True, text=True, env=env, timeout=300)


def test_joining_by_address_sends_the_token_found_here(token_cluster, tmp_path):
    address, token = token_cluster
    # the token where `ray start` put it (a driver on the head node): nothing exported
    out = join(address, without_auth(token.parent.parent))
    assert out.returncode == 0 and "cpus 1.0" in out.stdout, out.stdout + out.stderr[-3000:]

    # another machine with the token in RAY_AUTH_TOKEN
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = join(address, without_auth(elsewhere, RAY_AUTH_TOKEN=token.read_text().strip()))
    assert out.returncode == 0 and "cpus 1.0" in out.stdout, out.stdout + out.stderr[-3000:]

    # no token here: one line that says where it goes
    out = join(address, without_auth(elsewhere))
    assert out.returncode == 2, out.stdout + out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "~/.ray/auth_token" in errors[0] and "RAY_AUTH_TOKEN" in errors[0], out.stderr
