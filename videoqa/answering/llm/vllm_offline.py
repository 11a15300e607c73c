"""vLLM offline engine backend ("vllm"): one in-process `vllm.LLM`, every call one batch.

Answers are constrained with vLLM structured outputs (`choice`), so `choose()` can only return
one of the option letters; we also ask for the first token's logprobs over the allowed choices.

vLLM starts engine processes, so a script constructing this backend needs an
`if __name__ == "__main__":` guard. On CPU builds the KV cache size comes from the env var
VLLM_CPU_KVCACHE_SPACE (GiB), set here from `LLMConfig.cpu_kvcache_gib`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from videoqa.answering.llm import ChoiceCompletion, ResolvedModel, resolve_model, validate_choices
from videoqa.answering.llm.base import Completion, Messages
from videoqa.answering.llm.local_model import LocalModelBackend
from videoqa.config import LLMConfig
from videoqa.registry import LLM_BACKENDS


@LLM_BACKENDS.register("vllm")
class VLLMOfflineBackend(LocalModelBackend):
    def __init__(self, config: LLMConfig):
        self.config = config
        # Fail with a one-line message before paying for an engine start.
        self.resolved: ResolvedModel = resolve_model(config.model, config.revision)
        if config.cpu_kvcache_gib is not None:
            # Read by the engine process at start-up, so it must be in the environment now.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{config.cpu_kvcache_gib:g}"

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
            gpu_memory_utilization=config.gpu_memory_utilization,
            trust_remote_code=False,
        )
        engine_kwargs.update(config.engine_kwargs)
        self._vllm_version = vllm.__version__
        self._engine_kwargs = engine_kwargs
        self.llm = vllm.LLM(**engine_kwargs)
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
