"""Training losses shared by every tokenizer: adversarial, perceptual, audio-spectral and EEG."""

from .audio import MultiResolutionMelLoss, MultiResolutionSTFTLoss
from .eeg import EEGReconstructionLoss
from .gan import (
    GANLoss,
    LeCamRegularizer,
    adaptive_generator_weight,
    feature_matching_loss,
    gan_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
    non_saturating_discriminator_loss,
    non_saturating_generator_loss,
)
from .perceptual import PerceptualLoss

__all__ = [
    "EEGReconstructionLoss",
    "GANLoss",
    "LeCamRegularizer",
    "MultiResolutionMelLoss",
    "MultiResolutionSTFTLoss",
    "PerceptualLoss",
    "adaptive_generator_weight",
    "feature_matching_loss",
    "gan_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "non_saturating_discriminator_loss",
    "non_saturating_generator_loss",
]
