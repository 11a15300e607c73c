"""Caption metrics (pycocoevalcap: PTB tokenizer, BLEU, METEOR, CIDEr-D) and `captioner eval`."""

from __future__ import annotations

import json
import math

import pytest

from captioner.evaluation.metrics import compute_caption_metrics
from videoqa.cli.captioner import main as captioner_main
from videoqa_base.errors import UserError

REFS = {
    "img1": ["the cat sat on the mat"],
    "img2": ["a red bus drives down a busy street"],
}


@pytest.fixture(scope="module")
def identical():
    return compute_caption_metrics(
        {k: v[0] for k, v in REFS.items()}, REFS, ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
    )


def test_identical_candidates_get_the_maximum(identical):
    scores = identical.scores
    assert scores["BLEU-1"] == pytest.approx(100.0, abs=1e-4)
    assert scores["BLEU-4"] == pytest.approx(100.0, abs=1e-4)
    assert scores["ROUGE-L"] == pytest.approx(100.0, abs=1e-6)
    # CIDEr-D: cosine 1 for n = 1..4, no length penalty, x10 -> 10.0, printed as 1000
    # (the two images share no n-gram, so every n-gram has a non-zero IDF weight)
    assert scores["CIDEr"] == pytest.approx(1000.0, rel=1e-6)
    assert scores["METEOR"] > 99.0  # METEOR keeps a tiny fragmentation penalty even for a perfect match
    assert identical.num_images == 2 and set(identical.per_image["CIDEr"]) == {"img1", "img2"}


def test_bleu_matches_a_hand_computation():
    # candidate "the cat sat on a mat" vs reference "the cat sat on the mat":
    # clipped precisions 5/6, 3/5, 2/4, 1/3; same length -> brevity penalty 1
    result = compute_caption_metrics({"img1": "The cat sat on a mat."}, {"img1": REFS["img1"]}, ("BLEU-1", "BLEU-4"))
    expected_bleu4 = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert result.scores["BLEU-1"] == pytest.approx(100 * 5 / 6, abs=1e-4)
    assert result.scores["BLEU-4"] == pytest.approx(100 * expected_bleu4, abs=1e-4)


def test_wrong_captions_score_lower_and_order_is_sensible(identical):
    near = {"img1": "the cat sat on the rug", "img2": "a blue bus drives down a busy street"}
    far = {"img1": "two dogs play in a park", "img2": "a plate of food on a table"}
    near_scores = compute_caption_metrics(near, REFS, ("BLEU-4", "CIDEr")).scores
    far_scores = compute_caption_metrics(far, REFS, ("BLEU-4", "CIDEr")).scores
    assert identical.scores["CIDEr"] > near_scores["CIDEr"] > far_scores["CIDEr"] >= 0
    assert identical.scores["BLEU-4"] > near_scores["BLEU-4"] > far_scores["BLEU-4"]
    assert far_scores["BLEU-4"] == pytest.approx(0.0, abs=1e-3)


def test_input_checks():
    with pytest.raises(UserError, match="no references"):
        compute_caption_metrics({"img1": "x", "other": "y"}, REFS, ("BLEU-4",))
    with pytest.raises(UserError, match="no prediction"):
        compute_caption_metrics({"img1": "x"}, REFS, ("BLEU-4",))
    with pytest.raises(UserError, match="unknown caption metric"):
        compute_caption_metrics({"img1": "x"}, {"img1": ["x"]}, ("SPICE",))


def test_bertscore_is_optional():
    result = compute_caption_metrics({"img1": "the cat"}, {"img1": ["the cat"]}, ("BLEU-1", "BERTScore"))
    try:
        import bert_score  # noqa: F401
    except ImportError:
        assert "BERTScore" not in result.scores
        assert "bert_score not installed" in result.skipped["BERTScore"]
    else:  # installed: either a score or a stated reason (e.g. no model weights offline)
        assert "BERTScore" in result.scores or result.skipped["BERTScore"]


def test_captioner_eval_cli_writes_json_and_table(tmp_path, capsys):
    predictions = tmp_path / "pred.jsonl"
    predictions.write_text(
        json.dumps({"image": "a.jpg", "caption": "the cat sat on the mat"})
        + "\n"
        + json.dumps({"image": "b.jpg", "caption": "a red bus drives down a busy street"})
        + "\n"
    )
    references = tmp_path / "refs.jsonl"  # keyed by id; predictions use the image path
    references.write_text(
        json.dumps({"image": "a.jpg", "id": "img1", "captions": REFS["img1"]})
        + "\n"
        + json.dumps({"image": "b.jpg", "id": "img2", "captions": REFS["img2"]})
        + "\n"
    )
    out = tmp_path / "scores.json"
    table = tmp_path / "scores.md"
    code = captioner_main(
        [
            "eval",
            "--predictions",
            str(predictions),
            "--references",
            str(references),
            "--metrics",
            "BLEU-4,CIDEr",
            "--json",
            str(out),
            "--markdown",
            str(table),
            "--per-image",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["num_images"] == 2
    assert report["scores"]["BLEU-4"] == pytest.approx(100.0, abs=1e-4)
    assert math.isclose(report["scores"]["CIDEr"], 1000.0, rel_tol=1e-6)
    assert set(report["per_image"]["CIDEr"]) == {"img1", "img2"}
    text = table.read_text()
    assert "| system" in text and "BLEU-4" in text and "pred" in text
    assert "BLEU-4" in capsys.readouterr().out


def test_captioner_eval_coco_formats_and_missing(tmp_path):
    predictions = tmp_path / "results.json"  # COCO results format
    predictions.write_text(json.dumps([{"image_id": 1, "caption": "the cat sat on the mat"}]))
    references = tmp_path / "captions.json"  # COCO annotation format, two images
    references.write_text(
        json.dumps(
            {
                "annotations": [
                    {"image_id": 1, "caption": "the cat sat on the mat"},
                    {"image_id": 2, "caption": "a dog"},
                ]
            }
        )
    )
    args = ["eval", "--predictions", str(predictions), "--references", str(references), "--metrics", "BLEU-4"]
    assert captioner_main(args) == 2  # image 2 has no prediction: a one-line user error (exit 2)
    out = tmp_path / "s.json"
    assert captioner_main(args + ["--allow-missing", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["num_images"] == 1 and report["references_without_prediction"] == 1
