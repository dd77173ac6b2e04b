"""Causal RoPE Transformers with sliding-window attention that run offline or in streaming chunks.

Offline, a sequence is processed at once under a banded causal mask (query ``t`` sees keys
``t - context < s <= t``). Streaming, the same layers take successive chunks and keep each layer's
rotated keys and values of the last ``context - 1`` positions in a ring buffer, which is exactly what a
later query can still see, so chunked processing equals offline processing for any chunk sizes.
(A ring of only ``context`` slots written before reading, as in moshi-style caches, drops keys the
first queries of a chunk still need once the window is full.)

Layers follow moshi / MOSS-Audio-Tokenizer: pre-LN with LayerNorm, bias-free attention and GELU FFN,
LayerScale on both branches, rotary positions on adjacent channel pairs (``max_period`` 1e4). Parameter
names mirror those upstream (``self_attn.in_projs.0``, ``norm1``, ``linear1``, ``layer_scale_1.scale``),
so their checkpoints load without renaming. Also here: the patch reshape that moves time steps into
channels and back, MOSS's only down- and up-sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import apply_rope, rope_angles

__all__ = [
    "LayerScale",
    "Patchify",
    "ProjectedTransformer",
    "RingKVCache",
    "StreamingAttention",
    "StreamingState",
    "StreamingTransformer",
    "StreamingTransformerLayer",
    "Unpatchify",
    "patchify",
    "sliding_window_mask",
    "unpatchify",
]


# ---------------------------------------------------------------------------------------------- patches
def patchify(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, C, T]`` -> ``[B, C * size, T / size]``: channel ``c * size + j`` holds step ``j`` of a patch."""
    b, c, t = x.shape
    if t % size:
        raise ValueError(f"{t} steps do not split into patches of {size}")
    return x.reshape(b, c, t // size, size).transpose(2, 3).reshape(b, c * size, t // size)


def unpatchify(x: torch.Tensor, size: int) -> torch.Tensor:
    """The inverse of :func:`patchify`: ``[B, C * size, T]`` -> ``[B, C, T * size]``."""
    b, cs, t = x.shape
    if cs % size:
        raise ValueError(f"{cs} channels do not split into patches of {size}")
    return x.reshape(b, cs // size, size, t).transpose(2, 3).reshape(b, cs // size, t * size)


class Patchify(nn.Module):
    """:func:`patchify` as a (parameter-free) module, for sequential stacks."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return patchify(x, self.size)


class Unpatchify(nn.Module):
    """:func:`unpatchify` as a (parameter-free) module."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(x, self.size)


# ---------------------------------------------------------------------------------------------- masks and cache
def sliding_window_mask(
    query_positions: torch.Tensor, key_positions: torch.Tensor, context: int | None
) -> torch.Tensor:
    """Boolean ``[Tq, Tk]`` (True: may attend): causal, within ``context`` steps, and keys at position >= 0."""
    delta = query_positions[:, None] - key_positions[None, :]
    allowed = (delta >= 0) & (key_positions[None, :] >= 0)
    if context is not None:
        allowed &= delta < context
    return allowed


class RingKVCache:
    """The rotated keys and values of the last ``capacity`` positions of one attention layer.

    Slot ``p % capacity`` holds position ``p``; ``positions`` says which position each slot holds
    (-1: empty), so attention masks by position and the slot order never matters. ``capacity=None``
    keeps every position (plain causal attention without a window).
    """

    def __init__(self, capacity: int | None) -> None:
        if capacity is not None and capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None

    def extend(
        self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cached plus new keys, values ``[B, H, S, D]`` and their positions ``[S]``; then remember the new ones."""
        if self.keys is None:
            b, h, _, d = keys.shape
            size = 0 if self.capacity is None else self.capacity
            self.keys = keys.new_zeros(b, h, size, d)
            self.values = values.new_zeros(b, h, size, d)
            self.positions = torch.full((size,), -1, dtype=torch.long, device=keys.device)
        assert self.values is not None and self.positions is not None
        if self.keys.shape[:2] != keys.shape[:2]:
            raise ValueError(f"batch of {keys.shape[0]} does not match the cache's {self.keys.shape[0]}")
        all_keys = torch.cat([self.keys, keys], dim=2)
        all_values = torch.cat([self.values, values], dim=2)
        all_positions = torch.cat([self.positions, positions])
        if self.capacity is None:
            self.keys, self.values, self.positions = all_keys, all_values, all_positions
        elif self.capacity > 0:
            keep = min(keys.shape[2], self.capacity)
            slots = positions[-keep:] % self.capacity
            self.keys = self.keys.index_copy(2, slots, keys[:, :, -keep:])
            self.values = self.values.index_copy(2, slots, values[:, :, -keep:])
            self.positions = self.positions.index_copy(0, slots, positions[-keep:])
        return all_keys, all_values, all_positions


@dataclass
class StreamingState:
    """Where a stream stands in one :class:`StreamingTransformer`: the next position and each layer's cache."""

    offset: int = 0
    caches: list[RingKVCache] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- layers
class LayerScale(nn.Module):
    """Per-channel residual gain (CaiT), initialised small so deep stacks start near identity."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class StreamingAttention(nn.Module):
    """Bias-free multi-head self-attention with rotary positions and a causal sliding window.

    ``in_projs``/``out_projs`` are one-element lists because that is how moshi-style checkpoints
    name them (their per-step weights variant keeps several).
    """

    query_block: int = 512  # offline queries per attention call: memory O(block x (block + context))

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        causal: bool = True,
        context: int | None = None,
        max_period: float = 1e4,
    ) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"width {dim} does not split into {heads} heads of even size")
        if context is not None and context < 1:
            raise ValueError(f"context must be >= 1 step, got {context}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.causal, self.context, self.max_period = causal, context, max_period
        self.in_projs = nn.ModuleList([nn.Linear(dim, 3 * dim, bias=False)])
        self.out_projs = nn.ModuleList([nn.Linear(dim, dim, bias=False)])

    def new_cache(self) -> RingKVCache:
        """A cache holding exactly the past positions a future query can see (``context - 1``)."""
        if not self.causal:
            raise ValueError("streaming needs causal attention")
        return RingKVCache(None if self.context is None else self.context - 1)

    def forward(self, x: torch.Tensor, offset: int = 0, cache: RingKVCache | None = None) -> torch.Tensor:
        """``x [B, T, C]`` at positions ``offset ..``; with ``cache``, attend to its past keys too."""
        b, t, c = x.shape
        q, k, v = self.in_projs[0](x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        positions = torch.arange(offset, offset + t, device=x.device)
        angles = rope_angles(positions[:, None], self.head_dim, self.max_period)
        q, k = apply_rope(q, angles), apply_rope(k, angles)
        key_positions = positions
        if cache is not None:
            k, v, key_positions = cache.extend(k, v, positions)
        if self.causal and cache is None and t > self.query_block:
            out = self._blockwise(q, k, v, positions)
        else:
            mask = sliding_window_mask(positions, key_positions, self.context) if self.causal else None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_projs[0](out.transpose(1, 2).reshape(b, t, c))

    def _blockwise(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Offline causal attention over a long input in blocks of queries, each against only the keys its
        window can see: the same outputs as one masked call without its ``T x T`` mask and scores, so
        memory stays flat in the input's length (a 10-minute clip costs what a few seconds do)."""
        outs = []
        for start in range(0, q.shape[2], self.query_block):
            end = min(q.shape[2], start + self.query_block)
            low = 0 if self.context is None else max(0, start - self.context + 1)
            mask = sliding_window_mask(positions[start:end], positions[low:end], self.context)
            outs.append(
                F.scaled_dot_product_attention(
                    q[:, :, start:end], k[:, :, low:end], v[:, :, low:end], attn_mask=mask
                )
            )
        return torch.cat(outs, 2)


class StreamingTransformerLayer(nn.Module):
    """Pre-LN block ``x += ls1 * attn(norm1(x)); x += ls2 * linear2(gelu(linear1(norm2(x))))``, all bias-free
    but the LayerNorms."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_feedforward: int,
        *,
        causal: bool = True,
        context: int | None = None,
        layer_scale: float | None = 0.01,
        max_period: float = 1e4,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.self_attn = StreamingAttention(dim, heads, causal=causal, context=context, max_period=max_period)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.linear1 = nn.Linear(dim, dim_feedforward, bias=False)
        self.linear2 = nn.Linear(dim_feedforward, dim, bias=False)
        if layer_scale is None:
            self.layer_scale_1: nn.Module = nn.Identity()
            self.layer_scale_2: nn.Module = nn.Identity()
        else:
            self.layer_scale_1 = LayerScale(dim, layer_scale)
            self.layer_scale_2 = LayerScale(dim, layer_scale)

    def forward(self, x: torch.Tensor, offset: int = 0, cache: RingKVCache | None = None) -> torch.Tensor:
        x = x + self.layer_scale_1(self.self_attn(self.norm1(x), offset, cache))
        return x + self.layer_scale_2(self.linear2(F.gelu(self.linear1(self.norm2(x)))))


class StreamingTransformer(nn.Module):
    """A stack of :class:`StreamingTransformerLayer` over ``[B, T, C]``.

    Offline: ``transformer(x)``. Streaming: ``state = transformer.new_state()`` and then
    ``transformer(chunk, state)`` for successive chunks of any length; the outputs concatenated equal
    ``transformer(whole)``.

    Args:
        dim, heads, num_layers, dim_feedforward: width, heads, depth and FFN width.
        causal: causal (sliding-window) attention; otherwise every position sees every other (no streaming).
        context: attention window in steps (a query sees itself and ``context - 1`` earlier steps);
            ``None``: unbounded causal attention.
        layer_scale: initial LayerScale gain (``None``: no gains).
        max_period: RoPE base.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        num_layers: int,
        dim_feedforward: int,
        *,
        causal: bool = True,
        context: int | None = None,
        layer_scale: float | None = 0.01,
        max_period: float = 1e4,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.context = context
        self.layers = nn.ModuleList(
            StreamingTransformerLayer(
                dim,
                heads,
                dim_feedforward,
                causal=causal,
                context=context,
                layer_scale=layer_scale,
                max_period=max_period,
                norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        )

    def new_state(self) -> StreamingState:
        """An empty stream starting at position 0."""
        return StreamingState(0, [layer.self_attn.new_cache() for layer in self.layers])

    def forward(self, x: torch.Tensor, state: StreamingState | None = None) -> torch.Tensor:
        """``x [B, T, C]`` -> ``[B, T, C]``; with ``state``, continue that stream and advance it."""
        offset = 0 if state is None else state.offset
        for i, layer in enumerate(self.layers):
            x = layer(x, offset, None if state is None else state.caches[i])
        if state is not None:
            state.offset += x.shape[1]
        return x


class ProjectedTransformer(nn.Module):
    """Channel-first ``[B, C_in, T] -> [B, C_out, T]``: bias-free linear maps into and out of a
    :class:`StreamingTransformer` (identities where the widths already match, as upstream)."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        dim: int,
        heads: int,
        num_layers: int,
        dim_feedforward: int,
        **kwargs,
    ) -> None:
        super().__init__()
        self.input_dim, self.output_dim = input_dim, output_dim
        self.input_proj: nn.Module = (
            nn.Linear(input_dim, dim, bias=False) if input_dim != dim else nn.Identity()
        )
        self.transformer = StreamingTransformer(dim, heads, num_layers, dim_feedforward, **kwargs)
        self.output_proj: nn.Module = (
            nn.Linear(dim, output_dim, bias=False) if output_dim != dim else nn.Identity()
        )

    def new_state(self) -> StreamingState:
        return self.transformer.new_state()

    def forward(self, x: torch.Tensor, state: StreamingState | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected [B, {self.input_dim}, T], got shape {tuple(x.shape)}")
        h = self.transformer(self.input_proj(x.transpose(1, 2)), state)
        return self.output_proj(h).transpose(1, 2)
