"""The command line as a user meets it: help, one-line errors, exit codes."""

import subprocess
import sys

import pytest


def videoqa(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "videoqa.cli.main", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_help_lists_the_commands():
    out = videoqa("--help")
    assert out.returncode == 0
    for command in ("run", "compare", "bench", "demo"):
        assert command in out.stdout
    run_help = videoqa("run", "--help").stdout
    for flag in ("--dataset", "--captioner", "--llm", "--data-root", "--split", "--limit", "--output-dir", "--set"):
        assert flag in run_help


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data-root", "/nonexistent/ego"], "error: EgoSchema data root not found: /nonexistent/ego"),
        (["--set", "frames.fps=0"], "field 'frames': Value error, frames.fps must be > 0"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message):
    out = videoqa("run", "--dataset", "egoschema", "--captioner", "ser", *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_run_without_a_captioner_needs_the_video_llm_answerer():
    out = videoqa("run", "--dataset", "egoschema")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--captioner is required (or --answerer video-llm" in out.stderr


def test_missing_captioner_weights_say_how_to_get_them(tmp_path, tiny_models):
    _, llm = tiny_models
    root = tmp_path / "ego"
    root.mkdir()
    (root / "questions.json").write_text(
        '[{"q_uid": "a", "question": "q", "option 0": "a", "option 1": "b", "option 2": "c", "option 3": "d", '
        '"option 4": "e"}]'
    )
    (root / "subset_answers.json").write_text('{"a": 1}')
    out = videoqa(
        "run",
        "--dataset",
        "egoschema",
        "--captioner",
        "ser",
        "--llm",
        str(llm),
        "--data-root",
        str(root),
        "--output-dir",
        str(tmp_path / "out"),
        "--quiet",
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    assert "captioner train --config configs/train/stage2.yaml" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_missing_llm_says_how_to_download_it(tmp_path, tiny_models):
    captioner, _ = tiny_models
    root = tmp_path / "ego"
    root.mkdir()
    (root / "questions.json").write_text(
        '[{"q_uid": "a", "question": "q", "option 0": "a", "option 1": "b", "option 2": "c", "option 3": "d", '
        '"option 4": "e"}]'
    )
    (root / "subset_answers.json").write_text('{"a": 1}')
    out = videoqa(
        "run",
        "--dataset",
        "egoschema",
        "--captioner",
        str(captioner),
        "--data-root",
        str(root),
        "--output-dir",
        str(tmp_path / "out"),
        "--quiet",
        "--set",
        "llm.model=Qwen/Qwen2.5-14B-Instruct-not-cached",
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "huggingface-cli download Qwen/Qwen2.5-14B-Instruct-not-cached" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_llm_is_reported_before_any_captioning(tmp_path):
    root = tmp_path / "ego"
    root.mkdir()
    (root / "questions.json").write_text(
        '[{"q_uid": "a", "question": "q", "option 0": "a", "option 1": "b", "option 2": "c", "option 3": "d", '
        '"option 4": "e"}]'
    )
    (root / "subset_answers.json").write_text('{"a": 1}')
    out = videoqa(
        "run",
        "--dataset",
        "egoschema",
        "--captioner",
        "ser",
        "--data-root",
        str(root),
        "--output-dir",
        str(tmp_path / "out"),
        "--quiet",
    )
    assert out.returncode == 2
    assert "huggingface-cli download Qwen/Qwen2.5-14B-Instruct" in out.stderr
    assert not (tmp_path / "out" / "cache").exists()  # nothing was decoded or captioned
