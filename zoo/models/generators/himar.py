"""Hi-MAR: hierarchical masked autoregression with low-resolution token pivots, over KL-16 latents.

Paper: "Hierarchical Masked Autoregressive Models with Low-Resolution Token Pivots", Zheng et al.,
ICML 2025, arXiv:2505.20288. Upstream: HiDream-ai/himar (``models/himar.py``, ``models/diffloss.py``,
``models/models.py``, ``diffusion/``, ``engine_mar.py``, ``main_himar.py``, ``main_cache.py``).

One MAR encoder/decoder serves two phases, told apart only by *phase-aware gated modulation*: each block
turns the learned phase embedding into (scale, gate) pairs for attention and MLP through a shared
SiLU-Linear and its own per-phase affine table (``adaLN_scale``/``adaLN_shift``; no shift on the tokens).

- Phase 1 generates the *pivots*: the KL-16 latents of the image at half resolution (8x8 at 256 px), by
  MAR's masked prediction with the per-token MLP diffusion head (eps and learned variance).
- Phase 2 generates the 16x16 latents. The pivot slots carry the phase-1 decoder features of the pivots
  (``cond_z_proj``), not the sampled pivot latents; at every MAR step a small DiT denoises the *whole*
  latent map, conditioned per token on the phase-2 decoder features, with the already generated tokens
  re-noised to the current diffusion time (inpainting style), and the newly revealed tokens are kept.

The sequence of each phase is ``[buffer slots (class embedding)] + [pivot slots] + [main slots]``; the
learned position tables hold both phases (phase 1 first), the learned mask-token table too.

Deliberate differences from upstream (upstream's behaviour is what converted weights get):

- ``DiffLoss.forward`` reads an undefined timestep upstream (training crashes); here it is drawn
  uniformly from the 1000 training steps, as the DiT head does;
- the phase-2 pivot dropout warms up over training *steps* (``pivot_warmup_steps``) instead of epochs,
  counted by this module in training mode (a resumed run restarts the count);
- the DiT head's grid, the pivot grid, channels and class count are constructor arguments (upstream
  hard-codes ``input_size=16``), and the DiT steps per MAR iteration are a sampling argument (250 upstream);
- masks and orders come from torch's generator instead of numpy's and scipy's, and sampling writes only
  the tokens revealed at each step (upstream rewrites every still-masked token, then overwrites them
  later: the same result).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...generator import Generator, GeneratorOutput
from ...nn.dit import flow_time_embedding
from ...nn.transformer import Attention, Mlp
from ...tokens import Tokens
from .xar import TimestepEmbedder

__all__ = [
    "DiTDenoiser",
    "GaussianDiffusion",
    "HiMAR",
    "MlpDenoiser",
    "PhaseBlock",
    "convert_himar",
    "mar_reveal_counts",
    "sincos_2d",
]


# ---------------------------------------------------------------------------------------------- diffusion
def _cosine_betas(steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Improved-DDPM cosine schedule (float64), the one both Hi-MAR heads are trained with."""
    bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor(
        [min(1 - bar((i + 1) / steps) / bar(i / steps), max_beta) for i in range(steps)], dtype=torch.float64
    )


def respaced_timesteps(steps: int, count: int) -> list[int]:
    """ADM's ``space_timesteps`` with one section: ``count`` evenly strided steps of ``steps``, rounded
    the way Python rounds (so the kept steps equal upstream's)."""
    if not 1 <= count <= steps:
        raise ValueError(f"cannot take {count} of {steps} diffusion steps")
    stride = (steps - 1) / (count - 1) if count > 1 else 1
    kept, pos = [], 0.0
    for _ in range(count):
        kept.append(round(pos))
        pos += stride
    return sorted(set(kept))


def _normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element (nats)."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def _discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """ADM's decoder NLL (nats) of ``x`` in [-1, 1] on a 256-level grid, with its tanh CDF approximation."""
    cdf = lambda v: 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))
    centred, inv = x - mean, torch.exp(-log_scale)
    plus, minus = cdf(inv * (centred + 1 / 255)), cdf(inv * (centred - 1 / 255))
    log_plus = torch.log(plus.clamp(min=1e-12))
    log_one_minus = torch.log((1 - minus).clamp(min=1e-12))
    log_delta = torch.log((plus - minus).clamp(min=1e-12))
    return -torch.where(x < -0.999, log_plus, torch.where(x > 0.999, log_one_minus, log_delta))


class GaussianDiffusion:
    """The ADM/DiT Gaussian diffusion both heads use: cosine betas over ``steps``, optionally respaced to
    ``count`` steps, eps-prediction, variance learned in range (MLP head) or fixed large (DiT head).

    Models are called as ``fn(x_t, t)`` with ``t`` the *original* step indices, as upstream's respacing
    wrapper passes them.
    """

    def __init__(self, steps: int = 1000, count: int | None = None, *, learn_sigma: bool = True) -> None:
        base = _cosine_betas(steps)
        self.timesteps = respaced_timesteps(steps, count or steps)
        alpha_bar = torch.cumprod(1 - base, 0)[self.timesteps]
        betas = 1 - alpha_bar / torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.learn_sigma, self.num_steps = learn_sigma, len(betas)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.betas, self.alpha_bar = betas, alpha_bar
        self.post_var = betas * (1 - prev) / (1 - alpha_bar)
        self.post_logvar = torch.log(torch.cat([self.post_var[1:2], self.post_var[1:]]))
        self.coef_x0 = betas * prev.sqrt() / (1 - alpha_bar)
        self.coef_xt = (1 - prev) * (1 - betas).sqrt() / (1 - alpha_bar)
        self.large_logvar = torch.log(torch.cat([self.post_var[1:2], betas[1:]]))

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out = table.to(t.device)[t].float()
        return out.view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t`` at (respaced) index ``t``."""
        return (
            self._at(self.alpha_bar.sqrt(), t, x0) * x0 + self._at((1 - self.alpha_bar).sqrt(), t, x0) * noise
        )

    def p_mean_logvar(
        self, output: torch.Tensor, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``p(x_{t-1} | x_t)`` from the network output (eps [+ variance])."""
        c = x.shape[1]
        if self.learn_sigma:
            eps, values = output[:, :c], output[:, c:]
            lo, hi = self._at(self.post_logvar, t, x), self._at(torch.log(self.betas), t, x)
            frac = (values + 1) / 2
            logvar = frac * hi + (1 - frac) * lo
        else:
            eps, logvar = output, self._at(self.large_logvar, t, x).expand_as(x)
        x0 = (
            self._at((1 / self.alpha_bar).sqrt(), t, x) * x
            - self._at((1 / self.alpha_bar - 1).sqrt(), t, x) * eps
        )
        mean = self._at(self.coef_x0, t, x) * x0 + self._at(self.coef_xt, t, x) * x
        return mean, logvar

    def training_loss(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x0: torch.Tensor,
        t: torch.Tensor,
        weight: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-item loss ``[N]``: eps MSE (times ``weight`` before squaring, averaged over every
        element, as upstream's masked DiT loss) plus, with a learned variance, the VLB term in bits on
        the variance alone."""
        if noise is None:
            noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        x_t = self.q_sample(x0, t, noise)
        output = fn(x_t, torch.as_tensor(self.timesteps, device=t.device)[t])
        c = x0.shape[1]
        eps = output[:, :c]
        err = noise - eps
        if weight is not None:
            err = err * weight
        loss = err.pow(2).flatten(1).mean(1)
        if self.learn_sigma:
            frozen = torch.cat([eps.detach(), output[:, c:]], dim=1)
            mean, logvar = self.p_mean_logvar(frozen, x_t, t)
            true_mean = self._at(self.coef_x0, t, x0) * x0 + self._at(self.coef_xt, t, x0) * x_t
            kl = _normal_kl(true_mean, self._at(self.post_logvar, t, x0), mean, logvar).flatten(1).mean(1)
            nll = _discretized_gaussian_nll(x0, mean, 0.5 * logvar).flatten(1).mean(1)
            loss = loss + torch.where(t == 0, nll, kl) / math.log(2.0)
        return loss

    @torch.no_grad()
    def sample(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: torch.Tensor,
        *,
        temperature: float = 1.0,
        known: torch.Tensor | None = None,
        unknown: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling from ``noise`` with the step noise scaled by ``temperature``. With
        ``known`` and the boolean ``unknown`` map ``[N, *spatial]``, known positions are replaced before
        every step by ``known`` noised to that step with the starting noise (upstream's DiT sampling)."""
        x = noise
        for i in reversed(range(self.num_steps)):
            t = torch.full((len(x),), i, device=x.device, dtype=torch.long)
            if known is not None and unknown is not None:
                x = torch.where(unknown.unsqueeze(1), x, self.q_sample(known, t, noise))
            out = fn(x, torch.full_like(t, self.timesteps[i]))
            mean, logvar = self.p_mean_logvar(out, x, t)
            if i > 0:
                step = torch.randn(x.shape, device=x.device, generator=generator)
                x = mean + torch.exp(0.5 * logvar) * step * temperature
            else:
                x = mean
        return x


class DiffusionTimeEmbedder(TimestepEmbedder):
    """xAR's sinusoid-then-MLP time embedding (same ``mlp.0``/``mlp.2``), fed integer diffusion steps."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(flow_time_embedding(t, self.frequency_dim, scale=1.0).to(self.mlp[0].weight.dtype))


# ---------------------------------------------------------------------------------------------- MLP head
class _ResBlock(nn.Module):
    """LayerNorm -> AdaLN shift/scale -> Linear-SiLU-Linear -> gated residual (MAR's head block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.in_ln(x) * (1 + scale) + shift)


class _FinalLayer(nn.Module):
    """Affine-free LayerNorm -> AdaLN shift/scale -> Linear (DiT's output layer)."""

    def __init__(self, width: int, out: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(self.norm_final(x) * (1 + scale) + shift)


def _init_head(head: nn.Module, time: nn.Module, blocks: nn.ModuleList, final: _FinalLayer) -> None:
    """Both heads' (DiT's) init: Xavier linears, N(0, 0.02) time MLP, zeroed modulations and output, so
    a fresh head predicts zero noise."""
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    for lin in (time.mlp[0], time.mlp[2]):
        nn.init.normal_(lin.weight, std=0.02)
    for lin in [b.adaLN_modulation[1] for b in blocks] + [final.adaLN_modulation[1], final.linear]:
        nn.init.zeros_(lin.weight)
        nn.init.zeros_(lin.bias)


class MlpDenoiser(nn.Module):
    """MAR's per-token diffusion head (``SimpleMLPAdaLN``): eps and variance of one token ``[N, C]``
    given the transformer's feature ``z [N, z_dim]`` for it."""

    def __init__(self, channels: int, z_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.channels = channels
        self.time_embed = DiffusionTimeEmbedder(width)
        self.cond_embed = nn.Linear(z_dim, width)
        self.input_proj = nn.Linear(channels, width)
        self.res_blocks = nn.ModuleList(_ResBlock(width) for _ in range(depth))
        self.final_layer = _FinalLayer(width, 2 * channels)
        _init_head(self, self.time_embed, self.res_blocks, self.final_layer)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = self.time_embed(t) + self.cond_embed(z)
        h = self.input_proj(x)
        for block in self.res_blocks:
            h = block(h, y)
        return self.final_layer(h, y)


# ---------------------------------------------------------------------------------------------- DiT head
def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos positions ``[grid * grid, dim]``: the first half encodes the column
    (the meshgrid's first axis is w), the second the row; each half is ``[sin | cos]``."""

    def one(d: int, pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        out = pos.reshape(-1, 1).double() * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([one(dim // 2, cols), one(dim // 2, rows)], dim=1).float()


class _DiTBlock(nn.Module):
    """DiT block with per-token adaLN-Zero: fused-qkv attention and a tanh-GELU MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads, qkv_bias="fused")
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.mlp.act = nn.GELU(approximate="tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class DiTDenoiser(nn.Module):
    """Hi-MAR's global head: a DiT over the whole ``[N, C, g, g]`` latent map (patch 1) whose every
    token is conditioned on its time plus the embedded decoder feature map ``z [N, z_dim, g, g]``.

    The class label is not an input (upstream builds no label embedder). ``c_pos_embed`` exists upstream
    but is never added; both position tables are fixed and not counted as trainable.
    """

    def __init__(
        self, channels: int, z_dim: int, width: int, depth: int, heads: int, mlp_ratio: float, grid: int
    ) -> None:
        super().__init__()
        self.channels, self.grid = channels, grid
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(channels, width, 1)
        self.c_embedder = nn.Module()
        self.c_embedder.proj = nn.Conv2d(z_dim, width, 1)
        self.t_embedder = DiffusionTimeEmbedder(width)
        self.pos_embed = nn.Parameter(sincos_2d(width, grid)[None], requires_grad=False)
        self.c_pos_embed = nn.Parameter(torch.zeros(1, grid * grid, width), requires_grad=False)
        self.blocks = nn.ModuleList(_DiTBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.final_layer = _FinalLayer(width, channels)
        _init_head(self, self.t_embedder, self.blocks, self.final_layer)
        w = self.x_embedder.proj.weight  # the token embedding like a linear (the condition's keeps torch's)
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        tokens = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embedder(t)[:, None] + self.c_embedder.proj(z).flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.final_layer(tokens, c).transpose(1, 2).reshape(b, self.channels, h, w)


# ---------------------------------------------------------------------------------------------- backbone
class PhaseBlock(nn.Module):
    """timm ViT block whose attention and MLP inputs are scaled and whose outputs are gated by a
    modulation chosen per phase: ``c * adaLN_scale[phase] + adaLN_shift[phase]`` -> (scale, gate) x 2.

    ``adaLN_shift`` starts at (0, 1, 0, 1): unit gates and no scaling, a plain ViT block.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        phases: int = 2,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim, heads, qkv_bias="fused", attn_dropout=attn_dropout, proj_dropout=proj_dropout
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=proj_dropout)
        self.adaLN_scale = nn.Parameter(torch.zeros(phases, 1, 1, 4 * dim))
        ones, zeros = torch.ones(phases, 1, 1, dim), torch.zeros(phases, 1, 1, dim)
        self.adaLN_shift = nn.Parameter(torch.cat([zeros, ones, zeros, ones], dim=-1))

    def modulation(self, c: torch.Tensor, phase: int) -> tuple[torch.Tensor, ...]:
        """(scale_attn, gate_attn, scale_mlp, gate_mlp) for ``phase`` from the shared ``c [1, 1, 4d]``."""
        return (c * self.adaLN_scale[phase] + self.adaLN_shift[phase]).chunk(4, dim=-1)

    def forward(self, x: torch.Tensor, c: torch.Tensor, phase: int) -> torch.Tensor:
        scale1, gate1, scale2, gate2 = self.modulation(c, phase)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1))
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2))


def mar_reveal_counts(total: int, steps: int) -> list[int]:
    """Tokens MAR reveals at each of ``steps`` iterations over ``total`` masked tokens: the cosine
    schedule ``masked = floor(total cos(pi/2 (s+1)/S))``, clipped so every step reveals at least one."""
    masked, counts = total, []
    for s in range(steps):
        nxt = math.floor(total * math.cos(math.pi / 2 * (s + 1) / steps))
        nxt = 0 if s == steps - 1 else max(1, min(masked - 1, nxt))
        counts.append(masked - nxt)
        masked = nxt
    return counts


def _truncnorm_upper(
    n: int, low: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Draws of N(1, 0.25^2) truncated to ``[low, 1]`` (MAR's mask-ratio law), by inverse CDF."""
    a = torch.special.ndtr(torch.tensor((low - 1.0) / 0.25, dtype=torch.float64))
    u = a + (0.5 - a) * torch.rand(n, dtype=torch.float64, generator=generator, device="cpu")
    return (1.0 + 0.25 * torch.special.ndtri(u)).float().to(device)


class HiMAR(Generator):
    """Hi-MAR: a two-phase MAR over KL-16 latents with low-resolution pivots.

    Args:
        tokenizer: the continuous tokenizer of both the main latents and the pivots.
        latent_channels, grid: main latents (16 x 16 x 16 at 256 px).
        pivot_grid: side of the pivot latents (8: the same tokenizer on the 2x-downsampled image).
        dim, encoder_depth, decoder_depth, heads, mlp_ratio: the shared MAR encoder/decoder.
        buffer_size: class-embedding slots in front of each phase's sequence.
        num_classes: labels; unconditional generation uses the learned ``fake_latent``.
        class_dropout: probability of ``fake_latent`` in training (drawn per phase, as upstream).
        attn_dropout, proj_dropout: dropouts of the MAR blocks.
        mask_ratio_min: lower end of phase 1's truncated-Gaussian mask ratio.
        head_depth, head_width: the MLP head (``diffloss_d``/``diffloss_w``).
        dit_depth, dit_width, dit_heads, dit_mlp_ratio: the DiT head (``gdm_d``/``gdm_w``/``head``/``ratio``).
        diffusion_batch_mul: repeats of every target in the diffusion losses.
        pivot_drop_rate, pivot_warmup_steps: in phase 2 the pivot slots are all replaced by the learned
            ``cond_tokens`` with probability ``1 - rate * min(1, step / warmup)`` (``--step_stage2_rate``).
        phase1_weight, phase2_weight: the losses are ``w1 L1`` and ``w2 L2``, then averaged by token count.
        default_steps, default_pivot_steps: MAR iterations of phase 2 and phase 1 (4 and 4 x pivot_grid).
        head_sampling_steps, dit_sampling_steps: DDPM steps of the heads when sampling (100 and 250).
        default_cfg, default_pivot_cfg: the published guidance of each phase (``cfg``/``re_cfg``).
    """

    def __init__(
        self,
        *,
        tokenizer: str | None = "kl16",
        latent_channels: int = 16,
        grid: int = 16,
        pivot_grid: int = 8,
        dim: int = 768,
        encoder_depth: int = 12,
        decoder_depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        buffer_size: int = 64,
        num_classes: int = 1000,
        class_dropout: float = 0.1,
        attn_dropout: float = 0.1,
        proj_dropout: float = 0.1,
        mask_ratio_min: float = 0.7,
        head_depth: int = 6,
        head_width: int = 1024,
        dit_depth: int = 6,
        dit_width: int = 512,
        dit_heads: int = 8,
        dit_mlp_ratio: float = 4.0,
        diffusion_batch_mul: int = 1,
        pivot_drop_rate: float = 0.25,
        pivot_warmup_steps: int = 0,
        phase1_weight: float = 2.0,
        phase2_weight: float = 0.75,
        default_steps: int = 4,
        default_pivot_steps: int | None = None,
        head_sampling_steps: int = 100,
        dit_sampling_steps: int = 250,
        default_cfg: float = 1.0,
        default_pivot_cfg: float = 1.0,
    ) -> None:
        super().__init__()
        self.channels, self.num_classes = latent_channels, num_classes
        self.grid, self.pivot_grid = (grid, grid), pivot_grid
        self.n_main, self.n_pivot, self.buffer = grid * grid, pivot_grid * pivot_grid, buffer_size
        self.class_dropout, self.mask_ratio_min = class_dropout, mask_ratio_min
        self.diffusion_batch_mul = diffusion_batch_mul
        self.pivot_drop_rate, self.pivot_warmup_steps = pivot_drop_rate, pivot_warmup_steps
        self.phase_weights = (phase1_weight, phase2_weight)
        self.default_steps = default_steps
        self.default_pivot_steps = default_pivot_steps or 4 * pivot_grid
        self.head_sampling_steps, self.dit_sampling_steps = head_sampling_steps, dit_sampling_steps
        self.default_cfg, self.default_pivot_cfg = default_cfg, default_pivot_cfg
        self.steps_seen = 0
        seq = self.n_pivot + self.n_main
        self.class_emb = nn.Embedding(num_classes, dim)
        self.fake_latent = nn.Parameter(torch.zeros(1, dim))
        self.z_proj = nn.Linear(latent_channels, dim)
        self.z_proj_ln = nn.LayerNorm(dim, eps=1e-6)
        self.cond_z_proj = nn.Linear(dim, dim)
        self.cond_tokens = nn.Parameter(torch.zeros(1, self.n_pivot, latent_channels))
        self.cond_proj = nn.Linear(latent_channels, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 2 * seq, dim))
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, 2 * (seq + buffer_size), dim))
        blocks = lambda depth: nn.ModuleList(
            PhaseBlock(dim, heads, mlp_ratio, attn_dropout, proj_dropout) for _ in range(depth)
        )
        self.encoder_blocks = blocks(encoder_depth)
        self.encoder_task_emb = nn.Embedding(2, dim)
        self.encoder_blocks_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim))
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_embed = nn.Linear(dim, dim)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, 2 * (seq + buffer_size), dim))
        self.decoder_blocks = blocks(decoder_depth)
        self.decoder_task_emb = nn.Embedding(2, dim)
        self.decoder_blocks_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim))
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.diffusion_pos_embed_learned = nn.Parameter(torch.zeros(1, seq, dim))
        self._initialize()
        self.diffloss = nn.Module()
        self.diffloss.net = MlpDenoiser(latent_channels, dim, head_width, head_depth)
        self.cond_diffloss = nn.Module()
        self.cond_diffloss.net = DiTDenoiser(
            latent_channels, dim, dit_width, dit_depth, dit_heads, dit_mlp_ratio, grid
        )
        self.mlp_diffusion = GaussianDiffusion(learn_sigma=True)
        self.dit_diffusion = GaussianDiffusion(learn_sigma=False)

    def _initialize(self) -> None:
        """Upstream's init of the transformer (the heads initialise themselves afterwards)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for table in (
            self.class_emb.weight,
            self.fake_latent,
            self.mask_token,
            self.cond_tokens,
            self.encoder_pos_embed_learned,
            self.decoder_pos_embed_learned,
            self.diffusion_pos_embed_learned,
        ):
            nn.init.normal_(table, std=0.02)

    # ------------------------------------------------------------------ spec
    @property
    def latent_channels(self) -> int:
        return self.channels

    def forward_passes(self, steps: int | None = None) -> int:
        return self.default_pivot_steps + (steps or self.default_steps)

    def token_layout(self) -> dict[str, Any]:
        layout = super().token_layout()
        layout["pivot_grid"] = [self.pivot_grid, self.pivot_grid]
        layout["pivot_steps"] = self.default_pivot_steps
        return layout

    # ------------------------------------------------------------------ network
    def _phase_ada(self, phase: int, table: nn.Embedding, ada: nn.Sequential) -> torch.Tensor:
        return ada(table.weight[phase].view(1, 1, -1))

    def encode_phase(
        self,
        phase: int,
        pivot_in: torch.Tensor,
        main_in: torch.Tensor,
        mask: torch.Tensor,
        class_embedding: torch.Tensor,
    ) -> torch.Tensor:
        """MAR encoder of ``phase`` over the unmasked slots of ``[buffer | pivots | main]``.

        ``pivot_in [B, P, d]`` and ``main_in [B, N, d]`` are already projected; ``mask [B, P + N]`` is
        1 where a slot is masked (the count must be equal across the batch).
        """
        b, _, d = main_in.shape
        x = torch.cat([class_embedding[:, None].expand(b, self.buffer, d), pivot_in, main_in], dim=1)
        span = x.shape[1]
        x = self.z_proj_ln(x + self.encoder_pos_embed_learned[:, phase * span : (phase + 1) * span])
        keep = torch.cat([torch.ones(b, self.buffer, dtype=torch.bool, device=x.device), mask == 0], dim=1)
        x = x[keep].view(b, -1, d)
        c = self._phase_ada(phase, self.encoder_task_emb, self.encoder_blocks_ada)
        for block in self.encoder_blocks:
            x = block(x, c, phase)
        return self.encoder_norm(x)

    def decode_phase(self, phase: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MAR decoder of ``phase``: masked slots get the phase's mask tokens; returns ``[B, P + N, d]``
        features for the diffusion heads (buffer dropped, ``diffusion_pos_embed_learned`` added)."""
        x = self.decoder_embed(x)
        b, _, d = x.shape
        seq = mask.shape[1]
        full = torch.cat(
            [
                x.new_zeros(b, self.buffer, d),
                self.mask_token[:, phase * seq : (phase + 1) * seq].expand(b, -1, -1).to(x.dtype),
            ],
            dim=1,
        )
        keep = torch.cat([torch.ones(b, self.buffer, dtype=torch.bool, device=x.device), mask == 0], dim=1)
        full = full.masked_scatter(keep[..., None], x)
        span = seq + self.buffer
        h = full + self.decoder_pos_embed_learned[:, phase * span : (phase + 1) * span]
        c = self._phase_ada(phase, self.decoder_task_emb, self.decoder_blocks_ada)
        for block in self.decoder_blocks:
            h = block(h, c, phase)
        return self.decoder_norm(h)[:, self.buffer :] + self.diffusion_pos_embed_learned

    def _class_embedding(
        self, labels: torch.Tensor, drop: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        emb = self.class_emb(labels)
        if drop:
            dropped = torch.rand(len(labels), generator=generator, device=labels.device) < self.class_dropout
            emb = torch.where(dropped[:, None], self.fake_latent.to(emb.dtype), emb)
        return emb

    # ------------------------------------------------------------------ training
    def _tokens(self, x: torch.Tensor, side: int, what: str) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, side, side):
            raise ValueError(
                f"{self.arch or 'Hi-MAR'} models {what} [B, {self.channels}, {side}, {side}], got {tuple(x.shape)}"
            )
        return x.float().flatten(2).transpose(1, 2)

    def pivot_keep_probability(self) -> float:
        """Probability that phase 2 sees the phase-1 features at all (else only ``cond_tokens``)."""
        ramp = min(1.0, self.steps_seen / self.pivot_warmup_steps) if self.pivot_warmup_steps > 0 else 1.0
        return self.pivot_drop_rate * ramp

    def training_loss(self, batch: Mapping[str, torch.Tensor]) -> GeneratorOutput:
        """Both phases on one batch (``latents`` main, ``pivot`` half-resolution, ``labels``):
        ``(P w1 L1 + N w2 L2) / (P + N)`` as upstream's engine weighs them."""
        if "pivot" not in batch:
            raise KeyError(
                "Hi-MAR trains on pivots too: build the token cache with pivot=True (zoo cache --pivot)"
            )
        x = self._tokens(batch["latents"], self.grid[0], "latents")
        p = self._tokens(batch["pivot"], self.pivot_grid, "pivots")
        labels = batch["labels"].long()
        b, dev = len(x), x.device
        n_p, n_m = self.n_pivot, self.n_main
        order_p = torch.rand(b, n_p, device=dev).argsort(1)
        order_m = torch.rand(b, n_m, device=dev).argsort(1)
        # phase 1: a truncated-Gaussian share of the pivots masked, every main token masked
        n1 = math.ceil(n_p * float(_truncnorm_upper(1, self.mask_ratio_min, None, dev)[0]))
        mask_p = torch.zeros(b, n_p, device=dev).scatter(1, order_p[:, :n1], 1.0)
        mask1 = torch.cat([mask_p, torch.ones(b, n_m, device=dev)], dim=1)
        main_in = self.z_proj(x)
        enc = self.encode_phase(
            0, self.cond_proj(p), main_in, mask1, self._class_embedding(labels, self.training)
        )
        z1 = self.decode_phase(0, enc, mask1)[:, :n_p]
        loss1 = self._mlp_loss(z1, p, mask_p)
        # phase 2: cosine share of the main tokens masked; pivot slots carry phase-1 features
        n2 = math.ceil(n_m * math.cos(float(torch.rand(())) * math.pi / 2))
        mask_m = torch.zeros(b, n_m, device=dev).scatter(1, order_m[:, :n2], 1.0)
        mask2 = torch.cat([torch.zeros(b, n_p, device=dev), mask_m], dim=1)
        pivot_in = self.cond_z_proj(z1.detach())
        if self.training:  # as upstream: features only where phase 1 had masked the pivot, and sometimes none
            learned = self.cond_proj(self.cond_tokens).expand(b, -1, -1)
            pivot_in = torch.where(mask_p[..., None] == 0, learned, pivot_in)
            none = torch.rand(b, device=dev) <= 1.0 - self.pivot_keep_probability()
            pivot_in = torch.where(none[:, None, None], learned, pivot_in)
            self.steps_seen += 1
        enc = self.encode_phase(1, pivot_in, main_in, mask2, self._class_embedding(labels, self.training))
        z2 = self.decode_phase(1, enc, mask2)[:, n_p:]
        loss2 = self._dit_loss(z2, batch["latents"].float(), mask_m)
        w1, w2 = self.phase_weights
        loss = (n_p * w1 * loss1 + n_m * w2 * loss2) / (n_p + n_m)
        return GeneratorOutput(loss=loss, stats={"pivot_loss": loss1.detach(), "main_loss": loss2.detach()})

    def _mlp_loss(self, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k = self.diffusion_batch_mul
        z = z.reshape(-1, z.shape[-1]).repeat(k, 1)
        target = target.reshape(-1, self.channels).repeat(k, 1)
        mask = mask.reshape(-1).repeat(k)
        t = torch.randint(0, self.mlp_diffusion.num_steps, (len(target),), device=target.device)
        loss = self.mlp_diffusion.training_loss(lambda x_t, s: self.diffloss.net(x_t, s, z), target, t)
        return (loss * mask).sum() / mask.sum()

    def _dit_loss(self, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k, g = self.diffusion_batch_mul, self.grid[0]
        z = z.transpose(1, 2).reshape(len(z), -1, g, g).repeat(k, 1, 1, 1)
        target = target.repeat(k, 1, 1, 1)
        weight = mask.view(-1, 1, g, g).repeat(k, 1, 1, 1)
        t = torch.randint(0, self.dit_diffusion.num_steps, (len(target),), device=target.device)
        loss = self.dit_diffusion.training_loss(
            lambda x_t, s: self.cond_diffloss.net(x_t, s, z), target, t, weight
        )
        return loss.mean()

    # ------------------------------------------------------------------ sampling
    def _guided(self, net: Callable[..., torch.Tensor], z: torch.Tensor, scale: float | None, channels: int):
        """A denoiser on the conditional half: ``z`` stacks [conditional; unconditional] features when
        ``scale`` is given; eps is mixed, the variance (if any) is the conditional one."""

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if scale is None:
                return net(x, t, z)
            out = net(torch.cat([x, x]), torch.cat([t, t]), z)
            cond, uncond = out.chunk(2)
            eps = uncond[:, :channels] + scale * (cond[:, :channels] - uncond[:, :channels])
            return torch.cat([eps, cond[:, channels:]], dim=1)

        return fn

    @staticmethod
    def _cfg(cfg: float, schedule: str, revealed: int, total: int) -> float:
        """Muse's linear ramp on the share revealed after this step; upstream counts at least one token
        as still masked on the last step, so the full scale is never quite reached."""
        revealed = min(revealed, total - 1)
        if schedule == "linear":
            return 1.0 + (cfg - 1.0) * revealed / total
        if schedule == "constant":
            return cfg
        raise ValueError(f"cfg_schedule must be 'linear' or 'constant', got {schedule!r}")

    @torch.no_grad()
    def sample(
        self,
        labels: Any,
        *,
        cfg: float | None = None,
        steps: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        progress: bool = False,
        pivot_cfg: float | None = None,
        pivot_steps: int | None = None,
        dit_steps: int | None = None,
        head_steps: int | None = None,
        cfg_schedule: str = "linear",
        use_pivots: bool = True,
        return_pivots: bool = False,
    ) -> Tokens | tuple[Tokens, torch.Tensor]:
        """Phase 1 (``pivot_steps`` MAR iterations over the pivots, MLP head, guidance ``pivot_cfg``), then
        phase 2 (``steps`` iterations over the main latents, each running the DiT head for ``dit_steps``
        DDPM steps on the whole map, guidance ``cfg``); both guidances ramp with the revealed share.

        ``temperature`` scales the heads' step noise. ``use_pivots=False`` feeds phase 2 the learned
        ``cond_tokens`` instead of the phase-1 features (the paper's ablation; phase 1 is skipped).
        ``return_pivots`` also returns the pivot latents ``[B, C, g/2, g/2]`` (a half-resolution preview).
        """
        if (top_k, top_p) != (0, 1.0):
            raise ValueError("Hi-MAR samples continuous latents: top_k and top_p do not apply")
        cfg = self.default_cfg if cfg is None else cfg
        pivot_cfg = self.default_pivot_cfg if pivot_cfg is None else pivot_cfg
        steps = steps or self.default_steps
        pivot_steps = pivot_steps or self.default_pivot_steps
        dit = GaussianDiffusion(count=dit_steps or self.dit_sampling_steps, learn_sigma=False)
        head = GaussianDiffusion(count=head_steps or self.head_sampling_steps, learn_sigma=True)
        labels = self.labels(labels)
        b, dev, c, d = len(labels), self.device, self.channels, self.fake_latent.shape[1]
        n_p, n_m, g = self.n_pivot, self.n_main, self.grid[0]
        rng = self.make_generator(seed)
        order_p = torch.rand(b, n_p, device=dev, generator=rng).argsort(1)
        order_m = torch.rand(b, n_m, device=dev, generator=rng).argsort(1)
        rows = torch.arange(b, device=dev)[:, None]
        cond_emb, fake = self.class_emb(labels), self.fake_latent.expand(b, -1)
        pivots = torch.zeros(b, n_p, c, device=dev)
        main = torch.zeros(b, n_m, c, device=dev)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=(pivot_steps if use_pivots else 0) + steps, desc="sample", disable=not progress, leave=False
        )
        if use_pivots:
            pivot_z = torch.zeros(b, n_p, d, device=dev)
            mask_p = torch.ones(b, n_p, dtype=torch.bool, device=dev)
            guided = pivot_cfg != 1.0
            start = 0
            for count in mar_reveal_counts(n_p, pivot_steps):
                copies = 2 if guided else 1
                mask = (
                    torch.cat([mask_p, torch.ones(b, n_m, dtype=torch.bool, device=dev)], 1)
                    .float()
                    .repeat(copies, 1)
                )
                emb = torch.cat([cond_emb, fake]) if guided else cond_emb
                enc = self.encode_phase(
                    0,
                    self.cond_proj(pivots).repeat(copies, 1, 1),
                    self.z_proj(main).repeat(copies, 1, 1),
                    mask,
                    emb,
                )
                z = self.decode_phase(0, enc, mask)[:, :n_p]
                # the order's head stays masked: reveal from its tail (upstream's mask_by_order); the
                # revealed tokens take the head's noise rows in raster order, as upstream's do
                idx = order_p[:, n_p - start - count : n_p - start].sort(1).values
                start += count
                pivot_z[rows, idx] = z[:b][rows, idx]
                picked = torch.cat([z[:b][rows, idx], z[b:][rows, idx]]) if guided else z[rows, idx]
                scale = self._cfg(pivot_cfg, cfg_schedule, start, n_p) if guided else None
                noise = torch.randn(b * count, c, device=dev, generator=rng)
                fn = self._guided(self.diffloss.net, picked.reshape(-1, d), scale, c)
                sampled = head.sample(fn, noise, temperature=temperature, generator=rng)
                pivots[rows, idx] = sampled.view(b, count, c).to(pivots.dtype)
                mask_p[rows, idx] = False
                bar.update()
            pivot_in = self.cond_z_proj(pivot_z)
        else:
            pivot_in = self.cond_proj(self.cond_tokens).expand(b, -1, -1)
        guided = cfg != 1.0
        copies = 2 if guided else 1
        mask_m = torch.ones(b, n_m, dtype=torch.bool, device=dev)
        start = 0
        for count in mar_reveal_counts(n_m, steps):
            mask = (
                torch.cat([torch.zeros(b, n_p, dtype=torch.bool, device=dev), mask_m], 1)
                .float()
                .repeat(copies, 1)
            )
            emb = torch.cat([cond_emb, fake]) if guided else cond_emb
            enc = self.encode_phase(
                1, pivot_in.repeat(copies, 1, 1), self.z_proj(main).repeat(copies, 1, 1), mask, emb
            )
            z = self.decode_phase(1, enc, mask)[:, n_p:].transpose(1, 2).reshape(copies * b, d, g, g)
            start += count
            scale = self._cfg(cfg, cfg_schedule, start, n_m) if guided else None
            noise = torch.randn(b, c, g, g, device=dev, generator=rng)
            known = main.transpose(1, 2).reshape(b, c, g, g)
            fn = self._guided(self.cond_diffloss.net, z, scale, c)
            sampled = (
                dit.sample(
                    fn,
                    noise,
                    temperature=temperature,
                    known=known,
                    unknown=mask_m.view(b, g, g),
                    generator=rng,
                )
                .flatten(2)
                .transpose(1, 2)
            )
            idx = order_m[:, n_m - start : n_m - start + count]
            main[rows, idx] = sampled[rows, idx].to(main.dtype)
            mask_m[rows, idx] = False
            bar.update()
        bar.close()
        latents = main.transpose(1, 2).reshape(b, c, g, g)
        tokens = self.sampled_tokens(
            labels,
            latents=latents,
            cfg=cfg,
            pivot_cfg=pivot_cfg if use_pivots else None,
            steps=steps,
            pivot_steps=pivot_steps if use_pivots else None,
            dit_steps=dit.num_steps,
            seed=seed,
            use_pivots=use_pivots,
        )
        if return_pivots:
            return tokens, pivots.transpose(1, 2).reshape(b, c, self.pivot_grid, self.pivot_grid)
        return tokens


# ---------------------------------------------------------------------------------------------- converter
def convert_himar(
    state_dict: Mapping[str, torch.Tensor], model: HiMAR | None = None
) -> dict[str, torch.Tensor]:
    """Map an upstream Hi-MAR state dict (``model_ema`` or ``model`` of ``checkpoint-last.pth``) onto
    `HiMAR`. Every tensor keeps its upstream name (DDP's ``module.`` prefix is stripped); the DiT
    head's fixed ``pos_embed``/``c_pos_embed`` are taken from the checkpoint like the rest."""
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


# ---------------------------------------------------------------------------------------------- registry
_SIZES: dict[str, dict[str, Any]] = {
    "himar_b": {
        "dim": 768,
        "encoder_depth": 12,
        "decoder_depth": 12,
        "heads": 12,
        "head_depth": 6,
        "head_width": 1024,
        "dit_depth": 6,
        "dit_width": 512,
        "dit_heads": 8,
        "default_steps": 4,
        "default_cfg": 2.5,
        "default_pivot_cfg": 2.7,
    },
    "himar_l": {
        "dim": 1024,
        "encoder_depth": 16,
        "decoder_depth": 16,
        "heads": 16,
        "head_depth": 8,
        "head_width": 1280,
        "dit_depth": 8,
        "dit_width": 512,
        "dit_heads": 8,
        "default_steps": 4,
        "default_cfg": 3.5,
        "default_pivot_cfg": 3.5,
    },
    "himar_h": {
        "dim": 1280,
        "encoder_depth": 20,
        "decoder_depth": 20,
        "heads": 16,
        "head_depth": 12,
        "head_width": 1536,
        "dit_depth": 12,
        "dit_width": 768,
        "dit_heads": 12,
        "default_steps": 12,
        "default_cfg": 3.2,
        "default_pivot_cfg": 5.5,
    },
}
_TINY: dict[str, Any] = {
    "tokenizer": None,
    "latent_channels": 4,
    "grid": 8,
    "pivot_grid": 4,
    "dim": 64,
    "encoder_depth": 2,
    "decoder_depth": 2,
    "heads": 4,
    "buffer_size": 4,
    "num_classes": 10,
    "attn_dropout": 0.0,
    "proj_dropout": 0.0,
    "head_depth": 2,
    "head_width": 64,
    "dit_depth": 2,
    "dit_width": 64,
    "dit_heads": 4,
    "default_steps": 4,
    "default_pivot_steps": 8,
    "head_sampling_steps": 25,
    "dit_sampling_steps": 25,
}


@register_model(modality="generator", family="himar")
def himar_b(**kwargs: Any) -> HiMAR:
    """Hi-MAR-B: 12+12 blocks of width 768, MLP head 6x1024, DiT head 6x512 (244.7M parameters)."""
    return build(HiMAR, "himar_b", _SIZES["himar_b"], kwargs)


@register_model(modality="generator", family="himar")
def himar_l(**kwargs: Any) -> HiMAR:
    """Hi-MAR-L: 16+16 blocks of width 1024, MLP head 8x1280, DiT head 8x512."""
    return build(HiMAR, "himar_l", _SIZES["himar_l"], kwargs)


@register_model(modality="generator", family="himar")
def himar_h(**kwargs: Any) -> HiMAR:
    """Hi-MAR-H: 20+20 blocks of width 1280, MLP head 12x1536, DiT head 12x768, 12 phase-2 iterations."""
    return build(HiMAR, "himar_h", _SIZES["himar_h"], kwargs)


@register_model(modality="generator", family="himar", size="tiny")
def himar_tiny(**kwargs: Any) -> HiMAR:
    """A 2+2-block Hi-MAR for CPU tests: 8x8x4 latents with 4x4 pivots (kl16_tiny), 10 classes."""
    return build(HiMAR, "himar_tiny", _TINY, kwargs)


for _arch, _folder, _fid in (
    ("himar_b", "Hi-MAR-B", 1.93),
    ("himar_l", "Hi-MAR-L", 1.66),
    ("himar_h", "Hi-MAR-H", 1.52),
):
    register_pretrained(
        f"{_arch}.in1k_256",
        PretrainedCfg(
            hf_hub_id="HiDream-ai/Hi-MAR",
            filename=f"{_folder}/checkpoint-last.pth",
            converter="convert_himar",
            checkpoint_key=("model_ema", "model", None),
            paper="arXiv:2505.20288",
            upstream="https://github.com/HiDream-ai/himar @ 1d378c1",
            description=(
                "Hi-MAR class-to-image on ImageNet 256 px over MAR's KL-16 latents with 8x8 pivots "
                "(training checkpoint; the EMA weights are loaded, as upstream's --evaluate does)."
            ),
            metrics={"FID-50k (ImageNet 256, cfg)": _fid},
        ),
    )
