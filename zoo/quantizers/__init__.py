"""Quantizers shared by every tokenizer; nearest-code search dispatches to kernels where available."""

from .base import Quantizer, QuantizerOutput, usage_stats
from .search import nearest_code
from .vq import VectorQuantizer

__all__ = ["Quantizer", "QuantizerOutput", "VectorQuantizer", "nearest_code", "usage_stats"]
