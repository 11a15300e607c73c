"""Video-MME, LongVideoBench, MLVU and LVBench read from fixtures in their published formats (field
names and nesting as upstream, our own values); their metrics, breakdowns, subtitles and submission
files. End-to-end runs through `videoqa run` are in test_benchmarks_run.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from videoqa.answering.transcript import build_transcript, build_transcripts
from videoqa.config import DatasetConfig, TranscriptConfig
from videoqa.datasets import load_questions
from videoqa.datasets.subtitles import Subtitle, read_subtitles
from videoqa.scoring.qa_metrics import score
from videoqa.scoring.submissions import submission_files
from videoqa.scoring.tables import result_row, write_table
from videoqa.types import Answer, Caption, Question, VideoCaptions
from videoqa_base.errors import UserError

# ---------------------------------------------------------------------------- upstream-format writers

VIDEOMME_ROWS = [  # videomme/test-00000-of-00001.parquet
    {
        "video_id": "001",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "url": "https://www.youtube.com/watch?v=aaaaaaaaaaa",
        "videoID": "aaaaaaaaaaa",
        "question_id": "001-1",
        "task_type": "Counting Problem",
        "question": "How many red squares appear?",
        "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."],
        "answer": "C",
    },
    {
        "video_id": "001",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "url": "https://www.youtube.com/watch?v=aaaaaaaaaaa",
        "videoID": "aaaaaaaaaaa",
        "question_id": "001-2",
        "task_type": "Object Recognition",
        "question": "What is shown first?",
        "options": ["A. A test pattern.", "B. A dog.", "C. A car.", "D. A tree."],
        "answer": "A",
    },
    {
        "video_id": "002",
        "duration": "long",
        "domain": "Sports Competition",
        "sub_category": "Football",
        "url": "https://www.youtube.com/watch?v=bbbbbbbbbbb",
        "videoID": "bbbbbbbbbbb",
        "question_id": "002-1",
        "task_type": "Counting Problem",
        "question": "How many goals are scored?",
        "options": ["A. 0.", "B. 1.", "C. 2.", "D. 3."],
        "answer": "B",
    },
]

SRT = """1
00:00:00,500 --> 00:00:01,800
<font color="#ffffff">Welcome to the</font>
show.

2
00:00:02,000 --> 00:00:03,250
Here is the <i>second</i> line.
"""


def write_videomme(root: Path, rows: list[dict] = VIDEOMME_ROWS) -> Path:
    (root / "videomme").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "subtitle").mkdir(exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")
    (root / "subtitle" / "aaaaaaaaaaa.srt").write_text(SRT)
    return root


def lvb_record(i: int, candidates: list[str], correct: int | None, video: str = "vid1", **over) -> dict:
    record = {
        "video_id": video,
        "question": f"Question {i} about the referred scene?",
        "question_wo_referring_query": f"Question {i}?",
        "candidates": candidates,
        "correct_choice": correct,
        "position": [3, 5],
        "topic_category": "NP-News-Programs",
        "question_category": ["S2E", "E2O", "T3O"][i % 3],
        "level": "L1-Perception",
        "id": f"{video}_{i}",
        "video_path": f"{video}.mp4",
        "subtitle_path": f"{video}_en.json",
        "duration_group": [15, 60, 600][i % 3],
        "starting_timestamp_for_subtitles": 10.0,
        "duration": 4.0,
        "view_count": 1234,
    }
    if correct is None:
        del record["correct_choice"]
    return record | over


LVB_RECORDS = [
    lvb_record(0, ["red", "green", "blue", "white", "black"], 4),  # 5 options
    lvb_record(1, ["yes", "no"], 1),  # 2 options
    lvb_record(2, ["one", "two", "three"], 0, video="vid2"),
]
LVB_SUBTITLES = [  # the two entry forms LongVideoBench ships
    {"start": "00:00:10.500", "end": "00:00:11.000", "line": "hello there"},
    {"timestamp": [12.25, None], "text": "and goodbye"},
]


def write_longvideobench(root: Path, records: list[dict] = LVB_RECORDS, parquet: bool = False, name: str = "") -> Path:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "subtitles").mkdir(exist_ok=True)
    (root / "subtitles" / "vid1_en.json").write_text(json.dumps(LVB_SUBTITLES))
    if parquet:  # the HF parquet: option0..option4 padded with "N/A" instead of candidates
        rows = []
        for r in records:
            options = {f"option{k}": (r["candidates"] + ["N/A"] * 5)[k] for k in range(5)}
            rows.append({k: v for k, v in r.items() if k != "candidates"} | options)
        pd.DataFrame(rows).to_parquet(root / (name or "validation-00000-of-00001.parquet"))
    else:
        (root / (name or "lvb_val.json")).write_text(json.dumps(records))
    return root


MLVU_TASKS = {
    "1_plotQA": [
        {
            "video": "movie_a.mp4",
            "duration": 4.0,
            "question": "What does the pattern do?",
            "candidates": ["It moves", "It stops", "It fades", "It spins"],
            "answer": "It moves",
            "question_type": "plotQA",
        },
        {
            "video": "movie_a.mp4",
            "duration": 4.0,
            "question": "Which colour dominates?",
            "candidates": ["red", "green", "blue", "yellow"],
            "answer": "blue",
            "question_type": "plotQA",
        },
    ],
    "2_needle": [
        {
            "video": "needle_b.mp4",
            "duration": 3.0,
            "question": "Which object is inserted?",
            "candidates": ["a cup", "a ball", "a hat", "a key", "a pen", "a shoe"],  # 6 options
            "answer": "a shoe",
            "question_type": "findNeedle",
        }
    ],
    "8_sub_scene": [
        {
            "video": "sub_c.mp4",
            "duration": 3.0,
            "question": "Describe the scene.",
            "answer": "A pattern.",
            "question_type": "subPlot",
        }
    ],
}


def write_mlvu(root: Path, tasks: dict[str, list[dict]] = MLVU_TASKS) -> Path:
    (root / "json").mkdir(parents=True, exist_ok=True)
    for stem, items in tasks.items():
        (root / "json" / f"{stem}.json").write_text(json.dumps(items, indent=1))
        (root / "video" / stem).mkdir(parents=True, exist_ok=True)
    return root


LVBENCH_VIDEOS = [  # video_info.meta.jsonl, one line per video
    {
        "key": "keyAAAAAAAA",
        "type": "sports",
        "video_info": {"duration_minutes": 0.05, "fps": 30.0, "resolution": {"width": 64, "height": 48}},
        "qa": [
            {
                "uid": "101",
                "question": "What colour is the first frame?\n(A) red\n(B) green\n(C) blue\n(D) black",
                "answer": "B",
                "question_type": ["entity recognition", "key information retrieval"],
                "time_reference": "00:00-00:01",
            },
            {
                "uid": "102",
                "question": "Why does the picture change?\n(A) a cut\n(B) a fade\n(C) a zoom\n(D) nothing changes",
                "answer": "D",
                "question_type": ["reasoning"],
                "time_reference": "00:01-00:03",
            },
        ],
    }
]


def write_lvbench(root: Path, videos: list[dict] = LVBENCH_VIDEOS) -> Path:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "video_info.meta.jsonl").write_text("".join(json.dumps(v) + "\n" for v in videos))
    return root


def cfg(kind: str, root: Path, split: str, **options) -> DatasetConfig:
    return DatasetConfig(name=kind, type=kind, data_root=str(root), split=split, options=options)


# ---------------------------------------------------------------------------- loaders


def test_videomme_parquet(tmp_path):
    root = write_videomme(tmp_path)
    (root / "data" / "bbbbbbbbbbb.MP4").write_bytes(b"x")  # Video-MME ships some upper-case extensions
    questions = load_questions(cfg("videomme", root, "test"))
    assert [q.qid for q in questions] == ["001-1", "001-2", "002-1"]
    q = questions[0]
    assert q.options == ("One.", "Two.", "Three.", "Four.") and q.answer == 2  # letters stripped, "C" -> 2
    assert q.breakdowns == {"duration": ("short",), "domain": ("Knowledge",), "task_type": ("Counting Problem",)}
    assert q.video_path == root / "data" / "aaaaaaaaaaa.mp4"  # absent: the conventional path
    assert questions[2].video_path == root / "data" / "bbbbbbbbbbb.MP4"
    assert q.subtitles == root / "subtitle" / "aaaaaaaaaaa.srt" and questions[2].subtitles is None


def test_longvideobench_json_and_parquet_read_the_same(tmp_path):
    from_json = load_questions(cfg("longvideobench", write_longvideobench(tmp_path / "j"), "val"))
    from_parquet = load_questions(cfg("longvideobench", write_longvideobench(tmp_path / "p", parquet=True), "val"))
    for questions, root in ((from_json, tmp_path / "j"), (from_parquet, tmp_path / "p")):
        assert [len(q.options) for q in questions] == [5, 2, 3]  # "N/A" padding is never an option
        assert [q.answer for q in questions] == [4, 1, 0]
        assert questions[1].letters == ("A", "B")
        assert questions[0].breakdowns == {"duration_group": ("15",), "question_category": ("S2E",)}
        assert questions[0].video_path == root / "videos" / "vid1.mp4"
        assert questions[0].subtitles == root / "subtitles" / "vid1_en.json"
        assert questions[0].meta["subtitle_offset"] == 10.0
    assert [q.options for q in from_json] == [q.options for q in from_parquet]


def test_longvideobench_test_split_has_no_answers_and_writes_letters(tmp_path):
    records = [lvb_record(0, ["a", "b", "c"], None), lvb_record(1, ["a", "b"], None)]
    root = write_longvideobench(tmp_path, records, name="lvb_test_wo_gt.json")
    questions = load_questions(cfg("longvideobench", root, "test"))
    assert [q.answer for q in questions] == [None, None]
    files = submission_files("longvideobench", "test", [Answer("vid1_0", 2, "C"), Answer("vid1_1", None, "")])
    assert json.loads(files["submission.json"]) == {"vid1_0": "C"}


def test_mlvu_reads_tasks_and_skips_open_ended_ones(tmp_path, caplog):
    root = write_mlvu(tmp_path)
    with caplog.at_level(logging.WARNING):
        questions = load_questions(cfg("mlvu", root, "dev"))
    assert "skipped 1 open-ended" in caplog.text
    assert [q.qid for q in questions] == ["1_plotQA/0", "1_plotQA/1", "2_needle/0"]
    assert [q.answer for q in questions] == [0, 2, 5]  # the answer's text located among the candidates
    assert questions[2].letters == ("A", "B", "C", "D", "E", "F")
    assert questions[0].video_path == root / "video" / "1_plotQA" / "movie_a.mp4"
    assert questions[0].video_id == questions[1].video_id  # one video, captioned once
    assert questions[2].breakdowns == {"task": ("needle",)}


def test_lvbench_options_inside_the_question_and_multilabel_types(tmp_path):
    questions = load_questions(cfg("lvbench", write_lvbench(tmp_path), "test"))
    q = questions[0]
    assert q.question == "What colour is the first frame?"
    assert q.options == ("red", "green", "blue", "black") and q.answer == 1
    assert q.breakdowns == {"question_type": ("entity recognition", "key information retrieval")}
    assert q.video_path == tmp_path / "videos" / "keyAAAAAAAA.mp4"


@pytest.mark.parametrize(
    "kind, split, write, message",
    [
        (
            "videomme",
            "test",
            lambda r: write_videomme(r, [VIDEOMME_ROWS[0] | {"options": ["One.", "Two.", "Three.", "Four."]}]),
            "test-00000-of-00001.parquet: field 'row 0 (question_id 001-1).options': expected options prefixed",
        ),
        (
            "videomme",
            "test",
            lambda r: write_videomme(r, [VIDEOMME_ROWS[0] | {"answer": "E"}]),
            "field 'row 0 (question_id 001-1).answer': expected an option letter A-D",
        ),
        (
            "longvideobench",
            "val",
            lambda r: write_longvideobench(r, [lvb_record(0, ["a", "b"], 3)]),
            "lvb_val.json: field '[0] (id vid1_0).correct_choice': expected an option index 0-1",
        ),
        (
            "longvideobench",
            "val",
            lambda r: write_longvideobench(r, [lvb_record(0, ["only one"], 0)], parquet=True),
            "validation-00000-of-00001.parquet: field '[0] (id vid1_0).option0..option4': expected 2-10 options",
        ),
        (
            "mlvu",
            "dev",
            lambda r: write_mlvu(r, {"3_ego": [MLVU_TASKS["1_plotQA"][0] | {"answer": "It sings"}]}),
            "3_ego.json: field '[0] (video movie_a.mp4).answer': expected the text of one of the candidates",
        ),
        (
            "lvbench",
            "test",
            lambda r: write_lvbench(r, [LVBENCH_VIDEOS[0] | {"qa": [{"uid": "7", "question": "No options here?"}]}]),
            "video_info.meta.jsonl: field 'line 1 (key keyAAAAAAAA).qa[0].question': expected a question followed",
        ),
        (
            "lvbench",
            "test",
            lambda r: (r / "video_info.meta.jsonl").write_text('{"key": "k", "qa": []}\n{"key": \n'),
            "video_info.meta.jsonl: line 2",
        ),
    ],
)
def test_a_malformed_record_is_one_line_naming_file_and_record(tmp_path, kind, split, write, message):
    write(tmp_path)
    with pytest.raises(UserError) as err:
        load_questions(cfg(kind, tmp_path, split))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_annotations_say_where_to_get_them(tmp_path):
    for kind, split, where in (
        ("videomme", "test", "lmms-lab/Video-MME"),
        ("longvideobench", "val", "longvideobench/LongVideoBench"),
        ("mlvu", "dev", "MLVU/MVLU"),
        ("lvbench", "test", "THUDM/LVBench"),
    ):
        with pytest.raises(UserError, match=where):
            load_questions(cfg(kind, tmp_path, split))


# ---------------------------------------------------------------------------- metrics and tables


def _q(qid: str, answer: int | None, n_options: int = 4, **breakdowns: tuple[str, ...]) -> Question:
    options = tuple(f"option {k}" for k in range(n_options))
    return Question(qid, qid, Path(f"{qid}.mp4"), "q?", options, answer, breakdowns=breakdowns)


def test_m_avg_is_the_mean_of_task_accuracies_not_pooled():
    # task a: 3/4 right; task b: 0/1 right -> M-Avg (75 + 0) / 2 = 37.5, pooled 3/5 = 60
    questions = [_q(f"a{i}", 0, task=("a",)) for i in range(4)] + [_q("b0", 1, task=("b",))]
    answers = [Answer("a0", 0, "A"), Answer("a1", 0, "A"), Answer("a2", 0, "A"), Answer("a3", 1, "B")]
    answers.append(Answer("b0", None, "", status="invalid"))
    metrics = score(questions, answers, headline="m_avg")
    assert metrics["m_avg"] == pytest.approx(0.375) and metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["headline"] == "m_avg"
    assert metrics["breakdowns"]["task"] == {
        "a": {"accuracy": 0.75, "questions": 4},
        "b": {"accuracy": 0.0, "questions": 1},
    }
    metrics["timing"] = {"caption_s": 1.0, "decode_s": 0.0, "answer_s": 1.0, "video_seconds": 10.0}
    row = result_row("mlvu", "ser", "qwen", None, metrics)
    assert row["m_avg"] == 37.5 and row["accuracy"] == 60.0
    assert row["task: a"] == 75.0 and row["task: b"] == 0.0


def test_multilabel_breakdowns_count_a_question_once_under_each_tag(tmp_path):
    questions = [
        _q("1", 0, question_type=("reasoning", "entity recognition")),
        _q("2", 1, question_type=("reasoning",)),
        _q("3", 2, question_type=("entity recognition", "entity recognition")),  # a repeated tag counts once
        _q("4", None, question_type=("reasoning",)),  # unlabelled: not scored
    ]
    answers = [Answer("1", 0, "A"), Answer("2", 0, "A"), Answer("3", 2, "C"), Answer("4", 1, "B")]
    metrics = score(questions, answers)
    assert metrics["breakdowns"]["question_type"] == {
        "entity recognition": {"accuracy": 1.0, "questions": 2},
        "reasoning": {"accuracy": 0.5, "questions": 2},
    }
    assert metrics["accuracy"] == pytest.approx(2 / 3) and "m_avg" not in metrics
    metrics["timing"] = {"caption_s": 1.0, "decode_s": 0.0, "answer_s": 1.0, "video_seconds": 10.0}
    table = write_table([result_row("lvbench", "ser", "qwen", None, metrics)], tmp_path / "results")
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert header.endswith(",question_type: entity recognition,question_type: reasoning")
    assert "m_avg" not in table.columns
    assert "question_type: reasoning |" in (tmp_path / "results.md").read_text()


def test_options_from_two_to_six_score_by_their_own_letters():
    from videoqa.answering.prompts import format_options, letter_to_index, load_prompt

    template = load_prompt("standard")
    assert format_options(template, ("x", "y")) == "A. x\nB. y"
    assert format_options(template, tuple("uvwxyz")).splitlines()[-1] == "F. z"
    assert letter_to_index("F", 6) == 5 and letter_to_index("C", 2) is None
    questions = [_q("two", 1, 2), _q("six", 5, 6)]
    metrics = score(questions, [Answer("two", 1, "B"), Answer("six", 5, "F")])
    assert metrics["accuracy"] == 1.0


# ---------------------------------------------------------------------------- subtitles


def test_srt_and_longvideobench_subtitles_are_read_with_times(tmp_path):
    srt = tmp_path / "a.srt"
    srt.write_text("\ufeff" + SRT.replace("\n", "\r\n"))  # a BOM and Windows line ends, as found in the wild
    assert read_subtitles(srt) == [
        Subtitle(0.5, 1.8, "Welcome to the show."),
        Subtitle(2.0, 3.25, "Here is the second line."),
    ]
    lvb = tmp_path / "v.json"
    lvb.write_text(json.dumps(LVB_SUBTITLES))
    assert read_subtitles(lvb, offset=10.0) == [Subtitle(0.5, 1.0, "hello there"), Subtitle(2.25, 2.25, "and goodbye")]
    (tmp_path / "bad.srt").write_text("1\n00:00:01 -> 00:00:02\nhi\n")
    with pytest.raises(UserError, match=r"bad.srt: field 'block 1': expected a timing line"):
        read_subtitles(tmp_path / "bad.srt")
    (tmp_path / "bad.json").write_text(json.dumps([{"start": "soon", "line": "x"}]))
    with pytest.raises(UserError, match=r"bad.json: field '\[0\].start'"):
        read_subtitles(tmp_path / "bad.json")


def test_subtitles_merge_into_the_transcript_by_time_marked_as_speech(tmp_path):
    captions = VideoCaptions("v", [Caption(0.0, "a title card"), Caption(2.0, "a man talks"), Caption(4.0, "a car")], 5)
    subtitles = [Subtitle(0.5, 1.8, "Welcome."), Subtitle(2.9, 3.5, "Look at this.")]
    assert build_transcript(captions, subtitles=subtitles).splitlines() == [
        "0: a title card",
        "0: [speech] Welcome.",
        "2: a man talks",
        "2: [speech] Look at this.",
        "4: a car",
    ]
    root = write_videomme(tmp_path)
    questions = load_questions(cfg("videomme", root, "test"))
    videos = {"aaaaaaaaaaa": captions, "bbbbbbbbbbb": VideoCaptions("bbbbbbbbbbb", [Caption(0.0, "grass")], 1)}
    on = build_transcripts(questions, videos, TranscriptConfig(subtitles=True))
    off = build_transcripts(questions, videos, TranscriptConfig())
    assert "0: [speech] Welcome to the show." in on["aaaaaaaaaaa"] and "[speech]" not in off["aaaaaaaaaaa"]
    assert on["bbbbbbbbbbb"] == off["bbbbbbbbbbb"] == "0: grass"  # no subtitle file: captions only


# ---------------------------------------------------------------------------- submissions, frame budgets


def test_egoschema_full_split_writes_the_kaggle_csv_beside_the_json():
    answers = [Answer("uid-1", 3, "D"), Answer("uid-2", 0, "A"), Answer("uid-3", None, "", status="invalid")]
    files = submission_files("egoschema", "full", answers)
    assert files["submission.csv"].splitlines() == ["q_uid,answer", "uid-1,3", "uid-2,0"]
    assert json.loads(files["submission.json"]) == {"uid-1": 3, "uid-2": 0}
    assert submission_files("egoschema", "subset", answers) == {}
    assert set(submission_files("nextqa", "full", answers)) == {"submission.json"}


def test_benchmark_yamls_set_a_frame_budget_that_an_explicit_setting_overrides(tiny_models):
    from videoqa.config import load_run_config

    captioner, llm = tiny_models
    for name, budget in (("videomme", 256), ("longvideobench", 256), ("mlvu", 480), ("lvbench", 480)):
        config = load_run_config(dataset=name, captioner=str(captioner), llm=str(llm))
        assert config.frames.max_frames == budget
    config = load_run_config(
        dataset="lvbench", captioner=str(captioner), llm=str(llm), overrides=["frames.max_frames=8"]
    )
    assert config.frames.max_frames == 8
    assert load_run_config(dataset="mlvu", captioner=str(captioner), llm=str(llm)).dataset.headline == "m_avg"
    assert load_run_config(dataset="egoschema", captioner=str(captioner), llm=str(llm)).frames.max_frames is None


def test_datasets_command_lists_layouts_and_checks_a_data_root(tmp_path, capsys):
    from videoqa.cli.main import main

    write_videomme(tmp_path / "videomme")
    (tmp_path / "videomme" / "data" / "aaaaaaaaaaa.mp4").write_bytes(b"not decoded")
    write_lvbench(tmp_path / "lvbench")
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("egoschema", "nextqa", "intentqa", "jsonl", "videomme", "longvideobench", "mlvu", "lvbench"):
        assert f"\n{name}  (type {name}" in "\n" + out
    assert "videomme/test-00000-of-00001.parquet" in out  # the layout
    assert "huggingface.co/datasets/THUDM/LVBench" in out  # where to get it
    assert "3 questions (3 with answers), 2 videos, 1 missing" in out and "1 with subtitles" in out
    assert "2 questions (2 with answers), 1 videos, 1 missing" in out
    assert main(["datasets", "--data-root", str(tmp_path), "--dataset", "mlvu", "--brief"]) == 1
    assert "not there: MLVU annotations not found" in capsys.readouterr().out


def test_download_folders_are_found_under_the_data_root(tmp_path):
    write_mlvu(tmp_path / "mlvu" / "MLVU")  # the Hugging Face download keeps json/ and video/ in MLVU/
    assert len(load_questions(cfg("mlvu", tmp_path / "mlvu", "dev"))) == 3
    write_lvbench(tmp_path / "lvbench" / "data")  # the GitHub repository keeps the annotations in data/
    questions = load_questions(cfg("lvbench", tmp_path / "lvbench", "test"))
    assert [q.qid for q in questions] == ["101", "102"]
