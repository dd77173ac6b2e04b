"""Q-Formers: learned queries that attend to themselves, then to a memory of other tokens.

Two layouts:

- `QFormerLayer`, the DETR-decoder layer GigaTok-style 1D tokenizers use in both directions (2D grid ->
  1D tokens and back): pre-norm, positional embeddings added to queries and keys but never to values. The
  attention modules are ``nn.MultiheadAttention`` so that upstream checkpoints (which use it) load without
  re-packing their fused projections.
- `BertQFormer`, BLIP-2's: a post-norm BERT encoder over query tokens only, with cross-attention to the
  memory in every ``cross_attention_freq``-th layer, no position embeddings and, optionally, causal
  self-attention among the queries (SEED's "causal Q-Former", where query ``i`` sees queries ``<= i`` so
  that the ids it yields can be generated left to right).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BertAttention", "BertQFormer", "BertQFormerLayer", "QFormerLayer"]


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


class BertAttention(nn.Module):
    """Post-norm BERT attention: ``norm(x + out(attend(query(x), key(c), value(c))))``.

    ``context`` is ``x`` itself for self-attention; its width may differ (``context_width``) for
    cross-attention. ``mask`` is boolean ``[Q, K]``, True where a query may attend.
    """

    def __init__(
        self,
        width: int,
        heads: int,
        *,
        context_width: int | None = None,
        eps: float = 1e-12,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(context_width or width, width)
        self.value = nn.Linear(context_width or width, width)
        self.out = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        context = x if context is None else context
        p = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(
            self._heads(self.query(x)),
            self._heads(self.key(context)),
            self._heads(self.value(context)),
            attn_mask=mask,
            dropout_p=p,
        )
        return self.norm(x + F.dropout(self.out(attended.transpose(1, 2).flatten(2)), p, self.training))


class BertFeedForward(nn.Module):
    """Post-norm BERT feed-forward: ``norm(x + fc2(gelu(fc1(x))))`` (exact GELU)."""

    def __init__(self, width: int, hidden: int, *, eps: float = 1e-12, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(F.gelu(self.fc1(x)))
        return self.norm(x + F.dropout(h, self.dropout, self.training))


class BertQFormerLayer(nn.Module):
    """Self-attention among queries, cross-attention to the memory (when ``cross``), feed-forward."""

    def __init__(
        self,
        width: int,
        heads: int,
        hidden: int,
        *,
        context_width: int,
        cross: bool,
        eps: float = 1e-12,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = BertAttention(width, heads, eps=eps, dropout=dropout)
        self.cross_attn = (
            BertAttention(width, heads, context_width=context_width, eps=eps, dropout=dropout)
            if cross
            else None
        )
        self.ffn = BertFeedForward(width, hidden, eps=eps, dropout=dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.self_attn(x, mask=mask)
        if self.cross_attn is not None:
            x = self.cross_attn(x, memory)
        return self.ffn(x)


class BertQFormer(nn.Module):
    """BLIP-2's Q-Former over query tokens only: ``num_queries`` learned queries read a memory
    ``[B, M, context_width]`` and return ``[B, num_queries, width]`` (the last layer's output, no final norm).

    Args:
        width, layers, heads, mlp_ratio: the BERT encoder (BERT-base: 768, 12, 12, 4).
        context_width: width of the memory (1408 for EVA ViT-g features).
        num_queries: learned query tokens (``queries``, initialised N(0, 0.02) as BLIP-2).
        cross_attention_freq: layers ``0, f, 2f, ...`` cross-attend to the memory.
        causal: query ``i`` attends to queries ``<= i`` only.
        eps: LayerNorm epsilon (BERT: 1e-12).
        dropout: hidden and attention-probability dropout in training mode (BERT: 0.1).
    """

    def __init__(
        self,
        *,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        context_width: int = 1408,
        num_queries: int = 32,
        cross_attention_freq: int = 2,
        causal: bool = False,
        eps: float = 1e-12,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.causal, self.dropout = causal, dropout
        self.queries = nn.Parameter(torch.zeros(1, num_queries, width).normal_(0.0, 0.02))
        self.input_norm = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(
            BertQFormerLayer(
                width,
                heads,
                int(width * mlp_ratio),
                context_width=context_width,
                cross=i % cross_attention_freq == 0,
                eps=eps,
                dropout=dropout,
            )
            for i in range(layers)
        )
        self.apply(self._init_bert)

    @staticmethod
    def _init_bert(module: nn.Module) -> None:
        """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def num_queries(self) -> int:
        return self.queries.shape[1]

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        n = self.num_queries
        x = self.queries.expand(memory.shape[0], -1, -1).to(memory.dtype)
        x = F.dropout(self.input_norm(x), self.dropout, self.training)
        mask = None
        if self.causal:
            mask = torch.ones(n, n, dtype=torch.bool, device=memory.device).tril()
        for layer in self.layers:
            x = layer(x, memory, mask)
        return x
