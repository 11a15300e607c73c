"""write_report: run directories in, one static HTML page (report.html) and its report_files/ out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from videoqa.report.header import header_html
from videoqa.report.joined import join_runs, payload, thumbnail_jobs
from videoqa.report.page import render_page
from videoqa.report.rundata import load_runs
from videoqa.report.thumbnails import ThumbnailCache, ThumbResult, build_thumbnails
from videoqa_base.errors import UserError

DEFAULT_MAX_THUMBNAILS = 24  # per video and run: a strip that fits a screen, spread over the whole video
REPORT_NAME = "report.html"
FILES_DIR = "report_files"


@dataclass
class ReportTimings:
    load_s: float = 0.0
    thumbnails_s: float = 0.0
    write_s: float = 0.0
    videos_decoded: int = 0


def default_cache_dir(run_dir: Path) -> Path:
    """<outputs>/cache/thumbnails beside the caption cache (run dirs are <outputs>/<dataset>/<pair>/<id>)."""
    run_dir = Path(run_dir).resolve()
    root = run_dir.parents[2] if len(run_dir.parents) > 2 else run_dir
    return root / "cache" / "thumbnails"


def write_report(
    run_dirs: list[Path],
    out_dir: Path,
    *,
    title: str | None = None,
    max_thumbnails_per_video: int = DEFAULT_MAX_THUMBNAILS,
    cache_dir: Path | None = None,
    progress: bool = True,
    timings: ReportTimings | None = None,
) -> Path:
    """Write <out_dir>/report.html (+ report_files/ thumbnails) for one run, several runs, or
    comparison directories (expanded into their runs); returns the page's path.

    max_thumbnails_per_video: thumbnails per video and run (0: none, nothing is decoded).
    cache_dir: the thumbnail cache (default: <outputs>/cache/thumbnails of the first run).
    """
    if max_thumbnails_per_video < 0:
        raise UserError(f"max thumbnails per video: expected a number >= 0, got {max_thumbnails_per_video}")
    timings = timings if timings is not None else ReportTimings()
    started = time.perf_counter()
    runs = load_runs([Path(p) for p in run_dirs])
    joined = join_runs(runs)
    timings.load_s = time.perf_counter() - started

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    thumbs: dict[tuple[str, int], ThumbResult] = {}
    if max_thumbnails_per_video > 0:
        cache = ThumbnailCache(cache_dir or default_cache_dir(runs[0].path))
        jobs = thumbnail_jobs(joined, max_thumbnails_per_video)
        unique = list(dict.fromkeys(job for _, _, job in jobs))  # runs with the same sampling share frames
        results = dict(zip(unique, build_thumbnails(unique, cache, out_dir / FILES_DIR, out_dir, progress=progress)))
        thumbs = {(video, run): results[job] for video, run, job in jobs}
        timings.videos_decoded = cache.decoded_videos
    timings.thumbnails_s = time.perf_counter() - started

    started = time.perf_counter()
    if title is None:
        dataset = runs[0].section("dataset").get("name", "")
        title = f"{dataset}: {runs[0].label}" if len(runs) == 1 else f"{dataset}: {' vs '.join(r.label for r in runs)}"
    notes = [] if max_thumbnails_per_video > 0 else ["Thumbnails are off (--max-thumbnails 0)."]
    data = payload(joined, thumbs, title, max_thumbnails_per_video > 0)
    page = out_dir / REPORT_NAME
    partial = page.with_suffix(".html.tmp")
    partial.write_text(render_page(title, header_html(joined, title, notes), data), encoding="utf-8")
    partial.replace(page)
    timings.write_s = time.perf_counter() - started
    return page
