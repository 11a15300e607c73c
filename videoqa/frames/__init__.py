"""Frames stage: sample frames from videos, decode them resized, and stream them in bounded chunks.

    sample_indices(total_frames, avg_fps, fps=1.0)     which frames to look at (pure)
    decode_frames(path, fps=1.0, size=224)             one video -> FrameBatch chunks
    stream_videos(items, ..., workers=2)               many videos -> FrameBatch | VideoFailure

One module per responsibility, in the order a video goes through them:
    errors.py          VideoDecodeError (reason missing | not_a_video | zero_frames | decode_error)
    probe.py           probe_video (`ffmpeg -i`: size, fps, duration, rotation), output_size
    sampling.py        the sampling rule: fps / num_frames / max_frames, by real time for
                       variable frame rate, and its ffmpeg `select` form
    decord_decoder.py  decord, the fast path: sampled frames only, resized, parallel readers
    ffmpeg_decoder.py  ffmpeg, the fallback for what decord cannot (fully) read
    chunker.py         re-cuts whatever the decoders deliver into FrameBatch chunks
    decode.py          decode_frames: one video, decord first and ffmpeg where needed
    stats.py           DecodeStats: decode time and counts, per video and in total
    threads.py         bounded hand-over and joining for the background threads
    stream.py          stream_videos: many videos on worker threads, failures as records
"""

from videoqa.frames.decode import decode_frames
from videoqa.frames.errors import REASONS, VideoDecodeError
from videoqa.frames.probe import VideoInfo, ffmpeg_exe, output_size, probe_video
from videoqa.frames.sampling import Sampling, is_sample, plan_sampling, sample_by_time, sample_indices
from videoqa.frames.stats import DecodeStats
from videoqa.frames.stream import stream_videos

__all__ = [
    "REASONS",
    "DecodeStats",
    "Sampling",
    "VideoDecodeError",
    "VideoInfo",
    "decode_frames",
    "ffmpeg_exe",
    "is_sample",
    "output_size",
    "plan_sampling",
    "probe_video",
    "sample_by_time",
    "sample_indices",
    "stream_videos",
]
