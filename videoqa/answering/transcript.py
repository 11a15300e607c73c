"""Captions -> transcript text, LLoVi style: one "t: caption" line per kept caption."""

from __future__ import annotations

from videoqa.types import VideoCaptions


def build_transcript(captions: VideoCaptions, caption_every: int = 1) -> str:
    """One line per caption, prefixed with its second in the video; keep every k-th caption."""
    kept = captions.captions[::caption_every]
    return "\n".join(f"{int(c.t)}: {' '.join(c.text.split())}" for c in kept)
