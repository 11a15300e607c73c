"""The run directory: durable appends survive a kill mid-write, a resumed run must match its config."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoqa.config import CaptionerConfig, DatasetConfig, LLMConfig, RunConfig
from videoqa.rundir import RunDirectory
from videoqa.types import Answer, Question, VideoFailure
from videoqa_base.errors import UserError


def config(tmp_path: Path, **update) -> RunConfig:
    return RunConfig(
        dataset=DatasetConfig(name="d", type="jsonl", data_root=str(tmp_path)),
        captioner=CaptionerConfig(name="c", type="precomputed", model="unused"),
        llm=LLMConfig(name="l", model="unused"),
        output_dir=str(tmp_path / "out"),
        run_id="r1",
        **update,
    )


def question(qid: str) -> Question:
    return Question(qid, f"video-{qid}", Path(f"/videos/{qid}.mp4"), "what?", ("a", "b"), answer=1)


def test_a_torn_append_is_cut_and_later_appends_stay_readable(tmp_path):
    run = RunDirectory(config(tmp_path))
    run.prepare()
    run.append_answers([question("q1")], [Answer("q1", 1, "B", "ok")])
    with run.file("predictions.jsonl").open("a") as f:
        f.write('{"qid": "q2", "pred": 0, "ra')  # killed in the middle of a line
    assert set(run.recorded_answers()) == {"q1"}  # the torn line is not an answer

    resumed = RunDirectory(config(tmp_path))
    resumed.prepare()  # cuts the torn tail ...
    resumed.append_answers([question("q2")], [Answer("q2", None, "", "llm_failed", "server down")])
    answers = resumed.recorded_answers()  # ... so the next record starts on a line of its own
    assert answers["q1"].pred == 1 and answers["q2"].status == "llm_failed"


def test_line_separators_inside_an_answer_keep_the_log_readable(tmp_path):
    run = RunDirectory(config(tmp_path))
    run.prepare()
    raw = "B\u2028because\u0085of\x1c this"  # str.splitlines() would break the JSON line at each
    run.append_answers([question("q1")], [Answer("q1", 1, raw, "ok")])
    assert run.recorded_answers()["q1"].raw == raw


def test_failures_keep_the_fingerprint_of_the_file(tmp_path):
    run = RunDirectory(config(tmp_path))
    run.prepare()
    run.append_failures([VideoFailure("v", "/videos/v.mp4", "missing", "no such file", "absent")])
    assert run.recorded_failures()["v"].fingerprint == "absent"


def test_resuming_with_another_config_is_refused(tmp_path):
    RunDirectory(config(tmp_path)).prepare()
    with pytest.raises(
        UserError, match=r"config\.yaml: run 'r1' exists with a different config \(section 'limit' differs\)"
    ):
        RunDirectory(config(tmp_path, limit=3)).prepare()


def test_a_run_written_before_new_fields_existed_still_resumes(tmp_path):
    import yaml

    run = RunDirectory(config(tmp_path))
    run.prepare()
    recorded = yaml.safe_load(run.file("config.yaml").read_text())
    del recorded["transcript"], recorded["frames"]["workers"]  # as an older version wrote it (defaults since)
    run.file("config.yaml").write_text(yaml.safe_dump(recorded))
    RunDirectory(config(tmp_path)).prepare()  # the same settings: resumed, not refused


def test_a_run_may_resume_on_another_executor(tmp_path):
    RunDirectory(config(tmp_path)).prepare()
    moved = config(tmp_path, executor="ray")
    RunDirectory(moved.model_copy(update={"ray": moved.ray.model_copy(update={"address": "auto"})})).prepare()
