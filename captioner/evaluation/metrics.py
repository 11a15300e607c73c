"""Caption metrics: BLEU-4, METEOR, CIDEr (pycocoevalcap, the COCO caption evaluation code)
and, when the `bert_score` package and its model are available, BERTScore.

Captions are lower-cased and tokenised with the PTB tokenizer shipped with pycocoevalcap
(Stanford CoreNLP jar, runs offline with the local Java). "CIDEr" is pycocoevalcap's CIDEr-D,
the variant every captioning paper reports. Corpus-level scores are multiplied by 100, the
scale papers print (B@4 39.4, CIDEr 129.6): identical candidates and references give
BLEU-4 = 100, and CIDEr-D can exceed 100 (its maximum is 1000).

Note that CIDEr weighs n-grams by their inverse document frequency over the evaluated
images, so it is only meaningful on a corpus (an n-gram present in every image's references
has zero weight; a single image always scores 0).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoqa_base.errors import UserError

logger = logging.getLogger(__name__)

METRICS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "BERTScore")
DEFAULT_METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "BERTScore")
# Metrics that need a Java runtime (pycocoevalcap calls jars) besides tokenisation.
_JAVA_METRICS = {"METEOR"}
BERTSCORE_MODEL = "roberta-large"  # bert_score's default for English


@dataclass
class CaptionScores:
    scores: dict[str, float]  # metric -> corpus score (x100)
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> id -> score (x100)
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    num_images: int = 0


def check_inputs(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> list[str]:
    """Ids present in both; every prediction must have references and vice versa."""
    no_refs = sorted(set(predictions) - set(references))
    no_pred = sorted(set(references) - set(predictions))
    if no_refs:
        raise UserError(f"{len(no_refs)} predictions have no references (first: {no_refs[:3]})")
    if no_pred:
        raise UserError(f"{len(no_pred)} images have references but no prediction (first: {no_pred[:3]})")
    if not predictions:
        raise UserError("no predictions to evaluate")
    for image_id, refs in references.items():
        if isinstance(refs, str) or not refs:
            raise UserError(f"references for {image_id!r}: expected a non-empty list of captions")
    return sorted(predictions)


def tokenize(captions: Mapping[Any, Sequence[str]]) -> dict[Any, list[str]]:
    """PTB-tokenise (lower-case, punctuation removed) with pycocoevalcap's CoreNLP jar."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # The tokenizer joins captions with newlines: a newline inside a caption would shift them.
    data = {k: [{"caption": " ".join(c.split())} for c in caps] for k, caps in captions.items()}
    try:
        return PTBTokenizer().tokenize(data)
    except FileNotFoundError as exc:  # no `java` on PATH
        raise UserError(f"caption metrics need a Java runtime for the PTB tokenizer ({exc})") from None


def _bertscore(ids: list[str], predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]):
    """Mean BERTScore F1 (max over references per image), or a reason it could not run."""
    try:
        import bert_score  # noqa: F401
    except ImportError:
        return None, "package bert_score not installed (pip install bert-score)"
    try:
        from bert_score import BERTScorer

        scorer = BERTScorer(model_type=BERTSCORE_MODEL, lang="en", rescale_with_baseline=False)
        cands = [predictions[i] for i in ids]
        refs = [list(references[i]) for i in ids]
        _, _, f1 = scorer.score(cands, refs)
    except Exception as exc:  # model weights not downloadable offline, etc.
        return None, f"BERTScore model {BERTSCORE_MODEL!r} unavailable ({type(exc).__name__}: {str(exc)[:120]})"
    per_image = {i: 100.0 * float(v) for i, v in zip(ids, f1)}
    return per_image, None


def compute_caption_metrics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> CaptionScores:
    """Corpus BLEU/METEOR/ROUGE-L/CIDEr(-D) (x100) of one prediction per image id against its references."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown caption metric(s) {unknown} (known: {', '.join(METRICS)})")
    ids = check_inputs(predictions, references)
    # one tokenizer run (one JVM start) for references and predictions together
    tokenized = tokenize(
        {**{("ref", i): list(references[i]) for i in ids}, **{("pred", i): [predictions[i]] for i in ids}}
    )
    tokenized_refs = {i: tokenized[("ref", i)] for i in ids}
    tokenized_preds = {i: tokenized[("pred", i)] for i in ids}
    # pycocoevalcap's scorers assert that every candidate is a list of exactly one string.
    result = CaptionScores(scores={}, num_images=len(ids))

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    def run(scorer):
        with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its n-gram counts
            return scorer.compute_score(tokenized_refs, tokenized_preds)

    if "BLEU-1" in metrics or "BLEU-4" in metrics:
        corpus, per_image = run(Bleu(4))
        for n, name in ((1, "BLEU-1"), (4, "BLEU-4")):
            if name in metrics:
                result.scores[name] = 100.0 * float(corpus[n - 1])
                result.per_image[name] = {i: 100.0 * float(s) for i, s in zip(ids, per_image[n - 1])}
    if "METEOR" in metrics:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            corpus, per_image = run(scorer)
        finally:
            _close_meteor(scorer)
        result.scores["METEOR"] = 100.0 * float(corpus)
        result.per_image["METEOR"] = {i: 100.0 * float(s) for i, s in zip(ids, per_image)}
    if "ROUGE-L" in metrics:
        corpus, per_image = run(Rouge())
        result.scores["ROUGE-L"] = 100.0 * float(corpus)
        result.per_image["ROUGE-L"] = {i: 100.0 * float(s) for i, s in zip(ids, per_image)}
    if "CIDEr" in metrics:
        corpus, per_image = run(Cider())
        result.scores["CIDEr"] = 100.0 * float(corpus)
        result.per_image["CIDEr"] = {i: 100.0 * float(s) for i, s in zip(ids, per_image)}
    if "BERTScore" in metrics:
        per_image, reason = _bertscore(ids, predictions, references)
        if per_image is None:
            result.skipped["BERTScore"] = reason
            logger.info("BERTScore skipped: %s", reason)
        else:
            result.scores["BERTScore"] = sum(per_image.values()) / len(per_image)
            result.per_image["BERTScore"] = per_image
    return result


def write_report(report: dict[str, Any], table: str, json_path: str | None, markdown_path: str | None) -> None:
    """Save a scores report as JSON and its Markdown table, each where a path is given."""
    for path, text in ((json_path, json.dumps(report, indent=2)), (markdown_path, table)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")


def _close_meteor(scorer) -> None:
    """Stop the METEOR Java subprocess now rather than at interpreter exit."""
    proc = getattr(scorer, "meteor_p", None)
    if proc is None:
        return
    with contextlib.suppress(Exception):
        with scorer.lock:
            proc.stdin.close()
            proc.kill()
            proc.wait(timeout=10)
