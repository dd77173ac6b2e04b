"""Residual vector quantization: each stage quantizes what the previous stages left (SoundStream, DAC)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import Quantizer, QuantizerOutput
from .vq import VectorQuantizer


class ResidualVQ(Quantizer):
    """A stack of :class:`VectorQuantizer` stages over successive residuals.

    Args:
        dim: channels of the input.
        num_quantizers: number of stages ``Q`` (codebooks per position).
        codebook_size: codes per stage (one int, or one per stage).
        quantizer_dropout: probability that a training sample keeps only a random prefix of
            ``1..Q`` stages (its later ids are -1 and they add nothing), so one model serves every
            bit rate (DAC, MOSS-Audio-Tokenizer).
        detach_residual: subtract each stage's output from the residual without its gradient, so later
            stages' commitment losses reach the encoder through the identity alone (BioCodec; the
            workaround to EnCodec issue #25). Off, gradients also flow through earlier stages' projections.
        **vq_kwargs: passed to every stage (``codebook_dim``, ``l2_norm``, ``ema_decay``,
            ``kmeans_init``, ``restart_threshold``, ``rotation_trick``, loss weights, ...).

    Ids are ``[B, Q, *grid]``. Every stage runs on every rank at every training step, dropped
    samples being masked, so data-parallel collectives inside the stages stay aligned.
    """

    def __init__(
        self,
        dim: int,
        num_quantizers: int,
        codebook_size: int | Sequence[int],
        *,
        quantizer_dropout: float = 0.0,
        detach_residual: bool = False,
        **vq_kwargs: Any,
    ) -> None:
        super().__init__()
        sizes = [codebook_size] * num_quantizers if isinstance(codebook_size, int) else list(codebook_size)
        if len(sizes) != num_quantizers:
            raise ValueError(f"{len(sizes)} codebook sizes given for {num_quantizers} quantizers")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must lie in [0, 1], got {quantizer_dropout}")
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.quantizer_dropout = quantizer_dropout
        self.detach_residual = detach_residual
        self.layers = nn.ModuleList(VectorQuantizer(dim, size, **vq_kwargs) for size in sizes)
        self.codebook_size = max(sizes)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return tuple(layer.codebook_size for layer in self.layers)

    def _kept_stages(self, z: torch.Tensor) -> torch.Tensor:
        """Stages each sample keeps: ``Q``, or a random ``1..Q`` with probability ``quantizer_dropout``."""
        kept = torch.full((z.shape[0],), self.num_quantizers, device=z.device)
        if self.training and self.quantizer_dropout > 0:
            prefix = torch.randint(1, self.num_quantizers + 1, (z.shape[0],), device=z.device)
            drop = torch.rand(z.shape[0], device=z.device) < self.quantizer_dropout
            kept = torch.where(drop, prefix, kept)
        return kept

    def forward(
        self, z: torch.Tensor, mask: torch.Tensor | None = None, n_quantizers: int | None = None
    ) -> QuantizerOutput:
        """Quantize ``z [B, dim, *grid]`` with the first ``n_quantizers`` stages (all by default).

        ``n_quantizers`` selects a bit rate; in training it must be the same on every rank.
        """
        stages = self.num_quantizers if n_quantizers is None else n_quantizers
        if not 1 <= stages <= self.num_quantizers:
            raise ValueError(f"n_quantizers must lie in [1, {self.num_quantizers}], got {n_quantizers}")
        kept = self._kept_stages(z)
        spatial = (1,) * (z.ndim - 2)
        residual = z.float()
        quantized = torch.zeros_like(residual)
        all_ids, losses, stats = [], {}, {}
        for i, layer in enumerate(self.layers[:stages]):
            active = kept > i
            stage_mask = active.view(-1, *spatial).expand(z.shape[:1] + z.shape[2:])
            if mask is not None:
                stage_mask = stage_mask & mask.to(torch.bool)
            out = layer(residual, mask=stage_mask)
            quantized = quantized + out.quantized * active.view(-1, 1, *spatial)
            residual = residual - (out.quantized.detach() if self.detach_residual else out.quantized)
            all_ids.append(out.ids.masked_fill(~active.view(-1, *spatial), -1))
            for key, value in out.losses.items():
                losses[key] = losses.get(key, 0.0) + value
            for key, value in out.stats.items():
                stats[f"q{i}/{key}"] = value
        for key in ("usage", "perplexity", "dead_codes"):
            stats[key] = torch.stack([stats[f"q{i}/{key}"] for i in range(stages)]).mean()
        return QuantizerOutput(
            quantized=quantized, ids=torch.stack(all_ids, dim=1), losses=losses, stats=stats
        )

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Sum of the stages' vectors for ids ``[B, q, *grid]`` (``q <= Q``; -1 ids add nothing)."""
        if ids.ndim < 2 or ids.shape[1] > self.num_quantizers:
            raise ValueError(f"expected ids [B, <= {self.num_quantizers}, ...], got {tuple(ids.shape)}")
        return sum(layer.lookup(ids[:, i]) for i, layer in enumerate(self.layers[: ids.shape[1]]))
