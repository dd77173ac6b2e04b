"""LlamaGen's GPT building blocks: RMSNorm, SwiGLU, 2-D rotary positions and a cached attention block.

Upstream: FoundationVision/LlamaGen ``autoregressive/models/gpt.py`` (MIT), which NAR extends. Parameter
names follow it (``attention.wqkv``, ``attention.wo``, ``feed_forward.w1/w2/w3``, ``attention_norm``,
``ffn_norm``) so converted checkpoints need no renaming.

Two upstream behaviours are kept on purpose, because trained weights depend on them:

- the 2-D RoPE table gives each head's first half of rotary pairs the row index and the second half
  the column index, with ``head_dim / 4`` frequencies ``base ** (-2i / (head_dim / 2))`` per axis;
- condition (class) positions get an all-zero table, so their queries and keys are multiplied by
  zero: a class token is attended to with a zero logit and contributes its value evenly. (Upstream
  calls this "no rotation"; it is in fact a projection to zero, and the checkpoints were trained
  with it.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import KVCache

__all__ = [
    "LlamaAttention",
    "LlamaBlock",
    "LlamaFeedForward",
    "RMSNorm",
    "apply_rope_pairs",
    "find_multiple",
    "rope_2d_angles",
    "rope_2d_table",
]


def find_multiple(n: int, k: int) -> int:
    """The smallest multiple of ``k`` that is at least ``n``."""
    return n if n % k == 0 else n + k - n % k


class RMSNorm(nn.Module):
    """``x / rms(x) * weight``, computed in float32 (``affine=False``: no weight, as xAR's blocks)."""

    def __init__(self, dim: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        out = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        return out if self.weight is None else out * self.weight


class LlamaFeedForward(nn.Module):
    """SwiGLU ``w2(silu(w1 x) * w3 x)`` without biases; hidden width ``multiple_of``-rounded ``8 d / 3``."""

    def __init__(
        self, dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        hidden = int(2 * 4 * dim / 3)
        if ffn_dim_multiplier is not None:
            hidden = int(ffn_dim_multiplier * hidden)
        hidden = find_multiple(hidden, multiple_of)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.ffn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


def rope_2d_angles(
    rows: torch.Tensor, cols: torch.Tensor, head_dim: int, base: float = 10000.0
) -> torch.Tensor:
    """Rotary ``(cos, sin)`` table ``[N, head_dim / 2, 2]`` for token positions ``rows, cols [N]``.

    The first ``head_dim / 4`` rotary pairs turn with the row, the rest with the column, with
    ``head_dim / 4`` frequencies ``base ** (-2i / (head_dim / 2))`` per axis (LlamaGen's and xAR's
    layout). Positions may be fractional (coarse scales sit between grid points).
    """
    half = head_dim // 2
    if half % 2:
        raise ValueError(f"head_dim {head_dim} must be a multiple of 4 for 2-D rotary positions")
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    angles = torch.cat([rows.float()[:, None] * freqs, cols.float()[:, None] * freqs], dim=-1)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def rope_2d_table(grid: int, head_dim: int, base: float = 10000.0, prefix: int = 1) -> torch.Tensor:
    """Rotary table ``[prefix + grid * grid, head_dim / 2, 2]`` of a raster-order grid; the ``prefix``
    condition positions get zeros (see the module docstring)."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    table = rope_2d_angles(rows.flatten(), cols.flatten(), head_dim, base)
    return torch.cat([torch.zeros(prefix, head_dim // 2, 2), table])


def apply_rope_pairs(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of ``x [B, N, H, D]`` by ``table [N, D / 2, 2]`` (cos, sin), in float32."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    table = table.view(1, pairs.shape[1], 1, pairs.shape[3], 2)
    cos, sin = table[..., 0], table[..., 1]
    out = torch.stack(
        [pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1
    )
    return out.flatten(3).type_as(x)


class LlamaAttention(nn.Module):
    """Bias-free attention with fused ``wqkv``, rotary pairs and an optional positional `KVCache`."""

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int | None = None,
        *,
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.kv_heads = heads, kv_heads or heads
        self.head_dim = dim // heads
        self.wqkv = nn.Linear(dim, (self.heads + 2 * self.kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.attn_dropout = attn_dropout
        self.resid_dropout = nn.Dropout(resid_dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [B, N, dim]``; ``rope [N, head_dim / 2, 2]``; ``mask`` boolean, True where a query may
        attend, over the N keys or (with ``cache``) over every cache slot; ``positions [N]`` are where
        the tokens go in the cache."""
        b, n, _ = x.shape
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        q, k, v = self.wqkv(x).split([q_size, kv_size, kv_size], dim=-1)
        q = apply_rope_pairs(q.view(b, n, self.heads, self.head_dim), rope).transpose(1, 2)
        k = apply_rope_pairs(k.view(b, n, self.kv_heads, self.head_dim), rope).transpose(1, 2)
        v = v.view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.write(positions, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        if mask is not None and mask.ndim == 3:
            mask = mask[:, None]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.resid_dropout(self.wo(out.transpose(1, 2).reshape(b, n, q_size)))


class LlamaBlock(nn.Module):
    """Pre-norm block ``h = x + attn(norm(x)); h + ffn(norm(h))`` (LlamaGen's ``TransformerBlock``)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        kv_heads: int | None = None,
        norm_eps: float = 1e-5,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.attention = LlamaAttention(
            dim, heads, kv_heads, attn_dropout=attn_dropout, resid_dropout=resid_dropout
        )
        self.feed_forward = LlamaFeedForward(dim, multiple_of, ffn_dim_multiplier, ffn_dropout)
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.ffn_norm = RMSNorm(dim, norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, mask, cache, positions)
        return h + self.feed_forward(self.ffn_norm(h))
