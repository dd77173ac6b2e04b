"""Building blocks shared across models."""

from .conv2d import Attention2d, ConvDecoder2d, ConvEncoder2d, Downsample2d, ResBlock2d, Upsample2d
from .discriminators import (
    CombinedDiscriminator,
    DiscriminatorOutput,
    KeyedDiscriminator,
    MultiBandResolutionDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleSTFTDiscriminator,
    PatchDiscriminator,
)
from .spectral import stft

__all__ = [
    "Attention2d",
    "CombinedDiscriminator",
    "ConvDecoder2d",
    "ConvEncoder2d",
    "DiscriminatorOutput",
    "Downsample2d",
    "KeyedDiscriminator",
    "MultiBandResolutionDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "PatchDiscriminator",
    "ResBlock2d",
    "Upsample2d",
    "stft",
]
