"""MLVU's multiple-choice dev set as published (huggingface.co/datasets/MLVU/MVLU, github.com/JUNJIE99/MLVU).

<data_root>/json/<n>_<task>.json     one JSON list per task: video, duration, question, candidates,
                                     answer (the option's text), question_type
<data_root>/video/<n>_<task>/<video> the videos, in a folder named like the task's JSON file
                                     (<data_root>/MLVU/json, MLVU/video as downloaded are found too)

Tasks 8 (sub_scene) and 9 (summary) are open-ended (no candidates): their questions are skipped
and counted. The headline metric is M-Avg, the mean of the per-task accuracies (not pooled over
questions); each task's accuracy is reported too.
"""

from __future__ import annotations

import logging
import re

from videoqa.config import DatasetConfig
from videoqa.datasets.benchmark_files import (
    data_root,
    find_video_file,
    option_texts,
    read_records,
    record,
    text_field,
)
from videoqa.registry import DATASETS
from videoqa.types import Question
from videoqa_base.errors import AnnotationError, UserError

log = logging.getLogger(__name__)
HOW_TO_GET = (
    "MLVU's json/ and video/ folders (MLVU/ in the download) come from huggingface.co/datasets/MLVU/MVLU "
    "(github.com/JUNJIE99/MLVU); put json/ and video/ under --data-root"
)
_TASK_FILE = re.compile(r"^(\d+)_(.+)$")


@DATASETS.register("mlvu")
def load_mlvu(config: DatasetConfig) -> list[Question]:
    if config.split != "dev":
        raise UserError(
            f"dataset mlvu: field 'split': expected 'dev' (the multiple-choice set with answers), got {config.split!r}"
        )
    root = data_root(config.data_root, "MLVU", HOW_TO_GET)
    if not (root / "json").is_dir() and (root / "MLVU" / "json").is_dir():
        root = root / "MLVU"  # the Hugging Face download keeps json/ and video/ in MLVU/
    json_dir = root / config.options.get("json_dir", "json")
    video_dir = root / config.options.get("video_dir", "video")
    files = sorted(json_dir.glob("*.json"), key=lambda p: (_task_number(p.stem), p.stem))
    if not files:
        raise UserError(f"MLVU annotations not found: no <n>_<task>.json in {json_dir} ({HOW_TO_GET})")
    questions: list[Question] = []
    open_ended = 0
    for path in files:
        numbered = _TASK_FILE.match(path.stem)
        task = numbered.group(2) if numbered else path.stem
        for i, item in enumerate(read_records(path, "MLVU task file", HOW_TO_GET)):
            item = record(item, path, f"[{i}]")
            if "candidates" not in item:  # open-ended tasks (sub-scene captioning, summary)
                open_ended += 1
                continue
            video = text_field(item, "video", path, f"[{i}]")
            where = f"[{i}] (video {video})"
            options = option_texts(item["candidates"], path, f"{where}.candidates")
            answer_text = text_field(item, "answer", path, where)
            if answer_text not in options:
                raise AnnotationError(path, f"{where}.answer", f"the text of one of the candidates {list(options)}")
            questions.append(
                Question(
                    qid=f"{path.stem}/{i}",  # MLVU has no question ids: task file and position
                    video_id=f"{path.stem}/{video}",
                    video_path=find_video_file(video_dir / path.stem, video),
                    question=text_field(item, "question", path, where),
                    options=options,
                    answer=options.index(answer_text),
                    meta={"duration": item.get("duration"), "question_type": item.get("question_type")},
                    breakdowns={"task": (task,)},
                )
            )
    if open_ended:
        log.warning("MLVU: skipped %d open-ended questions (tasks without candidates, e.g. 8 and 9)", open_ended)
    if not questions:
        raise UserError(f"{json_dir}: no multiple-choice questions")
    return questions


def _task_number(stem: str) -> int:
    match = _TASK_FILE.match(stem)
    return int(match.group(1)) if match else 1_000
