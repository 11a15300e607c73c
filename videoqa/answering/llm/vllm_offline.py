"""vLLM offline engine backend ("vllm"): one in-process `vllm.LLM`, every call one batch.

Answers are constrained with vLLM structured outputs (`choice`), so `choose()` can only return
one of the option letters; we also ask for the first token's logprobs over the allowed choices.

vLLM starts engine processes, so a script constructing this backend needs an
`if __name__ == "__main__":` guard. Its memory settings (the CPU KV cache size, the GPU fraction)
are sized from the model and checked against the free memory by `check_fits`
(videoqa.answering.llm.engine_memory): call it before captioning, so that a run never captions for
hours into an engine that cannot start. A start that fails anyway is one line (EngineStartError)
naming the cause and the setting; the traceback goes to the log (run.log).
"""

from __future__ import annotations

import math
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from videoqa.answering.llm import ChoiceCompletion, validate_choices
from videoqa.answering.llm.base import Completion, Messages
from videoqa.answering.llm.engine_memory import EnginePlan, plan_engine, start_failure
from videoqa.answering.llm.local_model import LocalModelBackend
from videoqa.config import LLMConfig
from videoqa.models.resolve import ResolvedModel, resolve_model
from videoqa.registry import LLM_BACKENDS


def check_fits(config: LLMConfig, captioner_bytes: int = 0) -> LLMConfig:
    """Raise EngineStartError (one line: cause and setting) unless an engine for `config` fits in the
    memory free now, with `captioner_bytes` left to a captioner on the same device; reads files only,
    starts nothing. Returns the config to start the engine with: on a GPU its gpu_memory_utilization
    is fixed now, so that the captioner's share stays free when the engine starts later (compare's
    next captioner loads beside the running engine); on a CPU the config as it is (sized at start)."""
    plan = plan_engine(config, resolve_model(config.model, config.revision).path, captioner_bytes)
    if plan.device == "cuda" and config.gpu_memory_utilization is None:
        return config.model_copy(update={"gpu_memory_utilization": plan.gpu_memory_utilization})
    return config


@LLM_BACKENDS.register("vllm")
class VLLMOfflineBackend(LocalModelBackend):
    # check_available (LocalModelBackend): the weights are on this machine. The memory check is the
    # run object's, once, before captioning, with the captioner's share of a shared GPU:
    fit_memory = staticmethod(check_fits)

    def __init__(self, config: LLMConfig):
        self.config = config
        # Fail with a one-line message before paying for an engine start.
        self.resolved: ResolvedModel = resolve_model(config.model, config.revision)
        # sized now, from what is free now (check_fits ran before captioning with the captioner's share)
        self.memory: EnginePlan = plan_engine(config, self.resolved.path)

        import vllm

        engine_kwargs: dict[str, Any] = dict(
            model=str(self.resolved.path),  # local files: vLLM never reaches for the hub
            tokenizer=str(self.resolved.path),
            served_model_name=config.model,
            max_model_len=config.max_model_len,
            tensor_parallel_size=config.tensor_parallel_size,
            dtype=config.dtype,
            seed=config.seed,
            enable_prefix_caching=config.enable_prefix_caching,  # the instruction prefix repeats
            trust_remote_code=False,
            **self.memory.engine_kwargs(),
        )
        if config.max_num_seqs is not None:
            engine_kwargs["max_num_seqs"] = config.max_num_seqs
        engine_kwargs.update(config.engine_kwargs)
        self._vllm_version = vllm.__version__
        self._engine_kwargs = engine_kwargs
        try:
            self.llm = vllm.LLM(**engine_kwargs)
        except Exception as exc:  # the whole traceback to the log (stderr there), one line for the user
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            raise start_failure(config, exc) from None
        self.tokenizer = self.llm.get_tokenizer()
        self._max_context = int(self.llm.llm_engine.model_config.max_model_len)

    # ------------------------------------------------------------------ LLMBackend

    def choose(self, prompts: Sequence[Messages], choices: Sequence[Sequence[str]]) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if len(prompts) != len(choices):
            raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
        params = []
        for options in choices:
            validate_choices(list(options))
            params.append(
                SamplingParams(
                    temperature=0.0,
                    max_tokens=self._longest_choice_tokens(options) + 1,  # + end of turn
                    logprobs=len(options),
                    structured_outputs=StructuredOutputsParams(choice=list(options)),
                    seed=self.config.seed,
                )
            )
        outputs = self._run(prompts, params)
        results: list[Completion] = []
        for out, options in zip(outputs, choices):
            if isinstance(out, Completion):  # rejected before sending (too long)
                results.append(out)
                continue
            sample = out.outputs[0]
            results.append(
                ChoiceCompletion(
                    text=sample.text,
                    prompt_tokens=len(out.prompt_token_ids),
                    error=None if sample.text in options else f"constrained output {sample.text!r} not a choice",
                    choice_logprobs=self._first_token_logprobs(sample, options),
                )
            )
        return results

    def generate(self, prompts: Sequence[Messages], max_tokens: int) -> list[Completion]:
        from vllm import SamplingParams

        params = [SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=self.config.seed)] * len(prompts)
        results: list[Completion] = []
        for out in self._run(prompts, params):
            if isinstance(out, Completion):
                results.append(out)
            else:
                results.append(Completion(text=out.outputs[0].text, prompt_tokens=len(out.prompt_token_ids)))
        return results

    def identity(self) -> dict[str, Any]:
        return self.model_identity("vllm") | {
            "dtype": str(self.llm.llm_engine.model_config.dtype).removeprefix("torch."),
            "tensor_parallel_size": self.config.tensor_parallel_size,
            "enable_prefix_caching": self.config.enable_prefix_caching,
            "vllm_version": self._vllm_version,
            "engine_kwargs": dict(self.config.engine_kwargs),
            "memory": self.memory.describe(),
            "decoding": "greedy; choose() via structured outputs choice",
        }

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) or getattr(
                getattr(engine, "engine_core", None), "shutdown", None
            )
            if callable(shutdown):
                shutdown()
            self.llm = None

    # ------------------------------------------------------------------ helpers

    def _longest_choice_tokens(self, options: Sequence[str]) -> int:
        return max(len(self.tokenizer.encode(o, add_special_tokens=False)) for o in options)

    def _run(self, prompts: Sequence[Messages], params: list) -> list:
        """One `LLM.chat` batch for every prompt that fits; over-long ones come back as errors.

        vLLM rejects a whole batch when one prompt exceeds max_model_len, so those are taken out
        and reported per prompt (the answer stage normally catches them earlier).
        """
        fits, results = self.split_overlong(prompts, reserve=1)
        if fits:
            outputs = self.llm.chat([list(prompts[i]) for i in fits], [params[i] for i in fits], use_tqdm=False)
            for i, out in zip(fits, outputs):
                results[i] = out
        return results

    @staticmethod
    def _first_token_logprobs(sample, options: Sequence[str]) -> dict[str, float]:
        """Logprob of each single-token choice at the first generated position."""
        if not sample.logprobs:
            return {}
        first = sample.logprobs[0]
        by_text = {lp.decoded_token: lp.logprob for lp in first.values() if lp.decoded_token is not None}
        return {o: float(by_text[o]) for o in options if o in by_text and math.isfinite(by_text[o])}
