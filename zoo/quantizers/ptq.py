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


def tokenbridge_levels(bits: int, std_range: float = 3.0) -> torch.Tensor:
    """The ``2**bits`` levels exactly as TokenBridge tabulates them, in float32.

    The same truncated-normal bin means as :func:`gaussian_quantile_levels`, but computed the way
    upstream does (float32 quantile edges, float32 ``erf``), which differs from the exact values by
    up to 6e-6 in the tails and so moves a few ids per million; this table gives upstream's ids.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must lie in [1, 16], got {bits}")
    probs = torch.linspace(0, 1, 2**bits + 1, dtype=torch.float32)
    edges = torch.special.ndtri(probs.double()).float().clamp(-std_range, std_range)
    pdf = torch.exp(-0.5 * edges**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(edges / math.sqrt(2)))
    mass = cdf[1:] - cdf[:-1]
    mass = torch.where(mass == 0, torch.tensor(1e-10), mass)
    return (pdf[:-1] - pdf[1:]) / mass


def nearest_level(u: torch.Tensor, levels: torch.Tensor, midpoints: torch.Tensor) -> torch.Tensor:
    """Index of the level nearest to each value of ``u`` (ties to the lower one), like an argmin over
    ``|u - levels|`` but without its ``N x L`` distance matrix: bucketize by the midpoints, then let
    each neighbour win where rounding put the midpoint on the wrong side."""
    ids = torch.bucketize(u.contiguous(), midpoints)
    last = len(levels) - 1
    best = (u - levels[ids]).abs()
    for step in (-1, 1):
        other = (ids + step).clamp(0, last)
        distance = (u - levels[other]).abs()
        better = (distance < best) | ((distance == best) & (other < ids))
        ids = torch.where(better, other, ids)
        best = torch.where(better, distance, best)
    return ids


class GaussianQuantileQuantizer(Quantizer):
    """Dimension-wise post-training quantization: one id per channel, at Gaussian-quantile levels.

    Each channel's value range ``[low, high]`` maps linearly onto ``[-std_range, std_range]``, is
    clipped there, and snaps to the nearest of ``2**bits`` levels (the means of ``2**bits``
    equiprobable bins of a standard normal); dequantization maps the level back. Nothing is trained,
    so a frozen continuous tokenizer (TokenBridge's KL-16 VAE) becomes discrete.

    The defaults reproduce TokenBridge bit for bit: ``[-value_range, value_range] = [-5, 5]`` onto
    ``[-3, 3]`` for every channel, upstream's float32 level table, and upstream's mapping
    ``(x - low) / (high - low) * 2s - s``. :meth:`fit` instead sets each channel's range to its mean
    plus or minus ``std_range`` standard deviations on data (``loc``/``scale`` give the mean and the
    standard deviation the range stands for).

    Ids are ``[B, dim, *grid]`` with ``2**bits`` codes per channel.
    """

    def __init__(self, dim: int, bits: int = 6, *, std_range: float = 3.0, value_range: float = 5.0) -> None:
        super().__init__()
        self.dim = dim
        self.bits = bits
        self.std_range = std_range
        self.value_range = value_range
        self.codebook_size = 2**bits
        levels = tokenbridge_levels(bits, std_range)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("midpoints", (levels[1:] + levels[:-1]) / 2, persistent=False)
        self.register_buffer("low", torch.full((dim,), -float(value_range)))
        self.register_buffer("high", torch.full((dim,), float(value_range)))

    @property
    def loc(self) -> torch.Tensor:
        """Per-channel centre of the quantized range."""
        return (self.low + self.high) / 2

    @property
    def scale(self) -> torch.Tensor:
        """Per-channel value of one standard unit (the range is ``loc +- std_range * scale``)."""
        return (self.high - self.low) / (2 * self.std_range)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.dim

    @torch.no_grad()
    def fit(self, latents: torch.Tensor | Iterable[torch.Tensor]) -> GaussianQuantileQuantizer:
        """Set each channel's range to its mean +- ``std_range`` standard deviations over ``[B, dim, *grid]``
        latents (one tensor or an iterable of batches; sums are all-reduced across data-parallel ranks)."""
        batches = [latents] if isinstance(latents, torch.Tensor) else latents
        moments = torch.zeros(3, self.dim, dtype=torch.float64, device=self.low.device)
        for batch in batches:
            rows, _ = to_rows(batch.to(self.low.device, torch.float64))
            moments += torch.stack([torch.full_like(rows[0], rows.shape[0]), rows.sum(0), rows.pow(2).sum(0)])
        all_reduce_sum_(moments)
        count = moments[0].clamp_min(1)
        mean = moments[1] / count
        std = (moments[2] / count - mean**2).clamp_min(1e-12).sqrt()
        self.low.copy_(mean - self.std_range * std)
        self.high.copy_(mean + self.std_range * std)
        return self

    def _shape(self, ndim: int) -> tuple[int, ...]:
        return (1, self.dim) + (1,) * (ndim - 2)

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, dim, *grid]`` values in standard units, clipped to ``+-std_range`` (upstream's mapping)."""
        low, high = self.low.view(self._shape(z.ndim)), self.high.view(self._shape(z.ndim))
        s = self.std_range
        return ((z - low) / (high - low) * (2 * s) - s).clamp(-s, s)

    def dequantize_levels(self, levels: torch.Tensor) -> torch.Tensor:
        low, high = self.low.view(self._shape(levels.ndim)), self.high.view(self._shape(levels.ndim))
        s = self.std_range
        return (levels + s) / (2 * s) * (high - low) + low

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        if z.ndim < 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected [B, {self.dim}, ...] input, got shape {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            z32 = z.float()
            ids = nearest_level(self.standardise(z32.detach()), self.levels, self.midpoints)
            dequant = self.dequantize_levels(self.levels[ids])
            passed = z32 + (dequant - z32).detach()
            rows_ids, _ = to_rows(ids)
            keep = row_mask(mask, z)
            stats = usage_stats(
                rows_ids if keep is None else rows_ids.masked_fill(~keep.unsqueeze(1), -1), self.codebook_size
            )
            outside = (z32 < self.low.view(self._shape(z.ndim))) | (z32 > self.high.view(self._shape(z.ndim)))
            stats["clipped"] = outside.float().mean()
            return QuantizerOutput(quantized=passed, ids=ids, stats=stats)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantized latents ``[B, dim, *grid]`` for per-channel ids ``[B, dim, *grid]``."""
        if ids.ndim < 2 or ids.shape[1] != self.dim:
            raise ValueError(f"expected ids [B, {self.dim}, ...], got {tuple(ids.shape)}")
        return self.dequantize_levels(self.levels[ids])
