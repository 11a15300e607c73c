"""Evaluation: QA scoring, caption metrics and result tables."""
