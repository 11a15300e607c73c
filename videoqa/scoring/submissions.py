"""Submission files for splits without public answers, in each benchmark's own format.

- EgoSchema "full": submission.json {q_uid: option index} for the validation server, and
  submission.csv for the Kaggle leaderboard (competition egoschema-public). EgoSchema's README does
  not list the CSV's columns; the header `q_uid,answer` with an integer 0-4 is what public
  submission scripts use (e.g. BIMBA's llava/eval/submit_ego_schema.py); the competition's sample
  file was not reachable from here to check.
- LongVideoBench "test": submission.json {id: option letter}, as lmms-eval's
  longvideobench_test_for_submission.json.
- any other dataset's "full" split: submission.json {qid: option index}.

Only answered questions are written: a question without a valid answer is left out (and counted),
never filled with a guess.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from videoqa.types import OPTION_LETTERS, Answer

EGOSCHEMA_SERVER = "https://validation-server.onrender.com/api/upload/"
EGOSCHEMA_KAGGLE = "egoschema-public"
LONGVIDEOBENCH_LEADERBOARD = "huggingface.co/spaces/longvideobench/LongVideoBench"


def submission_files(dataset_type: str, split: str, answers: Sequence[Answer]) -> dict[str, str]:
    """{file name: content} to write beside a run's results; empty when the split is scored locally."""
    answered = {a.qid: a.pred for a in answers if a.pred is not None}
    if dataset_type == "longvideobench" and split == "test":
        return {"submission.json": json.dumps({qid: OPTION_LETTERS[pred] for qid, pred in answered.items()}, indent=1)}
    if split != "full":
        return {}
    files = {"submission.json": json.dumps(answered, indent=1)}
    if dataset_type == "egoschema":
        csv = io.StringIO()
        pd.DataFrame({"q_uid": list(answered), "answer": list(answered.values())}).to_csv(csv, index=False)
        files["submission.csv"] = csv.getvalue()
    return files


def submission_commands(dataset_type: str, run_dir: Path, questions: int) -> list[str]:
    """What to run to submit the files `submission_files` wrote to `run_dir` (lines to print), or []."""
    json_path, csv_path = run_dir / "submission.json", run_dir / "submission.csv"
    if not json_path.is_file():
        return []
    missing = questions - len(json.loads(json_path.read_text()))
    lines = []
    if missing:
        lines.append(f"note: {missing} of {questions} questions have no valid answer and are not in the submission")
    if dataset_type == "egoschema":
        lines.append(
            f"EgoSchema validation server: curl -X POST -H 'Content-Type: application/json' "
            f"-d @{json_path} {EGOSCHEMA_SERVER}"
        )
        if csv_path.is_file():
            lines.append(
                "EgoSchema Kaggle leaderboard: "
                f"kaggle competitions submit -c {EGOSCHEMA_KAGGLE} -f {csv_path} -m 'videoqa'"
            )
    elif dataset_type == "longvideobench":
        lines.append(f"LongVideoBench test: upload {json_path} ({{id: letter}}) at {LONGVIDEOBENCH_LEADERBOARD}")
    else:
        lines.append(f"submission file: {json_path}")
    return lines
