"""`captioner eval`: BLEU-4 / METEOR / ROUGE-L / CIDEr (and BERTScore if installed) of
predicted captions against reference captions.

Predictions: JSONL rows `{"image" | "id" | "image_id": ..., "caption": ...}`, a JSON object
`{id: caption}`, or a COCO results list `[{"image_id", "caption"}]`.
References: any annotation file `captioner.data.readers` reads (our JSONL, LLaVA JSON, Karpathy COCO
with `--split`), a JSON object `{id: [captions]}`, or COCO annotations `{"annotations": [...]}`.
An image is matched by its id, or by its image path when the predictions use paths.

With `--model DIR` the images of the references file are captioned first (greedy, the paper's
two-pass inference; `--refine-steps 0` for the first glance only) and written to `--predictions`:

    captioner eval --model outputs/checkpoints/ser --references data/coco/dataset_coco.json \
        --split test --image-root data/coco --predictions outputs/eval/ser_test.jsonl --json outputs/eval/ser.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from captioner.data.readers import CaptionDataset, detect_format, expand_pairs, load_records
from captioner.evaluation.metrics import compute_caption_metrics, write_report
from captioner.training.model_card import record_metrics
from videoqa_base import jsonl
from videoqa_base.errors import AnnotationError, UserError

_ID_KEYS = ("id", "image_id", "image")


def _row_id(path: Path, where: str, row: dict[str, Any]) -> str:
    for key in _ID_KEYS:
        if row.get(key) not in (None, ""):
            return str(row[key])
    raise AnnotationError(path, where, f"one of {', '.join(_ID_KEYS)} naming the image")


def read_predictions(path: str | Path) -> dict[str, str]:
    """Predicted captions by image id (or image path)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: predictions file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows: list[tuple[str, Any]] = [(f"line {number}", row) for number, row in jsonl.parse_jsonl(text, path)]
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            out = {}
            for key, value in data.items():
                if not isinstance(value, str):
                    raise AnnotationError(path, key, "a caption string")
                out[str(key)] = value
            return out
        if not isinstance(data, list):
            raise AnnotationError(path, "(top level)", "JSONL, {id: caption} or [{image_id, caption}]")
        rows = [(f"[{i}]", row) for i, row in enumerate(data)]
    predictions: dict[str, str] = {}
    for where, row in rows:
        if not isinstance(row, dict):
            raise AnnotationError(path, where, "an object with an image id and a 'caption'")
        caption = row.get("caption", row.get("prediction"))
        if not isinstance(caption, str):
            raise AnnotationError(path, f"{where}.caption", "a caption string")
        image_id = _row_id(path, where, row)
        if image_id in predictions:
            raise AnnotationError(path, where, f"one prediction per image (duplicate {image_id!r})")
        predictions[image_id] = caption
    if not predictions:
        raise AnnotationError(path, "(file)", "at least one prediction")
    return predictions


def read_references(path: str | Path, split: str | None = None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Reference captions by image id, plus a map image path -> id for path-keyed predictions."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: references file not found")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and "annotations" in data:  # COCO captions_*.json
            refs: dict[str, list[str]] = {}
            if not isinstance(data["annotations"], list):
                raise AnnotationError(path, "annotations", "a list of {image_id, caption}")
            for i, ann in enumerate(data["annotations"]):
                if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
                    raise AnnotationError(path, f"annotations[{i}]", "an object with 'image_id' and a string 'caption'")
                refs.setdefault(str(ann["image_id"]), []).append(ann["caption"])
            return refs, {}
        if isinstance(data, dict) and "images" not in data:  # {id: [captions]}
            refs = {}
            for key, value in data.items():
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                    raise AnnotationError(path, key, "a non-empty list of caption strings")
                refs[str(key)] = value
            return refs, {}
    fmt = detect_format(path)
    records = load_records(path, fmt, split=split if fmt == "coco-karpathy" else None)
    refs, by_path = {}, {}
    for record in records:
        refs.setdefault(record.image_id, []).extend(record.captions)
        by_path[record.image] = record.image_id
    return refs, by_path


def match_predictions(
    predictions: dict[str, str], refs: dict[str, list[str]], by_path: dict[str, str]
) -> dict[str, str]:
    """Re-key predictions given by image path to the references' ids."""
    matched = {}
    for key, caption in predictions.items():
        if key not in refs and key in by_path:
            key = by_path[key]
        matched[key] = caption
    return matched


def scores_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per system, one column per metric."""
    import pandas as pd

    frame = pd.DataFrame.from_dict(rows, orient="index").round(2)
    frame.index.name = "system"
    return frame.to_markdown()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--predictions",
        required=True,
        help="predicted captions (JSONL / JSON); with --model, where the generated captions are written (JSONL)",
    )
    parser.add_argument(
        "--references", required=True, help="reference captions (JSONL, LLaVA / COCO JSON, {id: [...]})"
    )
    parser.add_argument("--split", default="test", help="split of a Karpathy COCO references file (default: test)")
    parser.add_argument(
        "--metrics",
        default="BLEU-4,METEOR,ROUGE-L,CIDEr,BERTScore",
        help="comma-separated (BERTScore only if installed)",
    )
    parser.add_argument("--json", dest="json_out", help="write scores as JSON here")
    parser.add_argument("--markdown", help="write the table as Markdown here")
    parser.add_argument("--per-image", action="store_true", help="include per-image scores in the JSON")
    parser.add_argument(
        "--allow-missing", action="store_true", help="score only the images that have a prediction (default: error)"
    )
    parser.add_argument("--name", default=None, help="row name in the table (default: predictions file stem)")
    gen = parser.add_argument_group("caption the reference images first")
    gen.add_argument("--model", help="SeR checkpoint directory: caption the references' images, then score")
    gen.add_argument("--image-root", default=".", help="directory the references' image paths are relative to")
    gen.add_argument("--refine-steps", type=int, default=None, help="0 = first glance only (default: the model's)")
    gen.add_argument("--batch-size", type=int, default=16)
    gen.add_argument("--max-new-tokens", type=int, default=60)
    gen.add_argument("--prompt", default=None, help="instruction (default: the processor's)")
    gen.add_argument("--dtype", default="auto")
    gen.add_argument("--device", default="auto")


def write_predictions(args: argparse.Namespace) -> int:
    """Caption every image of the references file with `args.model`; write JSONL to args.predictions."""
    from captioner.modeling.inference import generate_captions, load_model  # transformers loads only to caption

    fmt = detect_format(args.references)
    records = load_records(args.references, fmt, split=args.split if fmt == "coco-karpathy" else None)
    dataset = CaptionDataset(expand_pairs(records), args.image_root)
    model, processor = load_model(args.model, dtype=args.dtype, device=args.device)

    def rows():
        for start in range(0, len(records), args.batch_size):
            chunk = records[start : start + args.batch_size]
            images = [dataset.load_image(r.image) for r in chunk]
            captions = generate_captions(
                model,
                processor,
                images,
                args.prompt,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
                refine_steps=args.refine_steps,
            )
            for record, caption in zip(chunk, captions):
                yield {"id": record.image_id, "image": record.image, "caption": caption}

    return jsonl.write_jsonl(args.predictions, rows())


def run(args: argparse.Namespace) -> int:
    if args.model:
        count = write_predictions(args)
        print(f"captioned {count} images with {args.model} -> {args.predictions}")
    predictions = read_predictions(args.predictions)
    refs, by_path = read_references(args.references, args.split)
    predictions = match_predictions(predictions, refs, by_path)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    missing = len(set(refs) - set(predictions))
    if args.allow_missing:
        refs = {k: v for k, v in refs.items() if k in predictions}
    result = compute_caption_metrics(predictions, refs, metrics)
    name = args.name or Path(args.predictions).stem
    table = scores_table({name: result.scores})
    print(table)
    for metric, reason in result.skipped.items():
        print(f"{metric} skipped: {reason}")
    report = {
        "model": args.model,
        "predictions": str(args.predictions),
        "references": str(args.references),
        "num_images": result.num_images,
        "references_without_prediction": missing if args.allow_missing else 0,
        "scale": "x100 (as printed in papers); CIDEr is CIDEr-D",
        "scores": result.scores,
        "skipped": result.skipped,
    }
    if args.per_image:
        report["per_image"] = result.per_image
    write_report(report, table, args.json_out, args.markdown)
    if args.model and (card := record_metrics(args.model, result.scores, result.num_images, str(args.references))):
        print(f"model card updated: {card}")
    return 0
