"""Adversarial losses over the logits of any `zoo.nn.discriminators` discriminator, feature matching,
VQGAN's adaptive generator weight and the LeCam regulariser.

Every GAN loss takes one logits tensor or a list of them (one per sub-discriminator), averages each over
its elements and then averages over sub-discriminators (audiocraft's normalisation), so a loss weight
means the same for a PatchGAN and for a five-period MPD.

Conventions that differ between upstreams, resolved here:
- discriminator losses add the real and fake terms; taming-transformers and LlamaGen halve the sum;
- ``hinge_generator_loss`` is ``-D(fake)`` (VQGAN, EnCodec); ``clamp=True`` gives ``relu(1 - D(fake))`` as
  Vocos and WavTokenizer use;
- the non-saturating losses use the proper ``BCE(D(x), label)``; LlamaGen's ``non_saturating_d_loss``
  passes the label as the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GANLoss",
    "LeCamRegularizer",
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

Logits = torch.Tensor | Sequence[torch.Tensor]


def _as_list(logits: Logits) -> list[torch.Tensor]:
    items = [logits] if isinstance(logits, torch.Tensor) else list(logits)
    if not items:
        raise ValueError("expected at least one logits tensor")
    return items


def _mean_over(logits: Logits, per_tensor: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    items = _as_list(logits)
    return torch.stack([per_tensor(t).mean() for t in items]).mean()


def _mean_over_pairs(
    real: Logits, fake: Logits, per_pair: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    pairs = list(zip(_as_list(real), _as_list(fake), strict=True))
    return torch.stack([per_pair(r, f) for r, f in pairs]).mean()


# --- hinge -----------------------------------------------------------------------------------------------


def hinge_discriminator_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """``relu(1 - D(real)) + relu(1 + D(fake))``: no gradient once a sample is beyond the margin."""
    return _mean_over_pairs(
        real_logits, fake_logits, lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean()
    )


def hinge_generator_loss(fake_logits: Logits, *, clamp: bool = False) -> torch.Tensor:
    """``-D(fake)``; with ``clamp``, ``relu(1 - D(fake))``, which stops pushing past the real margin."""
    return _mean_over(fake_logits, (lambda f: F.relu(1 - f)) if clamp else torch.neg)


# --- least squares ---------------------------------------------------------------------------------------


def least_squares_discriminator_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """LSGAN (DAC, HiFi-GAN): ``(1 - D(real))^2 + D(fake)^2``."""
    return _mean_over_pairs(
        real_logits, fake_logits, lambda r, f: (1 - r).square().mean() + f.square().mean()
    )


def least_squares_generator_loss(fake_logits: Logits) -> torch.Tensor:
    """LSGAN: ``(1 - D(fake))^2``."""
    return _mean_over(fake_logits, lambda f: (1 - f).square())


# --- non-saturating --------------------------------------------------------------------------------------


def non_saturating_discriminator_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """The original GAN's cross-entropy: ``softplus(-D(real)) + softplus(D(fake))``."""
    return _mean_over_pairs(
        real_logits, fake_logits, lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean()
    )


def non_saturating_generator_loss(fake_logits: Logits) -> torch.Tensor:
    """``softplus(-D(fake)) = -log sigmoid(D(fake))``: strong gradients while the discriminator wins."""
    return _mean_over(fake_logits, lambda f: F.softplus(-f))


class GANLoss(NamedTuple):
    """A matched pair of generator and discriminator losses, chosen by name in recipes."""

    generator: Callable[[Logits], torch.Tensor]
    discriminator: Callable[[Logits, Logits], torch.Tensor]


_GAN_LOSSES = {
    "hinge": GANLoss(hinge_generator_loss, hinge_discriminator_loss),
    "hinge_clamped": GANLoss(lambda f: hinge_generator_loss(f, clamp=True), hinge_discriminator_loss),
    "least_squares": GANLoss(least_squares_generator_loss, least_squares_discriminator_loss),
    "non_saturating": GANLoss(non_saturating_generator_loss, non_saturating_discriminator_loss),
}


def gan_loss(name: str) -> GANLoss:
    """``"hinge"`` (VQGAN), ``"hinge_clamped"`` (Vocos), ``"least_squares"`` (DAC) or ``"non_saturating"``."""
    try:
        return _GAN_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {sorted(_GAN_LOSSES)}") from None


# --- feature matching, adaptive weight, LeCam -------------------------------------------------------------


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]] | Sequence[torch.Tensor],
    fake_features: Sequence[Sequence[torch.Tensor]] | Sequence[torch.Tensor],
) -> torch.Tensor:
    """L1 between the discriminator's activations on real and fake inputs (MelGAN, HiFi-GAN, EnCodec).

    Takes ``DiscriminatorOutput.features`` (per sub-discriminator, per layer) or one flat list of layers.
    Each layer's L1 is a mean over its elements; layers are averaged within a sub-discriminator, then
    sub-discriminators are averaged. Real activations are detached: they are targets, and the generator
    step must not move the discriminator.
    """
    if real_features and isinstance(real_features[0], torch.Tensor):
        real_features, fake_features = [real_features], [fake_features]
    per_discriminator = []
    for real_layers, fake_layers in zip(real_features, fake_features, strict=True):
        pairs = list(zip(real_layers, fake_layers, strict=True))
        per_discriminator.append(torch.stack([F.l1_loss(f, r.detach()) for r, f in pairs]).mean())
    return torch.stack(per_discriminator).mean()


def adaptive_generator_weight(
    rec_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VQGAN's balance: ``|grad rec_loss| / (|grad gan_loss| + eps)`` at the decoder's last weight.

    Scaling the GAN loss by this makes its gradient at the output layer as large as the reconstruction
    loss's, whatever the discriminator's current scale. Both graphs are kept for the backward pass that
    follows; the result is detached and clamped to ``[0, max_weight]``.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


class LeCamRegularizer(nn.Module):
    """LeCam regularisation (Tseng et al. 2021, arXiv:2104.03310) for discriminators trained on little data.

    Keeps EMAs of the mean real and fake logits and penalises
    ``relu(D(real) - ema_fake)^2 + relu(ema_real - D(fake))^2``, which keeps the discriminator's outputs
    from drifting apart. Add ``weight * regularizer(real, fake)`` to the discriminator loss (ResTok: weight
    0.001, decay 0.999). The EMAs move only in training mode and are saved with the module.

    Args:
        decay: EMA decay; the first update copies the batch means.
    """

    ema_real: torch.Tensor
    ema_fake: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, real_logits: Logits, fake_logits: Logits) -> None:
        real = torch.stack([t.float().mean() for t in _as_list(real_logits)]).mean()
        fake = torch.stack([t.float().mean() for t in _as_list(fake_logits)]).mean()
        decay = torch.where(self.initialized, self.decay, 0.0)
        self.ema_real.lerp_(real, 1 - decay)
        self.ema_fake.lerp_(fake, 1 - decay)
        self.initialized.fill_(True)

    def forward(self, real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
        """Updates the EMAs (in training mode), then returns the penalty averaged over sub-discriminators."""
        if self.training:
            self.update(real_logits, fake_logits)

        def penalty(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
            return F.relu(real - self.ema_fake).square().mean() + F.relu(self.ema_real - fake).square().mean()

        return _mean_over_pairs(real_logits, fake_logits, penalty)


def mixed_generator_loss(fake_logits: Sequence[torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """Mean over sub-discriminators of each map's generator loss under its own named GAN loss."""
    return torch.stack([gan_loss(n).generator([f]) for f, n in zip(fake_logits, names, strict=True)]).mean()


def mixed_discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], names: Sequence[str]
) -> torch.Tensor:
    """Mean over sub-discriminators of each pair's discriminator loss under its own named GAN loss."""
    return torch.stack(
        [gan_loss(n).discriminator([r], [f]) for r, f, n in zip(real_logits, fake_logits, names, strict=True)]
    ).mean()
