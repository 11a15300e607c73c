"""Plain transformers backend ("transformers"): a fallback where vLLM is unavailable.

`choose()` runs the prompt once and compares the next-token logits of the choices' first
tokens, so the answer is one of the choices by construction (choices whose first tokens
collide are scored by their full sequence log-probability instead). `generate()` is greedy
`model.generate`. Prompts are processed `engine_kwargs["batch_size"]` at a time (left padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from videoqa.answering.llm import ChoiceCompletion, validate_choices
from videoqa.answering.llm.base import Completion, Messages
from videoqa.answering.llm.local_model import LocalModelBackend
from videoqa.config import LLMConfig
from videoqa.models.resolve import resolve_model
from videoqa.registry import LLM_BACKENDS


@LLM_BACKENDS.register("transformers")
class TransformersBackend(LocalModelBackend):
    def __init__(self, config: LLMConfig):
        self.config = config
        self.resolved = resolve_model(config.model, config.revision)

        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        options = dict(config.engine_kwargs)
        self.batch_size = int(options.pop("batch_size", 4))
        device = options.pop("device", "cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        if config.dtype == "auto":  # the answering LLM stays fp32 on every CPU: answers must not depend on the host
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            dtype = getattr(torch, config.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.path, trust_remote_code=False)
        self.tokenizer.padding_side = "left"  # generation continues from the right end
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            self.resolved.path, dtype=dtype, trust_remote_code=False, **options
        ).to(self.device)
        self.model.eval()
        self._torch = torch
        self._versions = {"transformers": transformers.__version__, "torch": torch.__version__}
        self._max_context = int(config.max_model_len or self.model.config.max_position_embeddings)

    # ------------------------------------------------------------------ LLMBackend

    def choose(self, prompts: Sequence[Messages], choices: Sequence[Sequence[str]]) -> list[Completion]:
        if len(prompts) != len(choices):
            raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
        todo, results = self.split_overlong(prompts, reserve=1)
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            ids = [self.prompt_ids(prompts[i]) for i in idx]
            next_logprobs = self._next_token_logprobs(ids)
            for row, i in enumerate(idx):
                options = list(choices[i])
                validate_choices(options)
                scores = self._score_choices(ids[row], options, next_logprobs[row])
                best = max(options, key=lambda o: scores[o])
                # Renormalise over the allowed choices, like a constrained decoder would.
                total = self._torch.logsumexp(self._torch.tensor(list(scores.values())), 0).item()
                results[i] = ChoiceCompletion(
                    text=best,
                    prompt_tokens=len(ids[row]),
                    choice_logprobs={o: s - total for o, s in scores.items()},
                )
        return results

    def generate(self, prompts: Sequence[Messages], max_tokens: int) -> list[Completion]:
        torch = self._torch
        todo, results = self.split_overlong(prompts, reserve=1)
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            ids = [self.prompt_ids(prompts[i]) for i in idx]
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
            # Never generate past the context window.
            room = self._max_context - batch["input_ids"].shape[1]
            with torch.inference_mode():
                out = self.model.generate(
                    **batch,
                    max_new_tokens=max(1, min(max_tokens, room)),
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                text = self.tokenizer.decode(new_tokens[row], skip_special_tokens=True)
                results[i] = Completion(text=text, prompt_tokens=len(ids[row]))
        return results

    def identity(self) -> dict[str, Any]:
        return self.model_identity("transformers") | {
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.device),
            **{f"{k}_version": v for k, v in self._versions.items()},
            "decoding": "greedy; choose() by comparing next-token logits of the choices",
        }

    def close(self) -> None:
        self.model = None

    # ------------------------------------------------------------------ helpers

    def _next_token_logprobs(self, ids: list[list[int]]):
        """Log-softmax of the logits after each (left-padded) prompt: (batch, vocab)."""
        torch = self._torch
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        # Left padding: count positions from each prompt's first real token, as if unpadded.
        position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(**batch, position_ids=position_ids, logits_to_keep=1).logits[:, -1, :]
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def _score_choices(self, prompt_ids: list[int], options: list[str], next_logprobs) -> dict[str, float]:
        encoded = {o: self.tokenizer.encode(o, add_special_tokens=False) for o in options}
        firsts = [e[0] for e in encoded.values() if e]
        if len(firsts) == len(options) and len(set(firsts)) == len(options):
            # The usual case (option letters): the first token decides.
            return {o: next_logprobs[encoded[o][0]].item() for o in options}
        return {o: self._sequence_logprob(prompt_ids, encoded[o]) for o in options}

    def _sequence_logprob(self, prompt_ids: list[int], continuation: list[int]) -> float:
        torch = self._torch
        ids = torch.tensor([prompt_ids + continuation], device=self.device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
        positions = range(len(prompt_ids) - 1, len(prompt_ids) + len(continuation) - 1)
        return float(sum(logprobs[p, t] for p, t in zip(positions, continuation)))
