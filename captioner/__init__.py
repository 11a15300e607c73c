"""The Sharp-Eyed Refinement (SeR) captioner: model, inference and training.

Laid out as a Hugging Face model package:
    configuration_ser.py   SeRConfig (PretrainedConfig) and the paper's sizes
    modeling_ser.py        SeRForCaptioning: vision tower, connector, DeepLens, language model
    processing_ser.py      SeRProcessor: prompt layout, batches, decoding
    presets.py             named configurations (paper sizes, tiny ones) and tiny checkpoints
    inference.py           batched two-pass captioning (`generate_captions`)
and the training side: data.py (annotation readers), caption_edits.py + pseudo_initial.py
(stage-2 pseudo-initial captions), train.py, evaluate.py + metrics.py (caption metrics).

This package imports only third-party packages and `videoqa_base`, never `videoqa`: the video
pipeline uses the captioner, not the other way round. What a command needs of the pipeline (an LLM
backend for `captioner pseudo-initial`) is built by videoqa/cli/captioner.py and passed in.
"""
