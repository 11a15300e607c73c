"""A plain JSONL format for users' own datasets, one question per line:

{"video": "clips/a.mp4", "question": "...", "options": ["...", "..."], "answer": 2,
 "qid": "optional id", "video_id": "optional", "category": "optional"}

`video` is relative to data_root (or absolute); `answer` is an option index, a letter, or absent.
"""

from __future__ import annotations

from pathlib import Path

from videoqa.config import DatasetConfig
from videoqa.registry import DATASETS
from videoqa.types import OPTION_LETTERS, Question
from videoqa_base.errors import AnnotationError, UserError
from videoqa_base.jsonl import read_jsonl


def _answer_index(value, n_options: int, path: Path, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in OPTION_LETTERS[:n_options]:
        return OPTION_LETTERS.index(value.strip().upper())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n_options:
        return value
    raise AnnotationError(
        path,
        f"{where}.answer",
        f"an option index 0-{n_options - 1}, a letter A-{OPTION_LETTERS[n_options - 1]}, or null",
    )


@DATASETS.register("jsonl")
def load_jsonl(config: DatasetConfig) -> list[Question]:
    root = Path(config.data_root).expanduser()
    path = root / config.options.get("file", f"{config.split}.jsonl") if root.is_dir() else root
    if not path.is_file():
        raise UserError(f"JSONL dataset not found: {path} (one JSON object per line: video, question, options, answer)")
    base = path.parent
    questions, seen = [], set()
    for line_number, item in read_jsonl(path):
        where = f"line {line_number}"
        for key in ("video", "question"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise AnnotationError(path, f"{where}.{key}", "a non-empty string")
        options = item.get("options")
        if (
            not isinstance(options, list)
            or not 2 <= len(options) <= len(OPTION_LETTERS)
            or not all(isinstance(o, str) and o.strip() for o in options)
        ):
            raise AnnotationError(path, f"{where}.options", f"a list of 2-{len(OPTION_LETTERS)} non-empty strings")
        qid = str(item.get("qid", line_number))
        if qid in seen:
            raise AnnotationError(path, f"{where}.qid", f"a unique id ({qid!r} appears twice)")
        seen.add(qid)
        video = Path(item["video"]).expanduser()
        video = video if video.is_absolute() else base / video
        questions.append(
            Question(
                qid=qid,
                video_id=str(item.get("video_id") or Path(item["video"]).with_suffix("").as_posix()),
                video_path=video,
                question=item["question"],
                options=tuple(options),
                answer=_answer_index(item.get("answer"), len(options), path, where),
                meta={"category": item["category"]} if item.get("category") else {},
            )
        )
    if not questions:
        raise UserError(f"{path}: no questions")
    return questions
