"""The one byte-level BPE tokenizer trainer, for the tiny random-weight models of tests, demos and benches.

Byte-level: every byte is in the initial alphabet, so any text encodes and nothing maps to <unk>.
Training is deterministic: the same corpus, vocabulary size and special tokens give the same
vocabulary and merges, which the tiny checkpoint fixtures rely on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def train_bpe_tokenizer(
    corpus: Iterable[str],
    vocab_size: int,
    special_tokens: list[str],
    *,
    prepend_token: str | None = None,
    **tokenizer_kwargs: Any,
):
    """A `PreTrainedTokenizerFast` with a byte-level BPE model trained on `corpus`.

    `special_tokens` take ids 0, 1, ... in order (so a model config can name them by id).
    `prepend_token` (one of `special_tokens`) is put in front of every encoded text, as LLaMA's
    "<s>" or OPT's "</s>" are. `tokenizer_kwargs` go to `PreTrainedTokenizerFast` unchanged
    (pad_token, bos_token, eos_token, unk_token, extra_special_tokens, model_max_length, ...).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus), trainer)
    if prepend_token is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{prepend_token} $A", special_tokens=[(prepend_token, special_tokens.index(prepend_token))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_kwargs)


__all__ = ["train_bpe_tokenizer"]
