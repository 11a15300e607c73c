"""A caption cache shared by runs and by `compare`.

Key = (video content identity, sampling parameters, captioner identity incl. weights and prompt).
A finished video's captions are one small JSON file, written atomically, so a killed run loses
at most the videos it was working on; a re-run does no model work for cached videos.
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
                [Caption(t=c["t"], text=c["text"]) for c in data["captions"]],
                data["duration"],
                data.get("caption_s", 0.0),
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
            "captions": [{"t": c.t, "text": c.text} for c in captions.captions],
        }
        with tmp.open("w") as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
