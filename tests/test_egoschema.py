import json
from pathlib import Path

import pytest

from tests.conftest import SHARED
from videoqa.config import DatasetConfig
from videoqa.datasets import load_questions
from videoqa_base.errors import UserError


def _item(uid, **over):
    item = {"q_uid": uid, "google_drive_id": "x", "question": f"what happens in {uid}?"}
    item |= {f"option {i}": f"option {i} of {uid}" for i in range(5)}
    return item | over


def _write(root: Path, items, answers, videos=("videos",)):
    root.mkdir(parents=True, exist_ok=True)
    (root / "questions.json").write_text(json.dumps(items))
    (root / "subset_answers.json").write_text(json.dumps(answers))
    return root


def _cfg(root, split="subset", **options):
    return DatasetConfig(name="egoschema", type="egoschema", data_root=str(root), split=split, options=options)


def test_subset_keeps_answered_questions_and_resolves_videos(tmp_path):
    root = _write(tmp_path / "ego", [_item("a"), _item("b"), _item("c")], {"a": 3, "c": 0})
    (root / "videos").mkdir()
    (root / "videos" / "a.mp4").write_bytes(b"x")
    (root / "c.mkv").write_bytes(b"x")  # videos directly under the root are accepted too
    questions = load_questions(_cfg(root))
    assert [q.qid for q in questions] == ["a", "c"]
    assert [q.answer for q in questions] == [3, 0]
    assert questions[0].video_path == root / "videos" / "a.mp4"
    assert questions[1].video_path == root / "c.mkv"
    assert questions[0].options == tuple(f"option {i} of a" for i in range(5))
    assert questions[0].letters == ("A", "B", "C", "D", "E")


def test_full_split_has_every_question_and_no_answers(tmp_path):
    root = _write(tmp_path / "ego", [_item("a"), _item("b")], {"a": 1})
    questions = load_questions(_cfg(root, split="full"))
    assert [q.qid for q in questions] == ["a", "b"]
    assert all(q.answer is None for q in questions)
    assert questions[1].video_path == root / "videos" / "b.mp4"  # conventional path, reported missing later


def test_official_files_load(tmp_path):
    """The real subset_answers.json (500 answers) and the real questions.json item."""
    answers = SHARED / "data" / "egoschema" / "subset_answers.json"
    sample = SHARED / "data" / "egoschema" / "questions_sample.json"
    if not answers.is_file():
        pytest.skip("shared EgoSchema files absent")
    assert len(json.loads(answers.read_text())) == 500
    questions = load_questions(_cfg(answers.parent, questions_file=sample.name))
    assert len(questions) == 1
    q = questions[0]
    assert q.qid == "0074f737-11cb-497d-8d07-77c3a8127391" and q.answer == 3
    assert q.options[3] == "C is cleaning dishes."


@pytest.mark.parametrize(
    "items, answers, message",
    [
        (
            [_item("a", **{"option 2": 7})],
            {"a": 1},
            "questions.json: field '[0] (q_uid a).option 2': expected a non-empty string",
        ),
        ([{"question": "q"}], {"a": 1}, "questions.json: field '[0].q_uid'"),
        ({"a": 1}, {"a": 1}, "questions.json: field '(top level)': expected a JSON list"),
        ([_item("a")], {"a": 7}, "subset_answers.json: field 'a': expected an integer 0-4"),
        ([_item("a")], ["a"], "subset_answers.json: field '(top level)'"),
        ([_item("a")], {"b": 1}, "no questions for split 'subset'"),
    ],
)
def test_malformed_files_name_file_and_key(tmp_path, items, answers, message):
    root = _write(tmp_path / "ego", items, answers)
    with pytest.raises(UserError) as err:
        load_questions(_cfg(root))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_files_say_where_egoschema_comes_from(tmp_path):
    with pytest.raises(UserError, match="data root not found.*EgoSchema repository"):
        load_questions(_cfg(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="questions not found.*questions.json"):
        load_questions(_cfg(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "questions.json").write_text("[{")
    with pytest.raises(UserError, match="questions.json: not valid JSON"):
        load_questions(_cfg(tmp_path / "bad"))


def test_categories_file_gives_per_category_accuracy(tmp_path):
    from videoqa.scoring.qa_metrics import score
    from videoqa.types import Answer

    root = _write(tmp_path / "ego", [_item("a"), _item("b"), _item("c")], {"a": 0, "b": 1, "c": 2})
    (root / "cats.json").write_text(json.dumps({"purpose": ["a", "b"], "tools": ["c"]}))
    questions = load_questions(_cfg(root, categories_file="cats.json"))
    assert [q.meta.get("category") for q in questions] == ["purpose", "purpose", "tools"]
    metrics = score(questions, [Answer("a", 0, "A"), Answer("b", 0, "A"), Answer("c", 2, "C")])
    assert metrics["per_category"] == {
        "purpose": {"accuracy": 0.5, "questions": 2},
        "tools": {"accuracy": 1.0, "questions": 1},
    }
    (root / "bad.json").write_text(json.dumps({"purpose": 3}))
    with pytest.raises(UserError, match="bad.json: field 'purpose': expected a category name"):
        load_questions(_cfg(root, categories_file="bad.json"))
