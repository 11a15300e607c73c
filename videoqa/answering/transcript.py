"""Captions -> transcript text, LLoVi style: one "t: caption" line per kept caption.

A caption chosen by adaptive selection (`frames.select: adaptive`) stands for the time its cluster
covers: its line starts with those spans instead, "0-30, 120-150: caption", and lines are in order
of their first span's start.

With `transcript.subtitles: true`, a benchmark's subtitles (Video-MME, LongVideoBench) are merged in
by time, each line marked "t: [speech] ..." so the LLM can tell what is said from what a captioner saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from videoqa.config import TranscriptConfig
from videoqa.datasets.subtitles import Subtitle, read_subtitles
from videoqa.types import Question, VideoCaptions

SPEECH_MARK = "[speech]"


def _line(t: float, text: str) -> str:
    return f"{int(max(t, 0.0))}: {' '.join(text.split())}"


def _span_line(spans: Sequence[tuple[float, float]], text: str) -> str:
    when = ", ".join(f"{int(max(a, 0.0))}-{max(int(b + 0.5), int(max(a, 0.0)) + 1)}" for a, b in spans)
    return f"{when}: {' '.join(text.split())}"


def build_transcript(captions: VideoCaptions, caption_every: int = 1, subtitles: Sequence[Subtitle] = ()) -> str:
    """One line per caption, prefixed with its second in the video (or its spans); keep every k-th
    caption. Subtitle lines go where their start time falls (after the captions of the same second)."""
    kept = captions.captions[::caption_every]
    timed = [
        (c.spans[0][0], 0, i, _span_line(c.spans, c.text)) if c.spans else (c.t, 0, i, _line(c.t, c.text))
        for i, c in enumerate(kept)
    ]
    timed += [(s.start, 1, i, _line(s.start, f"{SPEECH_MARK} {s.text}")) for i, s in enumerate(subtitles)]
    return "\n".join(line for _, _, _, line in sorted(timed, key=lambda x: (int(max(x[0], 0.0)), x[1], x[2])))


def video_subtitles(questions: Iterable[Question]) -> dict[str, list[Subtitle]]:
    """Each video's subtitles, read once per file (the questions of one video share it)."""
    subtitles: dict[str, list[Subtitle]] = {}
    for q in questions:
        if q.subtitles is not None and q.video_id not in subtitles and q.subtitles.is_file():
            subtitles[q.video_id] = read_subtitles(q.subtitles, offset=float(q.meta.get("subtitle_offset") or 0.0))
    return subtitles


def build_transcripts(
    questions: Sequence[Question], captions: Mapping[str, VideoCaptions], config: TranscriptConfig
) -> dict[str, str]:
    """{video_id: transcript} for every captioned video, with its subtitles when `config.subtitles`."""
    subtitles = video_subtitles(questions) if config.subtitles else {}
    return {vid: build_transcript(vc, config.caption_every, subtitles.get(vid, ())) for vid, vc in captions.items()}


def build_question_transcripts(
    questions: Sequence[Question], views: Mapping[str, VideoCaptions], config: TranscriptConfig
) -> dict[str, str]:
    """{qid: transcript} from each question's own captions (`views`, by qid), subtitles as for its video."""
    subtitles = video_subtitles(questions) if config.subtitles else {}
    return {
        q.qid: build_transcript(views[q.qid], config.caption_every, subtitles.get(q.video_id, ()))
        for q in questions
        if q.qid in views
    }
