"""Training from recipes: the tokenizer LightningModule, resumable loading, ``zoo train``/``zoo export``."""

from .ema import EMAWeights
from .generator_module import GeneratorModule
from .module import TokenizerModule
from .schedule import lr_factor, warmup_cosine

__all__ = ["EMAWeights", "GeneratorModule", "TokenizerModule", "lr_factor", "warmup_cosine"]
