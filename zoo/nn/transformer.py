"""Pre-norm ViT blocks with masks, 2D rotary positions, qk-norm and layer scale, for 1D tokenizers and generators.

Attention runs through ``F.scaled_dot_product_attention`` so that any attention mask (block-causal,
level-causal, padding) costs nothing extra to support. Parameter names follow timm's BEiT/EVA blocks
(``attn.qkv`` without bias plus ``attn.q_bias``/``attn.v_bias``, ``gamma_1``/``gamma_2``), which is
also what most upstream 1D tokenizers store, so their converters stay renaming-free. A key bias adds
the same logit to every key of a query and cancels in the softmax, so it is not kept at all.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "ClipBlock", "ClipMlp", "Mlp", "TransformerBlock", "apply_rope", "rope_angles"]


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotary angles ``[N, head_dim / 2]`` for integer positions ``[N, A]`` over ``A`` axes.

    Each axis gets ``head_dim / (2A)`` frequencies ``theta ** (-2i / (head_dim / A))``; the axes'
    frequency bands are concatenated (FLUX-style multi-axis RoPE). Computed in float64 because
    positions of long sequences lose precision in float32 before the cosine is taken.
    """
    axes = positions.shape[-1]
    per_axis = head_dim // axes
    if per_axis * axes != head_dim or per_axis % 2:
        raise ValueError(f"head_dim {head_dim} does not split into {axes} even rotary bands")
    omega = 1.0 / theta ** (
        torch.arange(0, per_axis, 2, dtype=torch.float64, device=positions.device) / per_axis
    )
    return torch.cat([positions[:, a, None].double() * omega for a in range(axes)], dim=-1).float()


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs ``(2i, 2i + 1)`` of ``x [..., N, head_dim]`` by ``angles [N, head_dim/2]``."""
    pairs = x.float().unflatten(-1, (-1, 2))
    cos, sin = angles.cos(), angles.sin()
    out = torch.stack(
        (pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 0] * sin + pairs[..., 1] * cos), dim=-1
    )
    return out.flatten(-2).type_as(x)


class Attention(nn.Module):
    """Multi-head self-attention with optional q/v biases, per-head qk LayerNorm and rotary positions.

    ``qkv_bias``: ``True`` learns query and value biases (``q_bias``/``v_bias``, BEiT/EVA); ``"fused"`` a
    bias on the packed projection (``qkv.bias``, timm's ViT), whose key third cancels in the softmax but is
    kept so that checkpoints and parameter counts match; ``False`` none.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        qkv_bias: bool | Literal["fused"] = True,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        if qkv_bias not in (True, False, "fused"):
            raise ValueError(f"qkv_bias must be True, False or 'fused', got {qkv_bias!r}")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias == "fused")
        separate = qkv_bias is True
        self.q_bias = nn.Parameter(torch.zeros(dim)) if separate else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if separate else None
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, rope: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, N, C]``; ``mask`` boolean ``[N, N]`` or ``[B, 1, N, N]`` (True: may attend);
        ``rope`` angles ``[N, head_dim / 2]`` from `rope_angles`."""
        b, n, c = x.shape
        bias = self.qkv.bias
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        drop = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` (timm's names); ``dropout`` after the activation and after ``fc2``, as timm."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm ViT block ``x += g1 * attn(LN(x)); x += g2 * mlp(LN(x))``.

    The two halves are also callable separately (`attend`, `feed_forward`) because some tokenizers
    (ResTok's hierarchical merging) change the token set between them.

    Args:
        dim: token width.
        heads: attention heads.
        mlp_ratio: MLP hidden width relative to ``dim``.
        qkv_bias: ``True`` learns query and value biases, ``"fused"`` a bias on the packed projection.
        norm_eps: epsilon of every LayerNorm in the block.
        qk_norm: per-head LayerNorm on queries and keys (stabilises large ViTs).
        layer_scale: initial value of the per-channel residual gains ``gamma_1/2``; ``None``: no gains.
        attn_dropout, proj_dropout: timm's dropouts on attention weights and after each projection (training only).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool | Literal["fused"] = True,
        norm_eps: float = 1e-6,
        *,
        qk_norm: bool = False,
        layer_scale: float | None = None,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim,
            heads,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            norm_eps=norm_eps,
            attn_dropout=attn_dropout,
            proj_dropout=proj_dropout,
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), proj_dropout)
        if layer_scale is not None:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(layer_scale)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def attend(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, rope: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.attn(self.norm1(x), mask, rope)
        return x + (out if self.gamma_1 is None else self.gamma_1 * out)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(self.norm2(x))
        return x + (out if self.gamma_2 is None else self.gamma_2 * out)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, rope: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.feed_forward(self.attend(x, mask, rope))


class ClipMlp(nn.Module):
    """``c_proj(gelu(c_fc(x)))`` (CLIP's names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ClipBlock(nn.Module):
    """CLIP's ``ResidualAttentionBlock``: ``x += attn(ln_1(x)); x += mlp(ln_2(x))`` with ``nn.MultiheadAttention``,
    whose packed ``in_proj_weight`` is what CLIP-style checkpoints (TiTok, ALIT, KARL) store.

    ``mask`` is boolean, True where a query may *not* attend (``nn.MultiheadAttention``'s convention),
    ``[L, L]`` or per item ``[B, L, L]``; per-item masks are expanded head by head in batch-major
    order, the order ``nn.MultiheadAttention`` reads them in.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = ClipMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None and mask.ndim == 3:
            mask = mask.repeat_interleave(self.heads, dim=0)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))
