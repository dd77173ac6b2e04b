"""Key/value caches for incremental decoding of attention layers.

Two ways to fill one, because generators decode in two orders:

- by position (``write``): a preallocated ``[B, H, L, D]`` buffer indexed by sequence position, as
  LlamaGen's cache; NAR writes each anti-diagonal's tokens at their raster positions, and the caller's
  attention mask (one row per query, over all ``L`` slots) hides the slots not written yet;
- by appending (``extend``): keys grow in the order they arrive, as xAR's next-cell decoding does,
  and ``peek`` lets a query attend to the cache plus tokens that are not kept (xAR's noisy cell, which
  is denoised many times before its clean version is appended once).
"""

from __future__ import annotations

import torch

__all__ = ["KVCache"]


class KVCache:
    """Keys and values of one attention layer, ``[B, H, length, head_dim]``."""

    def __init__(
        self,
        batch: int,
        heads: int,
        head_dim: int,
        max_length: int | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.max_length = max_length
        if max_length is None:
            self.k = torch.empty(batch, heads, 0, head_dim, dtype=dtype, device=device)
        else:
            self.k = torch.zeros(batch, heads, max_length, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)

    @property
    def length(self) -> int:
        return self.k.shape[2]

    def write(
        self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v [B, H, n, D]`` at sequence ``positions [n]``; returns the whole buffers."""
        if self.max_length is None:
            raise RuntimeError("write() needs a cache built with max_length")
        self.k[:, :, positions] = k.to(self.k.dtype)
        self.v[:, :, positions] = v.to(self.v.dtype)
        return self.k, self.v

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k, v [B, H, n, D]``; returns everything cached so far."""
        self.k = torch.cat([self.k, k.to(self.k.dtype)], dim=2)
        self.v = torch.cat([self.v, v.to(self.v.dtype)], dim=2)
        return self.k, self.v

    def peek(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cache followed by ``k, v`` without storing them."""
        return torch.cat([self.k, k.to(self.k.dtype)], dim=2), torch.cat([self.v, v.to(self.v.dtype)], dim=2)
