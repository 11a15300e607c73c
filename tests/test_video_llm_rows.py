"""The video-LLM answerer through the run object and `compare`: a row beside the captioners."""

import json

import pytest

from videoqa.compare import compare
from videoqa.config import load_run_config
from videoqa.fixtures.demo import build_demo_dataset
from videoqa.fixtures.tiny_llm import build_tiny_llm
from videoqa.fixtures.tiny_vlm import build_tiny_qwen2_5_vl
from videoqa.run import VideoQA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-llm-rows")
    data = build_demo_dataset(root / "ego", shared_clip=None)
    uids = json.loads((data / "subset_answers.json").read_text())
    captions = root / "lavila.json"
    captions.write_text(json.dumps({uid: ["a test pattern on a screen", "colour bars"] for uid in uids}))
    lavila = root / "lavila.yaml"
    lavila.write_text(f"name: LaViLa\ntype: precomputed\nmodel: {captions}\noptions: {{parameters: 150000000}}\n")
    text_llm = root / "tiny-llm.yaml"
    text_llm.write_text(f"name: tiny-llm\nbackend: transformers\nmodel: {build_tiny_llm(root / 'llm')}\n")
    return data, uids, lavila, text_llm, build_tiny_qwen2_5_vl(root / "tiny-qwen2.5-vl")


def test_run_answers_from_frames(setup, tmp_path):
    data, uids, lavila, _, qwen = setup
    overrides = [
        f"dataset.data_root={data}",
        f"output_dir={tmp_path}",
        "answerer=video-llm",
        "video_llm.max_frames=4",
        "video_llm.frame_size=64",
    ]
    config = load_run_config(dataset="egoschema", captioner=str(lavila), llm=str(qwen), overrides=overrides)
    assert config.llm.backend == "transformers-video"  # a VLM directory answers from frames
    result = VideoQA(config, progress=False).run()
    predictions = [json.loads(line) for line in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == len(uids) and all(p["status"] == "ok" for p in predictions)
    assert result.row["captioner"] == "tiny-qwen2.5-vl (video LLM)" and result.row["parameters"] > 0
    assert result.metrics["timing"]["video_seconds"] > 0 and result.metrics["timing"]["caption_s"] == 0.0
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["captioner"]["type"] == "video-llm" and manifest["llm"]["backend"] == "transformers-video"
    again = VideoQA(
        config.model_copy(update={"run_id": result.run_dir.name}), progress=False
    ).run()  # resumed: nothing asked
    assert (
        again.metrics["accuracy"] == result.metrics["accuracy"] and again.row["parameters"] == result.row["parameters"]
    )


def test_a_broken_video_is_a_recorded_failure(setup, tmp_path):
    data, uids, lavila, _, qwen = setup
    broken = sorted((data / "videos").iterdir())[0]
    original = broken.read_bytes()
    broken.write_bytes(b"not a video")
    try:
        overrides = [
            f"dataset.data_root={data}",
            f"output_dir={tmp_path}",
            "answerer=video-llm",
            "video_llm.max_frames=2",
            "video_llm.frame_size=64",
            "run_id=broken",
        ]
        config = load_run_config(dataset="egoschema", captioner=str(lavila), llm=str(qwen), overrides=overrides)
        result = VideoQA(config, progress=False).run()
        assert result.metrics["video_failures"] == {"not_a_video": 1}
        statuses = [
            json.loads(line)["status"] for line in (result.run_dir / "predictions.jsonl").read_text().splitlines()
        ]
        assert statuses.count("video_failed") == 1
        again = VideoQA(config, progress=False).run()  # resumed: the failure is still reported
        assert again.metrics["video_failures"] == {"not_a_video": 1}
    finally:
        broken.write_bytes(original)  # the other tests share the dataset


def test_compare_has_a_video_llm_row(setup, tmp_path):
    data, uids, lavila, text_llm, qwen = setup
    result = compare(
        "egoschema",
        [str(lavila)],
        llm=str(text_llm),
        video_llms=[str(qwen)],
        compare_id="cmp",
        progress=False,
        overrides=[
            f"dataset.data_root={data}",
            f"output_dir={tmp_path}",
            "video_llm.max_frames=4",
            "video_llm.frame_size=64",
            "llm.engine_kwargs={batch_size: 2}",
        ],  # for the captioners' LLM only
    )
    rows = {row["captioner"]: row for row in (r.row for r in result.runs)}
    assert set(rows) == {"LaViLa", "tiny-qwen2.5-vl (video LLM)"}
    assert rows["LaViLa"]["llm"] == "tiny-llm" and rows["tiny-qwen2.5-vl (video LLM)"]["llm"] == "tiny-qwen2.5-vl"
    csv = (result.directory / "comparison.csv").read_text()
    assert "tiny-qwen2.5-vl (video LLM)" in csv


def test_cli_flags(setup, tmp_path):
    import os
    import subprocess
    import sys

    data, uids, lavila, text_llm, qwen = setup
    common = [
        "--dataset",
        "egoschema",
        "--data-root",
        str(data),
        "--output-dir",
        str(tmp_path),
        "--quiet",
        "--set",
        "video_llm.max_frames=2",
        "--set",
        "video_llm.frame_size=64",
    ]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "videoqa.cli.main",
            "run",
            *common,
            "--captioner",
            str(lavila),
            "--llm",
            str(qwen),
            "--answerer",
            "video-llm",
            "--run-id",
            "vid",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "tiny-qwen2.5-vl (video LLM)" in run.stdout
    cmp = subprocess.run(
        [
            sys.executable,
            "-m",
            "videoqa.cli.main",
            "compare",
            *common,
            "--captioners",
            str(lavila),
            "--llm",
            str(text_llm),
            "--video-llms",
            str(qwen),
            "--run-id",
            "cmp",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ,
    )
    assert cmp.returncode == 0, (cmp.stdout + cmp.stderr)[-3000:]
    assert "LaViLa" in cmp.stdout and "tiny-qwen2.5-vl (video LLM)" in cmp.stdout
