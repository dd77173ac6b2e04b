"""ResTok: a 1D image tokenizer with hierarchical residuals (coarse-to-fine token levels 1, 1, 2, ..., 64).

Paper: "ResTok: Learning Hierarchical Residuals in 1D Visual Tokenizers for Autoregressive Image
Generation", arXiv:2601.03955. Upstream: Kwai-Kolors/ResTok @ e0059cb, ``modeling/restok.py`` and
``modeling/modules/blocks.py`` (Apache-2.0). Paper configuration: 256x256 images -> 128 ids over 8,192
l2-normalised codes of dimension 8, grouped into 8 levels of 1, 1, 2, 4, 8, 16, 32, 64 tokens; rFID 1.28
on ImageNet val at 256 px.

How it works:
- a CNN stem (MaskGIT-VQGAN encoder) turns the ImageNet-normalised image into a 16x16 grid that a 1x1
  conv widens to the ViT width;
- the latent tokens are not learned but pooled from that grid, level by level, each level pooling the
  residual the coarser levels left (VAR-style), plus a learned per-level embedding;
- inside the ViT encoder the image tokens are merged into coarser levels (every other token, three
  times at the paper size) and the finer level keeps only the residual; a level-causal mask lets a
  token see only tokens of its own or a coarser level, so latent level ``l`` never depends on finer
  latent levels. That is what makes a prefix of the 128 ids a complete coarser description;
- each latent level has its own projection to the 8-d code space (and back in the decoder);
- the ViT decoder reads the latents plus one learned query per output position and a CNN head
  (MaskGIT-VQGAN decoder) renders RGB;
- training drops the tail of the sequence (nested dropout: kept lengths 4..128, 80% keep all) and
  aligns the coarsest image level and an extra decoder stream with a frozen DINO teacher.

Differences from upstream, none of which change outputs:
- the per-level 1x1 convs around the quantizer and the teacher projections are ``nn.Linear`` (the
  converter squeezes their kernels); the unused key bias of attention is not kept;
- the semantic teacher is created with ``pretrained=False`` and only ever loaded from
  ``teacher_weights``; it is not part of the state dict;
- images enter and leave in ``[0, 1]`` (as upstream; ImageNet normalisation happens inside).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.transformer import TransformerBlock, rope_angles
from ...quantizers import VectorQuantizer
from ...tokenizer import ImageTokenizer, TokenizerOutput
from ...tokens import Tokens

__all__: list[str] = ["ResTok", "convert_restok", "latent_levels"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------- levels
def latent_levels(num_tokens: int) -> list[int]:
    """Level sizes ``[1, 1, 2, 4, ..., n/2]`` of ``n`` (a power of two) latent tokens.

    Prefix lengths 1, 2, 4, ..., n are the nested lengths: every prefix ending on a level boundary is a
    complete (coarser) description of the image.
    """
    if num_tokens < 2 or num_tokens & (num_tokens - 1):
        raise ValueError(f"ResTok needs a power-of-two number (>= 2) of latent tokens, got {num_tokens}")
    return [1] + [1 << i for i in range(int(math.log2(num_tokens)))]


def level_grid(size: int) -> tuple[int, int]:
    """The pooling grid of a level of ``size`` tokens: square, or twice as wide as high."""
    h = 1 << (int(math.log2(size)) // 2)
    return h, size // h


def pool_levels(grid: torch.Tensor, levels: list[int], residual: bool) -> torch.Tensor:
    """Area-pool ``grid [B, C, H, W]`` into each level's grid; ``[B, sum(levels), C]``.

    With ``residual`` each level pools what the coarser levels (nearest-upsampled) have not explained.
    """
    rest, out = grid, []
    for size in levels:
        pooled = F.interpolate(rest, size=level_grid(size), mode="area")
        out.append(pooled.flatten(2).transpose(1, 2))
        if residual:
            rest = rest - F.interpolate(pooled, size=grid.shape[-2:], mode="nearest")
    return torch.cat(out, dim=1)


def level_causal_mask(block_sizes: list[int], device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``[N, N]`` mask: a token attends to tokens of its own or an earlier (coarser) block."""
    level = torch.repeat_interleave(torch.arange(len(block_sizes), device=device), torch.tensor(block_sizes))
    return level[:, None] >= level[None, :]


# ---------------------------------------------------------------------------------------------- CNN stem/head
class _ResBlock(nn.Module):
    """MaskGIT-VQGAN residual block. When the width changes, the 1x1 shortcut is applied to the
    block's *output* (out -> out channels) rather than its input: upstream does this and its
    checkpoints were trained that way, so it is kept."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.nin_shortcut = nn.Conv2d(cout, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(h))


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, groups: int, upsample: bool = False) -> None:
        super().__init__()
        self.block = nn.ModuleList([_ResBlock(cin if i == 0 else cout, cout, groups) for i in range(blocks)])
        if upsample:
            self.upsample_conv = nn.Conv2d(cout, cout, 3, padding=1)


class PixelEncoder(nn.Module):
    """MaskGIT-VQGAN encoder (no attention; average-pool downsampling): ``[B, 3, H, W] -> [B, z, H/f, W/f]``."""

    def __init__(
        self, channels: int, mult: tuple[int, ...], blocks: int, z_channels: int, groups: int
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        widths = [channels * m for m in (1, *mult)]
        self.down = nn.ModuleList(
            [_Stage(widths[i], widths[i + 1], blocks, groups) for i in range(len(mult))]
        )
        self.mid = nn.ModuleList([_ResBlock(widths[-1], widths[-1], groups) for _ in range(blocks)])
        self.norm_out = nn.GroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, stage in enumerate(self.down):
            for block in stage.block:
                h = block(h)
            if i < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class PixelDecoder(nn.Module):
    """MaskGIT-VQGAN decoder (nearest upsampling + 3x3 conv): ``[B, z, h, w] -> [B, 3, h*f, w*f]``."""

    def __init__(
        self, channels: int, mult: tuple[int, ...], blocks: int, z_channels: int, groups: int
    ) -> None:
        super().__init__()
        top = channels * mult[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        self.mid = nn.ModuleList([_ResBlock(top, top, groups) for _ in range(blocks)])
        # indexed by resolution level (0 = full resolution), run from the coarsest down, as upstream
        self.up = nn.ModuleList(
            [
                _Stage(
                    channels * (mult[i + 1] if i + 1 < len(mult) else mult[-1]),
                    channels * mult[i],
                    blocks,
                    groups,
                    i > 0,
                )
                for i in range(len(mult))
            ]
        )
        self.norm_out = nn.GroupNorm(groups, channels * mult[0], eps=1e-6)
        self.conv_out = nn.Conv2d(channels * mult[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for i in reversed(range(len(self.up))):
            for block in self.up[i].block:
                h = block(h)
            if i > 0:
                h = self.up[i].upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


# ---------------------------------------------------------------------------------------------- ViT halves
class ResTokEncoder(nn.Module):
    """ViT over ``[image tokens ; latent tokens]`` with hierarchical residual merging of image tokens."""

    def __init__(
        self,
        *,
        in_channels: int,
        patch_size: int,
        width: int,
        depth: int,
        heads: int,
        levels: list[int],
        codebook_dim: int,
        hierarchy_stages: int,
        residual_image_tokens: bool,
        residual_latent_tokens: bool,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(width, heads, 4.0, True, 1e-5, qk_norm=True, layer_scale=1.0)
                for _ in range(depth)
            ]
        )
        self.ln_post = nn.LayerNorm(width)
        # merge after blocks depth/stages - 1, 2*depth/stages - 1, ... (5, 11, 17 at 24 blocks, 4 stages)
        self.merge_after = [int(i / hierarchy_stages * depth) - 1 for i in range(1, hierarchy_stages)]
        scale = width**-0.5
        self.level_embedding = nn.ParameterList(
            [nn.Parameter(scale * torch.randn(1, width)) for _ in range(len(self.merge_after) + 1)]
        )
        self.latent_token_level_embedding = nn.ParameterList(
            [nn.Parameter(scale * torch.randn(1, width)) for _ in levels]
        )
        self.quant_proj = nn.ModuleList([nn.Linear(width, codebook_dim) for _ in levels])
        self.levels = levels
        self.heads = heads
        self.residual_image_tokens = residual_image_tokens
        self.residual_latent_tokens = residual_latent_tokens

    def _rope(self, grids: list[tuple[int, int]], num_latents: int, device: torch.device) -> torch.Tensor:
        """2D positions: every image level gets its own (row, col) grid, offset past the previous
        levels; latent ``i`` sits on the diagonal ``(i, i)`` after all image tokens."""
        pos, offset = [], 0
        for h, w in grids:
            rows, cols = torch.meshgrid(
                torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
            )
            pos.append(torch.stack((rows, cols), -1).reshape(-1, 2) + offset)
            offset += h * w
        pos.append(torch.arange(num_latents, device=device)[:, None].expand(-1, 2) + offset)
        return rope_angles(torch.cat(pos), self.blocks[0].attn.head_dim)

    def forward(self, grid: torch.Tensor, legacy_layout: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``grid [B, C, h, w]`` -> (codes ``[B, D, L]`` before quantization, coarsest image level
        ``[B, n, width]`` for semantic alignment)."""
        x = self.patch_embed(grid)
        b, width, h, w = x.shape
        latents = pool_levels(x, self.levels, self.residual_latent_tokens)
        latents = latents + torch.cat(
            [e.expand(n, -1) for e, n in zip(self.latent_token_level_embedding, self.levels, strict=True)]
        )
        num_latents = latents.shape[1]
        n_img = h * w
        x = torch.cat([x.flatten(2).transpose(1, 2) + self.level_embedding[0], latents], dim=1)
        x = self.ln_pre(x)
        image_blocks, grids = [n_img], [(h, w)]
        mask = level_causal_mask(image_blocks + self.levels, x.device)
        rope = self._rope(grids, num_latents, x.device)
        for i, block in enumerate(self.blocks):
            x = block.attend(x, mask, rope)
            if i in self.merge_after:
                if n_img % 2:
                    raise ValueError(f"cannot halve {n_img} image tokens at block {i}")
                fine = x[:, :n_img]
                coarse = F.interpolate(fine.transpose(1, 2), size=n_img // 2, mode="nearest").transpose(1, 2)
                if self.residual_image_tokens:
                    fine = fine - F.interpolate(coarse.transpose(1, 2), size=n_img, mode="nearest").transpose(
                        1, 2
                    )
                x = torch.cat([coarse, fine, x[:, n_img:]], dim=1)
            x = block.feed_forward(x)
            if i in self.merge_after:
                n_img //= 2
                image_blocks.insert(0, n_img)
                grids.insert(0, (grids[0][0], grids[0][1] // 2))
                level = len(image_blocks) - 1
                x = torch.cat([x[:, :n_img] + self.level_embedding[level], x[:, n_img:]], dim=1)
                mask = level_causal_mask(image_blocks + self.levels, x.device)
                rope = self._rope(grids, num_latents, x.device)
        coarsest = x[:, : image_blocks[0]]
        lat = self.ln_post(x[:, -num_latents:])
        if legacy_layout:
            # Upstream reinterprets the [B, L, C] memory as [B, C, L] (a reshape, not a transpose) before
            # its per-level 1x1 convs; released weights were trained through that fixed permutation.
            lat = lat.reshape(b, width, num_latents).transpose(1, 2)
        codes, start = [], 0
        for proj, n in zip(self.quant_proj, self.levels, strict=True):
            codes.append(proj(lat[:, start : start + n]))
            start += n
        return torch.cat(codes, dim=1).transpose(1, 2), coarsest


class ResTokDecoder(nn.Module):
    """ViT over ``[latents ; one learned query per output position (; a second query stream)]``."""

    def __init__(
        self,
        *,
        width: int,
        depth: int,
        heads: int,
        levels: list[int],
        codebook_dim: int,
        out_channels: int,
        patch_size: int,
        feature_stream: bool,
    ) -> None:
        super().__init__()
        scale = width**-0.5
        self.latent_mask_token = nn.Parameter(scale * torch.randn(1, 1, codebook_dim))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.feat_mask_token = nn.Parameter(scale * torch.randn(1, 1, width)) if feature_stream else None
        self.decoder_embed = nn.ModuleList([nn.Linear(codebook_dim, width) for _ in levels])
        self.latent_token_level_embedding = nn.ParameterList(
            [nn.Parameter(scale * torch.randn(1, width)) for _ in levels]
        )
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(width, heads, 4.0, True, 1e-5, qk_norm=True, layer_scale=1.0)
                for _ in range(depth)
            ]
        )
        self.ln_post = nn.LayerNorm(width)
        self.patch_size = patch_size
        if out_channels:  # into the CNN head
            self.ffn = nn.Conv2d(width, out_channels, 1)
            self.conv_out = None
        else:  # RGB patches directly (the tiny size)
            self.ffn = nn.Conv2d(width, patch_size * patch_size * 3, 1)
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)
        self.levels = levels

    def forward(
        self, codes: torch.Tensor, grid: tuple[int, int], feature_stream: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``codes [B, L, D]`` (dropped positions already replaced) -> (pixels or CNN input
        ``[B, C, h, w]``, feature-stream tokens ``[B, h*w, width]`` when requested)."""
        b, num_latents, _ = codes.shape
        parts, start = [], 0
        for embed, level_emb, n in zip(
            self.decoder_embed, self.latent_token_level_embedding, self.levels, strict=True
        ):
            parts.append(embed(codes[:, start : start + n]) + level_emb)
            start += n
        latents = torch.cat(parts, dim=1)
        h, w = grid
        queries = self.mask_token.expand(b, h * w, -1)
        if feature_stream:
            latents = torch.cat([latents, latents])
            queries = torch.cat([queries, self.feat_mask_token.expand(b, h * w, -1)])
        x = self.ln_pre(torch.cat([latents, queries], dim=1))
        # latents first on the diagonal, then the image grid offset past them
        rows, cols = torch.meshgrid(
            torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
        )
        pos = torch.cat(
            [
                torch.arange(num_latents, device=x.device)[:, None].expand(-1, 2),
                torch.stack((rows, cols), -1).reshape(-1, 2) + num_latents,
            ]
        )
        rope = rope_angles(pos, self.blocks[0].attn.head_dim)
        for block in self.blocks:
            x = block(x, None, rope)
        x = x[:, num_latents:]
        features = None
        if feature_stream:
            x, features = x.chunk(2)
        x = self.ln_post(x).transpose(1, 2).reshape(b, -1, h, w)
        x = self.ffn(x)
        if self.conv_out is not None:
            p = self.patch_size
            x = x.view(b, p, p, 3, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, 3, h * p, w * p)
            x = self.conv_out(x)
        return x, features


# ---------------------------------------------------------------------------------------------- tokenizer
class ResTok(ImageTokenizer):
    """ResTok: hierarchical residual 1D tokenizer (ViT encoder/decoder with CNN stem and head).

    Args:
        resolution: image size (square); the token count does not depend on it, the grid does.
        cnn: MaskGIT-VQGAN stem and head around the ViTs (paper); otherwise a ``patch_size`` patchify
            stem and a linear RGB-patch head (tiny size).
        cnn_channels, cnn_mult, cnn_res_blocks, cnn_z_channels, norm_groups: the CNN's shape.
        patch_size: patchify size when ``cnn`` is off (with it, downsampling is ``2**(len(cnn_mult)-1)``).
        width, depth, heads: encoder ViT; ``decoder_depth``/``decoder_heads`` default to them.
        num_latent_tokens: a power of two; levels are ``1, 1, 2, ..., n/2``.
        num_min_tokens: shortest length nested dropout keeps.
        drop_prob: probability of dropping a tail in training (weights 1:2:4:... over shorter lengths).
        hierarchy_stages: image-token levels; ``stages - 1`` merges spread evenly over the encoder.
        residual_image_tokens, residual_latent_tokens: the residual variants (paper: both on).
        legacy_latent_layout: reproduce upstream's reshape-as-transpose before the level projections
            (needed for its weights; off for models trained here from scratch if preferred).
        codebook_size, codebook_dim, commitment_weight: l2-normalised VQ.
        restart_threshold: dead-code restarts (not upstream; helps the tiny size).
        teacher: timm model name of the frozen semantic teacher (DINO family); built with
            ``pretrained=False`` plus ``teacher_kwargs``.
        teacher_dim: the teacher's feature width; 0 disables alignment and its parameters.
        teacher_weights: local file with the teacher's weights; without it alignment is off (weight 0,
            its projections frozen) and a warning is logged when training starts. Nothing is downloaded.
        align_weight, align_margin: loss ``weight * relu(1 - margin - cos)`` for the encoder (coarsest
            image level vs. the teacher's class token) plus the decoder's feature stream (vs. patches).
    """

    # ResTok's extract_codes_c2i.py (the codes its HAR generator trains on) uses ADM's centre crop;
    # prepare(resize="bicubic") gives the zoo's earlier one-step float bicubic instead.
    resize = "adm"

    def __init__(
        self,
        *,
        resolution: int = 256,
        cnn: bool = True,
        cnn_channels: int = 128,
        cnn_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        cnn_res_blocks: int = 2,
        cnn_z_channels: int = 256,
        norm_groups: int = 32,
        patch_size: int = 16,
        width: int = 1024,
        depth: int = 24,
        heads: int = 16,
        decoder_depth: int | None = None,
        decoder_heads: int | None = None,
        num_latent_tokens: int = 128,
        num_min_tokens: int = 4,
        drop_prob: float = 0.2,
        hierarchy_stages: int = 4,
        residual_image_tokens: bool = True,
        residual_latent_tokens: bool = True,
        legacy_latent_layout: bool = True,
        codebook_size: int = 8192,
        codebook_dim: int = 8,
        commitment_weight: float = 0.25,
        restart_threshold: float = 0.0,
        teacher: str = "vit_large_patch16_dinov3",
        teacher_kwargs: dict[str, Any] | None = None,
        teacher_dim: int = 1024,
        teacher_weights: str | None = None,
        align_weight: float = 1.0,
        align_margin: float = 0.25,
    ) -> None:
        super().__init__()
        cnn_mult = tuple(cnn_mult)
        self.resolution = resolution
        self.cnn = cnn
        self.downsample = 2 ** (len(cnn_mult) - 1) if cnn else patch_size
        self.levels = latent_levels(num_latent_tokens)
        self.num_latent_tokens = num_latent_tokens
        lengths = [1 << i for i in range(int(math.log2(num_latent_tokens)) + 1)]
        self.nested_lengths = [n for n in lengths if n >= num_min_tokens]
        k = len(self.nested_lengths)
        if drop_prob > 0 and k > 1:
            weights = [2.0**i for i in range(k - 1)]
            weights.append(sum(weights) * (int(1 / drop_prob) - 1))
        else:
            weights = [0.0] * (k - 1) + [1.0]
        self.nested_probs = [w / sum(weights) for w in weights]
        self.legacy_latent_layout = legacy_latent_layout
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        cnn_args = (cnn_channels, cnn_mult, cnn_res_blocks, cnn_z_channels, norm_groups)
        self.pixel_encoder = PixelEncoder(*cnn_args) if cnn else None
        self.encoder = ResTokEncoder(
            in_channels=cnn_z_channels if cnn else 3,
            patch_size=1 if cnn else patch_size,
            width=width,
            depth=depth,
            heads=heads,
            levels=self.levels,
            codebook_dim=codebook_dim,
            hierarchy_stages=hierarchy_stages,
            residual_image_tokens=residual_image_tokens,
            residual_latent_tokens=residual_latent_tokens,
        )
        self.quantizer = VectorQuantizer(
            codebook_dim,
            codebook_size,
            l2_norm=True,
            commitment_weight=commitment_weight,
            restart_threshold=restart_threshold,
        )
        self.decoder = ResTokDecoder(
            width=width,
            depth=decoder_depth or depth,
            heads=decoder_heads or heads,
            levels=self.levels,
            codebook_dim=codebook_dim,
            out_channels=cnn_z_channels if cnn else 0,
            patch_size=patch_size,
            feature_stream=teacher_dim > 0,
        )
        self.pixel_decoder = PixelDecoder(*cnn_args) if cnn else None
        self.apply(_init_weights)

        self.teacher_name = teacher
        self.teacher_kwargs = dict(teacher_kwargs or {})
        self.teacher_weights = teacher_weights
        self.align_weight = align_weight
        self.align_margin = align_margin
        self.vf_proj = self.vf_proj_dec = None
        if teacher_dim > 0:
            self.vf_proj = nn.Linear(width, teacher_dim, bias=False)
            self.vf_proj_dec = nn.Linear(width, teacher_dim, bias=False)
            nn.init.trunc_normal_(self.vf_proj.weight, std=0.02)
            nn.init.trunc_normal_(self.vf_proj_dec.weight, std=0.02)
            if not teacher_weights or align_weight <= 0:
                # Nothing would train these; freezing keeps "every trainable parameter gets a gradient".
                for p in (
                    *self.vf_proj.parameters(),
                    *self.vf_proj_dec.parameters(),
                    self.decoder.feat_mask_token,
                ):
                    p.requires_grad_(False)
        self._teacher: list[nn.Module] = []  # a list keeps the frozen teacher out of state_dict/parameters
        self._warned_no_teacher = False

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantizer.codebook_size,)

    @property
    def aligning(self) -> bool:
        """Whether training adds the semantic alignment loss (teacher configured, weights given)."""
        return self.vf_proj is not None and bool(self.teacher_weights) and self.align_weight > 0

    def token_layout(self) -> dict[str, Any]:
        return {
            "grid": [self.num_latent_tokens],
            "tokens_per_item": self.num_latent_tokens,
            "levels": list(self.levels),
            "codebook_sizes": list(self.codebook_sizes),
            "bits_per_token": self.bits_per_token,
            "resolution": self.resolution,
        }

    def check_images(self, x: torch.Tensor) -> None:
        super().check_images(x)
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(
                f"ResTok's latent levels are pooled from a fixed grid: images must be "
                f"{self.resolution}x{self.resolution}, got {x.shape[-2]}x{x.shape[-1]} (resize or crop first)"
            )

    def last_layer(self) -> torch.Tensor:
        return (self.pixel_decoder or self.decoder).conv_out.weight

    # ------------------------------------------------------------------ pieces
    def _grid(self) -> tuple[int, int]:
        return self.resolution // self.downsample, self.resolution // self.downsample

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x - self.pixel_mean) / self.pixel_std
        stem = self.pixel_encoder(x) if self.pixel_encoder is not None else x
        return self.encoder(stem, self.legacy_latent_layout)

    def _decode(
        self, codes: torch.Tensor, keep: torch.Tensor | None, feature_stream: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``codes [B, D, L]``; ``keep [B, L]`` marks kept positions (others get the learned mask token)."""
        codes = codes.transpose(1, 2)
        if keep is not None:
            codes = torch.where(keep[..., None], codes, self.decoder.latent_mask_token.to(codes.dtype))
        out, features = self.decoder(codes, self._grid(), feature_stream)
        if self.pixel_decoder is not None:
            with torch.autocast(out.device.type, enabled=False):  # the CNN head runs in fp32, as upstream
                out = self.pixel_decoder(out.float())
        return out, features

    def _sample_keep(self, batch: int, device: torch.device) -> torch.Tensor:
        """Nested dropout: a per-sample kept prefix length drawn from ``nested_lengths``."""
        choice = torch.multinomial(torch.tensor(self.nested_probs), batch, replacement=True)
        lengths = torch.tensor(self.nested_lengths, device=choice.device)[choice].to(device)
        return torch.arange(self.num_latent_tokens, device=device)[None] < lengths[:, None]

    def drop_alignment(self) -> None:
        """Remove the teacher projections and the decoder's feature queries, as ``teacher_dim=0`` builds
        the model. Upstream's inference config (``configs/infer/ResTok/*.yaml``) turns feature supervision
        off, so checkpoints saved from it lack these three tensors; the converter calls this for them."""
        self.vf_proj = self.vf_proj_dec = None
        self.decoder.feat_mask_token = None
        self.update_config(teacher_dim=0)

    def _teacher_model(self) -> nn.Module:
        if not self._teacher:
            import timm

            from ...hub import read_state_dict

            model = timm.create_model(
                self.teacher_name, pretrained=False, num_classes=0, **self.teacher_kwargs
            )
            state = read_state_dict(Path(str(self.teacher_weights)))
            missing, _ = model.load_state_dict(state, strict=False)
            if missing:
                raise KeyError(f"teacher weights {self.teacher_weights} lack {missing[:5]}...")
            self._teacher.append(model.eval().requires_grad_(False))
        teacher = self._teacher[0]
        return teacher.to(self.device)

    @torch.no_grad()
    def _teacher_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher class token ``[B, D]`` and patch features ``[B, h*w, D]`` resampled to the decoder grid."""
        teacher = self._teacher_model()
        feats = teacher.forward_features((x - self.pixel_mean) / self.pixel_std)
        cls, patches = feats[:, 0], feats[:, teacher.num_prefix_tokens :]
        side = math.isqrt(patches.shape[1])
        grid = self._grid()
        if (side, side) != grid:
            patches = patches.transpose(1, 2).reshape(len(x), -1, side, side)
            patches = (
                F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
                .flatten(2)
                .transpose(1, 2)
            )
        return cls.float(), patches.float()

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor, num_tokens: int | None = None) -> TokenizerOutput:
        """Reconstruct ``x`` ([B, 3, H, W] in [0, 1]); in training with nested dropout and alignment.

        ``num_tokens`` decodes only that prefix (evaluation of coarser descriptions).
        """
        self.check_images(x)
        z, coarsest = self._encode(x)
        q = self.quantizer(z)
        keep = None
        if num_tokens is not None:
            keep = (torch.arange(self.num_latent_tokens, device=x.device) < num_tokens)[None].expand(
                len(x), -1
            )
        elif self.training:
            keep = self._sample_keep(len(x), x.device)
        if self.training and self.vf_proj is not None and not self.aligning and not self._warned_no_teacher:
            log.warning(
                "ResTok: no teacher_weights given; training without semantic alignment (weight 0). "
                "Pass teacher_weights=<path to %s weights> to enable it.",
                self.teacher_name,
            )
            self._warned_no_teacher = True
        align = self.training and self.aligning
        recon, features = self._decode(q.quantized, keep, feature_stream=align)
        losses = dict(q.losses)
        stats = dict(q.stats)
        if align:
            cls, patches = self._teacher_features(x)
            enc_cos = F.cosine_similarity(self.vf_proj(coarsest).mean(1), cls, dim=-1)
            dec_cos = F.cosine_similarity(self.vf_proj_dec(features), patches, dim=-1)
            hinge = 1 - self.align_margin
            losses["semantic/align"] = self.align_weight * (
                F.relu(hinge - enc_cos).mean() + F.relu(hinge - dec_cos).mean()
            )
            stats["semantic/enc_cos"] = enc_cos.mean().detach()
            stats["semantic/dec_cos"] = dec_cos.mean().detach()
        if keep is not None:
            stats["kept_tokens"] = keep.float().sum(1).mean()
        return TokenizerOutput(recon=recon, ids=q.ids, latents=z, losses=losses, stats=stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Tokens:
        """Images ``[B, 3, R, R]`` in ``[0, 1]`` -> ids ``[B, L]``, coarse to fine; ``meta["levels"]``
        gives the level sizes (1, 1, 2, ...) so generators can split the sequence."""
        self.check_images(x)
        ids = self.quantizer.encode(self._encode(x)[0])
        return self.make_tokens(
            ids=ids,
            grid=(self.num_latent_tokens,),
            codebook_sizes=self.codebook_sizes,
            meta={"image_size": list(x.shape[-2:]), "levels": list(self.levels)},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Ids ``[B, n]`` -> images ``[B, 3, R, R]`` (unclamped). ``n`` may be shorter than the full
        length, and ids of -1 mark dropped positions: both are filled with the learned mask token,
        which is how the model was trained to decode a coarser prefix."""
        ids = self.decodable_ids(tokens, 1, allow_padding=True)
        if ids.shape[1] > self.num_latent_tokens:
            raise ValueError(f"{ids.shape[1]} ids, but the model has {self.num_latent_tokens} latent tokens")
        ids = F.pad(ids, (0, self.num_latent_tokens - ids.shape[1]), value=-1)
        codes = self.quantizer.lookup(ids).to(self.encoder.ln_post.weight.dtype)
        return self._decode(codes, ids >= 0)[0]


def _init_weights(module: nn.Module) -> None:
    """Upstream's initialisation: truncated normal (std 0.02) linear/conv weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------- converter
_DROPPED_PREFIXES = ("foundation_model.", "loss.", "imnet_mean", "imnet_std", "quantize.embed_prob")
_TEACHER_KEYS = ("vf_proj.weight", "vf_proj_dec.weight", "decoder.feat_mask_token")


def convert_restok(
    state_dict: Mapping[str, torch.Tensor], model: ResTok | None = None
) -> dict[str, torch.Tensor]:
    """Map an upstream ``ResTok`` state dict (``model.safetensors`` or ``pytorch_model.bin``) onto `ResTok`.

    Strips ``_orig_mod.``/``module.`` prefixes (torch.compile/DDP), drops the frozen foundation model
    and the attention's constant key bias, squeezes the 1x1 conv kernels that became ``nn.Linear`` and
    renames the codebook. The teacher projections and feature queries are dropped when ``model`` has
    none (``teacher_dim=0``); a checkpoint that lacks all three (saved from upstream's inference config,
    which turns feature supervision off) makes ``model`` drop them too, as if built with ``teacher_dim=0``.
    Any other unknown key is kept, so strict loading reports it.
    """
    names = {key.replace("_orig_mod.", "").removeprefix("module.") for key in state_dict}
    if model is not None and model.vf_proj is not None and not names & set(_TEACHER_KEYS):
        model.drop_alignment()
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.replace("_orig_mod.", "").removeprefix("module.")
        if key.startswith(_DROPPED_PREFIXES) or key.endswith(".attn.k_bias"):
            continue
        if key in _TEACHER_KEYS and model is not None and model.vf_proj is None:
            continue
        if key.startswith("encoder.conv_out."):
            key = key.replace("encoder.conv_out.", "encoder.quant_proj.")
        if key.startswith(("encoder.quant_proj.", "vf_proj.", "vf_proj_dec.")) and value.ndim == 4:
            value = value.flatten(1)
        if key == "quantize.embedding.weight":
            key = "quantizer.codebook"
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "resolution": 32,
    "cnn": False,
    "patch_size": 4,
    "width": 64,
    "depth": 4,
    "heads": 4,
    "num_latent_tokens": 16,
    "num_min_tokens": 2,
    "hierarchy_stages": 2,
    "legacy_latent_layout": False,
    "codebook_size": 256,
    "restart_threshold": 0.1,
    "teacher": "vit_tiny_patch16_224",
    "teacher_kwargs": {"img_size": 32, "patch_size": 4, "depth": 1},
    "teacher_dim": 0,
}


@register_model(modality="image", family="restok")
def restok(**kwargs: Any) -> ResTok:
    """ResTok-L at the paper size: 256 px -> 128 ids in levels 1, 1, 2, ..., 64 over 8,192 codes of dim 8."""
    return build(ResTok, "restok", _PAPER, kwargs)


@register_model(modality="image", family="restok", size="tiny")
def restok_tiny(**kwargs: Any) -> ResTok:
    """A CPU-sized ResTok: 32 px, p4 patchify (no CNN), width 64, 4+4 blocks, 16 ids in levels 1, 1, 2, 4, 8."""
    return build(ResTok, "restok_tiny", _TINY, kwargs)


register_pretrained(
    "restok.l_128_in1k",
    PretrainedCfg(
        hf_hub_id="xushu-me/restok_l_128.r256_in1k",
        filename="model.safetensors",
        converter="convert_restok",
        license="apache-2.0",
        paper="arXiv:2601.03955",
        upstream="https://github.com/Kwai-Kolors/ResTok @ e0059cbae1858a9da66e4ba32d4db686a5db4996",
        description="ResTok-L (128 hierarchical 1D tokens) trained on ImageNet-1k at 256 px (EMA, step 750k).",
        metrics={"rFID (ImageNet val, 256px)": 1.28},
    ),
)
