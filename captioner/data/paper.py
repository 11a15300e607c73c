"""The paper's training data as published, and `captioner data check ROOT --format F`.

    format         annotation file(s) under ROOT                          images under
    lcs558k        blip_laion_cc_sbu_558k.json (LLaVA-Pretrain)           ROOT/images   ("00453/004539375.jpg")
    coco-karpathy  dataset_coco.json (Karpathy split)                     ROOT          ("train2014/COCO_...jpg")
    sharegpt4v     sharegpt4v_instruct_gpt4-vision_cap100k.json or        ROOT          ("coco/train2017/...jpg",
                   share-captioner_coco_lcs_sam_1246k_1107.json                          "sam/images/...", ...)
    dci            densely_captioned_images/annotations/*.json            ROOT/densely_captioned_images/photos
                   (or complete/*.json), one file per image; splits.json

LCS-558K and ShareGPT4V use LLaVA's conversation layout (`{"id", "image", "conversations": [{"from":
"human", ...}, {"from": "gpt", "value": caption}]}`), read by `captioner.data.read_llava_json`;
Karpathy COCO by `captioner.data.read_coco_karpathy`. DCI (facebookresearch/DCI) stores one JSON
per image: `{"image", "short_caption", "extra_caption", "mask_data": {...}, "mask_keys": [...],
"summaries"?: {"base": [...], ...}, "negatives"?: {...}}`; `read_dci` takes the LLM summaries of the
whole image (`summaries["base"]`, the sDCI captions) when present, else the human short caption
followed by the extra caption.

ROOT may also be one annotation file; `--image-root` overrides where images are looked up.
`check` reads every record (a malformed one stops with an error naming the file and the record),
then opens every distinct image once (PIL `verify`), and lists the missing and the broken ones with
the annotation file and record that use them.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioner.data.readers import CaptionRecord, read_coco_karpathy, read_llava_json
from videoqa_base.errors import AnnotationError, UserError

FORMATS = ("lcs558k", "coco-karpathy", "sharegpt4v", "dci")
ANNOTATION_NAMES = {
    "lcs558k": ("blip_laion_cc_sbu_558k.json",),
    "coco-karpathy": ("dataset_coco.json",),
    "sharegpt4v": ("sharegpt4v_instruct_gpt4-vision_cap100k.json", "share-captioner_coco_lcs_sam_1246k_1107.json"),
}
DCI_DIR = "densely_captioned_images"


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def _string(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def read_dci_file(path: str | Path, captions: str = "auto") -> CaptionRecord:
    """One DCI annotation file -> a record. captions: "auto" (summaries if present) | "summaries" | "full"."""
    path = Path(path)
    data = _load(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, "(top level)", "an object with 'image', 'short_caption', 'extra_caption'")
    if not _string(data.get("image")):
        raise AnnotationError(path, "image", "a non-empty image path (relative to densely_captioned_images/photos)")
    for key in ("short_caption", "extra_caption"):
        if not isinstance(data.get(key), str):
            raise AnnotationError(path, key, "a string")
    if "mask_data" in data and not isinstance(data["mask_data"], dict):
        raise AnnotationError(path, "mask_data", "an object of mask id -> mask entry")
    summaries = data.get("summaries")
    if summaries is not None and not isinstance(summaries, dict):
        raise AnnotationError(path, "summaries", "an object such as {'base': [summary, ...]}")
    base = (summaries or {}).get("base")
    if captions == "summaries" and base is None:
        raise AnnotationError(path, "summaries.base", "the LLM summaries of the image (sDCI)")
    if base is not None and captions != "full":
        texts = [base] if isinstance(base, str) else base
        if not isinstance(texts, list) or not texts or not all(_string(t) for t in texts):
            raise AnnotationError(path, "summaries.base", "a non-empty string or list of non-empty strings")
        found, source = [t.strip() for t in texts], "summaries"
    else:
        full = " ".join(p.strip() for p in (data["short_caption"], data["extra_caption"]) if p.strip())
        if not full:
            raise AnnotationError(path, "short_caption", "a non-empty caption (short_caption + extra_caption)")
        found, source = [full], "short+extra"
    meta = {
        "caption_source": source,
        "short_caption": data["short_caption"].strip(),
        "masks": len(data.get("mask_data") or {}),
    }
    return CaptionRecord(data["image"], found, image_id=path.stem, meta=meta, source=str(path))


def dci_files(root: Path, split: str | None = None) -> list[Path]:
    """Annotation files of a DCI release (ROOT, ROOT/densely_captioned_images or its annotations dir)."""
    base = root / DCI_DIR if (root / DCI_DIR).is_dir() else root
    folder = next((base / name for name in ("annotations", "complete") if (base / name).is_dir()), base)
    files = sorted(folder.glob("*.json"))
    files = [f for f in files if f.name != "splits.json"]
    if split is not None:
        splits_path = base / "splits.json"
        splits = _load(splits_path)
        if not isinstance(splits, dict) or not isinstance(splits.get(split), list):
            raise AnnotationError(splits_path, split, "a list of annotation file names (train / valid / test)")
        wanted = set(splits[split])
        files = [f for f in files if f.name in wanted]
    if not files:
        raise UserError(f"{folder}: no DCI annotation files (*.json) found")
    return files


def annotation_files(root: Path, fmt: str, split: str | None = None) -> list[Path]:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if root.is_file():
        return [root]
    if fmt == "dci":
        return dci_files(root, split)
    for folder in (root, root / "sharegpt4v"):
        found = [folder / name for name in ANNOTATION_NAMES[fmt] if (folder / name).is_file()]
        if found:
            return found
    raise UserError(f"{root}: none of {', '.join(ANNOTATION_NAMES[fmt])} found (pass the annotation file itself)")


def default_image_root(root: Path, fmt: str) -> Path:
    base = root.parent if root.is_file() else root
    if fmt == "lcs558k":
        return base / "images"
    if fmt == "dci":
        dci = base if base.name == DCI_DIR else base.parent if base.parent.name == DCI_DIR else base / DCI_DIR
        return dci / "photos"
    return base


def read_records(root: str | Path, fmt: str, split: str | None = None) -> list[CaptionRecord]:
    """Every record of the dataset at `root` (Karpathy COCO: `split`, default all images)."""
    root = Path(root)
    records: list[CaptionRecord] = []
    for path in annotation_files(root, fmt, split if fmt == "dci" else None):
        if fmt == "dci":
            records.append(read_dci_file(path))
        elif fmt == "coco-karpathy":
            records += read_coco_karpathy(path, split)
        else:
            records += read_llava_json(path)
    return records


@dataclass
class CheckReport:
    format: str
    annotation_files: list[str]
    image_root: str
    records: int = 0
    samples: int = 0  # (image, caption) pairs
    images: int = 0  # distinct image files
    missing: list[dict[str, str]] = field(default_factory=list)
    broken: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.broken


def _open_error(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check(root: str | Path, fmt: str, image_root: str | Path | None = None, split: str | None = None) -> CheckReport:
    """Count the samples and find missing / undecodable images, naming the file and record of each."""
    root = Path(root)
    files = annotation_files(root, fmt, split if fmt == "dci" else None)
    images = Path(image_root) if image_root is not None else default_image_root(root, fmt)
    records = read_records(root, fmt, split)
    report = CheckReport(
        fmt, [str(f) for f in files], str(images), records=len(records), samples=sum(len(r.captions) for r in records)
    )
    first_use: dict[str, CaptionRecord] = {}
    for record in records:
        first_use.setdefault(record.image, record)
    report.images = len(first_use)
    for image, record in first_use.items():
        path = Path(image) if os.path.isabs(image) else images / image
        entry = {"image": str(path), "record": record.source or record.image_id}
        if not path.is_file():
            report.missing.append(entry)
            continue
        error = _open_error(path)
        if error is not None:
            report.broken.append(entry | {"error": error})
    return report


def format_report(report: CheckReport, limit: int = 20) -> str:
    lines = [
        f"{report.format}: {report.records} records, {report.samples} samples (image, caption), "
        f"{report.images} images under {report.image_root}",
        f"  annotation files: {', '.join(report.annotation_files)}",
    ]
    for kind, entries in (("missing", report.missing), ("broken", report.broken)):
        lines.append(f"  {kind} images: {len(entries)}")
        for entry in entries[:limit]:
            lines.append(
                f"    {entry['image']}  ({entry['record']}){'  ' + entry['error'] if 'error' in entry else ''}"
            )
        if len(entries) > limit:
            lines.append(f"    ... {len(entries) - limit} more (see --json)")
    lines.append("ok" if report.ok else "problems found")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="check: count samples, find missing / broken images")
    parser.add_argument("root", help="dataset directory (or one annotation file)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--image-root", default=None, help="where image paths are relative to (default: per format)")
    parser.add_argument("--split", default=None, help="Karpathy COCO split (train = train + restval) or DCI split")
    parser.add_argument("--json", dest="json_out", help="write the full report here")


def run(args: argparse.Namespace) -> int:
    report = check(args.root, args.format, args.image_root, args.split)
    print(format_report(report))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        payload = {k: v for k, v in report.__dict__.items()} | {"ok": report.ok}
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if report.ok else 1
