"""ReTok: a flexible-length 1D image tokenizer with redundant token padding and hierarchical semantics.

Paper: "Improving Flexible Image Tokenizers for Autoregressive Image Generation" (ReTok), built on
GigaTok's hybrid tokenizer, arXiv:2601.01535 (per the upstream README). Upstream: zfu006/ReTok @ ffaa8a7, ``tokenizer/tokenizer_image/vq/``
(``vq_vit_model.py: VQVitModelPlus``, ``blocks.py``) with ``configs/vq/VQ_SB256.yaml``; the repository
ships no licence file. Paper
configuration ReTok-S-B: 256x256 image -> CNN (16x down) -> Q-Former encoder (width 512, 6 layers) ->
256 1D tokens over 16,384 l2-normalised codes of dimension 8 (rotation trick) -> Q-Former decoder
(width 768, 12 layers) -> CNN decoder with adaptive group norm and depth-to-space upsampling;
232,686,347 parameters (counted on upstream's own module built from that config); rFID 1.01.

Why the pieces exist:
- the encoder's queries are average pools of the image at growing resolutions (1, 1, 2, 4, ... cells), so
  early tokens start out global and later ones local: a prefix is a coarse description of the image;
- *redundant token padding*: the encoder also emits ``num_tokens - min_tokens`` copies of queries
  ``min_tokens..`` (own positional embeddings), and nested dropout keeps a random prefix of the
  extended sequence, so the tail of the real tokens is trained as often as the head;
- *hierarchical semantic regularisation*: an MLP on an early decoder layer is aligned to frozen DINOv2
  patch features, with a weight that falls as more tokens are kept (short prefixes must be semantic,
  long ones may spend capacity on detail). The released code has no schedule; ours is linear from 1 at
  ``min_tokens`` to ``semantic_tail_weight`` at the full extended length (an assumption).

``decode`` accepts any prefix of ``min_tokens..num_tokens`` tokens, per item via ``Tokens.lengths``.

Differences from upstream, none of which change outputs of the released weights:
- ``quant_conv`` / ``post_quant_conv`` are the quantizer's ``project_in`` / ``project_out`` linears;
- the 1x1 output conv of the Q-Former encoder is a linear; positional tables drop their singleton axis;
- the ``codebook_used`` buffer is replaced by per-batch usage statistics;
- images enter and leave in ``[0, 1]`` (the network still works in ``[-1, 1]``);
- nested dropout is implemented (the released training code always decodes all 256 tokens).
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
from ...errors import CheckpointError
from ...nn.conv2d import Downsample2d, ResBlock2d, Stage2d, group_norm
from ...nn.qformer import QFormerLayer
from ...quantizers import VectorQuantizer
from ...tokenizer import ImageTokenizer, TokenizerOutput
from ...tokens import Tokens

__all__: list[str] = ["ReTok", "convert_retok", "multilevel_pool"]

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


# ---------------------------------------------------------------------------------------------- helpers
def multilevel_pool(grid: torch.Tensor, num_queries: int) -> torch.Tensor:
    """Average pools of ``grid [B, C, H, W]`` at levels of 1, 1, 2, 4, ... cells -> ``[B, num_queries, C]``.

    Cells split first along the width, then alternately along height and width; each level is read
    row-major. ``num_queries`` must be a power of two (the levels sum to it).
    """
    levels = round(math.log2(num_queries))
    if 2**levels != num_queries:
        raise ValueError(f"num_queries must be a power of two, got {num_queries}")
    h, w = grid.shape[-2:]
    pooled = []
    for group in range(levels + 1):
        level = max(group - 1, 0)
        rows, cols = 2 ** (level // 2), 2 ** ((level + 1) // 2)
        if h % rows or w % cols:
            raise ValueError(f"a {h}x{w} grid cannot be split into {rows}x{cols} cells")
        pooled.append(F.avg_pool2d(grid, (h // rows, w // cols)).flatten(2).transpose(1, 2))
    return torch.cat(pooled, dim=1)


def depth_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """``[B, C*b*b, H, W] -> [B, C, H*b, W*b]`` in DCR order (block rows outermost in the channels),
    which is how upstream's upsampler convs are laid out (``pixel_shuffle`` uses CRD order)."""
    b, c, h, w = x.shape
    x = x.view(b, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c // block**2, h * block, w * block)


class DepthToSpaceUpsample(nn.Module):
    """3x3 conv to 4x the channels, then depth-to-space: a learned 2x upsampling without blur."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv(x), 2)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm whose scale and shift are linear maps of the per-channel std and mean of a style map
    (MAGVIT-v2): the CNN decoder sees global statistics of the Q-Former output at every level."""

    def __init__(
        self, style_channels: int, channels: int, *, norm_groups: int = 32, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(norm_groups, channels), channels, eps=eps, affine=False)
        self.gamma = nn.Linear(style_channels, channels)
        self.beta = nn.Linear(style_channels, channels)
        self.eps = eps

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        flat = style.flatten(2)
        # upstream uses torch's default (unbiased) variance; kept for weight compatibility
        scale = self.gamma((flat.var(dim=-1) + self.eps).sqrt())
        shift = self.beta(flat.mean(dim=-1))
        return self.norm(x) * scale[..., None, None] + shift[..., None, None]


class ConvEncoder(nn.Module):
    """Attention-free VQGAN-style encoder: residual stages with stride-2 convs, two middle blocks."""

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        out_channels: int,
        dropout: float,
        norm_groups: int,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.stages = nn.ModuleList(
            Stage2d(
                channels if i == 0 else widths[i - 1],
                width,
                num_blocks=num_res_blocks,
                attention=False,
                resample=Downsample2d if i < len(widths) - 1 else None,
                dropout=dropout,
                norm_groups=norm_groups,
            )
            for i, width in enumerate(widths)
        )
        self.mid = nn.ModuleList(
            ResBlock2d(widths[-1], widths[-1], dropout=dropout, norm_groups=norm_groups) for _ in range(2)
        )
        self.norm_out = group_norm(widths[-1], norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.stages:
            x = stage(x)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class ConvDecoder(nn.Module):
    """Mirror of `ConvEncoder` (one more block per stage), with optional adaptive group norm before each
    stage and depth-to-space upsampling."""

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        out_channels: int,
        adaptive_norm: bool,
        dropout: float,
        norm_groups: int,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in reversed(channel_mult)]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.mid = nn.ModuleList(
            ResBlock2d(widths[0], widths[0], dropout=dropout, norm_groups=norm_groups) for _ in range(2)
        )
        inputs = [widths[0], *widths[:-1]]
        self.adaptive = (
            nn.ModuleList(AdaptiveGroupNorm(in_channels, c, norm_groups=norm_groups) for c in inputs)
            if adaptive_norm
            else None
        )
        self.stages = nn.ModuleList(
            Stage2d(
                inputs[i],
                width,
                num_blocks=num_res_blocks + 1,
                attention=False,
                resample=DepthToSpaceUpsample if i < len(widths) - 1 else None,
                dropout=dropout,
                norm_groups=norm_groups,
            )
            for i, width in enumerate(widths)
        )
        self.norm_out = group_norm(widths[-1], norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        for block in self.mid:
            x = block(x)
        for i, stage in enumerate(self.stages):
            if self.adaptive is not None:
                x = self.adaptive[i](x, z)
            x = stage(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class QueryEncoder(nn.Module):
    """2D feature grid -> ``num_tokens + padding`` 1D tokens through Q-Former layers.

    Queries are projected multi-level pools of the grid; the redundant padding queries are copies of
    queries ``min_tokens..`` with their own positional embeddings.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        width: int,
        layers: int,
        heads: int,
        grid: int,
        num_tokens: int,
        min_tokens: int,
        dropout: float,
    ) -> None:
        super().__init__()
        scale = width**-0.5
        self.num_tokens, self.min_tokens = num_tokens, min_tokens
        self.ln_pre = nn.LayerNorm(in_dim)
        self.embed = nn.Linear(in_dim, width)
        self.pos_embed = nn.Parameter(scale * torch.randn(grid * grid, width))
        self.query_pos = nn.Parameter(scale * torch.randn(num_tokens, width))
        self.pad_query_pos = nn.Parameter(scale * torch.randn(num_tokens - min_tokens, width))
        self.query_proj = nn.Linear(width, width)
        self.layers = nn.ModuleList(QFormerLayer(width, heads, dropout=dropout) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.out_proj = nn.Linear(width, in_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, num_tokens + num_tokens - min_tokens, C]``."""
        b, _, h, w = features.shape
        memory = self.embed(self.ln_pre(features.flatten(2).transpose(1, 2)))
        queries = multilevel_pool(memory.transpose(1, 2).reshape(b, -1, h, w), self.num_tokens)
        queries = self.query_proj(torch.cat([queries, queries[:, self.min_tokens :]], dim=1))
        query_pos = torch.cat([self.query_pos, self.pad_query_pos])
        for layer in self.layers:
            queries = layer(queries, memory, query_pos=query_pos, memory_pos=self.pos_embed)
        return self.out_proj(self.ln_post(queries))


class QueryDecoder(nn.Module):
    """A prefix of 1D tokens -> 2D feature grid; 2D queries start as the first token, plus positions.

    ``distill_mlp`` (on the output of layer ``distill_depth``) produces the features aligned to the
    semantic teacher; it is used in training only.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        width: int,
        layers: int,
        heads: int,
        grid: int,
        num_tokens: int,
        min_tokens: int,
        distill_depth: int,
        distill_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        scale = width**-0.5
        self.grid, self.distill_depth = grid, distill_depth
        self.ln_pre = nn.LayerNorm(in_dim)
        self.embed = nn.Linear(in_dim, width)
        self.pos_embed = nn.Parameter(scale * torch.randn(grid * grid, width))
        self.token_pos = nn.Parameter(scale * torch.randn(num_tokens, width))
        self.pad_token_pos = nn.Parameter(scale * torch.randn(num_tokens - min_tokens, width))
        self.layers = nn.ModuleList(QFormerLayer(width, heads, dropout=dropout) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, in_dim, 3, padding=1)
        self.distill_mlp = (
            nn.Sequential(
                nn.Linear(width, 4 * width),
                nn.SiLU(),
                nn.Linear(4 * width, 4 * width),
                nn.SiLU(),
                nn.Linear(4 * width, distill_dim),
            )
            if distill_depth > 0
            else None
        )

    def forward(
        self, tokens: torch.Tensor, padding: torch.Tensor | None = None, *, distill: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``tokens [B, L, C]`` (``padding [B, L]`` True past each item's prefix) -> ``[B, C, g, g]`` and
        the distillation features ``[B, g*g, distill_dim]`` when ``distill``."""
        memory = self.embed(self.ln_pre(tokens))
        memory_pos = torch.cat([self.token_pos, self.pad_token_pos])[: memory.shape[1]]
        queries = memory[:, :1].expand(-1, self.grid * self.grid, -1)
        inner = None
        for i, layer in enumerate(self.layers):
            queries = layer(
                queries, memory, query_pos=self.pos_embed, memory_pos=memory_pos, memory_padding=padding
            )
            if distill and self.distill_mlp is not None and i + 1 == self.distill_depth:
                inner = self.distill_mlp(queries)
        out = self.ln_post(queries).transpose(1, 2).reshape(len(tokens), -1, self.grid, self.grid)
        return self.conv_out(out), inner


# ---------------------------------------------------------------------------------------------- model
class ReTok(ImageTokenizer):
    """ReTok: CNN -> Q-Former -> l2 VQ (rotation trick) -> Q-Former -> CNN, with 1D prefix tokens.

    Args:
        resolution: the image size (fixed: the positional tables cover one grid).
        channels, channel_mult, num_res_blocks, z_channels, norm_groups: the CNN encoder/decoder.
        encoder_width, encoder_layers, encoder_heads: the Q-Former encoder (S: 512/6/8).
        decoder_width, decoder_layers, decoder_heads: the Q-Former decoder (B: 768/12/12).
        num_tokens: ``N``, the 1D tokens per image (a power of two).
        min_tokens: the shortest usable prefix; the encoder adds ``N - min_tokens`` redundant padding
            tokens, and nested dropout keeps ``k ~ U[min_tokens, 2N - min_tokens]`` of the extended sequence.
        codebook_size, codebook_dim, commitment_weight, rotation_trick: the l2-normalised VQ.
        kmeans_init, restart_threshold: codebook-collapse remedies (not upstream; on for the tiny size).
        adaptive_norm: adaptive group norm in the CNN decoder (upstream ``adaptive_gn``).
        nested_dropout: sample a kept prefix length per image in training (off: always decode ``N``).
        feature_weight, feature_steps: MSE between the Q-Former decoder's grid and the (detached) CNN
            encoder features, for the first ``feature_steps`` steps (upstream: 1.0 until 15k).
        semantic_weight: weight of the alignment ``1 - cos`` to the teacher (upstream ``proj_weight``
            0.5 on ``-cos``, same gradient); ``semantic_depth`` is the decoder layer it taps (0: no
            ``distill_mlp``), ``semantic_dim`` the teacher's feature width, ``semantic_tail_weight``
            the relative weight at the longest kept prefix.
        teacher, teacher_kwargs, teacher_resolution: timm name / arguments / input size of the frozen
            teacher (DINOv2 ViT-B/14 at 224: a 16x16 patch grid). It is built with ``pretrained=False``;
        teacher_weights: its state dict file. Without one the alignment is disabled (warned once);
            nothing is ever downloaded. The teacher is not part of this model's state dict.
    """

    # ReTok's val_ddp.py, reconstruction_ddp.py and extract_codes_c2i.py use ADM's centre crop;
    # prepare(resize="bicubic") gives the zoo's earlier one-step float bicubic instead.
    resize = "adm"

    def __init__(
        self,
        *,
        resolution: int = 256,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        norm_groups: int = 32,
        encoder_width: int = 512,
        encoder_layers: int = 6,
        encoder_heads: int = 8,
        decoder_width: int = 768,
        decoder_layers: int = 12,
        decoder_heads: int = 12,
        num_tokens: int = 256,
        min_tokens: int = 32,
        codebook_size: int = 16384,
        codebook_dim: int = 8,
        commitment_weight: float = 0.25,
        rotation_trick: bool = True,
        kmeans_init: bool = False,
        restart_threshold: float = 0.0,
        adaptive_norm: bool = True,
        dropout: float = 0.0,
        nested_dropout: bool = True,
        feature_weight: float = 1.0,
        feature_steps: int = 15000,
        semantic_weight: float = 0.5,
        semantic_depth: int = 3,
        semantic_dim: int = 768,
        semantic_tail_weight: float = 0.1,
        teacher: str = "vit_base_patch14_dinov2",
        teacher_kwargs: dict[str, Any] | None = None,
        teacher_weights: str | None = None,
        teacher_resolution: int = 224,
    ) -> None:
        super().__init__()
        channel_mult = tuple(channel_mult)
        if not 0 < min_tokens <= num_tokens:
            raise ValueError(f"need 0 < min_tokens <= num_tokens, got {min_tokens}, {num_tokens}")
        self.resolution = resolution
        self.in_channels = in_channels
        self.downsample = 2 ** (len(channel_mult) - 1)
        self.grid = resolution // self.downsample
        self.num_tokens, self.min_tokens = num_tokens, min_tokens
        self.nested_dropout = nested_dropout
        self.feature_weight, self.feature_steps = feature_weight, feature_steps
        self.semantic_weight, self.semantic_tail_weight = semantic_weight, semantic_tail_weight
        self.teacher_name, self.teacher_kwargs = teacher, dict(teacher_kwargs or {})
        self.teacher_weights, self.teacher_resolution = teacher_weights, teacher_resolution
        cnn = {"channels": channels, "channel_mult": channel_mult, "num_res_blocks": num_res_blocks}
        cnn |= {"dropout": dropout, "norm_groups": norm_groups}
        tokens = {"grid": self.grid, "num_tokens": num_tokens, "min_tokens": min_tokens, "dropout": dropout}
        self.encoder = ConvEncoder(in_channels=in_channels, out_channels=z_channels, **cnn)
        self.query_encoder = QueryEncoder(
            in_dim=z_channels, width=encoder_width, layers=encoder_layers, heads=encoder_heads, **tokens
        )
        self.query_decoder = QueryDecoder(
            in_dim=z_channels,
            width=decoder_width,
            layers=decoder_layers,
            heads=decoder_heads,
            distill_depth=semantic_depth,
            distill_dim=semantic_dim,
            **tokens,
        )
        self.decoder = ConvDecoder(
            in_channels=z_channels, out_channels=in_channels, adaptive_norm=adaptive_norm, **cnn
        )
        # upstream initialises every linear/conv as trunc-normal(0.02) with zero bias (LayerNorms at 1, 0)
        for module in (self.encoder, self.query_encoder, self.query_decoder, self.decoder):
            module.apply(_init_weights)
        self.quantizer = VectorQuantizer(
            z_channels,
            codebook_size,
            codebook_dim=codebook_dim,
            l2_norm=True,
            commitment_weight=commitment_weight,
            rotation_trick=rotation_trick,
            kmeans_init=kmeans_init,
            restart_threshold=restart_threshold,
        )

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantizer.codebook_size,)

    @property
    def extended_tokens(self) -> int:
        """Real plus redundant padding tokens: the longest prefix nested dropout may keep."""
        return 2 * self.num_tokens - self.min_tokens

    def grid_for(self, height: int, width: int) -> tuple[int]:  # type: ignore[override]
        return (self.num_tokens,)

    def check_images(self, x: torch.Tensor) -> None:
        super().check_images(x)
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(
                f"ReTok's positional tables cover {self.resolution}x{self.resolution} images only, got "
                f"{tuple(x.shape[-2:])}; resize or crop (zoo encode --resolution {self.resolution})"
            )

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    # ------------------------------------------------------------------ pieces
    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CNN features ``[B, z, g, g]`` and the extended token sequence ``[B, z, N + padding]``."""
        features = self.encoder(x * 2 - 1)
        return features, self.query_encoder(features).transpose(1, 2)

    def _decode_tokens(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None, *, distill: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Quantized tokens ``[B, z, L]`` (first ``lengths`` valid) -> image, 2D features, distill features."""
        padding = None
        if lengths is not None and bool((lengths < tokens.shape[-1]).any()):
            padding = torch.arange(tokens.shape[-1], device=tokens.device) >= lengths[:, None].to(
                tokens.device
            )
        spatial, inner = self.query_decoder(tokens.transpose(1, 2), padding, distill=distill)
        return (self.decoder(spatial) + 1) / 2, spatial, inner

    def _keep_lengths(self, batch: int, device: torch.device) -> torch.Tensor:
        if self.training and self.nested_dropout:
            return torch.randint(self.min_tokens, self.extended_tokens + 1, (batch,), device=device)
        return torch.full((batch,), self.num_tokens, device=device)

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor, step: int | None = None) -> TokenizerOutput:
        """Reconstruct ``x`` ([B, 3, H, W] in [0, 1]); in training through a random kept prefix of the
        extended sequence, with VQ, feature-reconstruction and semantic-alignment losses."""
        self.check_images(x)
        features, tokens = self._tokens(x)
        q = self.quantizer(tokens)
        keep = self._keep_lengths(len(x), x.device)
        teacher = self._teacher() if self.training else None
        length = int(keep.max())
        recon, spatial, inner = self._decode_tokens(
            q.quantized[..., :length], keep, distill=teacher is not None
        )
        losses = dict(q.losses)
        if self.training and self.feature_weight > 0 and (step is None or step < self.feature_steps):
            losses["feature/rec"] = self.feature_weight * F.mse_loss(spatial, features.detach())
        if teacher is not None and inner is not None:
            losses["semantic/align"] = self.semantic_weight * self._alignment(teacher, x, inner, keep)
        stats = dict(q.stats)
        stats["tokens/kept"] = keep.float().mean()
        return TokenizerOutput(recon=recon, ids=q.ids[:, : self.num_tokens], losses=losses, stats=stats)

    def training_output(self, x: torch.Tensor, step: int) -> TokenizerOutput:
        return self(x, step)

    def _alignment(
        self, teacher: nn.Module, x: torch.Tensor, inner: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """Mean over images of ``w(k) * (1 - cos)`` to the teacher's patch features, ``w`` falling
        linearly from 1 at ``min_tokens`` kept to ``semantic_tail_weight`` at the full extended length."""
        target = self._teacher_features(teacher, x)
        per_image = 1 - F.cosine_similarity(inner.float(), target, dim=-1).mean(dim=1)
        span = max(self.extended_tokens - self.min_tokens, 1)
        frac = (keep.float() - self.min_tokens) / span
        weight = 1 - (1 - self.semantic_tail_weight) * frac
        return (weight * per_image).mean()

    def _teacher(self) -> nn.Module | None:
        """The frozen teacher, built on first use from ``teacher_weights`` only (never downloaded)."""
        if self.semantic_weight <= 0 or self.query_decoder.distill_mlp is None:
            return None
        if "_semantic_teacher" in self.__dict__:
            return self.__dict__["_semantic_teacher"]
        teacher = None
        if self.teacher_weights is None:
            if self.teacher_name not in _WARNED:
                _WARNED.add(self.teacher_name)
                log.warning(
                    "ReTok: no teacher_weights for %s given; semantic regularisation is disabled "
                    "(weights are never downloaded)",
                    self.teacher_name,
                )
        else:
            teacher = build_teacher(
                self.teacher_name, self.teacher_weights, self.teacher_resolution, **self.teacher_kwargs
            )
        object.__setattr__(self, "_semantic_teacher", teacher)
        return teacher

    def _teacher_features(self, teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Teacher patch tokens for images in [0, 1], resampled to the decoder's grid: ``[B, g*g, D]``."""
        teacher.to(x.device)
        cfg = getattr(teacher, "pretrained_cfg", {}) or {}
        mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), device=x.device)[:, None, None]
        std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), device=x.device)[:, None, None]
        size = self.teacher_resolution
        with torch.no_grad():
            image = F.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False)
            feats = teacher.forward_features((image - mean) / std)[
                :, getattr(teacher, "num_prefix_tokens", 1) :
            ]
            side = math.isqrt(feats.shape[1])
            grid = feats.transpose(1, 2).reshape(len(x), -1, side, side)
            if side != self.grid:
                grid = F.interpolate(grid, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def encode(self, x: torch.Tensor, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, R, R]`` in ``[0, 1]`` -> ids ``[B, n]``: the first ``n`` (default ``N``) 1D tokens."""
        self.check_images(x)
        n = self._check_length(self.num_tokens if num_tokens is None else num_tokens)
        ids = self.quantizer.encode(self._tokens(x)[1][..., :n])
        return self.make_tokens(
            ids=ids,
            grid=(n,),
            codebook_sizes=self.codebook_sizes,
            lengths=torch.full((len(ids),), n, dtype=torch.long, device=ids.device),
            meta={"image_size": list(x.shape[-2:]), "num_tokens": n},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """A prefix of ``min_tokens..N`` ids (per item: ``tokens.lengths``) -> images ``[B, 3, R, R]``."""
        self.check_token_layout(tokens, 1)  # ids past an item's length may be anything: checked after masking
        n = self._check_length(tokens.grid[0])
        lengths = None
        if tokens.lengths is not None:
            lengths = tokens.lengths.to(self.device)
            if bool(((lengths < self.min_tokens) | (lengths > n)).any()):
                raise ValueError(f"lengths must lie in [{self.min_tokens}, {n}], got {lengths.tolist()}")
        ids = tokens.ids.to(self.device)
        if lengths is not None:  # padding past an item's prefix may be any value, e.g. -1
            ids = ids.masked_fill(torch.arange(n, device=ids.device) >= lengths[:, None], 0)
        self.check_id_range(ids)
        vectors = self.quantizer.lookup(ids).to(self.decoder.conv_out.weight.dtype)
        return self._decode_tokens(vectors, lengths)[0]

    def _check_length(self, n: int) -> int:
        if not self.min_tokens <= n <= self.num_tokens:
            raise ValueError(f"ReTok uses prefixes of {self.min_tokens}..{self.num_tokens} tokens, got {n}")
        return int(n)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_teacher(name: str, weights: str | Path, resolution: int, **kwargs: Any) -> nn.Module:
    """A frozen timm ViT from a local state dict (timm or original DINOv2 key names); never downloads."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    from ...hub import read_state_dict

    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=resolution, **kwargs)
    state = read_state_dict(Path(weights))
    state = checkpoint_filter_fn(dict(state), model)
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise CheckpointError(f"{weights}: not a {name} state dict (missing {missing[:5]} ...)")
    model.eval().requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------- converter
_TABLES = {
    "s2to1encoder": {
        "encoder_embed": "embed",
        "positional_embedding": "pos_embed",
        "latent_token_positional_embedding": "query_pos",
        "latent_token_positional_embedding_comp": "pad_query_pos",
        "global_proj": "query_proj",
        "conv_out": "out_proj",
    },
    "s1to2decoder": {
        "decoder_embed": "embed",
        "positional_embedding": "pos_embed",
        "latent_token_positional_embedding": "token_pos",
        "latent_token_positional_embedding_comp": "pad_token_pos",
    },
}
_LAYER = {"multihead_attn": "cross_attn", "linear1": "fc1", "linear2": "fc2"}
_TOP = {
    "quantize.embedding.weight": "quantizer.codebook",
    "quant_conv.weight": "quantizer.project_in.weight",
    "quant_conv.bias": "quantizer.project_in.bias",
    "post_quant_conv.weight": "quantizer.project_out.weight",
    "post_quant_conv.bias": "quantizer.project_out.bias",
}


def _rename_retok(key: str) -> str:
    if key in _TOP:
        return _TOP[key]
    parts = key.split(".")
    head = parts[0]
    if head in ("encoder", "decoder"):
        if parts[1] == "conv_blocks":
            parts[1] = "stages"
            if parts[3] in ("downsample", "upsample"):
                parts[3], parts[4] = "resample", "conv"
        return ".".join(parts).replace(".nin_shortcut.", ".skip.")
    if head in _TABLES:
        parts[0] = {"s2to1encoder": "query_encoder", "s1to2decoder": "query_decoder"}[head]
        if parts[1] == "transformer":
            parts[1] = "layers"
            parts[3] = _LAYER.get(parts[3], parts[3])
        else:
            parts[1] = _TABLES[head].get(parts[1], parts[1])
    return ".".join(parts)


def convert_retok(
    state_dict: Mapping[str, torch.Tensor], model: ReTok | None = None
) -> dict[str, torch.Tensor]:
    """Map a ReTok ``VQVitModelPlus`` state dict (``checkpoint["model"]`` or ``["ema"]``) onto `ReTok`.

    Positional tables lose their singleton batch axis; 1x1 convs around the quantizer and at the
    Q-Former encoder's output become linears; ``quantize.codebook_used`` is dropped. Unknown keys are
    kept, so strict loading reports them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key == "quantize.codebook_used":
            continue
        new = _rename_retok(key)
        if new.endswith(("_pos", ".pos_embed")) and value.ndim == 3:
            value = value.squeeze(1)
        elif new.endswith(("project_in.weight", "project_out.weight", "out_proj.weight")) and value.ndim == 4:
            value = value.flatten(1)
        out[new] = value
    return out


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "resolution": 32,
    "channels": 16,
    "channel_mult": (1, 2, 2),
    "num_res_blocks": 1,
    "z_channels": 32,
    "norm_groups": 8,
    "encoder_width": 64,
    "encoder_layers": 2,
    "encoder_heads": 4,
    "decoder_width": 64,
    "decoder_layers": 2,
    "decoder_heads": 4,
    "num_tokens": 16,
    "min_tokens": 4,
    "codebook_size": 256,
    "kmeans_init": True,
    "restart_threshold": 0.1,
    "feature_steps": 1000,
    "semantic_depth": 1,
    "semantic_dim": 64,
}


@register_model(modality="image", family="retok")
def retok(**kwargs: Any) -> ReTok:
    """ReTok-S-B at the paper size: 256 px -> 256 1D tokens (prefixes 32..256), 16,384 codes of dim 8."""
    return build(ReTok, "retok", _PAPER, kwargs)


@register_model(modality="image", family="retok", size="tiny")
def retok_tiny(**kwargs: Any) -> ReTok:
    """A tiny ReTok for CPU tests: 32 px -> 16 1D tokens (prefixes 4..16, 12 padding) over 256 codes."""
    return build(ReTok, "retok_tiny", _TINY, kwargs)


register_pretrained(
    "retok.sb256_e250",
    PretrainedCfg(
        hf_hub_id=None,  # type: ignore[arg-type]  # Google Drive only: no Hub repo exists
        filename="VQ_SB256_e250.pt",
        converter="convert_retok",
        checkpoint_key=("ema", "model"),  # upstream's loader prefers the EMA weights
        paper="arXiv:2601.01535",
        upstream="https://github.com/zfu006/ReTok @ ffaa8a7 (weights: Google Drive folder linked in README)",
        description=(
            "ReTok-S-B trained 250 epochs on ImageNet-1k at 256 px. Hosted on Google Drive only, so it "
            "cannot be fetched from the Hub: download VQ_SB256_e250.pt by hand, then "
            "zoo.load_upstream('retok.sb256_e250', path).save_pretrained(dir) and zoo.load(dir)."
        ),
        metrics={"rFID (ImageNet val, 256px, 256 tokens)": 1.01},
    ),
)
