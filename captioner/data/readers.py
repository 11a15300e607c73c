"""Caption training data: annotation readers and a lazy image Dataset.

Three annotation formats are read into the same `CaptionRecord` (one image, its reference
captions, optionally pseudo-initial captions for stage 2):

* LLaVA conversation JSON (LCS-558K pretraining, ShareGPT4V): a list of
  `{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}]}`.
  Every "gpt" turn is a caption of the entry's image. Entries without an "image" key are
  text-only conversations (they occur in instruction mixes) and are skipped and counted.
* COCO captions in the Karpathy-split JSON: `{"images": [{"filepath", "filename", "split",
  "sentences": [{"raw": ...}], ...}]}`; `split="train"` also takes "restval" (the usual 113K).
* Plain JSONL, one image per line: `{"image": ..., "captions": [...]}`, optionally with
  `"initial_captions"`: one entry per caption, each a string or a list of strings
  (the pseudo-initial captions of that caption; App. F.1 makes three per caption).

`expand_pairs` turns records into training pairs: an image with five captions gives five
pairs (stage 1), and with three pseudo-initial captions per caption fifteen (stage 2), as in
Tab. 14 of the paper.

Missing and broken images: `CaptionDataset` checks that every image file exists when it is
built (a cheap `stat`, done once). By default (`on_missing="error"`) a missing file raises a
`UserError` naming the count and the first paths, before any training step runs; with
`on_missing="skip"` the pairs of missing images are dropped and a warning lists them.
An image that exists but cannot be decoded is found only when it is read; that raises a
`UserError` with its path (a silent skip inside a training step would change the batch size
and hide data problems).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset as TorchDataset

from videoqa_base import jsonl
from videoqa_base.errors import AnnotationError, UserError

logger = logging.getLogger(__name__)

AnnotationFormat = Literal["auto", "llava", "coco-karpathy", "jsonl"]


@dataclass
class CaptionRecord:
    """One image and its reference captions (and, for stage 2, their pseudo-initial captions)."""

    image: str  # path relative to the image root (or absolute)
    captions: list[str]
    # initial_captions[i] = the pseudo-initial captions made from captions[i]
    initial_captions: list[list[str]] | None = None
    image_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # where the record came from, "<file>: <record>" (for reports; not written by to_json)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"image": self.image, "captions": self.captions}
        if self.image_id and self.image_id != self.image:
            row["id"] = self.image_id
        if self.initial_captions is not None:
            row["initial_captions"] = self.initial_captions
        if self.meta:
            row["meta"] = self.meta
        return row


@dataclass(frozen=True)
class CaptionPair:
    """One training example: an image, its target caption and (stage 2) the caption to refine."""

    image: str
    caption: str
    initial_caption: str | None = None
    image_id: str = ""
    instruction: str | None = None  # the prompt stored with the caption (LLaVA's human turn), if any


# ---------------------------------------------------------------------------- readers


def _load_json(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: annotation file not found") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _strip_image_token(text: str) -> str:
    return text.replace("<image>", "").strip()


def read_llava_json(path: str | Path) -> list[CaptionRecord]:
    """LLaVA conversation JSON (LCS-558K, ShareGPT4V) -> one record per entry with an image."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, "(top level)", "a list of conversation entries")
    records: list[CaptionRecord] = []
    text_only = 0
    for index, entry in enumerate(data):
        where = f"[{index}]"
        if not isinstance(entry, dict):
            raise AnnotationError(path, where, "an object with 'image' and 'conversations'")
        if "image" not in entry:
            text_only += 1
            continue
        if not _non_empty_str(entry["image"]):
            raise AnnotationError(path, f"{where}.image", "a non-empty image path")
        turns = entry.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise AnnotationError(path, f"{where}.conversations", "a non-empty list of turns")
        captions, prompts = [], []
        for t, turn in enumerate(turns):
            if (
                not isinstance(turn, dict)
                or turn.get("from") not in ("human", "gpt")
                or not isinstance(turn.get("value"), str)
            ):
                raise AnnotationError(
                    path, f"{where}.conversations[{t}]", "an object with 'from' ('human' or 'gpt') and a string 'value'"
                )
            if turn["from"] == "gpt":
                if not turn["value"].strip():
                    raise AnnotationError(path, f"{where}.conversations[{t}].value", "a non-empty caption")
                captions.append(turn["value"].strip())
            else:
                prompts.append(_strip_image_token(turn["value"]))
        if not captions:
            raise AnnotationError(path, f"{where}.conversations", "at least one 'gpt' turn (the caption)")
        image_id = str(entry.get("id", entry["image"]))
        records.append(
            CaptionRecord(
                entry["image"], captions, image_id=image_id, meta={"prompts": prompts}, source=f"{path}: {where}"
            )
        )
    if text_only:
        logger.info("%s: skipped %d text-only entries (no 'image' key)", path, text_only)
    return records


def read_coco_karpathy(path: str | Path, split: str | None = "train") -> list[CaptionRecord]:
    """Karpathy-split COCO JSON -> one record per image of `split` (None = all images).

    `split="train"` includes "restval", giving the 113K training images the paper uses.
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(path, "images", "a list of image entries (Karpathy-split format)")
    wanted = None if split is None else ({"train", "restval"} if split == "train" else {split})
    records = []
    for index, entry in enumerate(data["images"]):
        where = f"images[{index}]"
        if not isinstance(entry, dict):
            raise AnnotationError(path, where, "an object")
        for key in ("filename", "split"):
            if not _non_empty_str(entry.get(key)):
                raise AnnotationError(path, f"{where}.{key}", "a non-empty string")
        if wanted is not None and entry["split"] not in wanted:
            continue
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise AnnotationError(path, f"{where}.sentences", "a non-empty list of {'raw': caption}")
        captions = []
        for s, sentence in enumerate(sentences):
            if not isinstance(sentence, dict) or not _non_empty_str(sentence.get("raw")):
                raise AnnotationError(path, f"{where}.sentences[{s}].raw", "a non-empty caption string")
            captions.append(sentence["raw"].strip())
        image = os.path.join(entry.get("filepath") or "", entry["filename"])
        image_id = str(entry.get("cocoid", entry.get("imgid", image)))
        records.append(
            CaptionRecord(image, captions, image_id=image_id, meta={"split": entry["split"]}, source=f"{path}: {where}")
        )
    if not records:
        raise AnnotationError(path, "images[*].split", f"at least one image of split {split!r}")
    return records


def _initial_captions(path: Path, where: str, value: Any, n_captions: int) -> list[list[str]]:
    expected = f"a list of {n_captions} entries (one per caption), each a string or a list of strings"
    if not isinstance(value, list) or len(value) != n_captions:
        raise AnnotationError(path, f"{where}.initial_captions", expected)
    result = []
    for i, item in enumerate(value):
        items = [item] if isinstance(item, str) else item
        # an initial caption may be empty (Data 1: the stage-1 model can say nothing), never missing
        if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
            raise AnnotationError(path, f"{where}.initial_captions[{i}]", "a string or a non-empty list of strings")
        result.append([x.strip() for x in items])
    return result


def read_jsonl(path: str | Path) -> list[CaptionRecord]:
    """Plain JSONL: `{"image", "captions": [...], "initial_captions"?: [...], "id"?}` per line."""
    path = Path(path)
    records = []
    for number, row in jsonl.read_jsonl(path):
        where = f"line {number}"
        if not _non_empty_str(row.get("image")):
            raise AnnotationError(path, f"{where}.image", "a non-empty image path")
        captions = row.get("captions")
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, list) or not captions or not all(_non_empty_str(c) for c in captions):
            raise AnnotationError(path, f"{where}.captions", "a non-empty list of non-empty strings")
        captions = [c.strip() for c in captions]
        initial = None
        if row.get("initial_captions") is not None:
            initial = _initial_captions(path, where, row["initial_captions"], len(captions))
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        records.append(CaptionRecord(row["image"], captions, initial, str(row.get("id", row["image"])), meta))
    if not records:
        raise AnnotationError(path, "(file)", "at least one JSON line")
    return records


def detect_format(path: str | Path) -> str:
    """Guess the annotation format from the file name and its first bytes."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return "jsonl"
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096).lstrip()
    except FileNotFoundError:
        raise UserError(f"{path}: annotation file not found") from None
    if head.startswith("["):
        return "llava"
    if head.startswith("{") and '"images"' in head:
        return "coco-karpathy"
    if head.startswith("{"):
        return "jsonl"
    raise AnnotationError(path, "(file)", "LLaVA JSON (a list), Karpathy COCO JSON ({'images': ...}) or JSONL")


def load_records(
    path: str | Path, format: AnnotationFormat = "auto", split: str | None = "train"
) -> list[CaptionRecord]:
    """Read any supported annotation file; `split` only applies to Karpathy COCO files."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "llava":
        return read_llava_json(path)
    if fmt == "coco-karpathy":
        return read_coco_karpathy(path, split)
    if fmt == "jsonl":
        return read_jsonl(path)
    raise UserError(f"{path}: unknown annotation format {format!r} (auto, llava, coco-karpathy, jsonl)")


def write_jsonl(records: Iterable[CaptionRecord], path: str | Path) -> int:
    """Write records as plain JSONL (atomically); returns how many."""
    return jsonl.write_jsonl(path, (record.to_json() for record in records))


def expand_pairs(
    records: Sequence[CaptionRecord], with_initial: bool = False, with_instruction: bool = False
) -> list[CaptionPair]:
    """One pair per (image, caption); with `with_initial`, one per (image, caption, initial caption).

    `with_instruction` keeps the prompt a LLaVA conversation asked before each caption.
    """
    pairs = []
    for record in records:
        if with_initial and record.initial_captions is None:
            raise UserError(
                f"image {record.image!r} has no 'initial_captions': stage 2 needs pseudo-initial captions "
                f"(make them with `captioner pseudo-initial`)"
            )
        prompts = record.meta.get("prompts") or []
        for i, caption in enumerate(record.captions):
            instruction = prompts[i] if with_instruction and i < len(prompts) and prompts[i] else None
            initials = record.initial_captions[i] if with_initial else [None]
            for initial in initials:
                pairs.append(CaptionPair(record.image, caption, initial, record.image_id, instruction))
    return pairs


# ---------------------------------------------------------------------------- dataset


class CaptionDataset(TorchDataset):
    """Map-style dataset of caption pairs; images are opened lazily with PIL, as RGB."""

    def __init__(
        self,
        pairs: Sequence[CaptionPair],
        image_root: str | Path = ".",
        on_missing: Literal["error", "skip"] = "error",
    ):
        self.image_root = Path(image_root)
        if on_missing not in ("error", "skip"):
            raise UserError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        existing: dict[str, bool] = {}
        for pair in pairs:
            if pair.image not in existing:
                existing[pair.image] = self.image_path(pair.image).is_file()
        missing = [image for image, ok in existing.items() if not ok]
        if missing and on_missing == "error":
            shown = ", ".join(str(self.image_path(m)) for m in missing[:5])
            raise UserError(
                f"{len(missing)} of {len(existing)} images are missing under {self.image_root} "
                f"(first: {shown}); fix the image root or set on_missing=skip"
            )
        if missing:
            shown = "\n  ".join(str(self.image_path(m)) for m in missing[:20])
            logger.warning(
                "skipping %d missing images (%d pairs):\n  %s%s",
                len(missing),
                sum(1 for p in pairs if not existing[p.image]),
                shown,
                "\n  ..." if len(missing) > 20 else "",
            )
        self.missing_images = missing
        self.pairs = [p for p in pairs if existing[p.image]]
        if not self.pairs:
            raise UserError(f"no training pairs left (all {len(existing)} images missing under {self.image_root})")

    def image_path(self, image: str) -> Path:
        return Path(image) if os.path.isabs(image) else self.image_root / image

    def __len__(self) -> int:
        return len(self.pairs)

    def load_image(self, image: str):
        from PIL import Image, UnidentifiedImageError

        path = self.image_path(image)
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except FileNotFoundError:
            raise UserError(f"image not found: {path}") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise UserError(f"cannot decode image {path}: {exc}") from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        return {
            "image": self.load_image(pair.image),
            "caption": pair.caption,
            "initial_caption": pair.initial_caption,
            "image_id": pair.image_id,
            "instruction": pair.instruction,
        }
