"""NExT-QA and IntentQA from their official CSVs.

<data_root>/<split>.csv    columns: video, frame_count, width, height, question, answer, qid, type, a0..a4
<data_root>/videos/...     <video>.mp4, or the path given by a JSON map {video: relative path}
                           (NExT-QA ships map_vid_vidorID.json: {video: "folder/vidorID"})
Accuracy is also reported per question type (the `type` column, e.g. CW, TN, DC).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from videoqa.config import DatasetConfig
from videoqa.datasets.common import find_video
from videoqa.registry import DATASETS
from videoqa.types import Question
from videoqa_base.errors import AnnotationError, UserError

REQUIRED = ("video", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")
HOW_TO_GET = {
    "nextqa": "NExT-QA's CSVs and videos come from the official NExT-QA repository (github.com/doc-doc/NExT-QA)",
    "intentqa": "IntentQA's CSVs and videos come from the official IntentQA repository "
    "(github.com/JoseponLee/IntentQA)",
}


def _load_csv_dataset(config: DatasetConfig, kind: str) -> list[Question]:
    root = Path(config.data_root).expanduser()
    csv_path = root / config.options.get("csv", f"{config.split}.csv")
    if not csv_path.is_file():
        raise UserError(f"{kind} annotations not found: {csv_path} ({HOW_TO_GET[kind]})")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{csv_path}: not a readable CSV ({exc})".replace("\n", " ")) from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise AnnotationError(csv_path, missing[0], f"a column named {missing[0]!r} (required: {', '.join(REQUIRED)})")

    video_map: dict[str, str] = {}
    if config.options.get("video_map"):
        map_path = root / config.options["video_map"]
        try:
            video_map = {str(k): str(v) for k, v in json.loads(map_path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            raise AnnotationError(map_path, "(top level)", "a JSON object {video: relative path}") from None

    video_roots = [root / config.options.get("video_dir", "videos"), root]
    questions = []
    for row_number, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"line {row_number}"
        video = row["video"].strip()
        if not video:
            raise AnnotationError(csv_path, f"{where}.video", "a video id")
        options = tuple(row[f"a{i}"] for i in range(5))
        answer_text = row["answer"].strip()
        if answer_text == "":
            answer = None  # unlabelled split
        elif answer_text.isdigit() and int(answer_text) < 5:
            answer = int(answer_text)
        else:
            raise AnnotationError(csv_path, f"{where}.answer", "an integer 0-4 (or empty)")
        stem = video_map.get(video, video)
        questions.append(
            Question(
                qid=f"{video}_{row['qid']}",
                video_id=video,
                video_path=find_video(video_roots, stem),
                question=row["question"],
                options=options,
                answer=answer,
                meta={"category": row["type"]},
            )
        )
    if not questions:
        raise UserError(f"{csv_path}: no questions")
    return questions


@DATASETS.register("nextqa")
def load_nextqa(config: DatasetConfig) -> list[Question]:
    return _load_csv_dataset(config, "nextqa")


@DATASETS.register("intentqa")
def load_intentqa(config: DatasetConfig) -> list[Question]:
    return _load_csv_dataset(config, "intentqa")
