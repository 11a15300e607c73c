"""Do two run directories hold the same results? Compares predictions (pred, status, raw) per
question and captions per video; prints the differences and exits 1 if there are any.

    python scripts/same_results.py outputs/egoschema/a__b/run1 outputs/egoschema/a__b/run2

Used to check that a refactor (or another executor) changes nothing a user can see.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIELDS = ("pred", "status", "raw")


def records(path: Path, key: str) -> dict[str, dict]:
    return {r[key]: r for r in (json.loads(line) for line in path.read_text().split("\n") if line.strip())}


def timed_texts(record: dict) -> list[tuple[float, str]]:
    """What a caption says and when: the fields both versions of a captions.jsonl have."""
    return [(c["t"], c["text"]) for c in record["captions"]]


def differences(a: Path, b: Path) -> list[str]:
    found = []
    pa, pb = records(a / "predictions.jsonl", "qid"), records(b / "predictions.jsonl", "qid")
    if set(pa) != set(pb):
        found.append(f"questions differ: only in A {sorted(set(pa) - set(pb))}, only in B {sorted(set(pb) - set(pa))}")
    for qid in sorted(set(pa) & set(pb)):
        for field in FIELDS:
            if pa[qid].get(field) != pb[qid].get(field):
                found.append(f"{qid}: {field} {pa[qid].get(field)!r} != {pb[qid].get(field)!r}")
    ca, cb = records(a / "captions.jsonl", "video_id"), records(b / "captions.jsonl", "video_id")
    if set(ca) != set(cb):
        found.append(f"captioned videos differ: {sorted(ca)} vs {sorted(cb)}")
    for vid in sorted(set(ca) & set(cb)):
        if timed_texts(ca[vid]) != timed_texts(cb[vid]):
            found.append(f"{vid}: captions differ")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    a, b = (Path(p) for p in argv)
    found = differences(a, b)
    questions = len(records(a / "predictions.jsonl", "qid"))
    videos = len(records(a / "captions.jsonl", "video_id"))
    print(
        "\n".join(found)
        if found
        else f"identical: {questions} predictions (pred, status, raw), captions of {videos} videos"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
