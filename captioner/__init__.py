"""The Sharp-Eyed Refinement (SeR) captioner: model, inference and training."""
