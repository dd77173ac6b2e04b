"""Building blocks shared across models."""

from .conv2d import Attention2d, ConvDecoder2d, ConvEncoder2d, Downsample2d, ResBlock2d, Upsample2d

__all__ = ["Attention2d", "ConvDecoder2d", "ConvEncoder2d", "Downsample2d", "ResBlock2d", "Upsample2d"]
