"""The answering stage: (transcript, question) -> prompt -> LLM -> chosen option.

Every prompt's length is checked against the backend's context before it is sent. An over-long
transcript is handled by `AnswerConfig.context_policy`, and what was done is written into
`Answer.detail` - transcripts are never silently truncated:

- "error":     the question is not sent; status "invalid", detail "context_overflow: ...".
- "subsample": drop every other transcript line until the prompt fits ("context_subsample: ...").
- "summarize": condense the transcript chunk by chunk with the LLM until it fits
               ("context_summarize: ...").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from videoqa.answering.llm.base import Completion, LLMBackend, Messages
from videoqa.answering.prompts import (
    PromptTemplate,
    build_chunk_summary_messages,
    build_messages,
    build_summary_messages,
    letter_to_index,
    load_prompt,
    parse_letter,
)
from videoqa.config import AnswerConfig
from videoqa.types import Answer, Question
from videoqa_base.logs import progress_bar

MAX_CONDENSE_ROUNDS = 3  # "summarize" policy: summaries of summaries, at most this deep


@dataclass
class _Job:
    """One question on its way through the stage."""

    question: Question
    transcript: str
    notes: list[str] = field(default_factory=list)  # context policy applied, for Answer.detail
    raw_prefix: str = ""  # earlier LLM output this answer builds on (the summary in "summarize" mode)
    answer: Answer | None = None  # set once the question is finished (possibly as a failure)

    def finish(
        self,
        pred: int | None,
        raw: str,
        status: str,
        detail: str = "",
        prompt_tokens: int | None = None,
        choice_logprobs: dict[str, float] | None = None,
    ):
        detail = "; ".join([*self.notes, detail] if detail else self.notes)
        raw = self.raw_prefix + raw
        self.answer = Answer(
            self.question.qid,
            pred,
            raw,
            status=status,
            detail=detail,
            prompt_tokens=prompt_tokens,
            choice_logprobs=choice_logprobs or {},
        )


def answer_questions(
    backend: LLMBackend,
    questions: Sequence[Question],
    transcripts: Mapping[str, str],
    config: AnswerConfig,
    progress: bool = True,
    *,
    template: PromptTemplate | None = None,
    batch_size: int = 64,
    question_transcripts: Mapping[str, str] | None = None,
) -> list[Answer]:
    """One Answer per question, in order. Questions whose video has no transcript are not sent.
    `question_transcripts` {qid: transcript} overrides the video's transcript for those questions
    (a question-dependent frame selection, `adaptive.relevance: llm`).

    Prompts go to the backend `batch_size` questions at a time (each call is one engine batch);
    the progress bar advances per batch.
    """
    template = template or load_prompt(config.prompt)
    own = question_transcripts or {}
    jobs = [_Job(q, own[q.qid] if q.qid in own else transcripts.get(q.video_id)) for q in questions]
    pending = []
    for job in jobs:
        if job.transcript is None:
            job.finish(None, "", "video_failed", "no transcript: the video failed earlier in the pipeline")
        else:
            pending.append(job)
    with progress_bar(total=len(jobs), show=progress, desc=f"answering [{template.name}]", unit="q") as bar:
        bar.update(len(jobs) - len(pending))
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            _answer_batch(backend, batch, template, config)
            bar.update(len(batch))
    return [job.answer for job in jobs]


# ---------------------------------------------------------------------------- one batch


def _answer_batch(backend: LLMBackend, jobs: list[_Job], template: PromptTemplate, config: AnswerConfig) -> None:
    # The length-critical call: the summary call in "summarize" mode, otherwise the answer call.
    if template.mode == "summarize":
        reserve = template.summary_max_tokens or config.max_tokens
        build = lambda t, q: build_summary_messages(template, t, q)  # noqa: E731
    else:
        reserve = config.max_tokens if template.mode == "cot" else config.context_margin
        build = lambda t, q: build_messages(template, t, q)  # noqa: E731
    budget = backend.max_context - max(reserve, config.context_margin)
    _fit_transcripts(backend, jobs, build, budget, template, config)
    live = [job for job in jobs if job.answer is None]
    if not live:
        return
    if template.mode == "choice":
        _answer_choice(backend, live, [build_messages(template, j.transcript, j.question) for j in live], config)
    elif template.mode == "cot":
        messages = [build_messages(template, j.transcript, j.question) for j in live]
        for job, done in zip(live, backend.generate(messages, config.max_tokens)):
            _finish_free_text(job, done)
    else:  # summarize: (C,Q) -> S, then answer from S
        summaries = backend.generate([build(j.transcript, j.question) for j in live], reserve)
        answerable, messages = [], []
        for job, summary in zip(live, summaries):
            if summary.error:
                job.finish(None, summary.text, "llm_failed", f"summary: {summary.error}", summary.prompt_tokens)
                continue
            job.raw_prefix = f"Summary: {summary.text.strip()}\nAnswer: "
            msgs = build_messages(template, job.transcript, job.question, summary=summary.text.strip())
            if _overflows(backend, msgs, config.context_margin, job):
                continue
            answerable.append(job)
            messages.append(msgs)
        if answerable:
            _answer_choice(backend, answerable, messages, config)


def _answer_choice(backend: LLMBackend, jobs: list[_Job], messages: list[Messages], config: AnswerConfig) -> None:
    completions = backend.choose(messages, [j.question.letters for j in jobs])
    for job, done in zip(jobs, completions):
        if done.error:
            job.finish(None, done.text, "llm_failed", done.error, done.prompt_tokens)
            continue
        pred = letter_to_index(done.text, len(job.question.options))
        if pred is None:
            job.finish(None, done.text, "invalid", "not_an_option", done.prompt_tokens)
        else:
            job.finish(
                pred,
                done.text,
                "ok",
                prompt_tokens=done.prompt_tokens,
                choice_logprobs=getattr(done, "choice_logprobs", None),
            )


def _finish_free_text(job: _Job, done: Completion) -> None:
    if done.error:
        job.finish(None, done.text, "llm_failed", done.error, done.prompt_tokens)
        return
    letter = parse_letter(done.text, job.question.letters)
    if letter is None:
        job.finish(None, done.text, "invalid", "unparsable", done.prompt_tokens)
    else:
        job.finish(
            letter_to_index(letter, len(job.question.options)), done.text, "ok", prompt_tokens=done.prompt_tokens
        )


def _overflows(backend: LLMBackend, messages: Messages, reserve: int, job: _Job) -> bool:
    n = backend.count_tokens(messages)
    budget = backend.max_context - reserve
    if n > budget:
        job.finish(None, "", "invalid", f"context_overflow: {n} prompt tokens > {budget} available", n)
        return True
    return False


# ---------------------------------------------------------------------------- context policies


def _fit_transcripts(
    backend: LLMBackend,
    jobs: list[_Job],
    build: Callable[[str, Question], Messages],
    budget: int,
    template: PromptTemplate,
    config: AnswerConfig,
) -> None:
    too_long = []
    for job in jobs:
        n = backend.count_tokens(build(job.transcript, job.question))
        if n <= budget:
            continue
        overflow = f"context_overflow: {n} prompt tokens > {budget} available"
        if config.context_policy == "error":
            job.finish(None, "", "invalid", overflow, n)
        elif config.context_policy == "subsample":
            _subsample(backend, job, build, budget, overflow, n)
        else:
            too_long.append(job)
    if too_long:
        _condense(backend, too_long, build, budget, template, config)


def _subsample(backend: LLMBackend, job: _Job, build, budget: int, overflow: str, tokens: int) -> None:
    """Keep lines 0, 2, 4, ... (then 0, 4, 8, ...) until the prompt fits."""
    lines = job.transcript.splitlines()
    kept, stride = lines, 1
    while len(kept) > 1:
        kept, stride = kept[::2], stride * 2
        if backend.count_tokens(build("\n".join(kept), job.question)) <= budget:
            job.transcript = "\n".join(kept)
            job.notes.append(f"context_subsample: kept {len(kept)}/{len(lines)} lines (stride {stride})")
            return
    empty_fits = backend.count_tokens(build("", job.question)) <= budget
    why = "even one transcript line is too long" if empty_fits else "the prompt is too long even without a transcript"
    job.finish(None, "", "invalid", f"{overflow} ({why})", tokens)


def _condense(backend: LLMBackend, jobs: list[_Job], build, budget: int, template, config: AnswerConfig) -> None:
    """Summarise over-long transcripts chunk by chunk (all chunks of all jobs in one batch)."""
    chunk_budget = backend.max_context - max(config.max_tokens, config.context_margin)
    original = {id(j): len(j.transcript.splitlines()) for j in jobs}
    for round_ in range(1, MAX_CONDENSE_ROUNDS + 1):
        prompts, owners = [], []
        for job in jobs:

            def fits(text: str, q=job.question) -> bool:
                return backend.count_tokens(build_chunk_summary_messages(template, text, q)) <= chunk_budget

            chunks = _split_to_fit(job.transcript.splitlines(), fits)
            if chunks is None:
                job.finish(None, "", "invalid", "context_overflow: a single transcript line exceeds the context")
                continue
            for chunk in chunks:
                prompts.append(build_chunk_summary_messages(template, "\n".join(chunk), job.question))
                owners.append(job)
        jobs = [j for j in jobs if j.answer is None]
        if not prompts:
            return
        summaries: dict[int, list[str]] = {id(j): [] for j in jobs}
        failed: dict[int, str] = {}
        for job, done in zip(owners, backend.generate(prompts, config.max_tokens)):
            if done.error:
                failed[id(job)] = done.error
            summaries[id(job)].append(done.text.strip())
        still_long = []
        for job in jobs:
            if id(job) in failed:
                job.finish(None, "", "llm_failed", f"context_summarize: {failed[id(job)]}")
                continue
            condensed = "\n".join(s for s in summaries[id(job)] if s)
            if len(condensed) >= len(job.transcript):
                job.finish(None, condensed, "invalid", "context_overflow: summarising did not shorten the transcript")
                continue
            job.transcript = condensed
            n = backend.count_tokens(build(condensed, job.question))
            if n <= budget:
                job.notes.append(
                    f"context_summarize: {original[id(job)]} lines -> {len(summaries[id(job)])} chunk summaries "
                    f"in {round_} round(s)"
                )
            else:
                still_long.append(job)
        jobs = still_long
        if not jobs:
            return
    for job in jobs:
        job.finish(None, "", "invalid", f"context_overflow: still too long after {MAX_CONDENSE_ROUNDS} summary rounds")


def _split_to_fit(lines: list[str], fits: Callable[[str], bool]) -> list[list[str]] | None:
    """Split consecutive lines into the fewest halvings whose text fits; None if one line can't."""
    if fits("\n".join(lines)):
        return [lines]
    if len(lines) <= 1:
        return None
    mid = len(lines) // 2
    left, right = _split_to_fit(lines[:mid], fits), _split_to_fit(lines[mid:], fits)
    return None if left is None or right is None else left + right
