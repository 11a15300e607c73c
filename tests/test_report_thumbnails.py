"""Thumbnails: the very frames the captions came from (the pipeline's decoder at the caption times),
bounded per video, cached on disk by video content and sampling, and degrading to a reason."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videoqa.fixtures.synthetic_video import make_video
from videoqa.frames import decode_frames
from videoqa.report.thumbnails import (
    JPEG_QUALITY,
    Sampling,
    ThumbJob,
    ThumbnailCache,
    build_thumbnails,
    export,
    match_times,
    spread,
)

CAPTION_TIMES = tuple(k + 0.5 for k in range(8))  # 1 fps: the centres of each second


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """8 s of testsrc (its counter changes every second), 30 fps, 320x240."""
    path = tmp_path_factory.mktemp("thumbs") / "clip.mp4"
    make_video(path, seconds=8, fps=30, width=320, height=240, pattern="testsrc")
    return path


def as_jpeg(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return np.asarray(Image.open(buffer).convert("RGB"))


def job(video: Path | None, limit: int = 3, times: tuple[float, ...] | None = CAPTION_TIMES) -> ThumbJob:
    return ThumbJob("clip", video, Sampling(fps=1.0), times, limit)


def test_spread_and_matching():
    assert spread(10, 3) == [0, 4, 9] or spread(10, 3) == [0, 5, 9]
    assert spread(3, 10) == [0, 1, 2] and spread(5, 0) == [] and spread(7, 1) == [3]
    assert len(spread(180, 24)) == 24 and spread(180, 24)[-1] == 179
    decoded = [0.5, 1.5, 2.5, 3.5]
    assert match_times([1.5, 3.5], decoded) == [(1.5, 1), (3.5, 3)]
    assert match_times([1.6], decoded) == [(1.6, 1)]  # within half an interval
    assert match_times([9.0], decoded) == []  # no frame near: no thumbnail (never a wrong frame)


def test_thumbnails_are_the_decoded_frames_at_the_caption_times(video, tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    key, result = cache.get(job(video))
    assert result.error == "" and result.sampled == 8
    assert [t for t, _ in result.frames] == [0.5, 4.5, 7.5] or [t for t, _ in result.frames] == [0.5, 3.5, 7.5]
    reference = {
        round(t, 3): image
        for batch in decode_frames(video, fps=1.0, size=cache.size)
        for t, image in zip(batch.timestamps, batch.images)
    }
    for t, file in result.frames:
        thumbnail = np.asarray(Image.open(file).convert("RGB"))
        assert min(thumbnail.shape[:2]) == cache.size  # shorter side
        # the same frame through the same JPEG encoder gives the same pixels; any other second's does not
        assert np.array_equal(thumbnail, as_jpeg(reference[round(t, 3)]))
        assert not any(np.array_equal(thumbnail, as_jpeg(image)) for u, image in reference.items() if abs(u - t) > 0.1)


def test_the_cache_decodes_a_video_once_and_a_changed_video_again(video, tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    key, first = cache.get(job(video))
    assert cache.decoded_videos == 1
    again = ThumbnailCache(tmp_path / "cache")  # a later report
    key_again, second = again.get(job(video))
    assert again.decoded_videos == 0 and key_again == key and second.frames == first.frames
    more = again.get(job(video, limit=8))[1]  # more thumbnails than cached: decoded again, once
    assert again.decoded_videos == 1 and len(more.frames) == 8
    assert again.get(job(video, limit=8))[1].frames == more.frames and again.decoded_videos == 1

    changed = tmp_path / "changed.mp4"
    make_video(changed, seconds=8, fps=30, width=320, height=240, pattern="smptebars")
    assert again.key(changed, Sampling(fps=1.0)) != key
    assert again.key(video, Sampling(fps=0.5)) != key  # another sampling is other frames


def test_missing_and_broken_videos_give_a_reason_not_an_exception(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    missing = cache.get(job(tmp_path / "absent.mp4"))[1]
    assert missing.frames == [] and missing.error == f"video not found: {tmp_path / 'absent.mp4'}"
    assert cache.get(job(None))[1].error.startswith("video not found: unknown")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(20_000))
    result = cache.get(job(broken))[1]
    assert result.frames == [] and result.error.split(":")[0] in ("not_a_video", "decode_error", "zero_frames")


def test_a_video_llm_gets_the_frames_it_was_shown(video, tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    shown = ThumbJob("clip", video, Sampling(fps=1.0, max_frames=4), None, 24)
    result = cache.get(shown)[1]
    assert result.sampled == 4 and len(result.frames) == 4  # max_frames re-spaces 8 s to 4 frames
    assert [t for t, _ in result.frames] == sorted(t for t, _ in result.frames)


def test_export_links_the_cached_files_under_report_files(video, tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    out = tmp_path / "report"
    (result,) = build_thumbnails([job(video)], cache, out / "report_files", out, progress=False)
    assert len(result.frames) == 3
    for _, relative in result.frames:
        assert relative.startswith("report_files/") and (out / relative).is_file()
    empty = export(cache.get(job(None))[1], "", out / "report_files", out)
    assert empty.frames == [] and empty.error


def test_runs_sharing_a_video_and_sampling_export_side_by_side(video, tmp_path):
    """Two runs, same frames, different caption times: built in parallel into one report_files/."""
    cache = ThumbnailCache(tmp_path / "cache")
    out = tmp_path / "report"
    jobs = [job(video, limit=8), job(video, limit=8, times=CAPTION_TIMES[:4]), job(video, limit=2)]
    results = build_thumbnails(jobs, cache, out / "report_files", out, workers=3, progress=False)
    assert [len(r.frames) for r in results] == [8, 4, 2]
    assert all((out / relative).is_file() for r in results for _, relative in r.frames)
    assert results[1].frames == results[0].frames[:4]  # the same files, not copies of copies
