"""Captioners: `base.Captioner` is the interface; implementations register themselves in
`videoqa.registry.CAPTIONERS` and are imported lazily (this package imports no torch)."""
