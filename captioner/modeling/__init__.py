"""The SeR model, Hugging Face style (`from_pretrained` / `save_pretrained` just work).

configuration_ser.py  SeRConfig (PretrainedConfig) and the paper's sizes
modeling_ser.py       SeRForCaptioning: vision tower, connector, DeepLens, language model
processing_ser.py     SeRProcessor: prompt layout, batches, decoding
presets.py            named configurations (paper sizes, tiny ones) and tiny checkpoints
inference.py          batched two-pass captioning (`generate_captions`)
describe.py           `captioner describe`: parameter counts of a preset

Nothing here imports the training, data, evaluation or replication packages.
"""

from captioner.modeling.configuration_ser import SeRConfig
from captioner.modeling.modeling_ser import SeRForCaptioning
from captioner.modeling.processing_ser import SeRProcessor

__all__ = ["SeRConfig", "SeRForCaptioning", "SeRProcessor"]
