"""Post-training scalar quantization of continuous latents at Gaussian quantiles (TokenBridge)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .base import Quantizer, QuantizerOutput, row_mask, to_rows, usage_stats
from .distributed import all_reduce_sum_


def gaussian_quantile_levels(bits: int, std_range: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction levels and bin edges for ``2**bits`` equiprobable bins of a standard normal.

    Edges are the normal quantiles at ``linspace(0, 1, 2**bits + 1)`` clipped to ``+-std_range``;
    each level is the mean of the normal truncated to its bin, which minimises the squared error of
    Gaussian data within that bin. Returns ``(levels [2**bits], edges [2**bits + 1])`` in fp64.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must lie in [1, 16], got {bits}")
    probs = torch.linspace(0, 1, 2**bits + 1, dtype=torch.float64)
    edges = torch.special.ndtri(probs).clamp(-std_range, std_range)
    pdf = torch.exp(-0.5 * edges**2) / math.sqrt(2 * math.pi)
    cdf = torch.special.ndtr(edges)
    mass = (cdf[1:] - cdf[:-1]).clamp_min(1e-300)
    return (pdf[:-1] - pdf[1:]) / mass, edges


class GaussianQuantileQuantizer(Quantizer):
    """Dimension-wise post-training quantization: one id per channel, at Gaussian-quantile levels.

    Each channel value is standardised with per-channel ``loc``/``scale``, clipped to
    ``+-std_range``, and snapped to the nearest of ``2**bits`` levels from
    :func:`gaussian_quantile_levels`; dequantization maps the level back. Nothing is trained, so a
    frozen continuous tokenizer (TokenBridge's KL-16 VAE) becomes discrete.

    The defaults reproduce TokenBridge: the fixed range ``[-value_range, value_range]`` maps onto
    ``[-std_range, std_range]`` (``scale = value_range / std_range``, ``loc = 0``) with 6 bits.
    :meth:`fit` instead sets ``loc``/``scale`` to each channel's mean and standard deviation on data.

    Ids are ``[B, dim, *grid]`` with ``2**bits`` codes per channel.
    """

    def __init__(self, dim: int, bits: int = 6, *, std_range: float = 3.0, value_range: float = 5.0) -> None:
        super().__init__()
        self.dim = dim
        self.bits = bits
        self.std_range = std_range
        self.value_range = value_range
        self.codebook_size = 2**bits
        levels, _ = gaussian_quantile_levels(bits, std_range)
        self.register_buffer("levels", levels.float(), persistent=False)
        # Nearest level = bucket between consecutive midpoints (ties go to the lower level).
        self.register_buffer("midpoints", ((levels[1:] + levels[:-1]) / 2).float(), persistent=False)
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.full((dim,), value_range / std_range))

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.dim

    @torch.no_grad()
    def fit(self, latents: torch.Tensor | Iterable[torch.Tensor]) -> GaussianQuantileQuantizer:
        """Set per-channel ``loc``/``scale`` to the mean and std of ``[B, dim, *grid]`` latents.

        Takes one tensor or an iterable of batches; sums are all-reduced across data-parallel ranks.
        """
        batches = [latents] if isinstance(latents, torch.Tensor) else latents
        moments = torch.zeros(3, self.dim, dtype=torch.float64, device=self.loc.device)
        for batch in batches:
            rows, _ = to_rows(batch.to(self.loc.device, torch.float64))
            moments += torch.stack([torch.full_like(rows[0], rows.shape[0]), rows.sum(0), rows.pow(2).sum(0)])
        all_reduce_sum_(moments)
        count = moments[0].clamp_min(1)
        mean = moments[1] / count
        var = (moments[2] / count - mean**2).clamp_min(1e-12)
        self.loc.copy_(mean)
        self.scale.copy_(var.sqrt())
        return self

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        if z.ndim < 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected [B, {self.dim}, ...] input, got shape {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            rows, restore = to_rows(z.float())
            standard = ((rows - self.loc) / self.scale).clamp(-self.std_range, self.std_range)
            ids = torch.bucketize(standard.detach().contiguous(), self.midpoints)
            dequant = self.levels[ids] * self.scale + self.loc
            passed = rows + (dequant - rows).detach()
            keep = row_mask(mask, z)
            stats = usage_stats(
                ids if keep is None else ids.masked_fill(~keep.unsqueeze(1), -1), self.codebook_size
            )
            stats["clipped"] = ((rows - self.loc).abs() > self.std_range * self.scale).float().mean()
            return QuantizerOutput(quantized=restore(passed), ids=restore(ids), stats=stats)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantized latents ``[B, dim, *grid]`` for per-channel ids ``[B, dim, *grid]``."""
        if ids.ndim < 2 or ids.shape[1] != self.dim:
            raise ValueError(f"expected ids [B, {self.dim}, ...], got {tuple(ids.shape)}")
        shape = (1, self.dim) + (1,) * (ids.ndim - 2)
        return self.levels[ids] * self.scale.view(shape) + self.loc.view(shape)
