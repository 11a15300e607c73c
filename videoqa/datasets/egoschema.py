"""EgoSchema in its official layout.

<data_root>/questions.json        JSON list of {q_uid, google_drive_id, question, option 0..4}
<data_root>/subset_answers.json   {q_uid: 0-4} for the 500-question public subset
<data_root>/videos/<q_uid>.mp4    (videos directly under <data_root> are accepted too)

split "subset": the questions that have an answer, scored for accuracy.
split "full":   every question, no answers; the run writes a submission file {q_uid: int}.
options.categories_file (optional, under data_root): {q_uid: category} or {category: [q_uid, ...]}
for per-category accuracy in metrics.json.
"""

from __future__ import annotations

from pathlib import Path

from videoqa.config import DatasetConfig
from videoqa.datasets.common import find_video, read_json, require_str
from videoqa.registry import DATASETS
from videoqa.types import Question
from videoqa_base.errors import AnnotationError, UserError

NUM_OPTIONS = 5
HOW_TO_GET = (
    "EgoSchema's questions.json and subset_answers.json come from the official EgoSchema repository "
    "(github.com/egoschema/EgoSchema) and its videos from the download script there; "
    "put them under --data-root with videos in videos/<q_uid>.mp4"
)


@DATASETS.register("egoschema")
def load_egoschema(config: DatasetConfig) -> list[Question]:
    root = Path(config.data_root).expanduser()
    if not root.is_dir():
        raise UserError(f"EgoSchema data root not found: {root} ({HOW_TO_GET})")
    questions_path = root / config.options.get("questions_file", "questions.json")
    answers_path = root / config.options.get("answers_file", "subset_answers.json")
    items = read_json(questions_path, "EgoSchema questions", HOW_TO_GET)
    if not isinstance(items, list):
        raise AnnotationError(questions_path, "(top level)", "a JSON list of question objects")

    if config.split == "subset":
        answers = read_json(answers_path, "EgoSchema subset answers", HOW_TO_GET)
        if not isinstance(answers, dict):
            raise AnnotationError(answers_path, "(top level)", "a JSON object {q_uid: answer index}")
        for uid, value in answers.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < NUM_OPTIONS:
                raise AnnotationError(answers_path, uid, f"an integer 0-{NUM_OPTIONS - 1}")
    elif config.split == "full":
        answers = {}
    else:
        raise UserError(f"dataset egoschema: field 'split': expected 'subset' or 'full', got {config.split!r}")

    categories = _categories(root, config.options.get("categories_file"))
    video_roots = [root / "videos", root]
    questions = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise AnnotationError(questions_path, f"[{i}]", "a question object")
        uid = require_str(item, "q_uid", questions_path, f"[{i}]")
        if config.split == "subset" and uid not in answers:
            continue
        where = f"[{i}] (q_uid {uid})"
        options = tuple(require_str(item, f"option {k}", questions_path, where) for k in range(NUM_OPTIONS))
        questions.append(
            Question(
                qid=uid,
                video_id=uid,
                video_path=find_video(video_roots, uid),
                question=require_str(item, "question", questions_path, where),
                options=options,
                answer=answers.get(uid),
                meta={"google_drive_id": item.get("google_drive_id")}
                | ({"category": categories[uid]} if uid in categories else {}),
            )
        )
    if not questions:
        raise UserError(
            f"{questions_path}: no questions for split {config.split!r}"
            + (f" (none of its q_uids appear in {answers_path})" if config.split == "subset" else "")
        )
    return questions


def _categories(root: Path, name: str | None) -> dict[str, str]:
    """Optional {q_uid: category} (or {category: [q_uid, ...]}) for per-category accuracy."""
    if not name:
        return {}
    path = root / name
    data = read_json(path, "EgoSchema categories file", "a JSON object {q_uid: category} or {category: [q_uid, ...]}")
    if not isinstance(data, dict):
        raise AnnotationError(path, "(top level)", "a JSON object {q_uid: category} or {category: [q_uid, ...]}")
    categories: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, str):
            categories[key] = value
        elif isinstance(value, list) and all(isinstance(uid, str) for uid in value):
            categories.update((uid, key) for uid in value)
        else:
            raise AnnotationError(path, key, "a category name, or a list of q_uids")
    return categories
