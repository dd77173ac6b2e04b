"""Q-Former (DETR-decoder) layers: queries attend to themselves, then to a memory of other tokens.

This is the layer GigaTok-style 1D tokenizers use in both directions (2D grid -> 1D tokens and back).
Pre-norm, positional embeddings added to queries and keys but never to values, as in DETR. The
attention modules are ``nn.MultiheadAttention`` so that upstream checkpoints (which use it) load
without re-packing their fused projections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QFormerLayer"]


class QFormerLayer(nn.Module):
    """``q += SA(LN(q)); q += CA(LN(q), memory); q += MLP(LN(q))`` with additive positional embeddings.

    Args:
        width: token width of queries and memory.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to ``width``.
        dropout: dropout on attention weights and residual branches.
    """

    def __init__(self, width: int, num_heads: int, *, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        *,
        query_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        memory_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``queries [B, Q, C]``, ``memory [B, M, C]``; ``memory_padding [B, M]`` is True where a memory
        token must be ignored (e.g. tokens dropped past a sample's prefix length)."""
        h = self.norm1(queries)
        qk = h if query_pos is None else h + query_pos
        queries = queries + self.dropout(self.self_attn(qk, qk, h, need_weights=False)[0])
        h = self.norm2(queries)
        q = h if query_pos is None else h + query_pos
        k = memory if memory_pos is None else memory + memory_pos
        attended = self.cross_attn(q, k, memory, key_padding_mask=memory_padding, need_weights=False)[0]
        queries = queries + self.dropout(attended)
        h = self.fc2(self.dropout(F.gelu(self.fc1(self.norm3(queries)))))
        return queries + self.dropout(h)
