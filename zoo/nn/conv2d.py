"""Convolutional building blocks of VQGAN-family image autoencoders, written once for every model.

Encoders reduce resolution by 2 per stage (``len(channel_mult) - 1`` times); decoders mirror them.
GroupNorm + SiLU pre-activation residual blocks, single-head spatial self-attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(groups, channels), num_channels=channels, eps=eps, affine=True)


class ResBlock2d(nn.Module):
    """``x + conv(silu(norm(conv(silu(norm(x))))))``, with a 1x1 projection when channels change."""

    def __init__(
        self, in_channels: int, out_channels: int, *, dropout: float = 0.0, norm_groups: int = 32
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
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
    ) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock2d(
                in_channels if i == 0 else out_channels,
                out_channels,
                dropout=dropout,
                norm_groups=norm_groups,
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
    """Residual block, attention, residual block at the lowest resolution."""

    def __init__(self, channels: int, *, dropout: float, norm_groups: int) -> None:
        super().__init__()
        self.res1 = ResBlock2d(channels, channels, dropout=dropout, norm_groups=norm_groups)
        self.attn = Attention2d(channels, norm_groups=norm_groups)
        self.res2 = ResBlock2d(channels, channels, dropout=dropout, norm_groups=norm_groups)

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
        )
        for i, width in enumerate(widths)
    )


class ConvEncoder2d(nn.Module):
    """Image -> feature map at ``1 / 2**(len(channel_mult) - 1)`` resolution.

    Args:
        channel_mult: width multiplier of ``channels`` per stage; every stage but the last halves the size.
        attention_stages: indices of stages whose residual blocks are followed by attention.
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
    ) -> None:
        super().__init__()
        widths = [channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.stages = _stages(
            channels,
            widths,
            num_res_blocks,
            attention_stages,
            Downsample2d,
            dropout=dropout,
            norm_groups=norm_groups,
        )
        self.mid = MidBlock2d(widths[-1], dropout=dropout, norm_groups=norm_groups)
        self.norm_out = group_norm(widths[-1], norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

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
    ) -> None:
        super().__init__()
        widths = [channels * m for m in reversed(channel_mult)]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.mid = MidBlock2d(widths[0], dropout=dropout, norm_groups=norm_groups)
        self.stages = _stages(
            widths[0],
            widths,
            num_res_blocks,
            attention_stages,
            Upsample2d,
            dropout=dropout,
            norm_groups=norm_groups,
        )
        self.norm_out = group_norm(widths[-1], norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(x))
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(F.silu(self.norm_out(x)))
