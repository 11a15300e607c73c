"""Caption caches shared by runs and by `compare`.

CaptionCache, per video. Key = (video content identity, sampling parameters, captioner identity
incl. weights and prompt; with `frames.select: adaptive` also the selection settings and the
embedding). A finished video's captions are one small JSON file, written atomically, so a killed
run loses at most the videos it was working on; a re-run does no model work for cached videos.

FrameCaptionCache, per frame. Key = (video content identity, frame time, captioner identity incl.
weights, prompt and frame size). One append-only JSONL file per (video, captioner context), one
line per captioned frame, so runs that sample the same frames share their captions whatever chose
the frames: a uniform run after an adaptive one captions only the frames the adaptive run skipped.
A line torn by a kill is ignored on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from videoqa.types import Caption, VideoCaptions

_EDGE_BYTES = 1 << 20


def video_fingerprint(path: Path) -> str:
    """Content identity without reading hours of video: size + first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(_EDGE_BYTES))
        if size > 2 * _EDGE_BYTES:
            f.seek(size - _EDGE_BYTES)
            digest.update(f.read(_EDGE_BYTES))
    return digest.hexdigest()


def file_state(path: Path) -> str:
    """ "absent", or the content fingerprint: what a failed video is compared against on resume."""
    try:
        return video_fingerprint(Path(path))
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    except OSError as exc:  # unreadable: a change of permissions counts as a change
        return f"unreadable:{exc.errno}"


class CaptionCache:
    def __init__(self, root: Path, sampling: dict[str, Any], captioner_identity: dict[str, Any]):
        self.root = Path(root)
        self._context = json.dumps({"sampling": sampling, "captioner": captioner_identity}, sort_keys=True)

    def key(self, video_path: Path) -> str:
        return hashlib.sha256(f"{video_fingerprint(video_path)}|{self._context}".encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, video_path: Path) -> VideoCaptions | None:
        if not video_path.is_file():
            return None
        path = self._file(self.key(video_path))
        try:
            data = json.loads(path.read_text())
            return VideoCaptions(
                data["video_id"],
                [
                    Caption(t=c["t"], text=c["text"], spans=tuple(tuple(s) for s in c.get("spans", ())))
                    for c in data["captions"]
                ],
                data["duration"],
                data.get("caption_s", 0.0),
                data.get("selection"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or torn: recompute

    def put(self, video_path: Path, captions: VideoCaptions) -> None:
        path = self._file(self.key(video_path))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        payload = {
            "video_id": captions.video_id,
            "duration": captions.duration,
            "caption_s": captions.caption_s,
            "captions": [
                {"t": c.t, "text": c.text} | ({"spans": [list(s) for s in c.spans]} if c.spans else {})
                for c in captions.captions
            ],
        }
        if captions.selection is not None:
            payload["selection"] = captions.selection
        with tmp.open("w") as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def frame_key(t: float) -> str:
    """A frame time as a cache key: timestamps come from the decoder rounded to 0.1 ms."""
    return f"{t:.4f}"


class FrameCaptionCache:
    """Captions per frame of a video (module docstring): {frame_key(t): (caption, seconds it took)}."""

    def __init__(self, root: Path, context: dict[str, Any]):
        self.root = Path(root)
        self._context = json.dumps(context, sort_keys=True)

    def _file(self, video_path: Path) -> Path:
        key = hashlib.sha256(f"{video_fingerprint(video_path)}|{self._context}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.jsonl"

    def get(self, video_path: Path) -> dict[str, tuple[str, float]]:
        try:
            lines = self._file(video_path).read_text().split("\n")  # U+2028 may stand in a caption
        except (OSError, ValueError):
            return {}
        captions = {}
        for line in lines:
            try:
                record = json.loads(line)
                captions[frame_key(float(record["t"]))] = (str(record["text"]), float(record.get("s", 0.0)))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill
        return captions

    def put(self, video_path: Path, captions: list[Caption], seconds_each: float = 0.0) -> None:
        """Append the frames' captions, each with the captioning seconds it cost (so a run that
        reuses it still reports what its captions cost); one write, then fsync: concurrent runs
        append whole lines."""
        if not captions:
            return
        path = self._file(video_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps({"t": c.t, "text": c.text, "s": seconds_each}) + "\n" for c in captions).encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
