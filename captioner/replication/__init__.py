"""A faithful CPU-sized miniature of the paper's SeR training (`captioner synth-bench`).

standins.py  the pretrained parts the paper starts from: a tiny ViT pretrained on the synthetic
             image domain by concept classification (never sees a caption), then frozen; a
             tiny OPT pretrained on caption-like text; the world tokenizer and model sizes
loop.py      the training stages on cached ViT features (pretrain / stage 1 / stage 2 and the
             equal-compute arms), with Tab. 15's trainable sets via `SeRForCaptioning.set_trainable`
scoring.py   held-out captioning (first glance, refinement), BLEU-4 / CIDEr-D / exact match,
             fixes vs breaks, mean and sd over seeds, the Markdown table
"""
