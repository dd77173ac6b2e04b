"""Exponential moving average of a model's weights, kept as a frozen copy that checkpoints with the run."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMAWeights(nn.Module):
    """A frozen copy of ``model`` whose parameters track it as ``ema <- decay * ema + (1 - decay) * p``.

    The effective decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, so early
    states (random codebooks before k-means init, say) wash out quickly. Buffers (codebooks updated
    by EMA, usage counts, flags) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(model).requires_grad_(False).eval()
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> EMAWeights:
        super().train(mode)
        self.module.eval()  # the average is only ever evaluated
        return self

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        n = int(self.updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        for averaged, current in zip(self.module.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current.detach().to(averaged.dtype), 1 - decay)
        for averaged, current in zip(self.module.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)
        self.updates += 1
