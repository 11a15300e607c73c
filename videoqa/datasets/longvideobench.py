"""LongVideoBench as published (huggingface.co/datasets/longvideobench/LongVideoBench).

<data_root>/lvb_val.json, lvb_test_wo_gt.json    JSON lists: video_id, question, candidates (2-5),
                                                 correct_choice (0-based; absent in test), duration_group
                                                 (15|60|600|3600), question_category, topic_category,
                                                 level, id, video_path, subtitle_path, duration,
                                                 starting_timestamp_for_subtitles, ...
  or validation-00000-of-00001.parquet,          the same fields with option0..option4 (padded "N/A")
     test-00000-of-00001.parquet                 instead of candidates
<data_root>/videos/<video_path>
<data_root>/subtitles/<subtitle_path>            JSON subtitles (used with transcript.subtitles: true)

split "val" (scored) or "test" (no answers: the run writes submission.json {id: letter}).
Accuracy overall and per duration_group and question_category.
"""

from __future__ import annotations

from videoqa.config import DatasetConfig
from videoqa.datasets.benchmark_files import (
    data_root,
    number_field,
    option_texts,
    read_records,
    record,
    text_field,
    unique_qid,
)
from videoqa.registry import DATASETS
from videoqa.types import Question
from videoqa_base.errors import AnnotationError, UserError

HOW_TO_GET = (
    "LongVideoBench's annotations, videos.tar.part.* and subtitles.tar come from "
    "huggingface.co/datasets/longvideobench/LongVideoBench (github.com/longvideobench/LongVideoBench); "
    "extract videos/ and subtitles/ under --data-root"
)
ANNOTATIONS = {
    "val": ("lvb_val.json", "validation-00000-of-00001.parquet"),
    "test": ("lvb_test_wo_gt.json", "test-00000-of-00001.parquet"),
}
BREAKDOWNS = ("duration_group", "question_category")


def annotations_path(root, config: DatasetConfig):
    if config.options.get("annotations"):
        return root / config.options["annotations"]
    if config.split not in ANNOTATIONS:
        raise UserError(f"dataset longvideobench: field 'split': expected 'val' or 'test', got {config.split!r}")
    json_name, parquet_name = ANNOTATIONS[config.split]
    return (
        root / json_name if (root / json_name).is_file() or not (root / parquet_name).is_file() else root / parquet_name
    )


@DATASETS.register("longvideobench")
def load_longvideobench(config: DatasetConfig) -> list[Question]:
    root = data_root(config.data_root, "LongVideoBench", HOW_TO_GET)
    path = annotations_path(root, config)
    video_dir = root / config.options.get("video_dir", "videos")
    subtitle_dir = root / config.options.get("subtitle_dir", "subtitles")
    questions: list[Question] = []
    seen: set[str] = set()
    for i, item in enumerate(read_records(path, "LongVideoBench annotations", HOW_TO_GET)):
        item = record(item, path, f"[{i}]")
        qid = text_field(item, "id", path, f"[{i}]")
        where = f"[{i}] (id {qid})"
        if "candidates" in item:
            options = option_texts(item["candidates"], path, f"{where}.candidates")
        else:  # parquet: option0..option4, padded with "N/A"
            options = option_texts([item.get(f"option{k}") for k in range(5)], path, f"{where}.option0..option4")
        answer = item.get("correct_choice")
        if answer is not None and answer != -1:  # the test split has none
            if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
                raise AnnotationError(path, f"{where}.correct_choice", f"an option index 0-{len(options) - 1}")
        else:
            answer = None
        subtitle = item.get("subtitle_path")
        offset = item.get("starting_timestamp_for_subtitles") or 0.0
        if not isinstance(offset, (int, float)) or isinstance(offset, bool):
            raise AnnotationError(path, f"{where}.starting_timestamp_for_subtitles", "a number of seconds")
        questions.append(
            Question(
                qid=unique_qid(qid, seen, path, f"{where}.id"),
                video_id=text_field(item, "video_id", path, where),
                video_path=video_dir / text_field(item, "video_path", path, where),
                question=text_field(item, "question", path, where),
                options=options,
                answer=answer,
                meta={"duration": number_field(item, "duration", path, where), "subtitle_offset": float(offset)},
                breakdowns={key: (text_field(item, key, path, where),) for key in BREAKDOWNS},
                subtitles=subtitle_dir / subtitle if isinstance(subtitle, str) and subtitle else None,
            )
        )
    if not questions:
        raise UserError(f"{path}: no questions")
    return questions
