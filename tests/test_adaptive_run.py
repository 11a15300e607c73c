"""Adaptive selection through the run object and `compare --variants`, on a generated scene video
with the demo's tiny SeR and tiny Qwen2 (transformers backend): spans in the transcript, LLM
relevance (the call path), the per-question choice recorded and kept on resume, one row per variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videoqa.answering.relevance import question_view
from videoqa.answering.transcript import build_transcript
from videoqa.compare import compare, variant_grid
from videoqa.config import load_run_config
from videoqa.fixtures.synthetic_video import make_scene_video
from videoqa.run import VideoQA
from videoqa.types import Caption, VideoCaptions
from videoqa_base.errors import UserError
from videoqa_base.jsonl import read_jsonl, write_jsonl

QUESTIONS = ("Which pattern comes first?", "Which pattern is shown last?")
OPTIONS = ["colour bars", "a test card", "a green screen", "a gradient", "a black screen"]


@pytest.fixture(scope="module")
def scene_dataset(tmp_path_factory) -> Path:
    """A JSONL dataset: two questions about one video of 3 scenes, each shown twice for 5 s."""
    root = tmp_path_factory.mktemp("scene-data")
    video, _ = make_scene_video(root / "scenes.mp4", scenes=3, repeats=2, seconds_each=5, fps=2, width=160)
    records = [
        {"qid": f"q{i}", "video_id": "scenes", "video": str(video), "question": q, "options": OPTIONS, "answer": 0}
        for i, q in enumerate(QUESTIONS)
    ]
    write_jsonl(root / "test.jsonl", records)
    (root / "scenes.yaml").write_text(f"name: scenes\ntype: jsonl\ndata_root: {root}\nsplit: test\n")
    return root / "scenes.yaml"


def overrides(out: Path, *extra: str) -> list[str]:
    return [
        f"output_dir={out}",
        "captioner.max_new_tokens=4",
        "captioner.batch_size=8",
        "llm.backend=transformers",
        "llm.dtype=float32",
        *extra,
    ]


def test_transcript_lines_show_spans_in_time_order():
    captions = VideoCaptions(
        "v",
        [Caption(12.5, "the bars", ((10.0, 20.0), (40.0, 50.0))), Caption(2.5, "a  card", ((0.0, 10.0),))],
        50.0,
    )
    assert build_transcript(captions) == "0-10: a card\n10-20, 40-50: the bars"
    # an expanded cluster: its children's captions replace its own, each with its spans
    record = {
        "times": [0.5, 1.5, 2.5, 3.5],
        "clusters": [
            {"representative": 0, "spans": [[0, 1]], "children": []},
            {
                "representative": 2,
                "spans": [[1, 4]],
                "children": [
                    {"representative": 1, "spans": [[1, 2]], "children": []},
                    {"representative": 3, "spans": [[2, 4]], "children": []},
                ],
            },
        ],
    }
    texts = [Caption(t, f"frame {t}") for t in (0.5, 1.5, 2.5, 3.5)]
    vc = VideoCaptions("v", texts, 4.0, selection=record)
    assert build_transcript(question_view(vc, [])) == "0-1: frame 0.5\n1-4: frame 2.5"
    assert build_transcript(question_view(vc, [1])) == "0-1: frame 0.5\n1-2: frame 1.5\n2-4: frame 3.5"


def test_llm_relevance_is_recorded_and_a_resumed_run_makes_the_same_choice(
    scene_dataset, tiny_models, tmp_path, one_torch_thread, monkeypatch
):
    config = load_run_config(
        dataset=str(scene_dataset),
        captioner=str(tiny_models[0]),
        llm=str(tiny_models[1]),
        overrides=overrides(
            tmp_path,
            "frames.select=adaptive",
            "adaptive.relevance=llm",
            "adaptive.max_captions=12",
            "adaptive.embedding=pixel",
            "run_id=rel",
        ),
    )
    first = VideoQA(config, progress=False).run()
    selections = [row for _, row in read_jsonl(first.run_dir / "selections.jsonl")]
    captions = next(row for _, row in read_jsonl(first.run_dir / "captions.jsonl"))
    per_video = first.metrics["timing"]["per_video"]["scenes"]
    assert per_video["frames_decoded"] == per_video["frames_embedded"] == 30
    assert per_video["frames_captioned"] == len(captions["captions"]) <= 12  # the budget, children included
    assert all(c["spans"] for c in captions["captions"])
    # one rating per top-level cluster and question, from the tiny LLM's constrained digits
    assert [s["qid"] for s in selections] == ["q0", "q1"]
    top_level = json.loads((first.run_dir / "metrics.json").read_text())["timing"]["per_video"]["scenes"]
    assert top_level["frames_captioned"] >= 3
    for s in selections:
        assert len(s["ratings"]) >= 3 and set(s["ratings"]) <= {1, 2, 3}
    tokens = {p["qid"]: p["prompt_tokens"] for _, p in read_jsonl(first.run_dir / "predictions.jsonl")}
    assert all(isinstance(t, int) and t > 0 for t in tokens.values())

    # a kill after the choice, before the answers: the resumed run must not ask for ratings again
    (first.run_dir / "predictions.jsonl").write_text("")

    def no_new_ratings(*args, **kwargs):
        raise AssertionError("the recorded selection should have been reused")

    monkeypatch.setattr("videoqa.answering.relevance.rate_clusters", no_new_ratings)
    again = VideoQA(config, progress=False).run()
    assert [row for _, row in read_jsonl(again.run_dir / "selections.jsonl")] == selections
    assert {p["qid"]: p["prompt_tokens"] for _, p in read_jsonl(again.run_dir / "predictions.jsonl")} == tokens


def test_compare_variants_writes_one_row_per_variant(scene_dataset, tiny_models, tmp_path, one_torch_thread):
    result = compare(
        str(scene_dataset),
        [str(tiny_models[0])],
        str(tiny_models[1]),
        overrides(tmp_path, "adaptive.embedding=pixel"),
        compare_id="variants",
        progress=False,
        variants=["frames.select=uniform,adaptive"],
    )
    table = result.table
    assert list(table["Variant"]) == ["frames.select=uniform", "frames.select=adaptive"]
    uniform, adaptive = table.to_dict("records")
    assert uniform["Captions/video"] == 30 and 3 <= adaptive["Captions/video"] < 30
    assert adaptive["Prompt tokens"] < uniform["Prompt tokens"]
    csv = (result.directory / "comparison.csv").read_text().splitlines()
    assert csv[0].startswith("Captioner,Variant,#params,Accuracy (%),Captions/video,Prompt tokens,") and len(csv) == 3
    assert len({str(r.run_dir) for r in result.runs}) == 2  # each variant its own run directory
    assert (result.directory / "accuracy_vs_time.png").is_file()


def test_variant_grid_and_its_errors():
    assert variant_grid([]) == [{}]
    grid = variant_grid(["frames.fps=0.5,1", "answer.prompt=standard,summarize"])
    assert grid[0] == {"frames.fps": "0.5", "answer.prompt": "standard"} and len(grid) == 4
    for bad in (["frames.fps"], ["frames.fps=1,1"], ["llm.model=x,y"], ["frames.fps=1,2", "frames.fps=3,4"]):
        with pytest.raises(UserError, match="--variants"):
            variant_grid(bad)
