"""Readers of the paper's published data (LCS-558K, Karpathy COCO, ShareGPT4V, DCI) on fixtures in
the upstream formats, and `captioner data check`: counts, missing / broken images, malformed records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from captioner.data.paper import check, read_dci_file, read_records
from videoqa.cli.captioner import main as captioner_main
from videoqa_base.errors import UserError

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize(
    "name, fmt, records, samples",
    [
        ("lcs558k", "lcs558k", 3, 3),
        ("coco", "coco-karpathy", 3, 15),
        ("sharegpt4v", "sharegpt4v", 3, 3),
        ("dci", "dci", 2, 4),
    ],
)
def test_fixtures_read_and_check_clean(name, fmt, records, samples):
    report = check(FIXTURES / name, fmt)
    assert (report.records, report.samples, report.images) == (records, samples, records)
    assert report.ok and not report.missing and not report.broken


def test_readers_keep_the_upstream_fields():
    lcs = read_records(FIXTURES / "lcs558k", "lcs558k")
    assert lcs[0].image == "00041/000412093.jpg" and lcs[0].captions == ["wooden rowing boat tied to a jetty at dusk"]
    assert lcs[0].meta["prompts"] == ["Give a brief description of the image."]  # <image> token stripped
    coco = read_records(FIXTURES / "coco", "coco-karpathy", split="train")  # train + restval
    assert [r.image_id for r in coco] == ["57870", "522418"] and coco[
        0
    ].image == "train2014/COCO_train2014_000000057870.jpg"
    sharegpt = read_records(FIXTURES / "sharegpt4v", "sharegpt4v")
    assert sharegpt[1].image == "sam/images/sa_10442.jpg" and sharegpt[1].captions[0].startswith("A stone bridge")
    dci = read_records(FIXTURES / "dci", "dci")
    assert dci[0].meta["caption_source"] == "summaries" and len(dci[0].captions) == 3
    assert dci[1].meta["caption_source"] == "short+extra"  # no summaries: the human caption
    assert dci[1].captions[0].startswith("Three potted cacti on a sunny windowsill. The middle cactus")
    full = read_dci_file(FIXTURES / "dci/densely_captioned_images/annotations/sa_1590.json", captions="full")
    assert full.captions[0].startswith("A red tram stops") and full.meta["masks"] == 2
    assert [r.image_id for r in read_records(FIXTURES / "dci", "dci", split="test")] == ["sa_2733"]


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def test_check_lists_missing_and_broken_images_with_file_and_record(tmp_path):
    root = _copy("lcs558k", tmp_path)
    (root / "images/00173/001730518.jpg").unlink()
    (root / "images/00527/005276004.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    report = check(root, "lcs558k")
    assert report.records == 3 and not report.ok
    annotation = str(root / "blip_laion_cc_sbu_558k.json")
    assert report.missing == [{"image": str(root / "images/00173/001730518.jpg"), "record": f"{annotation}: [1]"}]
    assert len(report.broken) == 1 and report.broken[0]["record"] == f"{annotation}: [2]"
    assert report.broken[0]["image"].endswith("005276004.jpg") and report.broken[0]["error"]

    dci = _copy("dci", tmp_path)
    (dci / "densely_captioned_images/photos/sa_2733.jpg").unlink()
    report = check(dci, "dci")
    assert [m["record"] for m in report.missing] == [str(dci / "densely_captioned_images/annotations/sa_2733.json")]


def test_data_check_cli_exit_codes_and_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert (
        captioner_main(["data", "check", str(FIXTURES / "coco"), "--format", "coco-karpathy", "--json", str(out)]) == 0
    )
    assert json.loads(out.read_text())["samples"] == 15
    root = _copy("sharegpt4v", tmp_path)
    (root / "coco/train2017/000000033471.jpg").unlink()
    assert captioner_main(["data", "check", str(root), "--format", "sharegpt4v", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["missing"][0]["record"].endswith(
        "sharegpt4v_instruct_gpt4-vision_cap100k.json: [0]"
    )
    assert "missing images: 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, fmt, edit, expected",
    [
        ("lcs558k", "lcs558k", lambda d: d[1].pop("conversations"), "[1].conversations"),
        (
            "sharegpt4v",
            "sharegpt4v",
            lambda d: d[2]["conversations"][1].update({"from": "assistant"}),
            "[2].conversations[1]",
        ),
        ("coco", "coco-karpathy", lambda d: d["images"][2]["sentences"][3].pop("raw"), "images[2].sentences[3].raw"),
    ],
)
def test_malformed_record_names_file_and_record(tmp_path, name, fmt, edit, expected):
    root = _copy(name, tmp_path)
    annotation = next(p for p in root.glob("*.json"))
    data = json.loads(annotation.read_text())
    edit(data)
    annotation.write_text(json.dumps(data))
    with pytest.raises(UserError) as error:
        check(root, fmt)
    assert str(annotation) in str(error.value) and expected in str(error.value)


def test_malformed_dci_file_and_cli_error_line(tmp_path, capsys):
    root = _copy("dci", tmp_path)
    bad = root / "densely_captioned_images/annotations/sa_1590.json"
    data = json.loads(bad.read_text())
    data["summaries"]["base"] = []
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"sa_1590\.json: field 'summaries\.base'"):
        check(root, "dci")
    bad.write_text("{not json")
    assert captioner_main(["data", "check", str(root), "--format", "dci"]) != 0
    assert "sa_1590.json: not valid JSON" in capsys.readouterr().err
