"""Non-causal linear-attention Transformer (Shen et al., "Efficient Attention", 2021), pre-norm.

Attention costs ``O(n d^2)`` instead of ``O(n^2 d)``: queries are softmax-normalised over their
channels, keys over the sequence, and the keys' summary ``K^T V`` (``d x d`` per head) is read by
every query. This is what lucidrains' ``linear-attention-transformer`` package computes for its
global (non-local, non-causal) heads, which TFM-Tokenizer and its encoder use.

Module names follow that package's state-dict layout, so converters only rename prefixes:
``layers.layers.{i}.0.norm`` / ``.0.fn.{to_q,to_k,to_v,to_out}`` for attention and
``layers.layers.{i}.1.norm`` / ``.1.fn.fn.{w1,w2}`` for the feed-forward (the package wraps it in a
chunking module, here :class:`ChunkedFeedForward`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ChunkedFeedForward",
    "FeedForward",
    "LinearAttentionTransformer",
    "LinearSelfAttention",
    "PreNorm",
    "linear_attention",
]


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Efficient attention on ``[B, heads, N, head_dim]``: ``softmax_d(q) / sqrt(d) @ (softmax_n(k)^T v)``."""
    q = q.softmax(dim=-1) * q.shape[-1] ** -0.5
    k = k.softmax(dim=-2)
    context = k.transpose(-2, -1) @ v  # [B, heads, head_dim, head_dim]
    return q @ context


class LinearSelfAttention(nn.Module):
    """Multi-head linear self-attention; ``dropout`` acts on the output projection."""

    def __init__(self, dim: int, heads: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        out = linear_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
        return self.dropout(self.to_out(out.transpose(1, 2).reshape(b, n, d)))


class FeedForward(nn.Module):
    """``w2(dropout(GELU(w1 x)))`` with hidden width ``mult * dim``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim * mult)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.w2 = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.dropout(self.act(self.w1(x))))


class ChunkedFeedForward(nn.Module):
    """A position-wise ``fn`` applied to ``chunks`` slices of the sequence at a time (same result,
    less peak memory for long sequences); it also gives the feed-forward the package's ``fn.fn`` path."""

    def __init__(self, fn: nn.Module, chunks: int = 1) -> None:
        super().__init__()
        self.fn = fn
        self.chunks = chunks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chunks == 1:
            return self.fn(x)
        return torch.cat([self.fn(c) for c in x.chunk(self.chunks, dim=1)], dim=1)


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))``; the residual is added by the layer stack."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class _LayerStack(nn.Module):
    """``x += attn(x); x += ff(x)`` for each ``[attention, feed-forward]`` pair in ``layers``."""

    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = x + attention(x)
            x = x + feed_forward(x)
        return x


class LinearAttentionTransformer(nn.Module):
    """``depth`` pre-norm blocks of linear self-attention and a GELU MLP on ``[B, N, dim]``.

    No positional encoding and no final norm, as in the package's ``LinearAttentionTransformer``.
    ``dropout`` is the package's ``attn_layer_dropout`` (after the attention's output projection);
    its ``attn_dropout`` only reaches local-attention heads, which this block does not have, and its
    feed-forward has no dropout (``ff_dropout``, default 0 here too).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int = 8,
        *,
        dropout: float = 0.0,
        ff_mult: int = 4,
        ff_dropout: float = 0.0,
        ff_chunks: int = 1,
    ) -> None:
        super().__init__()
        self.layers = _LayerStack(
            nn.ModuleList(
                nn.ModuleList(
                    [
                        PreNorm(dim, LinearSelfAttention(dim, heads, dropout=dropout)),
                        PreNorm(dim, ChunkedFeedForward(FeedForward(dim, ff_mult, ff_dropout), ff_chunks)),
                    ]
                )
                for _ in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"expected a sequence [B, N, dim], got shape {tuple(x.shape)}")
        return self.layers(x)
