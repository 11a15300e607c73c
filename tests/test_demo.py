"""The README's first command: `videoqa demo` completes offline and prints the table, and little else."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage_quietly_and_says_accuracy_is_chance(tmp_path):
    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "videoqa.cli.main", "demo", "--output-dir", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    shown = out.stdout + out.stderr
    assert out.returncode == 0, shown[-3000:]
    assert "| egoschema" in out.stdout and "tiny-ser" in out.stdout
    assert "chance level" in out.stdout
    run_dir = next((tmp_path / "egoschema").glob("tiny-ser__tiny-qwen2/*"))
    assert f"run directory: {run_dir}" in out.stdout

    # quiet by default: vLLM/torch/transformers output is in the log file, not on the terminal
    log = tmp_path / "demo" / "demo.log"
    assert f"output: {log}" in out.stdout
    assert len(shown.splitlines()) < 12, shown
    assert not [line for line in shown.splitlines() if "WARNING" in line or "Triton" in line], shown
    assert "vllm" in log.read_text().lower()

    assert (tmp_path / "demo" / "models" / "captioner" / "config.json").is_file()
    assert (tmp_path / "demo" / "models" / "llm" / "config.json").is_file()
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    questions = json.loads((tmp_path / "demo" / "data" / "egoschema" / "questions.json").read_text())
    assert len(predictions) == len(questions) >= 3
    assert all(p["status"] == "ok" and p["pred"] in range(5) for p in predictions)


def test_the_demo_data_holds_the_shared_real_clip_when_it_is_there(tmp_path):
    """The real pancake clip in ../shared/videos/ joins the generated videos (where the clip exists)."""
    from videoqa.fixtures.demo import SHARED_CLIP, build_demo_dataset

    clip = tmp_path / "clip.mkv"
    clip.write_bytes(b"stands in for the shared clip")  # copied, not decoded, when the dataset is built
    root = build_demo_dataset(tmp_path / "with", shared_clip=clip)
    questions = json.loads((root / "questions.json").read_text())
    assert len(questions) == 4 and any("pancake" in q["option 3"] for q in questions)
    assert len(list((root / "videos").glob("*.mkv"))) == 1
    assert (
        len(json.loads((build_demo_dataset(tmp_path / "without", shared_clip=None) / "questions.json").read_text()))
        == 3
    )
    # the default points at the repository's sibling folder shared/, wherever the checkout is
    assert SHARED_CLIP.parts[-3:] == ("shared", "videos", "flipping_a_pancake.mkv")
    assert SHARED_CLIP.parent.parent.parent == __import__("pathlib").Path(__file__).resolve().parents[2]
