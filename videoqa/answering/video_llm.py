"""Native video-LLM answering: the sampled frames and the question go straight to a video LLM,
no captions, no transcript - the baseline the caption-then-answer pipeline is compared against.

    answerer = VideoLLMAnswerer(backend, fps=1.0, max_frames=32, frame_size=448, max_pixels=448 * 800)
    answers, timing = answerer.answer(questions, progress=True)

Frames: each video is decoded once (videoqa.frames, background threads) at `fps`, capped at
`max_frames` (evenly re-spaced over the whole video), shorter side `frame_size`; frames larger than
`max_pixels` are then shrunk (aspect kept) so no frame exceeds the pixel cap. A video that cannot
be decoded gets status "video_failed" answers whose detail is the decoder's reason and message.

Context: a prompt whose tokens (visual tokens included) exceed the backend's context minus
`context_margin` is never silently truncated; `context_policy` decides and `Answer.detail` says:
- "subsample": keep every 2nd frame (then every 4th, ...) until it fits, over the whole video
               ("frames_subsample: kept 16/64 frames (stride 4) ...");
- "error":     the question is not sent: status "invalid", detail "context_overflow: ...".
The answer is one of the option letters (the backend constrains it).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from videoqa.answering.llm.video import PreparedPrompt, VideoLLMBackend, VideoPrompt
from videoqa.models.resolve import resolve_model
from videoqa.types import Answer, FrameBatch, Question, VideoFailure
from videoqa_base.checkpoints import checkpoint_parameters
from videoqa_base.logs import progress_bar

QUESTION_TEMPLATE = (
    "Question: {question}\nOptions:\n{options}\nAnswer with the option's letter from the given choices directly."
)
CONTEXT_POLICIES = ("subsample", "error")


def video_llm_parameters(config) -> int:
    """A video LLM's size for the tables (`config`: an LLMConfig), from its safetensors headers:
    no weights, no engine - a resumed run that asks nothing still reports it."""
    return checkpoint_parameters(resolve_model(config.model, config.revision, what="video LLM").path)


def question_text(question: Question) -> str:
    options = "\n".join(f"{letter}. {text}" for letter, text in zip(question.letters, question.options))
    return QUESTION_TEMPLATE.format(question=question.question, options=options)


def cap_pixels(frames: np.ndarray, max_pixels: int | None) -> np.ndarray:
    """Frames shrunk (aspect kept, bicubic) so that height * width <= max_pixels."""
    from PIL import Image

    height, width = frames.shape[1:3]
    if max_pixels is None or height * width <= max_pixels:
        return frames
    scale = (max_pixels / (height * width)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))  # PIL: (width, height)
    return np.stack([np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC)) for frame in frames])


class VideoLLMAnswerer:
    """Answers questions by showing a video LLM the sampled frames of their videos."""

    def __init__(
        self,
        backend: VideoLLMBackend,
        *,
        fps: float | None = 1.0,
        max_frames: int | None = 32,
        frame_size: int | None = 448,
        max_pixels: int | None = 448 * 800,
        context_policy: str = "subsample",
        context_margin: int = 16,
        workers: int = 2,
    ):
        if context_policy not in CONTEXT_POLICIES:
            raise ValueError(f"context_policy must be one of {CONTEXT_POLICIES}, got {context_policy!r}")
        self.backend = backend
        self.fps, self.max_frames, self.frame_size, self.max_pixels = fps, max_frames, frame_size, max_pixels
        self.context_policy, self.context_margin, self.workers = context_policy, context_margin, workers
        self.failures: dict[str, VideoFailure] = {}  # videos that could not be decoded, by the last answer()

    def settings(self) -> dict:
        """What shapes the model's input, for the run manifest."""
        return {
            "fps": self.fps,
            "max_frames": self.max_frames,
            "frame_size": self.frame_size,
            "max_pixels": self.max_pixels,
            "context_policy": self.context_policy,
            "context_margin": self.context_margin,
            "frames_as": self.backend.frames_as,
            "question_template": QUESTION_TEMPLATE,
        }

    def answer(self, questions: Sequence[Question], progress: bool = True) -> tuple[list[Answer], dict]:
        """One Answer per question, in order, and timing: decode_s (waiting for frames), answer_s,
        video_seconds (of the decoded videos), frame and failure counts; caption_s is 0."""
        from videoqa.frames import stream_videos

        by_video: dict[str, list[Question]] = defaultdict(list)
        paths: dict[str, str] = {}
        for q in questions:
            by_video[q.video_id].append(q)
            paths.setdefault(q.video_id, q.video_path)
        answers: dict[str, Answer] = {}
        self.failures = {}
        chunks: dict[str, list[FrameBatch]] = defaultdict(list)
        timing = {
            "caption_s": 0.0,  # no captions: the same keys as a captioner's run, for the result tables
            "decode_s": 0.0,
            "answer_s": 0.0,
            "video_seconds": 0.0,
            "videos": len(by_video),
            "videos_failed": 0,
            "frames": 0,
            "frames_subsampled_questions": 0,
        }
        stream = stream_videos(
            paths.items(), fps=self.fps, max_frames=self.max_frames, size=self.frame_size, workers=self.workers
        )
        with progress_bar(total=len(questions), show=progress, desc="answering [video LLM]", unit="q") as bar:
            waited = time.perf_counter()
            for item in stream:
                timing["decode_s"] += time.perf_counter() - waited
                if isinstance(item, VideoFailure):
                    self.failures[item.video_id] = item
                    timing["videos_failed"] += 1
                    chunks.pop(item.video_id, None)
                    for q in by_video[item.video_id]:
                        answers[q.qid] = Answer(q.qid, None, "", "video_failed", f"{item.reason}: {item.message}")
                    bar.update(len(by_video[item.video_id]))
                else:
                    chunks[item.video_id].append(item)
                    if item.final:
                        started = time.perf_counter()
                        for answer in self._answer_video(by_video[item.video_id], chunks.pop(item.video_id), timing):
                            answers[answer.qid] = answer
                        timing["answer_s"] += time.perf_counter() - started
                        bar.update(len(by_video[item.video_id]))
                waited = time.perf_counter()
        return [answers[q.qid] for q in questions], timing

    def _answer_video(self, questions: list[Question], chunks: list[FrameBatch], timing: dict) -> list[Answer]:
        frames = cap_pixels(np.concatenate([c.images for c in chunks]), self.max_pixels)
        timestamps = [t for c in chunks for t in c.timestamps]
        timing["frames"] += len(frames)
        timing["video_seconds"] += chunks[-1].duration
        budget = self.backend.max_context - self.context_margin
        results: dict[str, Answer] = {}
        ready: list[tuple[Question, PreparedPrompt, str]] = []
        for q in questions:
            prompt = VideoPrompt(frames, timestamps, question_text(q), q.letters)
            prepared, note = self._fit(prompt, budget)
            if prepared is None:
                results[q.qid] = Answer(q.qid, None, "", "invalid", note)
            else:
                ready.append((q, prepared, note))
        for (q, _prepared, note), done in zip(ready, self.backend.choose_frames([p for _, p, _ in ready])):
            if done.error:
                results[q.qid] = Answer(q.qid, None, done.text, "llm_failed", done.error, done.prompt_tokens)
            else:
                results[q.qid] = Answer(
                    q.qid,
                    q.letters.index(done.text),
                    done.text,
                    "ok",
                    note,
                    done.prompt_tokens,
                    dict(getattr(done, "choice_logprobs", {}) or {}),
                )
                timing["frames_subsampled_questions"] += bool(note)
        return [results[q.qid] for q in questions]

    def _fit(self, prompt: VideoPrompt, budget: int) -> tuple[PreparedPrompt | None, str]:
        """The prepared prompt that fits `budget` tokens under the context policy, and what was done."""
        prepared = self.backend.prepare(prompt)
        if prepared.tokens <= budget:
            return prepared, ""
        total = len(prompt.frames)
        overflow = f"context_overflow: {prepared.tokens} prompt tokens with {total} frames > {budget} available"
        if self.context_policy == "error":
            return None, overflow
        stride = 1
        while -(-total // stride) > 1:  # until a single frame is left
            stride *= 2
            keep = slice(None, None, stride)
            smaller = VideoPrompt(prompt.frames[keep], prompt.timestamps[keep], prompt.text, prompt.choices)
            prepared = self.backend.prepare(smaller)
            if prepared.tokens <= budget:
                kept = len(smaller.frames)
                return (
                    prepared,
                    f"frames_subsample: kept {kept}/{total} frames (stride {stride}) to fit {budget} tokens",
                )
        return None, f"{overflow} (even one frame is too long)"
