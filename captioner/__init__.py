"""The Sharp-Eyed Refinement (SeR) captioner, one subpackage per job:

modeling/     the model, Hugging Face style (configuration, modeling, processing, presets, inference)
data/         annotation readers, one table from format to reader
training/     train, its config, pseudo-initial captions, caption edits, model card, check-training
evaluation/   caption metrics and `captioner eval`
replication/  the CPU-sized miniature of the paper's training (`captioner synth-bench`)

This package imports only third-party packages and `videoqa_base`, never `videoqa`: the video
pipeline uses the captioner, not the other way round. What a command needs of the pipeline (an LLM
backend for `captioner pseudo-initial`) is built by videoqa/cli/captioner.py and passed in.
"""
