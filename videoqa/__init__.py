"""videoqa: fast, reproducible long-video question answering with a lightweight captioner."""

__version__ = "0.1.0"
