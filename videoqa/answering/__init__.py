"""Answering: caption transcript + question -> LLM (constrained to the option letters) -> Answer."""
