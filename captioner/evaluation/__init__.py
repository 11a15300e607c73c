"""Caption quality: BLEU-4 / METEOR / CIDEr (pycocoevalcap) and `captioner eval`.

metrics.py   the metrics and the report
evaluate.py  `captioner eval`: caption a set of images with a checkpoint and score it
"""
