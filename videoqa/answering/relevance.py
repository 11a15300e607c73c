"""`adaptive.relevance: llm`: the question decides which clusters are told in detail (VideoTree's depth).

The caption stage (question-independent) clustered each video's frames, captioned every cluster's
representative and, within `adaptive.max_captions`, the representatives of its sub-clusters
(its children). Per question:

    1. breadth: the LLM rates every cluster's relevance to the question from its caption and spans,
       1 (not relevant), 2 (somewhat) or 3 (clearly), one constrained digit per cluster;
    2. depth: the clusters rated 3 (those rated 2 when none is) whose children were captioned are
       expanded: their one caption is replaced by their children's captions, each with its spans;
    3. the transcript is built from that selection, in time order.

The choice is appended to the run directory's selections.jsonl as it is made; a resumed run reads it
back instead of asking again, so it makes the same choice. A failed rating counts as 1 (the cluster
keeps its one caption).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from videoqa.answering.llm.base import LLMBackend, Messages
from videoqa.captioning.cache import frame_key
from videoqa.types import Caption, Question, VideoCaptions

RATINGS = ("1", "2", "3")
RATING_SYSTEM = "You judge which parts of a video help answer a question about it."
RATING_USER = (
    "Question: {question}\nOptions:\n{options}\n\nDuring {when} s the video shows: {caption}\n\n"
    "How relevant is this part of the video to answering the question? Reply with one digit: "
    "1 = not relevant, 2 = somewhat relevant, 3 = clearly relevant."
)


def _when(spans: Sequence[Sequence[float]]) -> str:
    return ", ".join(f"{int(a)}-{int(b + 0.5)}" for a, b in spans)


def _texts(vc: VideoCaptions) -> dict[str, str]:
    return {frame_key(c.t): c.text for c in vc.captions}


def rating_messages(question: Question, cluster: dict[str, Any], caption: str) -> Messages:
    options = "\n".join(f"{letter}. {option}" for letter, option in zip(question.letters, question.options))
    user = RATING_USER.format(
        question=question.question, options=options, when=_when(cluster["spans"]), caption=" ".join(caption.split())
    )
    return [{"role": "system", "content": RATING_SYSTEM}, {"role": "user", "content": user}]


def rate_clusters(
    backend: LLMBackend, questions: Sequence[Question], captions: Mapping[str, VideoCaptions]
) -> dict[str, list[int]]:
    """{qid: one rating per top-level cluster of its video}, one batched constrained call."""
    prompts: list[Messages] = []
    owners: list[str] = []
    for q in questions:
        vc = captions[q.video_id]
        record, texts = vc.selection or {}, _texts(vc)
        for cluster in record.get("clusters", []):
            prompts.append(rating_messages(q, cluster, texts[frame_key(record["times"][cluster["representative"]])]))
            owners.append(q.qid)
    ratings: dict[str, list[int]] = {q.qid: [] for q in questions}
    if prompts:
        for qid, done in zip(owners, backend.choose(prompts, [RATINGS] * len(prompts))):
            ratings[qid].append(int(done.text) if not done.error and done.text in RATINGS else 1)
    return ratings


def expanded(ratings: Sequence[int], expandable: Sequence[int]) -> list[int]:
    """The clusters to expand: rated 3, or rated 2 when none is rated 3; only those with captioned children."""
    best = 3 if 3 in ratings else 2
    return [i for i in expandable if i < len(ratings) and ratings[i] == best]


def question_view(vc: VideoCaptions, expand: Sequence[int]) -> VideoCaptions:
    """The video's captions as this question sees them: each cluster's caption with its spans,
    or for an expanded cluster its children's captions with theirs."""
    record, texts = vc.selection or {}, _texts(vc)
    times = record.get("times", [])
    chosen: list[Caption] = []
    for i, cluster in enumerate(record.get("clusters", [])):
        parts = cluster["children"] if i in expand else [cluster]
        for part in parts:
            t = times[part["representative"]]
            chosen.append(Caption(t, texts[frame_key(t)], tuple(tuple(s) for s in part["spans"])))
    chosen.sort(key=lambda c: (c.spans[0][0], c.t))
    return VideoCaptions(vc.video_id, chosen, vc.duration, vc.caption_s, vc.selection)


def select_per_question(
    backend: LLMBackend,
    questions: Sequence[Question],
    captions: Mapping[str, VideoCaptions],
    recorded: Mapping[str, dict[str, Any]],
    record: Callable[[Sequence[dict[str, Any]]], None],
) -> dict[str, VideoCaptions]:
    """{qid: the captions its transcript is built from}. Recorded choices are reused as they are
    (a resumed run); the rest are made now and recorded before any answer is asked."""
    asked = [q for q in questions if q.video_id in captions and captions[q.video_id].selection is not None]
    todo = [q for q in asked if q.qid not in recorded]
    ratings = rate_clusters(backend, todo, captions) if todo else {}
    new: list[dict[str, Any]] = []
    for q in todo:
        expandable = (captions[q.video_id].selection or {}).get("expandable", [])
        new.append(
            {
                "qid": q.qid,
                "video_id": q.video_id,
                "ratings": ratings[q.qid],
                "expanded": expanded(ratings[q.qid], expandable),
            }
        )
    if new:
        record(new)
    choices: dict[str, dict[str, Any]] = {**recorded, **{r["qid"]: r for r in new}}
    return {q.qid: question_view(captions[q.video_id], choices[q.qid]["expanded"]) for q in asked}
