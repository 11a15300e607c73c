"""Variable-frame-rate videos are sampled by real time, not by frame index."""

import ffmpeg
import imageio_ffmpeg
import numpy as np
import pytest

from videoqa.frames import Sampling, decode_frames, sample_by_time


def test_sample_by_time_picks_the_frame_on_screen_and_skips_gaps():
    starts = np.array([0.0, 0.4, 0.8, 1.2, 6.0, 6.4, 6.8, 7.2, 7.6, 8.0])
    # targets 0.5, 1.5, ..., 7.5 s; 2.5-5.5 s fall in the gap and all show frame 3 (kept once)
    assert sample_by_time(starts, 8.4, fps=1.0, num_frames=None, max_frames=None) == [1, 3, 5, 7]
    # two targets spread over the duration: 2.1 s and 6.3 s
    assert sample_by_time(starts, 8.4, fps=1.0, num_frames=None, max_frames=2) == [3, 4]
    # three targets: 1.4, 4.2 (in the gap: frame 3 again) and 7.0 s
    assert sample_by_time(starts, 8.4, fps=None, num_frames=3, max_frames=None) == [3, 6]
    assert sample_by_time(starts[:1], 0.1, fps=1.0, num_frames=None, max_frames=None) == [0]


def test_explicit_selection_is_handed_to_ffmpeg_as_a_list():
    plan = Sampling([3, 9, 40], None, explicit=True)
    assert plan.select_expr() == "eq(n,3)+eq(n,9)+eq(n,40)"
    assert plan.select_expr(first=9) == "eq(n,9)+eq(n,40)"


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory):
    """40 frames at 30 fps, then a 5-second gap, then 80 frames at 30 fps (a paused phone recording)."""
    path = tmp_path_factory.mktemp("vfr") / "gap.mp4"
    (
        ffmpeg.input("testsrc=duration=4:size=160x120:rate=30", f="lavfi")
        .filter("setpts", "if(lt(N,40),PTS,PTS+5/TB)")
        .output(str(path), vcodec="libx264", pix_fmt="yuv420p", loglevel="error")
        .run(cmd=imageio_ffmpeg.get_ffmpeg_exe(), overwrite_output=True)
    )
    return path


def test_vfr_video_is_sampled_at_one_frame_per_second_of_real_time(vfr_video):
    batches = list(decode_frames(vfr_video, fps=1.0, size=64))
    timestamps = [t for b in batches for t in b.timestamps]
    assert timestamps[0] == pytest.approx(0.5, abs=0.05)
    assert timestamps[1] == pytest.approx(1.3, abs=0.05)  # last frame before the gap, once
    assert timestamps[2:] == pytest.approx([6.5, 7.5, 8.5], abs=0.05)
    assert all(b - a >= 0.5 for a, b in zip(timestamps, timestamps[1:]))
    assert batches[-1].duration == pytest.approx(9.0, abs=0.1)
