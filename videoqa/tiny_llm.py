"""A tiny random-weight chat LLM in Hugging Face format, for tests and demos on a CPU.

`build_tiny_llm(out_dir)` writes a 2-layer Qwen2 causal LM (hidden 128, 2 heads of 64 - vLLM's
CPU attention has no kernels for smaller heads) with a byte-level BPE tokenizer trained on the
spot and a Qwen-style chat template (<|im_start|>role ... <|im_end|>). The directory loads with
`vllm.LLM(model=out_dir)`, `vllm serve out_dir` and `transformers.AutoModelForCausalLM`.

Its answers are noise, but every code path (chat template, batching, constrained choice,
logprobs, token counting) runs for real.
"""
from __future__ import annotations

import json
from pathlib import Path

# Text the tokenizer is trained on: option letters, digits, the words our prompts and
# transcripts use. Byte-level BPE can still encode any string (unknown words fall back to bytes).
_TRAINING_TEXT = [
    "You are a helpful assistant that answers questions about a long video.",
    "The transcript below describes the video frame by frame, with timestamps in seconds.",
    "Read the captions and the question, then choose the best option.",
    "Answer with the letter of the correct option only: A, B, C, D or E.",
    "Question: What is the person doing in the kitchen?",
    "Question: Why did the man open the door? Where does the woman go next?",
    "Question: How many times does the camera wearer pick up the cup?",
    "Question: Which object does C use most often, and when does it happen?",
    "Options: A) cooking B) cleaning C) reading D) writing E) walking",
    "A. He cuts vegetables. B. She washes dishes. C. They play cards. D. It rains. E. Nothing.",
    "Option A Option B Option C Option D Option E",
    "The answer is A. The answer is B. The answer is C. The answer is D. The answer is E.",
    "Let's think step by step. First, the person walks to the table. Then they sit down.",
    "Summary: a person prepares food, talks to a friend and cleans the room.",
    "0 1 2 3 4 5 6 7 8 9 10 12 15 20 30 45 60 90 120 300 600 1800 3600 seconds",
    "[0.0s] a man stands in a room. [1.0s] a woman holds a phone. [2.5s] a dog runs outside.",
    "[12s] the camera wearer picks up a knife. [13s] C cuts an onion on a wooden board.",
    "#C C opens the fridge. #C C takes a bottle of water. #O a man walks into the kitchen.",
    "who what when where why how which is are was were does did do the a an of in on at to",
    "car tree street house window table chair book phone laptop screen bag shirt hat box ball",
    "red blue green white black yellow small large left right front back inside outside",
    "Describe this frame within 50 words. The image shows a person near a window.",
]
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen's ChatML layout: a default system turn when the conversation has none.
CHAT_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _train_tokenizer(vocab_size: int):
    """Byte-level BPE trained on `_TRAINING_TEXT`, wrapped as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte -> any text encodes
        show_progress=False,
    )
    backend.train_from_iterator(_TRAINING_TEXT, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",  # instruct models stop at the end of the assistant turn
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llm(
    out_dir: Path,
    seed: int = 0,
    *,
    vocab_size: int = 512,
    num_layers: int = 2,
    max_position_embeddings: int = 4096,
) -> Path:
    """Write a random-weight Qwen2 chat model + tokenizer to `out_dir` and return the path."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    tokenizer.save_pretrained(out_dir)

    config = Qwen2Config(
        vocab_size=max(vocab_size, len(tokenizer)),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=num_layers,
        num_attention_heads=2,  # head_dim 64: the smallest vLLM's CPU attention supports
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=max_position_embeddings,
        max_window_layers=num_layers,
        rope_theta=10000.0,
        tie_word_embeddings=False,  # tied random embeddings just echo the last token ("\n\n\n...")
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    # Stop at <|im_end|> in both vLLM and transformers.generate.
    (out_dir / "generation_config.json").write_text(
        json.dumps({"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}, indent=2)
    )
    return out_dir


if __name__ == "__main__":  # python -m videoqa.tiny_llm OUT_DIR
    import sys

    print(build_tiny_llm(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/tiny-llm")))
