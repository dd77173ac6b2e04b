"""DiT-style 1-D Transformer velocity estimator (ReasoningCodec's ``Transformer1DModel``).

Upstream: UniAudio 2.0 ``tools/tokenizer/ReasoningCodec_film/models/transformer_1d_flow.py`` with the
diffusers ``BasicTransformerBlock`` of ``models/attention.py`` and ``models/model_config.json``
(24 heads x 64 = 1536 wide, 32 layers, ``norm_type="ada_norm_single"``, ``activation_fn="gelu-approximate"``,
``attention_bias=true``, ``norm_elementwise_affine=false``, ``norm_eps=1e-6``, in 1040 / out 136 channels).

Structure (channels-first in and out, ``[B, C, T]``):

- ``proj_in``: a conv (k3, "same") then a linear, with the conv output scaled by ``k ** -0.5`` and no
  activation in between (upstream's ``ProjectLayer``); ``proj_out`` is the same from width to out_channels.
- Fixed sinusoidal positions added after ``proj_in`` (sin on even, cos on odd channels; upstream stores them
  as the buffer ``pos_embed.pe`` of 3000 positions, here they are computed for any length).
- AdaLN-single (PixArt-alpha): the flow time ``t in [0, 1]`` is embedded as ``[cos, sin]`` of
  ``1000 t`` over 256 frequencies (512 channels), then ``timestep_embedder`` (Linear-SiLU-Linear) and one shared
  ``linear`` to 6 x width. Each block adds its own ``scale_shift_table [6, width]`` to get shift/scale/gate for
  attention and MLP; the output layer uses ``scale_shift_table [2, width]`` (shift, scale) with the embedded
  time itself.
- Blocks: LayerNorm without affine -> modulate -> self-attention (q/k/v/out with biases) -> gated residual;
  LayerNorm -> modulate -> GELU(tanh) MLP x4 -> gated residual.

Upstream's ``PixArtAlphaCombinedFlowEmbeddings`` can add "resolution"/"aspect ratio" embeddings, but
ReasoningCodec constructs it with ``use_additional_conditions=False``: those embedders do not exist in the
model and the ``added_cond_kwargs`` it passes are ignored, so they are not built here.

Parameter names mirror upstream (``proj_in.ffn_1``, ``transformer_blocks.{i}.attn1.to_q``,
``ff.net.0.proj``, ``adaln_single.emb.timestep_embedder.linear_1`` ...), so a checkpoint loads after stripping
the ``cfm_wrapper.estimator.`` prefix and dropping the ``pos_embed.pe`` buffer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiT1d", "DiTBlock1d", "convert_dit1d", "flow_time_embedding", "sinusoidal_positions"]


def flow_time_embedding(
    t: torch.Tensor, dim: int = 512, *, scale: float = 1000.0, max_period: float = 10000.0
):
    """``[cos | sin]`` features ``[B, dim]`` of ``scale * t`` (upstream embeds the flow time in [0, 1] this way)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None] * scale
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Transformer positions ``[length, dim]``: sin on even channels, cos on odd ones (diffusers layout)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return pe


class ProjectLayer(nn.Module):
    """Conv over time then a linear, on ``[B, T, C]``; the conv output is scaled by ``kernel ** -0.5``."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.kernel_size = kernel_size
        self.ffn_1 = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2)
        self.ffn_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ffn_1(x.transpose(1, 2)).transpose(1, 2) * self.kernel_size**-0.5
        return self.ffn_2(x)


class TimestepEmbedding(nn.Module):
    """Linear-SiLU-Linear (diffusers naming)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class _FlowTimeEmbeddings(nn.Module):
    def __init__(self, dim: int, freq_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.timestep_embedder = TimestepEmbedding(freq_dim, dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.timestep_embedder(flow_time_embedding(t, self.freq_dim).to(dtype))


class AdaLayerNormSingle(nn.Module):
    """Shared time conditioning: returns (``[B, 6 * dim]`` block modulation, ``[B, dim]`` embedded time)."""

    def __init__(self, dim: int, freq_dim: int = 512) -> None:
        super().__init__()
        self.emb = _FlowTimeEmbeddings(dim, freq_dim)
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.emb(t, dtype)
        return self.linear(F.silu(embedded)), embedded


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (diffusers ``Attention`` naming)."""

    def __init__(self, dim: int, heads: int, head_dim: int, *, bias: bool = True) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(dim, inner, bias=bias)
        self.to_v = nn.Linear(dim, inner, bias=bias)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (
            proj(x).view(b, n, self.heads, -1).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class _GeluProj(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """GELU(tanh) MLP; ``net.0.proj`` / ``net.2`` as in diffusers (``net.1`` is a parameter-free dropout slot)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(_GeluProj(dim, hidden), nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DiTBlock1d(nn.Module):
    """PixArt-style block: AdaLN-single modulated attention and MLP with gated residuals."""

    def __init__(
        self, dim: int, heads: int, head_dim: int, *, mlp_ratio: float = 4.0, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.attn1 = SelfAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ff = FeedForward(dim, int(dim * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(
        self, x: torch.Tensor, modulation: torch.Tensor, attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        mods = self.scale_shift_table[None] + modulation.view(x.shape[0], 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.chunk(6, dim=1)
        x = x + gate_msa * self.attn1(self.norm1(x) * (1 + scale_msa) + shift_msa, attn_mask)
        return x + gate_mlp * self.ff(self.norm2(x) * (1 + scale_mlp) + shift_mlp)


class DiT1d(nn.Module):
    """Velocity estimator ``v(x, t)`` over ``[B, in_channels, T]`` -> ``[B, out_channels, T]``.

    ``timestep`` is the flow time in [0, 1] (one per item). ``mask [B, T]`` (True/1 = real frame) hides padded
    frames from attention and zeroes them before both convolutions, so the real frames of a right-padded item
    come out as they would alone; outputs at padded frames are zero. Upstream never passes a mask (the
    ``mask=None`` path is upstream's computation). Upstream (``model_config.json``): ``DiT1d(1040, 136, width=1536, depth=32, heads=24)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        time_freq_dim: int = 512,
        proj_kernel: int = 3,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.in_channels, self.out_channels, self.width = in_channels, out_channels, width
        head_dim = width // heads
        self.proj_in = ProjectLayer(in_channels, width, proj_kernel)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock1d(width, heads, head_dim, mlp_ratio=mlp_ratio, eps=eps) for _ in range(depth)
        )
        self.norm_out = nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(2, width) / width**0.5)
        self.proj_out = ProjectLayer(width, out_channels, proj_kernel)
        self.adaln_single = AdaLayerNormSingle(width, time_freq_dim)

    def forward(
        self, x: torch.Tensor, timestep: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape [B, {self.in_channels}, T], got {tuple(x.shape)}")
        b, _, n = x.shape
        timestep = torch.as_tensor(timestep, device=x.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        if timestep.shape != (b,):
            raise ValueError(f"expected timestep of shape [{b}], got {tuple(timestep.shape)}")
        attn_mask, keep = None, None
        if mask is not None:
            if mask.shape != (b, n):
                raise ValueError(f"expected mask of shape [{b}, {n}], got {tuple(mask.shape)}")
            real = mask.bool()
            # An item with no real frame would make every softmax row empty (NaN); let it attend to all.
            attn_mask = (real | ~real.any(dim=1, keepdim=True))[:, None, None, :]
            keep = mask.to(x.dtype)[:, :, None]
            x = x * keep.transpose(1, 2)
        h = self.proj_in(x.transpose(1, 2))
        h = h + sinusoidal_positions(n, self.width, h.device).to(h.dtype)
        modulation, embedded = self.adaln_single(timestep, h.dtype)
        for block in self.transformer_blocks:
            h = block(h, modulation, attn_mask)
        shift, scale = (self.scale_shift_table[None] + embedded[:, None]).chunk(2, dim=1)
        h = self.norm_out(h) * (1 + scale) + shift
        if keep is None:
            return self.proj_out(h).transpose(1, 2)
        return (self.proj_out(h * keep) * keep).transpose(1, 2)


def convert_dit1d(
    state_dict: dict[str, torch.Tensor], prefix: str = "cfm_wrapper.estimator."
) -> dict[str, torch.Tensor]:
    """Upstream ``Transformer1DModel`` weights (keys under ``prefix``) -> ``DiT1d`` state dict.

    Names already match; only the prefix is stripped and the fixed ``pos_embed.pe`` table dropped (positions
    are recomputed for any length; upstream's table is the same sinusoid).
    """
    out = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"no key starts with {prefix!r}: not a ReasoningCodec flow-matching estimator")
    out.pop("pos_embed.pe", None)
    return out
