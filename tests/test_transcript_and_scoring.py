from pathlib import Path

from videoqa.answering.transcript import build_transcript
from videoqa.scoring.qa_metrics import score
from videoqa.scoring.tables import result_row, write_table
from videoqa.types import Answer, Caption, Question, VideoCaptions


def test_transcript_one_line_per_caption_with_its_second():
    vc = VideoCaptions("v", [Caption(0.5, "a man\nenters"), Caption(1.5, "he sits"), Caption(2.5, "he  reads")], 3.0)
    assert build_transcript(vc) == "0: a man enters\n1: he sits\n2: he reads"
    assert build_transcript(vc, caption_every=2) == "0: a man enters\n2: he reads"


def test_transcript_uses_the_second_a_frame_falls_in():
    vc = VideoCaptions("v", [Caption(0.0, "x"), Caption(59.6, "y"), Caption(61.0, "z")], 62)
    assert build_transcript(vc).splitlines() == ["0: x", "59: y", "61: z"]


def _q(qid, answer, category=None):
    return Question(
        qid,
        qid,
        Path(f"{qid}.mp4"),
        "q?",
        ("a", "b", "c", "d", "e"),
        answer,
        {"category": category} if category else {},
    )


def test_score_counts_failures_as_wrong_and_reports_them():
    questions = [_q("1", 0, "x"), _q("2", 1, "x"), _q("3", 2, "y"), _q("4", 3, "y"), _q("5", None)]
    answers = [
        Answer("1", 0, "A"),
        Answer("2", 2, "C"),
        Answer("3", None, "zzz", status="invalid"),
        Answer("4", None, "", status="video_failed"),
        Answer("5", 4, "E"),
    ]
    m = score(questions, answers)
    assert m["questions"] == 5 and m["labelled"] == 4 and m["correct"] == 1
    assert m["accuracy"] == 0.25
    assert m["accuracy_valid"] == 0.5
    assert m["status_counts"] == {"invalid": 1, "ok": 3, "video_failed": 1}
    assert m["per_category"] == {"x": {"accuracy": 0.5, "questions": 2}, "y": {"accuracy": 0.0, "questions": 2}}


def test_tables_written_as_csv_and_markdown(tmp_path):
    m = score([_q("1", 0)], [Answer("1", 0, "A")])
    m["timing"] = {"caption_s": 3.0, "decode_s": 1.0, "answer_s": 2.0, "video_seconds": 60.0}
    row = result_row("egoschema", "ser", "qwen", 500_000_000, m)
    assert row["accuracy"] == 100.0 and row["params"] == "500M"
    assert row["total_s"] == 6.0 and row["s_per_10min_video"] == 60.0
    table = write_table([row], tmp_path / "results", latex=True)
    assert len(table) == 1
    assert (tmp_path / "results.csv").read_text().startswith("dataset,captioner,llm,params")
    assert "| egoschema" in (tmp_path / "results.md").read_text()
    assert "\\begin{tabular}" in (tmp_path / "results.tex").read_text()
