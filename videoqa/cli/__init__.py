"""Command lines: `videoqa` (main.py) and `captioner` (captioner.py)."""
