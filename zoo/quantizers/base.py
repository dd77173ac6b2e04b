"""The contract every quantizer follows, so tokenizers can swap them freely."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """What every quantizer's ``forward`` returns, whatever its flags.

    Args:
        quantized: the quantized tensor, same shape as the input, with a straight-through gradient.
        ids: code ids, the input's shape without the channel axis (plus a codebook axis for RVQ).
        losses: auxiliary losses keyed ``vq/...`` (already weighted by the quantizer's own weights).
        stats: detached diagnostics: ``usage`` (fraction of codes hit in the batch), ``perplexity``.
    """

    quantized: torch.Tensor
    ids: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Quantizer(nn.Module):
    """Base class: ``forward(z)`` quantizes channel-first ``z``; ``lookup(ids)`` inverts it."""

    codebook_size: int

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Channel-first vectors ``[B, D, *grid]`` for ids ``[B, *grid]``."""
        raise NotImplementedError


def usage_stats(ids: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Fraction of codes used and the perplexity of their histogram (a collapse detector)."""
    counts = torch.bincount(ids.detach().reshape(-1), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return {"usage": (counts > 0).float().mean(), "perplexity": entropy.exp()}
