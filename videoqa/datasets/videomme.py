"""Video-MME as published (huggingface.co/datasets/lmms-lab/Video-MME).

<data_root>/videomme/test-00000-of-00001.parquet   2,700 rows: video_id, duration (short|medium|long),
                                                   domain, sub_category, url, videoID, question_id,
                                                   task_type, question, options ["A. ...", ...], answer "A"-"D"
<data_root>/data/<videoID>.mp4                     (.MP4 and .mkv accepted too)
<data_root>/subtitle/<videoID>.srt                 subtitles (used with transcript.subtitles: true)

Accuracy overall and per duration, domain and task_type.
"""

from __future__ import annotations

from videoqa.config import DatasetConfig
from videoqa.datasets.benchmark_files import (
    data_root,
    find_video_file,
    letter_answer,
    option_texts,
    read_records,
    record,
    text_field,
    unique_qid,
)
from videoqa.registry import DATASETS
from videoqa.types import Question
from videoqa_base.errors import UserError

HOW_TO_GET = (
    "Video-MME's parquet, videos (data/) and subtitles (subtitle/) come from "
    "huggingface.co/datasets/lmms-lab/Video-MME (video-mme.github.io); unzip the video and subtitle archives "
    "under --data-root"
)
BREAKDOWNS = ("duration", "domain", "task_type")


@DATASETS.register("videomme")
def load_videomme(config: DatasetConfig) -> list[Question]:
    root = data_root(config.data_root, "Video-MME", HOW_TO_GET)
    path = root / config.options.get("annotations", "videomme/test-00000-of-00001.parquet")
    video_dir = root / config.options.get("video_dir", "data")
    subtitle_dir = root / config.options.get("subtitle_dir", "subtitle")
    questions: list[Question] = []
    seen: set[str] = set()
    for i, item in enumerate(read_records(path, "Video-MME annotations", HOW_TO_GET)):
        item = record(item, path, f"row {i}")
        qid = text_field(item, "question_id", path, f"row {i}")
        where = f"row {i} (question_id {qid})"
        video = text_field(item, "videoID", path, where)
        options = option_texts(item.get("options"), path, f"{where}.options", strip_letters=True)
        subtitle = subtitle_dir / f"{video}.srt"
        questions.append(
            Question(
                qid=unique_qid(qid, seen, path, f"{where}.question_id"),
                video_id=video,
                video_path=find_video_file(video_dir, video),
                question=text_field(item, "question", path, where),
                options=options,
                answer=letter_answer(item.get("answer"), len(options), path, f"{where}.answer"),
                meta={"url": item.get("url"), "sub_category": item.get("sub_category")},
                breakdowns={key: (text_field(item, key, path, where),) for key in BREAKDOWNS},
                subtitles=subtitle if subtitle.is_file() else None,
            )
        )
    if not questions:
        raise UserError(f"{path}: no questions")
    return questions
