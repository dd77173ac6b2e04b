"""Continuous bottlenecks under the quantizer contract, so continuous tokenizers plug in the same way."""

from __future__ import annotations

import torch

from .base import Quantizer, QuantizerOutput


def _latent_stats(z: torch.Tensor) -> dict[str, torch.Tensor]:
    z = z.detach()
    return {"latent_mean": z.mean(), "latent_std": z.std() if z.numel() > 1 else z.new_zeros(())}


class IdentityBottleneck(Quantizer):
    """Passes latents through unchanged (``ids`` is ``None``): an autoencoder without regulariser."""

    codebook_size = 0

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return ()

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        if z.ndim < 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected [B, {self.dim}, ...] input, got shape {tuple(z.shape)}")
        return QuantizerOutput(quantized=z, ids=None, stats=_latent_stats(z))

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        raise TypeError("a continuous bottleneck has no codes to look up; decode its latents directly")


class GaussianBottleneck(Quantizer):
    """Diagonal-Gaussian posterior with a KL penalty towards ``N(0, I)`` (the KL-regularised VAE of LDM/MAR).

    The input holds ``2 * dim`` channels, the mean then the log-variance (clamped to ``[-30, 20]``);
    the output has ``dim`` channels: a reparameterised sample in training, the mean in eval, or as
    ``sample`` says. The loss ``vq/kl`` is ``kl_weight`` times the KL summed over latent elements and
    averaged over the batch, as in LDM.
    """

    codebook_size = 0

    def __init__(self, dim: int, kl_weight: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.kl_weight = kl_weight

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return ()

    @staticmethod
    def split(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log-variance)`` in float32, the log-variance clamped to ``[-30, 20]`` as LDM does."""
        mean, logvar = moments.float().chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(
        self, moments: torch.Tensor, mask: torch.Tensor | None = None, sample: bool | None = None
    ) -> QuantizerOutput:
        if moments.ndim < 2 or moments.shape[1] != 2 * self.dim:
            raise ValueError(
                f"expected [B, {2 * self.dim}, ...] moments (mean and log-variance), got {tuple(moments.shape)}"
            )
        with torch.autocast(moments.device.type, enabled=False):
            mean, logvar = self.split(moments)
            draw = self.training if sample is None else sample
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if draw else mean
            losses: dict[str, torch.Tensor] = {}
            stats = _latent_stats(z)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
            if mask is not None:
                kl = kl * mask.to(kl.dtype).unsqueeze(1)
            kl = kl.flatten(1).sum(1).mean()
            stats["kl"] = kl.detach()
            if self.training:
                losses["vq/kl"] = self.kl_weight * kl
            return QuantizerOutput(quantized=z, ids=None, losses=losses, stats=stats)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        raise TypeError("a continuous bottleneck has no codes to look up; decode its latents directly")
