"""Quantizers shared by every tokenizer, all under one contract (see :class:`Quantizer`).

Hot paths (nearest-code search, code statistics, FSQ/LFQ packing) go through ``zoo.kernels``, which
runs Triton on CUDA tensors and an exact PyTorch path elsewhere.
"""

from ..kernels import nearest_code
from .base import Quantizer, QuantizerOutput, usage_stats
from .continuous import GaussianBottleneck, IdentityBottleneck
from .ptq import GaussianQuantileQuantizer, gaussian_quantile_levels, tokenbridge_levels
from .residual import ResidualVQ
from .scalar import FiniteScalarQuantizer, LookupFreeQuantizer
from .vq import VectorQuantizer, kmeans, project_float32, rotate_onto

__all__ = [
    "FiniteScalarQuantizer",
    "GaussianBottleneck",
    "GaussianQuantileQuantizer",
    "IdentityBottleneck",
    "LookupFreeQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "ResidualVQ",
    "VectorQuantizer",
    "gaussian_quantile_levels",
    "kmeans",
    "nearest_code",
    "project_float32",
    "rotate_onto",
    "tokenbridge_levels",
    "usage_stats",
]
