import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videoqa.config import DatasetConfig
from videoqa.datasets import load_questions
from videoqa_base.errors import UserError

ROW = {
    "video": "4010069381",
    "frame_count": 300,
    "width": 640,
    "height": 480,
    "question": "why did the boy run",
    "answer": 2,
    "qid": 6,
    "type": "CW",
    "a0": "x",
    "a1": "y",
    "a2": "z",
    "a3": "u",
    "a4": "v",
}


def _cfg(kind, root, split="val", **options):
    return DatasetConfig(name=kind, type=kind, data_root=str(root), split=split, options=options)


def test_nextqa_csv_with_video_map_and_types(tmp_path):
    rows = [ROW, ROW | {"qid": 7, "type": "TN", "answer": 0}, ROW | {"video": "99", "type": "DC", "answer": 4}]
    pd.DataFrame(rows).to_csv(tmp_path / "val.csv", index=False)
    (tmp_path / "map_vid_vidorID.json").write_text(json.dumps({"4010069381": "1164/4010069381"}))
    (tmp_path / "videos" / "1164").mkdir(parents=True)
    (tmp_path / "videos" / "1164" / "4010069381.mp4").write_bytes(b"x")
    qs = load_questions(_cfg("nextqa", tmp_path, video_map="map_vid_vidorID.json"))
    assert [q.qid for q in qs] == ["4010069381_6", "4010069381_7", "99_6"]
    assert [q.answer for q in qs] == [2, 0, 4]
    assert [q.meta["category"] for q in qs] == ["CW", "TN", "DC"]
    assert qs[0].video_path == tmp_path / "videos" / "1164" / "4010069381.mp4"
    assert qs[0].options == ("x", "y", "z", "u", "v")
    assert load_questions(_cfg("intentqa", tmp_path))[0].qid == "4010069381_6"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: {k: v for k, v in r.items() if k != "a3"}, "val.csv: field 'a3': expected a column named 'a3'"),
        (lambda r: r | {"answer": 9}, "val.csv: field 'line 2.answer': expected an integer 0-4"),
        (lambda r: r | {"answer": "B"}, "val.csv: field 'line 2.answer'"),
    ],
)
def test_nextqa_malformed(tmp_path, mutate, message):
    pd.DataFrame([mutate(ROW)]).to_csv(tmp_path / "val.csv", index=False)
    with pytest.raises(UserError) as err:
        load_questions(_cfg("nextqa", tmp_path))
    assert message in str(err.value)


def test_nextqa_missing_csv_says_where_to_get_it(tmp_path):
    with pytest.raises(UserError, match="nextqa annotations not found.*NExT-QA repository"):
        load_questions(_cfg("nextqa", tmp_path))


def test_jsonl_letters_indices_and_relative_videos(tmp_path):
    lines = [
        {"video": "clips/a.mp4", "question": "q1", "options": ["a", "b", "c"], "answer": "c"},
        {"video": "b.mp4", "question": "q2", "options": ["a", "b"], "answer": 0, "qid": "x", "category": "count"},
        {"video": str(tmp_path / "abs.mp4"), "question": "q3", "options": ["a", "b", "c", "d"]},
    ]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    qs = load_questions(_cfg("jsonl", tmp_path, split="test"))
    assert [q.answer for q in qs] == [2, 0, None]
    assert [q.qid for q in qs] == ["1", "x", "3"]
    assert qs[0].video_path == tmp_path / "clips" / "a.mp4" and qs[0].video_id == "clips/a"
    assert qs[2].video_path == tmp_path / "abs.mp4" and qs[1].meta == {"category": "count"}


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"video": "a.mp4", "question": "q", "options": ["a"]}', "test.jsonl: field 'line 1.options'"),
        ('{"video": "a.mp4", "question": "q", "options": ["a", "b"], "answer": "Z"}', "field 'line 1.answer'"),
        ('{"video": "a.mp4", "question": "q", "options": ["a", "b"], "answer": 2}', "field 'line 1.answer'"),
        ('{"video": "", "question": "q", "options": ["a", "b"]}', "field 'line 1.video'"),
        ('{"video": "a.mp4", "question": "q", "options": ["a", "b"]', "test.jsonl: line 1: not valid JSON"),
        ("[1, 2]", "field 'line 1': expected a JSON object"),
    ],
)
def test_jsonl_malformed(tmp_path, line, message):
    (tmp_path / "test.jsonl").write_text(line + "\n")
    with pytest.raises(UserError) as err:
        load_questions(_cfg("jsonl", tmp_path, split="test"))
    assert message in str(err.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(
        st.dictionaries(
            st.sampled_from(["q_uid", "question", "option 0", "option 1", "option 2", "option 3", "option 4", "x"]),
            json_values,
        ),
        max_size=3,
    )
    | json_values,
    answers=json_values,
)
def test_egoschema_loader_never_crashes_on_arbitrary_json(tmp_path, items, answers):
    """Whatever the files hold, the loader returns questions or raises one clear UserError."""
    (tmp_path / "questions.json").write_text(json.dumps(items))
    (tmp_path / "subset_answers.json").write_text(json.dumps(answers))
    try:
        qs = load_questions(_cfg("egoschema", tmp_path, split="subset"))
    except UserError as err:
        assert "\n" not in str(err) and str(tmp_path) in str(err)
    else:
        assert all(len(q.options) == 5 and q.answer in range(5) for q in qs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(
        st.dictionaries(st.sampled_from(["video", "question", "options", "answer", "qid"]), json_values), max_size=3
    )
)
def test_jsonl_loader_never_crashes_on_arbitrary_records(tmp_path, records):
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    try:
        qs = load_questions(_cfg("jsonl", tmp_path, split="test"))
    except UserError as err:
        assert "\n" not in str(err)
    else:
        assert all(q.answer is None or 0 <= q.answer < len(q.options) for q in qs)
