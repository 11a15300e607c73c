"""CaptionTiming declares what the caption stage puts in CaptionResult.timing: every key it writes,
with a value of the declared type (mypy checks the literal; this checks what a real run produces)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from videoqa.captioning.videos import CaptionTiming, caption_videos
from videoqa.config import load_run_config
from videoqa.registry import CAPTIONERS


def _matches(value: Any, declared: Any) -> bool:
    if declared is bool:
        return isinstance(value, bool)
    if declared is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if declared is float:  # an int is a float to a type checker (PEP 484 numeric tower)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(declared) is dict:
        key_type, value_type = typing.get_args(declared)
        return isinstance(value, dict) and all(
            _matches(k, key_type) and _matches(v, value_type) for k, v in value.items()
        )
    if declared is str:
        return isinstance(value, str)
    raise AssertionError(f"no check for {declared!r}")


def _check(timing: dict[str, Any]) -> None:
    declared = typing.get_type_hints(CaptionTiming)
    assert set(timing) <= set(declared), f"keys not declared in CaptionTiming: {set(timing) - set(declared)}"
    wrong = {key: value for key, value in timing.items() if not _matches(value, declared[key])}
    assert not wrong, f"values not of CaptionTiming's declared types: {wrong}"


def test_caption_stage_writes_only_declared_timing_keys(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    from videoqa.fixtures.synthetic_video import make_video

    captioner_dir, _ = tiny_models
    video = make_video(tmp_path / "clip.mp4", seconds=2, fps=10, width=96, height=64)
    config = load_run_config(
        dataset="egoschema",
        captioner=str(captioner_dir),
        overrides=[f"output_dir={tmp_path / 'out'}", "captioner.max_new_tokens=4"],
    )
    assert config.captioner is not None
    videos = [("clip", video), ("gone", tmp_path / "gone.mp4")]
    captioned = caption_videos(config, CAPTIONERS.get(config.captioner.type)(config.captioner), videos, progress=False)
    assert captioned.timing["captioner_loaded"] and captioned.timing["per_video"]["clip"]["frames"] > 0
    _check(dict(captioned.timing))
    # all from the cache: the captioner is never loaded, the keys stay the declared ones
    cached = caption_videos(config, CAPTIONERS.get(config.captioner.type)(config.captioner), videos, progress=False)
    assert not cached.timing["captioner_loaded"] and cached.timing["videos_from_cache"] == 1
    _check(dict(cached.timing))
