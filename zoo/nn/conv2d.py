"""Convolutional building blocks of VQGAN-family image autoencoders, written once for every model.

Encoders reduce resolution by 2 per stage (``len(channel_mult) - 1`` times); decoders mirror them.
GroupNorm + SiLU pre-activation residual blocks, single-head spatial self-attention.

Two styles share the builders. ``"taming"`` (LDM, LlamaGen, MAR) has biased convs, a 1x1 projection of
the block input when widths change, strided-conv downsampling and attention in the middle block.
``"maskgit"`` (MaskGIT's VQGAN, which MAGE ports and KARL builds on) has bias-free block convs, no
attention anywhere, average-pool downsampling, a bias-free input conv and a 1x1 output conv in the
encoder, and, when widths change, a residual ``h + W h`` of the block's own output that drops its
input (MaskGIT's JAX code overwrites ``x`` before projecting it; its weights depend on that).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(groups, channels), num_channels=channels, eps=eps, affine=True)


STYLES = ("taming", "maskgit")


def _check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return style


class ResBlock2d(nn.Module):
    """``x + conv(silu(norm(conv(silu(norm(x))))))``, with a 1x1 projection when channels change.

    ``style="maskgit"``: bias-free convs, and when channels change ``h + W h`` (see the module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dropout: float = 0.0,
        norm_groups: int = 32,
        style: str = "taming",
    ) -> None:
        super().__init__()
        self.maskgit = _check_style(style) == "maskgit"
        bias = not self.maskgit
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        if in_channels == out_channels:
            self.skip = nn.Identity()
        elif self.maskgit:
            self.skip = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.maskgit and not isinstance(self.skip, nn.Identity):
            return h + self.skip(h)
        return self.skip(x) + h


class Attention2d(nn.Module):
    """Single-head self-attention over all positions of a feature map, residual."""

    def __init__(self, channels: int, *, norm_groups: int = 32) -> None:
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, 1, HW, C]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample2d(nn.Module):
    """Stride-2 3x3 conv after padding one row/column at the bottom/right (VQGAN's asymmetric pad)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class AvgDownsample2d(nn.Module):
    """2x2 average pooling (MaskGIT's encoder); no parameters."""

    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2, 2)


class Upsample2d(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Stage2d(nn.Module):
    """One resolution level: residual blocks, each optionally followed by attention, then a resampler."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_blocks: int,
        attention: bool,
        resample: type[nn.Module] | None,
        dropout: float,
        norm_groups: int,
        style: str = "taming",
    ) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock2d(
                in_channels if i == 0 else out_channels,
                out_channels,
                dropout=dropout,
                norm_groups=norm_groups,
                style=style,
            )
            for i in range(num_blocks)
        )
        self.attn = nn.ModuleList(
            Attention2d(out_channels, norm_groups=norm_groups) for _ in range(num_blocks if attention else 0)
        )
        self.resample = resample(out_channels) if resample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        return self.resample(x)


class MidBlock2d(nn.Module):
    """Residual block, attention, residual block at the lowest resolution (no attention for maskgit)."""

    def __init__(self, channels: int, *, dropout: float, norm_groups: int, style: str = "taming") -> None:
        super().__init__()
        blocks = {"dropout": dropout, "norm_groups": norm_groups, "style": style}
        self.res1 = ResBlock2d(channels, channels, **blocks)
        self.attn = Attention2d(channels, norm_groups=norm_groups) if style == "taming" else nn.Identity()
        self.res2 = ResBlock2d(channels, channels, **blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res2(self.attn(self.res1(x)))


def _stages(
    in_channels: int,
    widths: Sequence[int],
    num_blocks: int,
    attention_stages: Sequence[int],
    resample: type[nn.Module],
    *,
    dropout: float,
    norm_groups: int,
    style: str = "taming",
) -> nn.ModuleList:
    """One `Stage2d` per width; every stage but the last ends with ``resample``."""
    return nn.ModuleList(
        Stage2d(
            in_channels if i == 0 else widths[i - 1],
            width,
            num_blocks=num_blocks,
            attention=i in attention_stages,
            resample=resample if i < len(widths) - 1 else None,
            dropout=dropout,
            norm_groups=norm_groups,
            style=style,
        )
        for i, width in enumerate(widths)
    )


class ConvEncoder2d(nn.Module):
    """Image -> feature map at ``1 / 2**(len(channel_mult) - 1)`` resolution.

    Args:
        channel_mult: width multiplier of ``channels`` per stage; every stage but the last halves the size.
        attention_stages: indices of stages whose residual blocks are followed by attention.
        style: ``"taming"`` or ``"maskgit"`` (see the module docstring).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        out_channels: int,
        attention_stages: Sequence[int],
        dropout: float = 0.0,
        norm_groups: int = 32,
        style: str = "taming",
    ) -> None:
        super().__init__()
        maskgit = _check_style(style) == "maskgit"
        widths = [channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1, bias=not maskgit)
        self.stages = _stages(
            channels,
            widths,
            num_res_blocks,
            attention_stages,
            AvgDownsample2d if maskgit else Downsample2d,
            dropout=dropout,
            norm_groups=norm_groups,
            style=style,
        )
        self.mid = MidBlock2d(widths[-1], dropout=dropout, norm_groups=norm_groups, style=style)
        self.norm_out = group_norm(widths[-1], norm_groups)
        kernel = 1 if maskgit else 3
        self.conv_out = nn.Conv2d(widths[-1], out_channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class ConvDecoder2d(nn.Module):
    """Feature map -> image, mirroring `ConvEncoder2d`; stages run from low to high resolution.

    Args:
        channel_mult: the encoder's multipliers (the decoder walks them in reverse).
        attention_stages: indices (in decoder order, 0 = lowest resolution) of stages with attention.
        style: ``"taming"`` or ``"maskgit"`` (see the module docstring).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        out_channels: int,
        attention_stages: Sequence[int],
        dropout: float = 0.0,
        norm_groups: int = 32,
        style: str = "taming",
    ) -> None:
        super().__init__()
        _check_style(style)
        widths = [channels * m for m in reversed(channel_mult)]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.mid = MidBlock2d(widths[0], dropout=dropout, norm_groups=norm_groups, style=style)
        self.stages = _stages(
            widths[0],
            widths,
            num_res_blocks,
            attention_stages,
            Upsample2d,
            dropout=dropout,
            norm_groups=norm_groups,
            style=style,
        )
        self.norm_out = group_norm(widths[-1], norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(x))
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(F.silu(self.norm_out(x)))
