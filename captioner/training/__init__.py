"""Training SeR (Sec. 5, App. F): `captioner train`, its config and what stage 2 needs.

train.py           the trainer: pretrain / stage 1 / stage 2 from a YAML config
config.py          the training config (TrainConfig and its sections)
pseudo_initial.py  stage-2 pseudo-initial captions (`captioner pseudo-initial`: LLM or lexical)
edits.py           caption edits: the lexical perturber and the validation of pseudo-initials
model_card.py      the README written beside a checkpoint
check.py           `captioner check-training`: one optimiser step per stage at full size, checked
"""
