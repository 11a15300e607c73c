"""A CPU-sized miniature of the paper's SeR training that can decide (`captioner synth-bench`).

synth.py       the synthetic world: shapes with a prior, same-colour distractors, hidden-detail scenes
standins.py    the pretrained parts: a tiny ViT whose first-glance layer keeps colour but no shape and
               whose earlier layer keeps every shape (frozen), a tiny OPT; the tokenizer and sizes
probes.py      held-out linear probes of what each ViT layer holds; the headroom
loop.py        the training loop on cached ViT features and the arms (Tab. 15's trainable sets)
experiment.py  converged stage 1, the learning-rate sweep, drafts, one (arm, seed) run; the disk cache
scoring.py     held-out captioning, BLEU-4 / CIDEr-D / exact match, per-image scores
stats.py       paired differences vs the control, bootstrap CI, McNemar, the decision rule
report.py      the JSON report's arm entries and fixes, the Markdown table
bench.py       settings, the CLI and the whole run
"""
