"""`videoqa compare`: three captioners, one LLM engine, the paper's Tab. 4 as CSV/Markdown/LaTeX + a plot."""

import json
import os
import subprocess
import sys

import pytest

from captioner.modeling.presets import build_tiny_checkpoint
from videoqa.fixtures.demo import build_demo_dataset

pytestmark = pytest.mark.slow


def test_compare_three_captioners(tmp_path, tiny_models):
    ser_dir, llm_dir = tiny_models
    specialist_dir = build_tiny_checkpoint(tmp_path / "tiny-specialist", preset="tiny-specialist", seed=1)
    data = build_demo_dataset(tmp_path / "ego", shared_clip=None)
    uids = json.loads((data / "subset_answers.json").read_text())
    lavila = tmp_path / "lavila.json"  # imported captions, as LLoVi releases them
    lavila.write_text(json.dumps({uid: ["a test pattern on a screen", "colour bars"] for uid in uids}))
    precomputed_yaml = tmp_path / "lavila.yaml"
    precomputed_yaml.write_text(
        f"type: precomputed\nmodel: {lavila}\noptions: {{parameters: 150000000, source: LaViLa}}\n"
    )

    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "videoqa.cli.main",
            "compare",
            "--dataset",
            "egoschema",
            "--data-root",
            str(data),
            "--captioners",
            f"{ser_dir},{specialist_dir},{precomputed_yaml}",
            "--llm",
            str(llm_dir),
            "--output-dir",
            str(tmp_path / "out"),
            "--run-id",
            "cmp",
            "--quiet",
            "--set",
            "captioner.max_new_tokens=8",
            "--set",
            "llm.engine_kwargs={enforce_eager: true}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    directory = tmp_path / "out" / "egoschema" / "compare" / "cmp"
    for name in ("comparison.csv", "comparison.md", "comparison.tex", "accuracy_vs_time.png", "manifest.json"):
        assert (directory / name).is_file(), name
    assert (directory / "accuracy_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = (directory / "comparison.csv").read_text().splitlines()
    assert csv[0] == (
        "Captioner,#params,Accuracy (%),Captions/video,Prompt tokens,Captioning (s),Answering (s),Total (s),"
        "Time per 10-min video (s)"
    )
    rows = {line.split(",")[0]: line.split(",") for line in csv[1:]}
    assert set(rows) == {"captioner", "tiny-specialist", "lavila"}
    assert rows["lavila"][1] == "150M" and float(rows["lavila"][5]) == 0.0  # imported captions cost nothing here
    assert float(rows["captioner"][5]) > 0 and float(rows["tiny-specialist"][5]) > 0
    assert float(rows["lavila"][3]) == 2.0 and all(float(r[4]) > 0 for r in rows.values())  # captions/video, tokens
    assert "\\begin{tabular}" in (directory / "comparison.tex").read_text()
    runs = json.loads((directory / "manifest.json").read_text())["runs"]
    assert len(runs) == 3
    for run in runs:
        predictions = [json.loads(x) for x in open(os.path.join(run, "predictions.jsonl"))]
        assert len(predictions) == len(uids) and all(p["status"] == "ok" for p in predictions)


def test_the_comparison_table_carries_the_benchmarks_headline_and_breakdowns(tmp_path):
    from videoqa.compare import write_comparison
    from videoqa.scoring.tables import result_row

    def metrics(accuracy: float, m_avg: float, short: float) -> dict:
        return {
            "questions": 4,
            "accuracy": accuracy,
            "status_counts": {"ok": 4},
            "timing": {"caption_s": 1.0, "answer_s": 1.0, "decode_s": 0.0, "video_seconds": 60.0},
            "headline": "m_avg",
            "m_avg": m_avg,
            "breakdowns": {"task": {"count": {"accuracy": short, "questions": 2}}},
        }

    rows = [
        result_row("mlvu", "ser", "qwen", 10**6, metrics(0.5, 0.25, 1.0)),
        result_row("mlvu", "specialist", "qwen", 10**6, metrics(0.75, 0.5, 0.0)),
    ]
    table = write_comparison(rows, tmp_path)
    columns = list(table.columns)
    assert columns.index("M-Avg (%)") == columns.index("Accuracy (%)") - 1  # the headline first
    assert list(table["M-Avg (%)"]) == [25.0, 50.0] and list(table["task: count"]) == [100.0, 0.0]
    assert "M-Avg (%)" in (tmp_path / "comparison.md").read_text()
