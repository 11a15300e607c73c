"""Caption annotation readers (LLaVA JSON, Karpathy COCO, JSONL) and the lazy image dataset."""

from __future__ import annotations

import json
import logging

import pytest
from PIL import Image

from captioner.data.readers import (
    CaptionDataset,
    CaptionRecord,
    detect_format,
    expand_pairs,
    load_records,
    read_coco_karpathy,
    read_jsonl,
    read_llava_json,
    write_jsonl,
)
from videoqa_base import jsonl
from videoqa_base.errors import AnnotationError, UserError


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


LLAVA = [
    {
        "id": "004539375",
        "image": "00453/004539375.jpg",
        "conversations": [
            {"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
            {"from": "gpt", "value": "select luxury furniture 3 - inch gel memory foam mattress topper"},
        ],
    },
    {
        "id": "sa_1",
        "image": "sam/images/sa_1.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat do you see happening in this image?"},
            {"from": "gpt", "value": "A red bus parked next to a tree."},
        ],
    },
    {"id": "text-only", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
]

KARPATHY = {
    "images": [
        {
            "filepath": "val2014",
            "filename": "a.jpg",
            "split": "test",
            "cocoid": 1,
            "sentences": [{"raw": "A cat on a mat."}, {"raw": "A cat sits."}],
        },
        {
            "filepath": "train2014",
            "filename": "b.jpg",
            "split": "train",
            "cocoid": 2,
            "sentences": [
                {"raw": "Two dogs."},
                {"raw": "Dogs play."},
                {"raw": "Two dogs play."},
                {"raw": "Dogs in a park."},
                {"raw": "A pair of dogs."},
            ],
        },
        {
            "filepath": "val2014",
            "filename": "c.jpg",
            "split": "restval",
            "cocoid": 3,
            "sentences": [{"raw": "A red car."}],
        },
    ],
    "dataset": "coco",
}


# ---------------------------------------------------------------------------- LLaVA JSON


def test_llava_reader_takes_gpt_turns_as_captions_and_skips_text_only(tmp_path):
    records = read_llava_json(_write(tmp_path / "lcs.json", LLAVA))
    assert [r.image for r in records] == ["00453/004539375.jpg", "sam/images/sa_1.jpg"]
    assert records[1].captions == ["A red bus parked next to a tree."]
    assert records[0].image_id == "004539375"
    # the human turn (without the <image> tag) is kept as the instruction
    assert records[1].meta["prompts"] == ["What do you see happening in this image?"]
    pairs = expand_pairs(records, with_instruction=True)
    assert pairs[0].instruction == "Render a clear and concise summary of the photo."
    assert expand_pairs(records)[0].instruction is None


@pytest.mark.parametrize(
    "data, key",
    [
        ({"not": "a list"}, "(top level)"),
        ([{"image": "x.jpg"}], "[0].conversations"),
        ([{"image": "x.jpg", "conversations": [{"from": "robot", "value": "hi"}]}], "[0].conversations[0]"),
        ([{"image": "x.jpg", "conversations": [{"from": "human", "value": "<image>"}]}], "[0].conversations"),
        ([{"image": "", "conversations": []}], "[0].image"),
        ([{"image": "x.jpg", "conversations": [{"from": "gpt", "value": "  "}]}], "[0].conversations[0].value"),
        (["just a string"], "[0]"),
    ],
)
def test_llava_reader_malformed_names_file_and_key(tmp_path, data, key):
    path = _write(tmp_path / "bad.json", data)
    with pytest.raises(AnnotationError) as err:
        read_llava_json(path)
    assert err.value.key == key
    assert str(path) in str(err.value)


def test_invalid_json_is_a_user_error(tmp_path):
    path = _write(tmp_path / "broken.json", "[{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_llava_json(path)
    with pytest.raises(UserError, match="not found"):
        read_llava_json(tmp_path / "missing.json")


# ---------------------------------------------------------------------------- Karpathy COCO


def test_karpathy_train_split_includes_restval_and_expands_five_captions(tmp_path):
    path = _write(tmp_path / "dataset_coco.json", KARPATHY)
    train = read_coco_karpathy(path, "train")
    assert [r.image for r in train] == ["train2014/b.jpg", "val2014/c.jpg"]
    assert train[0].image_id == "2"
    assert len(expand_pairs(train)) == 6  # 5 + 1 captions -> 6 (image, caption) pairs (Tab. 14)
    test = read_coco_karpathy(path, "test")
    assert test[0].captions == ["A cat on a mat.", "A cat sits."]
    assert len(read_coco_karpathy(path, None)) == 3


@pytest.mark.parametrize(
    "data, key",
    [
        ({"images": "nope"}, "images"),
        ({"images": [{"filename": "a.jpg", "split": "train", "sentences": []}]}, "images[0].sentences"),
        (
            {"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"tokens": []}]}]},
            "images[0].sentences[0].raw",
        ),
        ({"images": [{"split": "train", "sentences": [{"raw": "x"}]}]}, "images[0].filename"),
        ({"images": [{"filename": "a.jpg", "split": "val", "sentences": [{"raw": "x"}]}]}, "images[*].split"),
    ],
)
def test_karpathy_malformed(tmp_path, data, key):
    with pytest.raises(AnnotationError) as err:
        read_coco_karpathy(_write(tmp_path / "coco.json", data), "train")
    assert err.value.key == key


# ---------------------------------------------------------------------------- JSONL


def test_jsonl_with_initial_captions_expands_per_initial(tmp_path):
    rows = [
        {
            "image": "a.png",
            "captions": ["a cat", "a small cat"],
            "initial_captions": [["a dog", "two cats", "a cat"], "a small dog"],
        },
        {"image": "b.png", "captions": "a red car"},  # a single string is one caption
    ]
    path = _write(tmp_path / "x.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = read_jsonl(path)
    assert records[0].initial_captions == [["a dog", "two cats", "a cat"], ["a small dog"]]
    assert records[1].captions == ["a red car"] and records[1].initial_captions is None
    pairs = expand_pairs(records[:1], with_initial=True)
    assert [(p.caption, p.initial_caption) for p in pairs] == [
        ("a cat", "a dog"),
        ("a cat", "two cats"),
        ("a cat", "a cat"),
        ("a small cat", "a small dog"),
    ]
    with pytest.raises(UserError, match="pseudo-initial"):
        expand_pairs(records, with_initial=True)  # b.png has none
    # round trip
    out = tmp_path / "out.jsonl"
    write_jsonl(records, out)
    assert [r.to_json() for r in read_jsonl(out)] == [r.to_json() for r in records]


@pytest.mark.parametrize(
    "line, key",
    [
        ("{not json", "line 1"),
        ("[1, 2]", "line 1"),
        ('{"captions": ["x"]}', "line 1.image"),
        ('{"image": "a.png", "captions": []}', "line 1.captions"),
        ('{"image": "a.png", "captions": ["x", ""]}', "line 1.captions"),
        ('{"image": "a.png", "captions": ["x", "y"], "initial_captions": ["z"]}', "line 1.initial_captions"),
        ('{"image": "a.png", "captions": ["x"], "initial_captions": [[]]}', "line 1.initial_captions[0]"),
    ],
)
def test_jsonl_malformed(tmp_path, line, key):
    with pytest.raises(AnnotationError) as err:
        read_jsonl(_write(tmp_path / "bad.jsonl", line + "\n"))
    assert err.value.key == key
    assert "bad.jsonl" in str(err.value)


def test_base_jsonl_reader_names_file_and_line(tmp_path):
    path = _write(tmp_path / "rows.jsonl", '{"a": 1}\n\n{"b": "é"}\n')
    assert jsonl.read_jsonl(path) == [(1, {"a": 1}), (3, {"b": "é"})]  # blank lines skipped, numbers kept
    with pytest.raises(jsonl.InvalidJSONLine) as err:
        jsonl.read_jsonl(_write(tmp_path / "torn.jsonl", '{"a": 1}\n{"b": '))
    assert err.value.key == "line 2" and str(err.value).startswith(f"{tmp_path / 'torn.jsonl'}: line 2: not valid JSON")
    with pytest.raises(AnnotationError, match="a JSON object, got list"):
        jsonl.parse_jsonl("[1]", "inline")
    with pytest.raises(UserError, match="missing.jsonl: file not found"):
        jsonl.read_jsonl(tmp_path / "missing.jsonl")


def test_base_jsonl_write_is_atomic_and_append_durable(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    assert jsonl.write_jsonl(path, [{"caption": "café"}, {"caption": "x"}]) == 2
    assert "café" in path.read_text(encoding="utf-8")  # UTF-8 as is, not \\u escapes

    def rows_then_crash():
        yield {"caption": "new"}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        jsonl.write_jsonl(path, rows_then_crash())
    assert [row for _, row in jsonl.read_jsonl(path)] == [{"caption": "café"}, {"caption": "x"}]  # old file intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.jsonl"]  # no temporary left behind
    jsonl.append_jsonl(path, [{"caption": "y"}])
    assert [row["caption"] for _, row in jsonl.read_jsonl(path)] == ["café", "x", "y"]
    with path.open("a", encoding="utf-8") as f:  # what a kill in the middle of an append leaves
        f.write('{"caption": "z')
    assert [row["caption"] for _, row in jsonl.read_jsonl(path, torn_last_line_ok=True)] == ["café", "x", "y"]
    with pytest.raises(jsonl.InvalidJSONLine, match="line 4"):
        jsonl.read_jsonl(path)
    with pytest.raises(jsonl.InvalidJSONLine, match="line 1"):  # only a torn *last* line is forgiven
        jsonl.parse_jsonl('{"a": \n{"b": 1}\n', "inline", torn_last_line_ok=True)


def test_format_detection(tmp_path):
    assert detect_format(_write(tmp_path / "a.json", LLAVA)) == "llava"
    assert detect_format(_write(tmp_path / "b.json", KARPATHY)) == "coco-karpathy"
    assert detect_format(_write(tmp_path / "c.jsonl", '{"image": "x", "captions": ["y"]}\n')) == "jsonl"
    assert detect_format(_write(tmp_path / "d.json", '{"image": "x", "captions": ["y"]}\n')) == "jsonl"
    assert len(load_records(tmp_path / "b.json", split="test")) == 1
    with pytest.raises(AnnotationError):
        detect_format(_write(tmp_path / "e.json", "hello"))


# ---------------------------------------------------------------------------- dataset


def _images(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("L", (8, 6), color=i * 40).save(root / name)  # grey: the dataset must return RGB


def test_dataset_reads_rgb_lazily(tmp_path):
    _images(tmp_path / "imgs", ["a.png", "b.png"])
    records = [CaptionRecord("a.png", ["x", "y"]), CaptionRecord("b.png", ["z"], [["w"]])]
    dataset = CaptionDataset(expand_pairs(records), tmp_path / "imgs")
    assert len(dataset) == 3
    item = dataset[2]
    assert item["caption"] == "z" and item["initial_caption"] is None
    assert item["image"].mode == "RGB" and item["image"].size == (8, 6)


def test_dataset_missing_images_error_or_skip(tmp_path, caplog):
    _images(tmp_path / "imgs", ["a.png"])
    records = [CaptionRecord("a.png", ["x"]), CaptionRecord("gone.png", ["y", "z"])]
    with pytest.raises(UserError) as err:
        CaptionDataset(expand_pairs(records), tmp_path / "imgs")
    assert "1 of 2 images are missing" in str(err.value) and "gone.png" in str(err.value)
    with caplog.at_level(logging.WARNING):
        dataset = CaptionDataset(expand_pairs(records), tmp_path / "imgs", on_missing="skip")
    assert len(dataset) == 1 and dataset.missing_images == ["gone.png"]
    assert "gone.png" in caplog.text and "2 pairs" in caplog.text
    with pytest.raises(UserError, match="no training pairs left"):
        CaptionDataset(expand_pairs(records[1:]), tmp_path / "imgs", on_missing="skip")


def test_dataset_broken_image_names_its_path(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    dataset = CaptionDataset(expand_pairs([CaptionRecord("broken.jpg", ["x"])]), tmp_path)
    with pytest.raises(UserError) as err:
        dataset[0]
    assert "cannot decode image" in str(err.value) and str(tmp_path / "broken.jpg") in str(err.value)
