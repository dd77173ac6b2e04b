"""The contract every quantizer follows, so tokenizers can swap them freely."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

# Above this many codes, usage statistics count distinct ids instead of allocating a histogram.
_HISTOGRAM_LIMIT = 1 << 20


@dataclass
class QuantizerOutput:
    """What every quantizer's ``forward`` returns, whatever its flags.

    Args:
        quantized: the quantized tensor, channel-first like the input, with a straight-through (or
            rotation-trick) gradient; continuous bottlenecks return their latents here.
        ids: code ids: the input's shape without the channel axis, with a codebook axis after the
            batch for residual and per-channel quantizers; ``None`` for continuous bottlenecks.
        losses: auxiliary losses keyed ``vq/...``, already weighted; the trainer sums them.
        stats: detached diagnostics: ``usage`` (fraction of codes hit), ``perplexity`` (of the
            code histogram), ``dead_codes`` (fraction of codes under the restart threshold).
    """

    quantized: torch.Tensor
    ids: torch.Tensor | None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def loss(self) -> torch.Tensor:
        """Sum of the auxiliary losses (a zero scalar when there are none)."""
        return sum(self.losses.values(), torch.zeros((), device=self.quantized.device))


class Quantizer(nn.Module):
    """Base class: ``forward(z)`` quantizes channel-first ``z [B, C, *grid]``; ``lookup(ids)`` inverts it.

    Quantizer math runs in fp32 with autocast off, whatever the surrounding precision, because
    distances and rounding in bf16 pick wrong codes (a common source of NaNs and collapse).
    """

    codebook_size: int

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Vocabulary per codebook axis of the ids (one entry for a single codebook)."""
        return (self.codebook_size,)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Ids for ``z`` without losses, statistics or state updates."""
        was_training = self.training
        self.eval()
        try:
            return self(z).ids
        finally:
            self.train(was_training)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Channel-first vectors ``[B, C, *grid]`` for ids as returned by ``forward``."""
        raise NotImplementedError


def to_rows(z: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``[B, C, *grid]`` -> ``[B * prod(grid), C]`` rows, and the inverse for tensors of any width."""
    b, *grid = z.shape[:1] + z.shape[2:]
    rows = torch.movedim(z, 1, -1).reshape(-1, z.shape[1])

    def restore(flat: torch.Tensor) -> torch.Tensor:
        return torch.movedim(flat.reshape(b, *grid, flat.shape[-1]), -1, 1)

    return rows, restore


def row_mask(mask: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor | None:
    """Flatten a ``[B, *grid]`` (or broadcastable) validity mask to match ``to_rows(z)``."""
    if mask is None:
        return None
    shape = z.shape[:1] + z.shape[2:]
    try:
        return mask.to(device=z.device, dtype=torch.bool).expand(shape).reshape(-1)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit input {tuple(z.shape)}") from err


def masked_mse(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over the kept rows of ``[N, D]`` tensors (zero when none are kept)."""
    err = (a - b).pow(2)
    if keep is None:
        return err.mean()
    kept = keep.to(err.dtype).unsqueeze(-1)
    return (err * kept).sum() / (kept.sum() * err.shape[-1]).clamp_min(1)


def usage_stats(
    ids: torch.Tensor, codebook_size: int, counts: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Fraction of codes used and the perplexity of their histogram (a collapse detector).

    ``counts`` (per-code hits, e.g. already all-reduced across ranks) is used when given; ids < 0
    (masked or dropped positions) are ignored. Huge implicit codebooks (FSQ, LFQ) are summarised from
    the distinct ids, never from a ``codebook_size`` histogram.
    """
    if counts is None:
        valid = ids.detach().reshape(-1)
        valid = valid[valid >= 0]
        if codebook_size > _HISTOGRAM_LIMIT:
            counts = torch.unique(valid, return_counts=True)[1].float()
        else:
            counts = torch.bincount(valid, minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return {"usage": (counts > 0).sum().float() / codebook_size, "perplexity": entropy.exp()}
