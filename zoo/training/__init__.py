"""Training from recipes: the tokenizer LightningModule, resumable loading, ``zoo train``/``zoo export``."""

from .ema import EMAWeights
from .module import TokenizerModule
from .schedule import warmup_cosine

__all__ = ["EMAWeights", "TokenizerModule", "warmup_cosine"]
