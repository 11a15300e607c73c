"""Each long-video benchmark, in its published format, read end to end through `videoqa run` on the
demo's tiny random models (the transformers LLM backend, so no vLLM engine start per run), with
short generated videos; plus EgoSchema's full split writing the Kaggle CSV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_benchmarks import (
    LVB_RECORDS,
    LVBENCH_VIDEOS,
    MLVU_TASKS,
    lvb_record,
    write_longvideobench,
    write_lvbench,
    write_mlvu,
    write_videomme,
)
from videoqa.cli.main import main
from videoqa.fixtures.synthetic_video import make_video

pytestmark = pytest.mark.slow


def _video(path: Path, pattern: str = "testsrc", seconds: float = 3.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    make_video(path, seconds=seconds, fps=10, width=64, height=48, pattern=pattern)


def run(capsys, models, dataset: str, root: Path, out: Path, run_id: str, *extra: str) -> tuple[Path, str]:
    captioner, llm = models
    args = ["run", "--dataset", dataset, "--data-root", str(root), "--captioner", str(captioner)]
    args += ["--llm", str(llm), "--output-dir", str(out), "--run-id", run_id, "--quiet"]
    args += ["--set", "llm.backend=transformers", "--set", "captioner.max_new_tokens=6", *extra]
    assert main(args) == 0
    printed = capsys.readouterr().out
    runs = list(out.glob(f"{dataset}/*/{run_id}"))
    assert len(runs) == 1, printed
    return runs[0], printed


def predictions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def test_videomme_with_and_without_subtitles(tmp_path, tiny_models, capsys, one_torch_thread):
    root = write_videomme(tmp_path / "videomme")
    _video(root / "data" / "aaaaaaaaaaa.mp4")
    _video(root / "data" / "bbbbbbbbbbb.mkv", "smptebars")
    plain, printed = run(capsys, tiny_models, "videomme", root, tmp_path / "out", "plain")
    subs, _ = run(capsys, tiny_models, "videomme", root, tmp_path / "out", "subs", "--set", "transcript.subtitles=true")
    metrics = json.loads((plain / "metrics.json").read_text())
    assert metrics["questions"] == 3 and metrics["status_counts"] == {"ok": 3}
    assert set(metrics["breakdowns"]) == {"duration", "domain", "task_type"}
    assert metrics["breakdowns"]["task_type"]["Counting Problem"]["questions"] == 2
    header = (plain / "results.csv").read_text().splitlines()[0]
    assert "duration: long" in header and "task_type: Object Recognition" in header
    assert "duration: short" in printed  # the breakdowns are in the printed table too
    # the subtitled video's prompts are longer by its speech lines; the other video's are unchanged
    tokens = {p["qid"]: p["prompt_tokens"] for p in predictions(plain)}
    with_subs = {p["qid"]: p["prompt_tokens"] for p in predictions(subs)}
    assert with_subs["001-1"] > tokens["001-1"] and with_subs["002-1"] == tokens["002-1"]


def test_longvideobench_parquet_with_two_and_five_options(tmp_path, tiny_models, capsys, one_torch_thread):
    root = write_longvideobench(tmp_path / "lvb", parquet=True)
    _video(root / "videos" / "vid1.mp4")
    _video(root / "videos" / "vid2.mp4", "smptebars")
    run_dir, _ = run(capsys, tiny_models, "longvideobench", root, tmp_path / "out", "val")
    rows = predictions(run_dir)
    assert [len(r["options"]) for r in rows] == [5, 2, 3] and all("N/A" not in r["options"] for r in rows)
    for r in rows:  # each answer is one of the question's own letters
        assert r["status"] == "ok" and 0 <= r["pred"] < len(r["options"])
        assert set(r["choice_logprobs"]) <= set("ABCDE"[: len(r["options"])])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["breakdowns"]["duration_group"]) == {"15", "60", "600"}


def test_longvideobench_test_split_writes_a_letter_submission(tmp_path, tiny_models, capsys, one_torch_thread):
    records = [lvb_record(0, LVB_RECORDS[0]["candidates"], None)]
    root = write_longvideobench(tmp_path / "lvb", records, name="lvb_test_wo_gt.json")
    _video(root / "videos" / "vid1.mp4")
    run_dir, printed = run(capsys, tiny_models, "longvideobench", root, tmp_path / "out", "test", "--split", "test")
    submission = json.loads((run_dir / "submission.json").read_text())
    assert list(submission) == ["vid1_0"] and submission["vid1_0"] in "ABCDE"
    assert "huggingface.co/spaces/longvideobench/LongVideoBench" in printed


def test_mlvu_reports_m_avg_with_a_six_option_question(tmp_path, tiny_models, capsys, one_torch_thread):
    root = write_mlvu(tmp_path / "mlvu")
    _video(root / "video" / "1_plotQA" / "movie_a.mp4")
    _video(root / "video" / "2_needle" / "needle_b.mp4", "smptebars")
    run_dir, printed = run(capsys, tiny_models, "mlvu", root, tmp_path / "out", "dev")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tasks = metrics["breakdowns"]["task"]
    assert set(tasks) == {"plotQA", "needle"} and metrics["questions"] == 3
    assert metrics["m_avg"] == pytest.approx((tasks["plotQA"]["accuracy"] + tasks["needle"]["accuracy"]) / 2)
    six = [p for p in predictions(run_dir) if len(p["options"]) == 6]
    assert len(six) == 1 and six[0]["status"] == "ok" and six[0]["pred_letter"] in "ABCDEF"
    header = (run_dir / "results.csv").read_text().splitlines()[0].split(",")
    assert header.index("m_avg") < header.index("accuracy") and "task: needle" in header
    assert "m_avg" in printed


def test_lvbench_end_to_end_with_a_missing_video(tmp_path, tiny_models, capsys, one_torch_thread):
    videos = json.loads(json.dumps(LVBENCH_VIDEOS))  # a deep copy
    videos.append(videos[0] | {"key": "keyMISSING0", "qa": [dict(videos[0]["qa"][0], uid="201")]})
    root = write_lvbench(tmp_path / "lvbench", videos)
    _video(root / "videos" / "keyAAAAAAAA.mp4")
    run_dir, _ = run(capsys, tiny_models, "lvbench", root, tmp_path / "out", "t")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status_counts"] == {"ok": 2, "video_failed": 1}  # the missing video is a recorded failure
    assert metrics["breakdowns"]["question_type"]["entity recognition"]["questions"] == 2
    assert metrics["breakdowns"]["question_type"]["reasoning"]["questions"] == 1


def test_egoschema_full_split_writes_json_and_kaggle_csv(dataset, tmp_path, tiny_models, capsys, one_torch_thread):
    run_dir, printed = run(capsys, tiny_models, "egoschema", dataset, tmp_path / "out", "full", "--split", "full")
    answered = json.loads((run_dir / "submission.json").read_text())
    csv = (run_dir / "submission.csv").read_text().splitlines()
    assert csv[0] == "q_uid,answer"
    assert {line.split(",")[0]: int(line.split(",")[1]) for line in csv[1:]} == answered
    assert all(0 <= v <= 4 for v in answered.values())
    assert f"kaggle competitions submit -c egoschema-public -f {run_dir / 'submission.csv'}" in printed
    assert f"-d @{run_dir / 'submission.json'} https://validation-server.onrender.com/api/upload/" in printed
    assert "2 of 5 questions have no valid answer" in printed  # the broken and the missing video


def test_two_to_six_options_through_the_vllm_engine(tmp_path, tiny_models):
    """The default backend (vLLM, structured-output choice per prompt) with 6-, 4- and 2-option questions."""
    root = write_mlvu(
        tmp_path / "mlvu",
        MLVU_TASKS | {"3_ego": [MLVU_TASKS["1_plotQA"][0] | {"candidates": ["It moves", "It stops"]}]},
    )
    _video(root / "video" / "1_plotQA" / "movie_a.mp4")
    _video(root / "video" / "2_needle" / "needle_b.mp4", "smptebars")
    _video(root / "video" / "3_ego" / "movie_a.mp4", "rgbtestsrc")
    captioner, llm = tiny_models
    args = ["run", "--dataset", "mlvu", "--data-root", str(root), "--captioner", str(captioner), "--llm", str(llm)]
    args += [
        "--output-dir",
        str(tmp_path / "out"),
        "--run-id",
        "vllm",
        "--quiet",
        "--set",
        "captioner.max_new_tokens=6",
    ]
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "videoqa.cli.main", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (run_dir,) = (tmp_path / "out").glob("mlvu/*/vllm")
    rows = predictions(run_dir)
    assert sorted(len(r["options"]) for r in rows) == [2, 4, 4, 6]
    for r in rows:
        assert r["status"] == "ok" and r["pred_letter"] in "ABCDEF"[: len(r["options"])]
        assert set(r["choice_logprobs"]) <= set("ABCDEF"[: len(r["options"])])
