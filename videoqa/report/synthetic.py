"""Synthetic run directories for the report's tests and its scale check: real files, written by the
real RunDirectory and scored by the real scorer, from made-up questions, captions and answers.

    write_synthetic_dataset(root, questions=500, videos={...})   <root>/test.jsonl (a `jsonl` dataset)
    write_synthetic_run(output_dir, root, questions, label="a", frames_per_video=180, accuracy=0.6)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from videoqa.config import DatasetConfig, RunConfig
from videoqa.datasets import load_questions
from videoqa.rundir import RunDirectory
from videoqa.scoring.qa_metrics import score
from videoqa.types import OPTION_LETTERS, Answer, Caption, Question, VideoCaptions, VideoFailure
from videoqa_base.config import validate

WORDS = (
    "a person holds a knife and cuts vegetables on a wooden board near the sink while the camera looks down "
    "at the counter with a pan bowl cup plate and a phone the hand reaches for the tap"
).split()
CATEGORIES = ("action", "object", "temporal", "purpose")


def synthetic_caption(rng: random.Random, words: int = 45) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def write_synthetic_dataset(root: Path, questions: int, videos: dict[int, Path] | None = None) -> list[Question]:
    """A `jsonl` dataset of `questions` five-option questions, one video each (`videos`: index -> file)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(questions):
        video = (videos or {}).get(i) or root / "videos" / f"v{i:04d}.mp4"
        rows.append(
            {
                "qid": f"q{i:04d}",
                "video_id": f"v{i:04d}",
                "video": str(video),
                "question": f"Question {i}: what is the person in the video doing overall?",
                "options": [f"option {letter} of question {i}" for letter in OPTION_LETTERS[:5]],
                "answer": i % 5,
                "category": CATEGORIES[i % len(CATEGORIES)],
            }
        )
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_questions(DatasetConfig(name="synthetic", type="jsonl", data_root=str(root), split="test"))


def write_synthetic_run(
    output_dir: Path,
    data_root: Path,
    questions: list[Question],
    *,
    label: str,
    frames_per_video: int = 180,
    accuracy: float = 0.6,
    seed: int = 0,
    caption_text: Callable[[Question, int], str] | None = None,
    failed_videos: frozenset[str] = frozenset(),
    invalid_every: int = 0,
    answerer: str = "captions",
) -> Path:
    """A finished run over `questions`: captions at 0.5 s, 1.5 s, ... (1 fps, the frames' centres),
    answers right with probability `accuracy`, every `invalid_every`-th answer invalid, the videos in
    `failed_videos` failed. Returns the run directory."""
    rng = random.Random(seed)
    config = validate(
        RunConfig,
        {
            "dataset": {"name": "synthetic", "type": "jsonl", "data_root": str(data_root), "split": "test"},
            "captioner": None if answerer == "video-llm" else {"name": label, "type": "ser", "model": "synthetic"},
            "llm": {"name": "synthetic-llm" if answerer == "captions" else label, "model": "synthetic"},
            "output_dir": str(output_dir),
            "run_id": f"synthetic-{label}",
            "answerer": answerer,
            "video_llm": {"fps": 1.0, "max_frames": 8},
        },
        "synthetic run",
    )
    run_dir = RunDirectory(config)
    run_dir.prepare()
    answers, captions, failures = [], [], []
    seen: set[str] = set()
    for n, q in enumerate(questions):
        if q.video_id in failed_videos:
            answers.append(Answer(q.qid, None, "", "video_failed", "missing: synthetic failure"))
            if q.video_id not in seen:
                failures.append(VideoFailure(q.video_id, str(q.video_path), "missing", f"{q.video_path}: not found"))
        elif invalid_every and n % invalid_every == invalid_every - 1:
            answers.append(Answer(q.qid, None, "I cannot tell.", "invalid", "no option letter in the output"))
        else:
            key = q.answer if q.answer is not None else 0
            pred = key if rng.random() < accuracy else (key + 1 + rng.randrange(4)) % 5
            answers.append(Answer(q.qid, pred, OPTION_LETTERS[pred], "ok"))
        if q.video_id not in seen and q.video_id not in failed_videos and answerer == "captions":
            texts = [(caption_text or (lambda _q, _k: synthetic_caption(rng)))(q, k) for k in range(frames_per_video)]
            captions.append(
                VideoCaptions(q.video_id, [Caption(k + 0.5, t) for k, t in enumerate(texts)], float(frames_per_video))
            )
        seen.add(q.video_id)
    metrics = score(questions, answers)
    metrics["timing"] = {"caption_s": 12.5, "decode_s": 1.5, "answer_s": 3.25, "llm_startup_s": 0.0}
    run_dir.write_results(questions, answers, captions, failures, metrics)
    run_dir.write_manifest({"dataset": config.dataset.model_dump(), "synthetic": True})
    return run_dir.path
