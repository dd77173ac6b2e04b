"""KARL: single-pass adaptive-length 1D tokenization that approximates an image's Kolmogorov complexity.

Paper: "Single-pass Adaptive Image Tokenization for Minimum Program Search", Duggal et al. 2025,
arXiv:2507.07995. Upstream: ShivamDuggal4/karl @ 5c1a569 (``kolmogorov_tokenizers/karl_vqgan.py``,
``modules/latent_distillation_modules.py``, ``configs/karl_vqgan.yaml``).

A 1D "latent-distillation" encoder/decoder sits on a 2D base tokenizer (`VQGANMage`). The encoder reads
``[quality token; image tokens; T latent tokens]``: the quality token is a learned embedding of the
wanted L1 reconstruction error, rounded up to one of 19 bins; each image token is a patch embedding
concatenated with the base encoder's feature at that position, plus a learned position grid. Every
latent token gets a halting probability and a code from an l2-normalised VQ (4096 x 12 at the paper
size). Tokens whose halting probability exceeds 0.75 are dropped, so one forward pass gives each image
as many tokens as its content needs for the asked error. The decoder reads mask tokens at the base grid
plus the kept latents and predicts logits over the base codebook; the probability-weighted code map
goes through the base decoder.

Training (stage 1, `training_output`) runs two passes per step as upstream: (1) with a random budget
of ``16..368`` tokens and a target error drawn from a prior over small errors, it measures the error
that budget reaches per image; (2) with the full budget, conditioned on that achieved error, it teaches
the halting head to drop the tokens past the first budget's count. Losses: cross-entropy over the base
ids, MSE of the soft code to the true code, the VQ loss and the halting BCE, all of weight 1 in both
passes. Train stage 1 with the base frozen (``freeze: [base]``). Stage 2 (``train_stage=2``) unfreezes it and
replaces the distillation terms by the trainer's L1 + LPIPS + adaptive hinge GAN on both passes'
images, each judged by the PatchGAN of its token-count bucket (`zoo.nn.KeyedDiscriminator`), with
discriminator-only iterations between generator ones (``generator_every: 9``), as upstream.

Input: ``prepare`` reads a photo as upstream's demo and ``evaluate.py`` do (torchvision's ``Resize(256,
BICUBIC)`` of the short side on the PIL image, ``CenterCrop(256)``; bit-identical on 8-bit files).

Tokens: ``encode(x, target_error=0.05)`` returns ids ``[B, T]`` over the 4096 codes with the kept tokens
first (in their order) and ``Tokens.lengths`` the per-image count; ``Tokens.side["positions"]`` keeps each
kept token's latent index, which the decoder's per-index embedding needs because halted tokens need not
be a suffix. Decoding only the kept tokens equals upstream's decode with halted tokens masked out.

Deliberate differences from upstream (each keeps upstream's outputs at batch size 1):

- per-image decoder masks are expanded head by head in batch-major order (upstream's ``repeat`` mixes
  the masks of different images in a batch, so its batched decodes differ from single-image ones);
- the base features are flattened channel-last (``flatten(2).transpose(1, 2)``), which equals upstream's
  ``reshape(B, HW, -1)`` whenever channels equal grid positions (256 at the paper size) and stays right
  for other base sizes;
- ``encode`` returns the tokens (upstream's returns an empty list and works at batch size 1 only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.transformer import ClipBlock
from ...quantizers import VectorQuantizer
from ...tokenizer import ImageTokenizer, TokenizerOutput
from ...tokens import Tokens
from .vqgan_mage import convert_mage

__all__ = ["KARL", "QUALITY_BINS", "convert_karl", "error_bin"]

# Reconstruction errors (mean L1 in [0, 1] pixels) the quality token can ask for (upstream: no 0.08).
QUALITY_BINS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.04,
    0.05,
    0.06,
    0.07,
    0.09,
    0.1,
    0.12,
    0.14,
    0.16,
    0.18,
    0.2,
    0.24,
    0.28,
    0.32,
    0.38,
)


def error_bin(error: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """The smallest bin whose value is at least ``error`` (the last one past it), as upstream rounds up."""
    return torch.searchsorted(bins.float(), error.float().contiguous()).clamp(max=len(bins) - 1)


class Stack(nn.Module):
    """CLIP blocks in sequence (upstream's ``Encoder``: ``transformer.{i}``, no norm inside)."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.transformer = nn.ModuleList(ClipBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.transformer:
            x = block(x, mask)
        return x


class LatentDecoder(Stack):
    """``ln_pre`` -> CLIP blocks -> ``ln_post`` -> ``ffn`` (Linear, Tanh, Linear) to base-codebook logits."""

    def __init__(self, width: int, layers: int, heads: int, codebook_size: int) -> None:
        super().__init__(width, layers, heads)
        self.ln_pre = nn.LayerNorm(width)
        self.ln_post = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, codebook_size))

    def logits(self, x: torch.Tensor, grid_tokens: int, mask: torch.Tensor | None) -> torch.Tensor:
        x = super().forward(self.ln_pre(x), mask)
        return self.ffn(self.ln_post(x[:, :grid_tokens]))


def isolation_mask(hidden: torch.Tensor) -> torch.Tensor:
    """``[B, L, L]`` attention mask (True: may not attend) that cuts ``hidden`` tokens ``[B, L]`` off from
    every other token; each still attends to itself, so no row is empty (upstream's halting mask)."""
    mask = hidden[:, :, None] | hidden[:, None, :]
    return mask & ~torch.eye(hidden.shape[1], dtype=torch.bool, device=hidden.device)


class KARL(ImageTokenizer):
    """KARL on a VQGAN base: variable-length 1D ids whose count follows the asked reconstruction error.

    Args:
        base, base_args: registry name and overrides of the 2D base tokenizer (``vqgan_mage``).
        width, encoder_layers, decoder_layers, heads: the 1D Transformer (CLIP blocks).
        num_latent_tokens: rows of the latent-token and per-index tables (the largest budget).
        pos_grid: side of the learned position grids (nearest-resized to the base grid, as upstream).
        codebook_size, code_dim: the l2-normalised VQ of the latent tokens.
        commitment_weight: VQ commitment weight (0.25; the codebook term has weight 1).
        halting_threshold: halting probability above which a token is dropped (0.75).
        token_budget: latent tokens of inference and of the second training pass (256).
        budget_step, max_train_budget: first-pass budgets ``budget_step .. max_train_budget``.
        quality_bins: the errors the quality token can ask for.
        prior_max_error, prior_decay: the first pass's target-error prior (uniform over bins up to
            ``prior_max_error``, decayed for bins at or above the best error reached).
        target_error: default error of ``encode`` and ``forward`` (0.05, upstream's default).
        train_stage: 1 distils the frozen base (cross-entropy and soft-code MSE); 2 fine-tunes end to end
            with the trainer's pixel and GAN losses on both passes' images, each judged by the
            discriminator of its token-count bucket (``TokenizerOutput.judged``).
        gan_buckets: stage 2's token-count buckets, ``token_budget / gan_buckets`` tokens wide (8 of 32).
    """

    # KARL's demo and evaluate.py: torchvision Resize(S, BICUBIC) + CenterCrop(S) on the PIL image
    resize = "torchvision"

    def __init__(
        self,
        *,
        base: str = "vqgan_mage",
        base_args: dict[str, Any] | None = None,
        width: int = 1024,
        encoder_layers: int = 8,
        decoder_layers: int = 8,
        heads: int = 8,
        num_latent_tokens: int = 512,
        pos_grid: int = 64,
        codebook_size: int = 4096,
        code_dim: int = 12,
        commitment_weight: float = 0.25,
        halting_threshold: float = 0.75,
        token_budget: int = 256,
        budget_step: int = 16,
        max_train_budget: int = 368,
        quality_bins: tuple[float, ...] = QUALITY_BINS,
        prior_max_error: float = 0.04,
        prior_decay: float = 0.99,
        target_error: float = 0.05,
        train_stage: int = 1,
        gan_buckets: int = 8,
    ) -> None:
        super().__init__()
        from ..._factory import create

        self.base = create(base, **(base_args or {}))
        self.resolution, self.in_channels = self.base.resolution, self.base.in_channels
        self.downsample = self.base.downsample
        base_dim = self.base.encoder.conv_out.out_channels
        if width <= base_dim:
            raise ValueError(f"width {width} must exceed the base feature width {base_dim}")
        if not 0 < token_budget <= num_latent_tokens or max_train_budget > num_latent_tokens:
            raise ValueError(f"budgets must fit the {num_latent_tokens} latent tokens")
        self.width, self.threshold = width, halting_threshold
        self.token_budget, self.target_error = token_budget, target_error
        self.train_budgets = list(range(budget_step, max_train_budget + 1, budget_step))
        self.prior_decay = prior_decay
        if train_stage not in (1, 2):
            raise ValueError(f"train_stage must be 1 or 2, got {train_stage}")
        self.train_stage, self.gan_buckets = train_stage, gan_buckets
        self.quality_bins = tuple(float(b) for b in quality_bins)
        scale = width**-0.5
        self.patch_embed = nn.Conv2d(
            self.in_channels, width - base_dim, self.downsample, stride=self.downsample
        )
        self.encoder_positional_embedding = nn.Parameter(scale * torch.randn(width, pos_grid, pos_grid))
        self.decoder_positional_embedding = nn.Parameter(scale * torch.randn(width, pos_grid, pos_grid))
        self.decoder_mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.decoder_latent_tokens_timestep_embed = nn.Parameter(
            scale * torch.randn(num_latent_tokens, width)
        )
        self.latent_tokens = nn.Parameter(scale * torch.randn(num_latent_tokens, width))
        bins = torch.tensor(quality_bins, dtype=torch.float32)
        self.rec_loss_embeddings = nn.Parameter(bins[:, None].repeat(1, width))
        self.encoder = Stack(width, encoder_layers, heads)
        self.encoder_ln_pre = nn.LayerNorm(width)
        self.encoder_ln_post_halt = nn.LayerNorm(width)
        self.encoder_ln_post = nn.LayerNorm(width)
        self.pre_quantizer_mlp = nn.Linear(width, code_dim)
        self.halting_mlp = nn.Sequential(nn.Linear(width, 512), nn.Tanh(), nn.Linear(512, 1))
        self.decoder = LatentDecoder(width, decoder_layers, heads, self.base.codebook_sizes[0])
        self.decoder_embed = nn.Linear(code_dim, width)
        self._init_weights()
        self.quantize = VectorQuantizer(
            code_dim, codebook_size, l2_norm=True, commitment_weight=commitment_weight, codebook_weight=1.0
        )
        self.register_buffer("bins", bins, persistent=False)
        prior = (bins <= prior_max_error + 1e-9).float()
        self.register_buffer("bin_prior", prior / prior.sum(), persistent=False)

    def _init_weights(self) -> None:
        """Upstream's: truncated-normal (0.02) linears and convs with zero biases, unit LayerNorms; the
        attention's packed input projection keeps PyTorch's Xavier init. The base is left alone."""
        for name, module in self.named_modules():
            if name.startswith("base"):
                continue
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantize.codebook_size,)

    def token_layout(self) -> dict[str, Any]:
        return {
            "grid": [self.token_budget],
            "tokens_per_item": f"1..{self.token_budget}, by the asked error",
            "codebook_sizes": list(self.codebook_sizes),
            "bits_per_token": self.bits_per_token,
            "resolution": self.resolution,
            "base": self.base.arch,
            "quality_bins": list(self.quality_bins),
        }

    def last_layer(self) -> torch.Tensor:
        return self.base.decoder.conv_out.weight

    # ------------------------------------------------------------------ pieces
    def _pos(self, table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(table[None], size=grid, mode="nearest").flatten(2).transpose(1, 2)

    def image_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """2D tokens ``[B, G, width]`` (patch embedding, then base features, plus positions) and the base
        ids ``[B, G]`` they are trained to reproduce."""
        features = self.base.features(x)
        ids = self.base.quantizer.encode(features).flatten(1)
        grid = tuple(features.shape[-2:])
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([patches, features.flatten(2).transpose(1, 2)], dim=-1)
        return tokens + self._pos(self.encoder_positional_embedding, grid), ids

    def encode_latents(
        self, tokens: torch.Tensor, bins: torch.Tensor, budget: int
    ) -> tuple[torch.Tensor, Any]:
        """Halting logits ``[B, T]`` and the quantizer's output for ``budget`` latent tokens."""
        b, g = tokens.shape[:2]
        quality = self.rec_loss_embeddings[bins][:, None]
        latents = self.latent_tokens[:budget][None].expand(b, -1, -1)
        seq = self.encoder(self.encoder_ln_pre(torch.cat([quality, tokens, latents], dim=1)))
        latent = seq[:, 1 + g :]
        halt = self.halting_mlp(self.encoder_ln_post_halt(latent))[..., 0]
        q = self.quantize(self.pre_quantizer_mlp(self.encoder_ln_post(latent)).transpose(1, 2))
        return halt, q

    def decode_latents(
        self, codes: torch.Tensor, positions: torch.Tensor, grid: tuple[int, int], hidden: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes ``[B, T, code_dim]`` at latent indices ``positions [B, T]`` -> (base-codebook logits
        ``[B, G, K]``, soft code map ``[B, D, h, w]``, image); ``hidden [B, T]`` tokens are cut off."""
        b, g = codes.shape[0], grid[0] * grid[1]
        latents = self.decoder_embed(codes) + self.decoder_latent_tokens_timestep_embed[positions]
        masked = self.decoder_mask_token.expand(b, g, -1) + self._pos(self.decoder_positional_embedding, grid)
        mask = None
        if hidden is not None and bool(hidden.any()):
            mask = isolation_mask(torch.cat([hidden.new_zeros(b, g), hidden], dim=1))
        logits = self.decoder.logits(torch.cat([masked, latents], dim=1), g, mask)
        codebook = self.base.quantizer.output_codes().detach()
        soft = (logits.softmax(-1) @ codebook).transpose(1, 2).reshape(b, -1, *grid)
        return logits, soft, self.base.decode_codes(soft)

    def _bins(self, error: float | torch.Tensor, batch: int) -> torch.Tensor:
        error = torch.as_tensor(error, dtype=torch.float32, device=self.bins.device).expand(batch)
        return error_bin(error, self.bins)

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        return (x.shape[-2] // self.downsample, x.shape[-1] // self.downsample)

    # ------------------------------------------------------------------ training
    def _pass_losses(
        self,
        halt: torch.Tensor,
        drop: int,
        q: Any,
        logits: torch.Tensor,
        ids: torch.Tensor,
        soft: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One pass's losses: halting BCE (the last ``drop`` tokens should halt, the others not; two
        means, as upstream), the VQ loss, and in stage 1 the distillation terms."""
        keep = halt.shape[1] - drop
        losses = {
            "halt/bce": F.binary_cross_entropy_with_logits(halt[:, :keep], torch.zeros_like(halt[:, :keep]))
        }
        if drop:
            losses["halt/bce"] = losses["halt/bce"] + F.binary_cross_entropy_with_logits(
                halt[:, keep:], torch.ones_like(halt[:, keep:])
            )
        losses.update(q.losses)
        if self.train_stage == 1:
            codebook = self.base.quantizer.output_codes().detach()
            losses["rec/base_ce"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
            losses["rec/code_mse"] = F.mse_loss(soft.flatten(2).transpose(1, 2), codebook[ids])
        return losses

    def bucket(self, tokens: int) -> int:
        """Stage 2's discriminator for images rebuilt from ``tokens`` tokens (upstream's ``n // 32 - 1``)."""
        width = max(1, self.token_budget // self.gan_buckets)
        return max(0, min(self.gan_buckets, tokens // width) - 1)

    def training_output(self, x: torch.Tensor, step: int) -> TokenizerOutput:
        """Upstream's two passes: estimate the error a random budget reaches, then learn to halt at it.

        Stage 1 returns the distillation losses; stage 2 returns both passes' images in ``judged`` with
        their bucket, for the trainer's pixel, perceptual and adversarial losses.
        """
        self.check_images(x)
        b, grid = len(x), self._grid(x)
        tokens, ids = self.image_tokens(x)
        # Pass 1: a random budget, a target error from the prior; no token may halt yet.
        first = self.train_budgets[
            int(torch.randint(len(self.train_budgets), ()))
        ]  # torch's RNG: seeded runs repeat
        bins = torch.multinomial(self.bin_prior, b, replacement=True)
        halt, q = self.encode_latents(tokens, bins, first)
        positions = torch.arange(first, device=x.device).expand(b, -1)
        logits, soft, recon_first = self.decode_latents(q.quantized.transpose(1, 2), positions, grid, None)
        losses = self._pass_losses(halt, 0, q, logits, ids, soft)
        with torch.no_grad():
            reached = (x - recon_first.detach()).abs().flatten(1).mean(1)
            self.bin_prior[self.bins >= reached.min()] *= self.prior_decay
            self.bin_prior /= self.bin_prior.sum()
        # Pass 2: the full budget, asked for the error pass 1 reached; halt the tokens past its budget.
        budget = self.token_budget
        drop = max(0, budget - first)
        bins = self._jitter(error_bin(reached, self.bins), drop)
        halt, q = self.encode_latents(tokens, bins, budget)
        hidden = torch.sigmoid(halt.detach()) > self.threshold
        positions = torch.arange(budget, device=x.device).expand(b, -1)
        logits, soft, recon = self.decode_latents(q.quantized.transpose(1, 2), positions, grid, hidden)
        second = self._pass_losses(halt, drop, q, logits, ids, soft)
        merged = {k: losses[k] + second[k] for k in losses}
        stats = {
            "first_budget": torch.tensor(float(first)),
            "reached_error": reached.mean(),
            "kept_tokens": (~hidden).float().sum(1).mean(),
            **{f"vq_{k}": v for k, v in q.stats.items()},
        }
        judged = None
        if self.train_stage == 2:
            key = self.bucket(first)
            judged = [(recon_first, key), (recon, self.bucket(budget - drop))]
        return TokenizerOutput(recon=recon, ids=q.ids, losses=merged, stats=stats, judged=judged)

    def _jitter(self, bins: torch.Tensor, drop: int) -> torch.Tensor:
        """Upstream's conditioning noise: ask for a smaller error when the first budget was full, a larger
        one when it was the second smallest (each 45 % of the time)."""
        last = len(self.bins) - 1
        if drop == 0 and float(torch.rand(())) > 0.55:
            return 1 + (torch.rand(len(bins), device=bins.device) * bins).floor().long()
        if drop == self.token_budget - 2 * self.train_budgets[0] and float(torch.rand(())) > 0.55:
            return (bins + torch.rand(len(bins), device=bins.device) * (last - bins)).clamp(max=last).long()
        return bins

    # ------------------------------------------------------------------ API
    def _encode(self, x: torch.Tensor, target_error: float | torch.Tensor | None, budget: int | None):
        self.check_images(x)
        budget = budget or self.token_budget
        tokens, _ = self.image_tokens(x)
        bins = self._bins(self.target_error if target_error is None else target_error, len(x))
        halt, q = self.encode_latents(tokens, bins, budget)
        return torch.sigmoid(halt) > self.threshold, q, budget

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruction at the default error with halting applied (what validation scores)."""
        hidden, q, budget = self._encode(x, None, None)
        positions = torch.arange(budget, device=x.device).expand(len(x), -1)
        _, _, recon = self.decode_latents(q.quantized.transpose(1, 2), positions, self._grid(x), hidden)
        kept = (~hidden).float().sum(1)
        return TokenizerOutput(
            recon=recon, ids=q.ids, losses=q.losses, stats={"kept_tokens": kept.mean(), **q.stats}
        )

    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, target_error: float | torch.Tensor | None = None, budget: int | None = None
    ) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> up to ``budget`` ids per image, as many as reaching
        ``target_error`` (mean L1, default 0.05) needs: ids ``[B, budget]`` kept-first, ``lengths [B]``,
        ``side["positions"]`` the kept tokens' latent indices (-1 past the length)."""
        hidden, q, budget = self._encode(x, target_error, budget)
        order = torch.sort(hidden.long(), dim=1, stable=True).indices  # kept tokens first, in order
        lengths = (~hidden).sum(1)
        valid = torch.arange(budget, device=x.device)[None] < lengths[:, None]
        ids = torch.gather(q.ids, 1, order).masked_fill(~valid, -1)
        positions = order.masked_fill(~valid, -1)
        error = self.target_error if target_error is None else target_error
        return self.make_tokens(
            ids=ids,
            grid=(budget,),
            codebook_sizes=self.codebook_sizes,
            lengths=lengths,
            side={"positions": positions},
            meta={
                "image_size": list(x.shape[-2:]),
                "target_error": float(torch.as_tensor(error).flatten()[0]),
            },
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Kept ids (``tokens.lengths`` per image) at their latent indices -> images, unclamped."""
        ids = self.decodable_ids(tokens, 1, allow_padding=True)
        b, budget = ids.shape
        lengths = (
            tokens.lengths.to(self.device)
            if tokens.lengths is not None
            else torch.full((b,), budget, device=self.device)
        )
        valid = torch.arange(budget, device=self.device)[None] < lengths[:, None]
        positions = tokens.side.get("positions")
        positions = (
            torch.arange(budget, device=self.device).expand(b, -1)
            if positions is None
            else positions.to(self.device)
        )
        codes = self.quantize.lookup(ids.masked_fill(~valid, 0)).transpose(1, 2)
        size = tokens.meta.get("image_size") or [self.resolution, self.resolution]
        grid = (int(size[0]) // self.downsample, int(size[1]) // self.downsample)
        return self.decode_latents(codes, positions.clamp_min(0), grid, ~valid)[2]


# ---------------------------------------------------------------------------------------------- converter
def convert_karl(
    state_dict: Mapping[str, torch.Tensor], model: KARL | None = None
) -> dict[str, torch.Tensor]:
    """Map a KARL checkpoint's weights (``ema`` preferred, as upstream's demo and evaluation load) onto
    `KARL`: the base's ``base_tokenizer.vqgan.*`` through `convert_mage`, the latent VQ's codebook renamed,
    stage-2 discriminators (``gan_losses.*``) dropped; every other key keeps its upstream name."""
    state = {
        k.removeprefix("module."): v
        for k, v in state_dict.items()
        if not k.startswith(("gan_losses.", "module.gan_losses."))
    }
    out = {
        f"base.{k}": v
        for k, v in convert_mage({k: v for k, v in state.items() if k.startswith("base_tokenizer.")}).items()
    }
    for key, value in state.items():
        if key.startswith("base_tokenizer."):
            continue
        out["quantize.codebook" if key == "quantize.embedding.weight" else key] = value
    return out


# ---------------------------------------------------------------------------------------------- registry
_TINY: dict[str, Any] = {
    "base": "vqgan_mage_tiny",
    "width": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "heads": 4,
    "num_latent_tokens": 48,
    "pos_grid": 16,
    "codebook_size": 256,
    "code_dim": 8,
    "token_budget": 32,
    "budget_step": 4,
    "max_train_budget": 44,
}


@register_model(modality="image", family="karl")
def karl(**kwargs: Any) -> KARL:
    """KARL-Small on MAGE's VQGAN: 256 px -> up to 256 ids over 4,096 codes, as many as the asked error needs."""
    return build(KARL, "karl", {}, kwargs)


@register_model(modality="image", family="karl", size="tiny")
def karl_tiny(**kwargs: Any) -> KARL:
    """A 2+2-layer KARL on vqgan_mage_tiny for CPU tests: 32 px -> up to 32 ids over 256 codes."""
    return build(KARL, "karl_tiny", _TINY, kwargs)


register_pretrained(
    "karl.in1k",
    PretrainedCfg(
        hf_hub_id="",
        filename="karl_small_vqgan_quantized_latents.pth",
        converter="convert_karl",
        checkpoint_key=("ema", "model"),
        paper="arXiv:2507.07995",
        upstream="https://github.com/ShivamDuggal4/karl @ 5c1a569",
        description="KARL-Small on MAGE's VQGAN, ImageNet-1k; distributed on Dropbox only (imagenet/...pth)",
    ),
)
