"""Scoring: answers -> accuracy metrics -> result tables."""
