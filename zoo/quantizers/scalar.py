"""Quantizers without a searched codebook: finite scalar (FSQ) and lookup-free / binary spherical."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import (
    fsq_bound,
    fsq_constants,
    fsq_ids_to_codes,
    fsq_quantize,
    lfq_ids_to_codes,
    lfq_quantize,
    spherical_scale,
)
from .base import Quantizer, QuantizerOutput, masked_mse, row_mask, to_rows, usage_stats


def _projections(dim: int, code_dim: int) -> tuple[nn.Module, nn.Module]:
    if dim == code_dim:
        return nn.Identity(), nn.Identity()
    return nn.Linear(dim, code_dim), nn.Linear(code_dim, dim)


class FiniteScalarQuantizer(Quantizer):
    """FSQ (Mentzer et al., 2023): bound each code dimension with tanh and round it to ``L_i`` levels.

    The implicit codebook has ``prod(levels)`` codes and is never built; ids are mixed-radix numbers
    (dimension 0 least significant). No auxiliary losses, and no collapse to fight.

    Args:
        dim: channels of the input; linear maps project to ``len(levels)`` and back when different.
        levels: levels per code dimension, e.g. ``(8, 5, 5, 5)`` for 1000 codes.
    """

    def __init__(self, dim: int, levels: Sequence[int]) -> None:
        super().__init__()
        self.dim = dim
        self.levels = tuple(int(level) for level in levels)
        consts = fsq_constants(self.levels)  # validates the levels
        self.codebook_size = math.prod(self.levels)
        if self.codebook_size >= 2**62:
            raise ValueError(f"FSQ ids are int64; levels {self.levels} give too many codes")
        self.register_buffer("half_width", consts["half_width"], persistent=False)
        self.project_in, self.project_out = _projections(dim, len(self.levels))

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        if z.ndim < 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected [B, {self.dim}, ...] input, got shape {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            rows, restore = to_rows(z.float())
            projected = self.project_in(rows)
            consts = fsq_constants(self.levels, z.device)
            bounded = fsq_bound(projected, consts) / self.half_width
            codes, ids = fsq_quantize(projected.detach(), self.levels)
            passed = bounded + (codes - bounded).detach()
            keep = row_mask(mask, z)
            stats = usage_stats(ids if keep is None else ids.masked_fill(~keep, -1), self.codebook_size)
            return QuantizerOutput(
                quantized=restore(self.project_out(passed)),
                ids=ids.view(z.shape[:1] + z.shape[2:]),
                stats=stats,
            )

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.movedim(self.project_out(fsq_ids_to_codes(ids, self.levels)), -1, 1)


class LookupFreeQuantizer(Quantizer):
    """Binary quantization of each code dimension: LFQ (MAGVIT-v2) or, spherical, BSQ (Zhao et al., 2024).

    LFQ codes are ``+-1`` per dimension; BSQ first projects onto the unit sphere and uses codes
    ``+-1/sqrt(d)``, so quantization error is bounded. ``2**d`` codes, never materialised: ids are
    the sign bits (dimension 0 most significant).

    The entropy loss is ``entropy_weight * (E[H(p(code|z))] - diversity * H(E[p(code|z)]))`` for a
    soft assignment at temperature ``entropy_temperature``. The soft assignment over ``{+-s}^d``
    factorises over dimensions, so the per-sample term is exact and computed per bit; the batch term
    uses the sum of per-bit entropies (an upper bound, exact for independent bits, as in BSQ). Cost is
    ``O(N d)`` instead of ``O(N 2^d)``.

    Args:
        dim: channels of the input; linear maps project to ``codebook_dim`` bits and back.
        codebook_dim: bits per code ``d`` (<= 62); defaults to ``dim``.
        spherical: BSQ instead of LFQ.
        commitment_weight: weight of ``|u - sg(q)|^2``.
    """

    def __init__(
        self,
        dim: int,
        codebook_dim: int | None = None,
        *,
        spherical: bool = False,
        commitment_weight: float = 0.25,
        entropy_weight: float = 0.1,
        diversity: float = 1.0,
        entropy_temperature: float = 0.01,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_dim = codebook_dim or dim
        if not 1 <= self.codebook_dim <= 62:
            raise ValueError(f"codebook_dim must lie in [1, 62] (int64 ids), got {self.codebook_dim}")
        self.spherical = spherical
        self.scale = spherical_scale(self.codebook_dim) if spherical else 1.0
        self.codebook_size = 2**self.codebook_dim
        self.commitment_weight = commitment_weight
        self.entropy_weight = entropy_weight
        self.diversity = diversity
        self.entropy_temperature = entropy_temperature
        self.project_in, self.project_out = _projections(dim, self.codebook_dim)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        if z.ndim < 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected [B, {self.dim}, ...] input, got shape {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            rows, restore = to_rows(z.float())
            keep = row_mask(mask, z)
            u = self.project_in(rows)
            if self.spherical:
                u = F.normalize(u, dim=-1)
            codes, ids = lfq_quantize(u.detach(), self.scale)
            losses: dict[str, torch.Tensor] = {}
            if self.training:
                losses["vq/commit"] = self.commitment_weight * masked_mse(u, codes, keep)
                if self.entropy_weight > 0:
                    losses["vq/entropy"] = self.entropy_weight * self._entropy_loss(u, keep)
            passed = u + (codes - u).detach()
            stats = usage_stats(ids if keep is None else ids.masked_fill(~keep, -1), self.codebook_size)
            return QuantizerOutput(
                quantized=restore(self.project_out(passed)),
                ids=ids.view(z.shape[:1] + z.shape[2:]),
                losses=losses,
                stats=stats,
            )

    def _entropy_loss(self, u: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if keep is not None:
            u = u[keep]
        # Soft assignment exp(-|u - c|^2 / T) over c in {+-s}^d: bit i is +s with prob sigmoid(4 s u_i / T).
        logits = 4 * self.scale * u / self.entropy_temperature
        p = torch.sigmoid(logits)
        bit_entropy = p * F.softplus(-logits) + (1 - p) * F.softplus(logits)  # stable H(sigmoid(l))
        per_sample = bit_entropy.sum(-1).mean()
        mean_p = p.mean(0).clamp(1e-6, 1 - 1e-6)
        codebook = -(mean_p * mean_p.log() + (1 - mean_p) * (1 - mean_p).log()).sum()
        return per_sample - self.diversity * codebook

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.movedim(self.project_out(lfq_ids_to_codes(ids, self.codebook_dim, self.scale)), -1, 1)
