"""`videoqa report`: the page's structure, escaping of every text from data, the header's facts,
question-set intersections, comparison directories, and one-line errors for bad run directories."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from videoqa.cli.main import main
from videoqa.report import write_report
from videoqa.report.page import embed_json
from videoqa.report.synthetic import write_synthetic_dataset, write_synthetic_run
from videoqa_base.errors import UserError

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    "</script><!-- <script>alert(1)</script> -->",
    "line\u2028separator & <b>bold</b>",
    "",
    "x" * 5000,
]


def hostile_caption(question, k: int) -> str:
    return HOSTILE[k % len(HOSTILE)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(data root, run A over 12 questions with hostile captions and a failed video, run B over 9)."""
    work = tmp_path_factory.mktemp("report")
    questions = write_synthetic_dataset(work / "data", 12)
    a = write_synthetic_run(
        work / "outputs",
        work / "data",
        questions,
        label="ser",
        frames_per_video=12,
        caption_text=hostile_caption,
        failed_videos=frozenset({"v0003"}),
        invalid_every=5,
    )
    b = write_synthetic_run(work / "outputs", work / "data", questions[:9], label="specialist", frames_per_video=12)
    return work / "data", a, b


class Structure(HTMLParser):
    """Tags, ids and the text of each <script> element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.scripts: list[tuple[dict, str]] = []
        self.open_script: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "script":
            self.open_script = attributes
            self.scripts.append((attributes, ""))

    def handle_data(self, data: str) -> None:
        if self.open_script is not None:
            attributes, text = self.scripts[-1]
            self.scripts[-1] = (attributes, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.open_script = None


def parse(page: Path) -> tuple[str, Structure]:
    html = page.read_text(encoding="utf-8")
    structure = Structure()
    structure.feed(html)
    return html, structure


def test_the_page_has_its_parts_and_embeds_the_data_as_inert_json(runs, tmp_path):
    _, a, _ = runs
    page = write_report([a], tmp_path / "out", max_thumbnails_per_video=0, progress=False)
    assert page == tmp_path / "out" / "report.html"
    html, structure = parse(page)
    assert {"filters", "cards", "more", "report-data", "f-text", "f-count"} <= structure.ids
    assert structure.tags.count("script") == 2  # the JSON data and our own script, nothing else
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no network resource"
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    (data_attrs, data_text), (code_attrs, code_text) = structure.scripts
    assert data_attrs == {"type": "application/json", "id": "report-data"}
    assert code_attrs == {} and "IntersectionObserver" in code_text and "innerHTML" not in code_text
    data = json.loads(data_text)
    assert len(data["questions"]) == 12
    video = data["videos"]["v0000"]["runs"][0]
    assert [c[1] for c in video["captions"][:6]] == HOSTILE  # the captions come back exactly, markup and all
    assert data["videos"]["v0003"]["runs"][0]["note"].startswith("missing")  # the failed video says why


def test_no_text_from_data_can_break_out_of_its_element(runs, tmp_path):
    _, a, _ = runs
    html, structure = parse(write_report([a], tmp_path / "out", max_thumbnails_per_video=0, progress=False))
    data_text = structure.scripts[0][1]
    for marker in ("</script", "<!--", "<script", "<img", "\u2028"):
        assert marker not in data_text
    # the page's own markup holds exactly its two scripts: no element came from a caption
    assert html.count("<script") == 2 and html.lower().count("</script") == 2
    assert "<img" not in html  # thumbnails are built by the script; no caption became an image


def test_embed_json_round_trips_and_escapes_what_could_close_the_element():
    data = {"t": "</script><!-- & \u2028 \u2029 <b>", "n": [1, 2.5, None]}
    text = embed_json(data)
    assert json.loads(text) == data
    assert not set("<>&\u2028\u2029") & set(text)


def test_the_header_states_identity_accuracy_breakdowns_failures_and_config(runs, tmp_path):
    _, a, _ = runs
    html, _ = parse(write_report([a], tmp_path / "out", max_thumbnails_per_video=0, progress=False))
    header = html.split("<header>", 1)[1].split("</header>", 1)[0]
    metrics = json.loads((a / "metrics.json").read_text())
    assert "synthetic / test" in header and "ser [ser: synthetic]" in header and "synthetic-llm" in header
    assert f"{100 * metrics['accuracy']:.1f}%" in header
    assert "Accuracy per category" in header and "temporal" in header
    assert "Answers by status" in header and "video_failed" in header and "invalid" in header
    assert "1 video(s) failed (missing: 1)" in header
    assert "<summary>resolved config (config.yaml)</summary>" in header
    assert "manifest essentials" in header and "Timings" in header and "12.50 s" in header


def test_runs_over_different_question_sets_compare_on_their_intersection(runs, tmp_path):
    _, a, b = runs
    html, structure = parse(write_report([a, b], tmp_path / "out", max_thumbnails_per_video=0, progress=False))
    data = json.loads(structure.scripts[0][1])
    assert len(data["questions"]) == 9 and [r["label"] for r in data["runs"]] == ["ser", "specialist"]
    assert "ser: 12, specialist: 9" in html and "<b>9</b> questions common to all" in html
    assert "McNemar p" in html and "Agreement between runs" in html
    assert all(len(q["results"]) == 2 for q in data["questions"])


def test_a_comparison_directory_expands_into_its_runs_and_the_cli_writes_beside_it(runs, tmp_path, capsys):
    _, a, b = runs
    comparison = tmp_path / "compare"
    comparison.mkdir()
    (comparison / "manifest.json").write_text(json.dumps({"runs": [str(a), str(b)]}))
    assert main(["report", str(comparison), "--max-thumbnails", "0", "--quiet"]) == 0
    assert f"report: {comparison / 'report.html'}" in capsys.readouterr().out
    data = json.loads(parse(comparison / "report.html")[1].scripts[0][1])
    assert len(data["runs"]) == 2


def test_missing_videos_degrade_to_a_note(runs, tmp_path):
    _, a, _ = runs  # the synthetic dataset's videos do not exist
    page = write_report([a], tmp_path / "out", max_thumbnails_per_video=4, cache_dir=tmp_path / "cache", progress=False)
    data = json.loads(parse(page)[1].scripts[0][1])
    first = data["videos"]["v0000"]["runs"][0]
    assert first["thumbs"] == [] and first["note"].startswith("video not found: ")
    assert not (tmp_path / "out" / "report_files").exists() or not any((tmp_path / "out" / "report_files").iterdir())


def test_bad_run_directories_fail_in_one_line_naming_the_file(runs, tmp_path):
    _, a, _ = runs
    with pytest.raises(UserError, match="not a run directory"):
        write_report([tmp_path], tmp_path / "out", progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "predictions.jsonl").write_text((a / "predictions.jsonl").read_text().replace("}\n", "\n", 1))
    with pytest.raises(UserError, match=r"broken/predictions.jsonl: line 1: not valid JSON"):
        write_report([broken], tmp_path / "out", progress=False)
    (broken / "predictions.jsonl").write_text('{"video_id": "v"}\n')
    with pytest.raises(UserError, match=r"predictions.jsonl: line 1: field 'qid' or 'options' missing"):
        write_report([broken], tmp_path / "out", progress=False)
    with pytest.raises(UserError, match="max thumbnails"):
        write_report([a], tmp_path / "out", max_thumbnails_per_video=-1, progress=False)


def test_a_torn_last_line_is_ignored_like_the_run_itself_does(runs, tmp_path):
    _, a, _ = runs
    torn = tmp_path / "torn"
    torn.mkdir()
    for name in ("config.yaml", "metrics.json", "captions.jsonl"):
        (torn / name).write_bytes((a / name).read_bytes())
    text = (a / "predictions.jsonl").read_text()
    (torn / "predictions.jsonl").write_text(text + text.splitlines()[0][:40])  # a kill mid-append
    data = json.loads(parse(write_report([torn], tmp_path / "out", progress=False))[1].scripts[0][1])
    assert len(data["questions"]) == 12


def test_markup_in_questions_options_output_categories_and_names_stays_text(tmp_path):
    from videoqa.config import DatasetConfig
    from videoqa.datasets import load_questions

    root = tmp_path / "data"
    write_synthetic_dataset(root, 3)
    rows = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    for row in rows:
        row |= {"question": "<script>q()</script>?", "category": "<i>cat</i>", "options": ["<b>o</b>", "x", "y"]}
        row["answer"] = 0
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    questions = load_questions(DatasetConfig(name="synthetic", type="jsonl", data_root=str(root), split="test"))
    run = write_synthetic_run(
        tmp_path / "out", root, questions, label="<b>cap</b>", frames_per_video=2, invalid_every=1
    )
    predictions = run / "predictions.jsonl"
    predictions.write_text(predictions.read_text().replace("I cannot tell.", "<script>raw()</script>"))
    html, structure = parse(write_report([run], tmp_path / "page", progress=False, max_thumbnails_per_video=0))
    outside = html.replace(structure.scripts[0][1], "").replace(structure.scripts[1][1], "")
    for markup in ("<b>cap</b>", "<i>cat</i>", "<b>o</b>", "q()</script>", "raw()"):
        assert markup not in outside
    assert "&lt;b&gt;cap&lt;/b&gt;" in outside and "&lt;i&gt;cat&lt;/i&gt;" in outside  # header, category filter
    data = json.loads(structure.scripts[0][1])
    assert data["questions"][0]["question"] == "<script>q()</script>?"
    assert data["questions"][0]["results"][0]["raw"] == "<script>raw()</script>"
