"""LVBench as published (huggingface.co/datasets/THUDM/LVBench, github.com/THUDM/LVBench).

<data_root>/video_info.meta.jsonl   one line per video: key, type, video_info, qa: [{uid, question,
                                    answer "A"-"D", question_type: [tags], time_reference}]; the
                                    options are inside `question` as "(A) ...\\n(B) ..."
                                    (data/video_info.meta.jsonl, as in the GitHub repository, is found too)
<data_root>/videos/<key>.mp4        the official script downloads them from YouTube by key

Accuracy overall and per question_type; a question with several tags counts once in each.
"""

from __future__ import annotations

import re
from pathlib import Path

from videoqa.config import DatasetConfig
from videoqa.datasets.benchmark_files import data_root, find_video_file, letter_answer, record, text_field, unique_qid
from videoqa.registry import DATASETS
from videoqa.types import Question
from videoqa_base.errors import AnnotationError, UserError
from videoqa_base.jsonl import read_jsonl

HOW_TO_GET = (
    "LVBench's video_info.meta.jsonl comes from huggingface.co/datasets/THUDM/LVBench (github.com/THUDM/LVBench), "
    "whose scripts download the videos from YouTube by key; put them in videos/<key>.mp4 under --data-root"
)
_OPTION = re.compile(r"\n\s*\(([A-J])\)\s*")


def split_options(text: str, path: Path, where: str) -> tuple[str, tuple[str, ...]]:
    """'What ...?\\n(A) x\\n(B) y' -> ('What ...?', ('x', 'y')); the letters must run A, B, C ..."""
    parts = _OPTION.split("\n" + text.strip() if text.lstrip().startswith("(A)") else text.strip())
    stem, letters, options = parts[0].strip(), parts[1::2], tuple(p.strip() for p in parts[2::2])
    expected = [chr(ord("A") + k) for k in range(len(letters))]
    if len(options) < 2 or letters != expected or not all(options):
        raise AnnotationError(path, where, 'a question followed by its options "(A) ...", "(B) ...", one per line')
    return stem, options


@DATASETS.register("lvbench")
def load_lvbench(config: DatasetConfig) -> list[Question]:
    root = data_root(config.data_root, "LVBench", HOW_TO_GET)
    path = root / config.options.get("annotations", "video_info.meta.jsonl")
    if not path.is_file() and (root / "data" / path.name).is_file():
        path = root / "data" / path.name  # where the GitHub repository keeps it
    if not path.is_file():
        raise UserError(f"LVBench annotations not found: {path} ({HOW_TO_GET})")
    video_dir = root / config.options.get("video_dir", "videos")
    questions: list[Question] = []
    seen: set[str] = set()
    for line_number, item in read_jsonl(path):
        video = record(item, path, f"line {line_number}")
        key = text_field(video, "key", path, f"line {line_number}")
        qa = video.get("qa")
        if not isinstance(qa, list):
            raise AnnotationError(path, f"line {line_number} (key {key}).qa", "a list of question objects")
        for j, entry in enumerate(qa):
            where = f"line {line_number} (key {key}).qa[{j}]"
            entry = record(entry, path, where)
            uid = text_field(entry, "uid", path, where)
            stem, options = split_options(text_field(entry, "question", path, where), path, f"{where}.question")
            tags = entry.get("question_type")
            if isinstance(tags, str):
                tags = [tags]
            if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
                raise AnnotationError(path, f"{where}.question_type", "a non-empty list of tags")
            questions.append(
                Question(
                    qid=unique_qid(uid, seen, path, f"{where}.uid"),
                    video_id=key,
                    video_path=find_video_file(video_dir, key),
                    question=stem,
                    options=options,
                    answer=letter_answer(entry.get("answer"), len(options), path, f"{where}.answer"),
                    meta={"video_type": video.get("type"), "time_reference": entry.get("time_reference")},
                    breakdowns={"question_type": tuple(dict.fromkeys(tags))},
                )
            )
    if not questions:
        raise UserError(f"{path}: no questions")
    return questions
