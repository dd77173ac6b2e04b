"""xAR: next-X prediction with flow matching over KL-16 latents.

Paper: "Beyond Next-Token: Next-X Prediction for Autoregressive Visual Generation", Ren et al. 2025,
arXiv:2502.20388. Upstream: OliverRensu/xAR @ 121e9c9 (``models/xar.py``, ``models/sampler.py``,
``models/rope.py``).

The latent grid is cut into *entities* that are generated one after another; each entity is produced
by flow matching with the whole Transformer as the velocity network (no separate head). Attention is
block-causal over entities (bidirectional inside one), and every token is modulated by AdaLN from its
entity's condition, the class embedding plus the embedding of that entity's own flow time. In training
every entity is noised with its own time ("Noisy Context Learning"), so the model learns to use an
imperfect context; in sampling the finished entities are fed back clean (time 0) through a KV cache,
and each new entity is integrated by Euler-Maruyama from noise, with guidance ramping linearly from
none on the first entity to ``cfg`` on the last.

Blocks: weightless RMSNorm, attention with qkv bias and 2-D RoPE on the whole head (rows on the first
half of the rotary pairs, columns on the second), weightless RMSNorm, a GELU-gated MLP (timm's ``SwiGLU``
module with ``fc1_g``, ``fc1_x``, ``fc2``); ``ada_lin`` gives (gate1, gate2, scale1, scale2, shift1, shift2). An "encoder"
and a "decoder" stack (MAR's naming) run back to back.

Entities (``entity``): ``"cell"`` cuts the grid into ``cell x cell`` squares taken in raster order,
tokens row-major inside each (upstream ships ``cell=8`` on the 16x16 grid: 4 cells); ``cell=1`` is
next-patch prediction; ``"scale"`` makes entity ``i`` the whole latent area-averaged to
``scales[i] x scales[i]`` (the last scale is the full grid and is what is returned), with rotary
positions at the coarse pixels' centres.

Deliberate differences from upstream (upstream's behaviour is what converted weights get):

- grid, channels, entity layout and class count are constructor arguments (upstream hard-codes 64
  tokens per cell, 16 channels, 2x2 cells, a 16x16 rotary grid and a 1001-row class table);
- flow times are cast to integers (``(1000 t).long()``) before the sinusoidal embedding, as upstream
  does, so converted weights give upstream's velocities;
- the logit-normal times of training come from torch's generator instead of scipy's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...generator import Generator, GeneratorOutput
from ...nn.dit import flow_time_embedding
from ...nn.kv_cache import KVCache
from ...nn.llama import RMSNorm, apply_rope_pairs, rope_2d_angles
from ...sampling import linear_cfg_schedule
from ...tokens import Tokens

__all__ = ["XAR", "EntityLayout", "block_causal_mask", "convert_xar"]


class EntityLayout:
    """How a ``[B, C, H, W]`` latent becomes a token sequence of entities, and back.

    ``sizes`` are the tokens of each entity in sequence order, ``rows``/``cols`` each token's grid
    position (fractional for coarse scales).
    """

    def __init__(self, grid: int, entity: str = "cell", cell: int = 8, scales: tuple[int, ...] = ()) -> None:
        self.grid, self.entity = grid, entity
        if entity == "cell":
            if cell < 1 or grid % cell:
                raise ValueError(f"cell size {cell} does not divide the {grid}x{grid} grid")
            self.cell, self.scales = cell, ()
            per = grid // cell
            self.sizes = [cell * cell] * (per * per)
            r, c = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
            self.rows = self._cells(r[None, None].float())[0, :, 0]
            self.cols = self._cells(c[None, None].float())[0, :, 0]
        elif entity == "scale":
            scales = tuple(int(s) for s in scales)
            if (
                not scales
                or scales[-1] != grid
                or any(grid % s for s in scales)
                or list(scales) != sorted(set(scales))
            ):
                raise ValueError(f"scales must increase, divide {grid} and end at {grid}; got {scales}")
            self.cell, self.scales = 0, scales
            self.sizes = [s * s for s in scales]
            rows, cols = [], []
            for s in scales:
                centre = (torch.arange(s) + 0.5) * grid / s - 0.5
                r, c = torch.meshgrid(centre, centre, indexing="ij")
                rows.append(r.flatten())
                cols.append(c.flatten())
            self.rows, self.cols = torch.cat(rows), torch.cat(cols)
        else:
            raise ValueError(f"entity must be 'cell' or 'scale', got {entity!r}")
        self.length = sum(self.sizes)
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    def __len__(self) -> int:
        return len(self.sizes)

    def _cells(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = self.cell
        x = x.reshape(b, c, h // k, k, w // k, k).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, h * w, c)

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> tokens ``[B, length, C]``."""
        if self.entity == "cell":
            return self._cells(x)
        return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2).transpose(1, 2) for s in self.scales], dim=1)

    def from_sequence(self, seq: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, length, C]`` -> ``[B, C, H, W]`` (for scales: the last, full-size one)."""
        b, _, c = seq.shape
        g = self.grid
        if self.entity == "scale":
            return seq[:, -g * g :].transpose(1, 2).reshape(b, c, g, g)
        k, per = self.cell, g // self.cell
        x = seq.reshape(b, per, per, k, k, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, g, g)

    def entity_index(self) -> torch.Tensor:
        """The entity of every token ``[length]``."""
        return torch.tensor([e for e, size in enumerate(self.sizes) for _ in range(size)])


def block_causal_mask(sizes: list[int]) -> torch.Tensor:
    """Boolean ``[L, L]``: a token attends to every token of its own and earlier entities."""
    entity = torch.tensor([e for e, size in enumerate(sizes) for _ in range(size)])
    return entity[None, :] <= entity[:, None]


class TimestepEmbedder(nn.Module):
    """Sinusoidal ``[cos | sin]`` features of integer flow times ``(1000 t).long()`` -> MLP (DiT's)."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        steps = (t * 1000).long()
        return self.mlp(
            flow_time_embedding(steps, self.frequency_dim, scale=1.0).to(self.mlp[0].weight.dtype)
        )


class GatedMlp(nn.Module):
    """timm's ``SwiGLU`` module as xAR builds it: ``fc2(gelu(fc1_g x) * fc1_x x)`` with biases.

    Upstream's blocks pass their default ``act_layer=nn.GELU`` into timm's ``SwiGLU``, so the gate is
    an exact GELU, not a SiLU; converted weights need the GELU.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden)
        self.fc1_x = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1_g(x)) * self.fc1_x(x))))


class CachedAttention(nn.Module):
    """Attention with qkv bias and 2-D rotary positions over a cache of finished entities.

    ``keep`` tokens at the front of the input are appended to ``cache`` after this call; the rest
    attend but are not kept (the noisy entity being denoised).
    """

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        keep: int = 0,
    ) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).unbind(2)
        q = apply_rope_pairs(q, rope).transpose(1, 2)
        k = apply_rope_pairs(k, rope).transpose(1, 2)
        v = v.transpose(1, 2)
        if cache is not None:
            keys, values = cache.peek(k, v)
            if keep:
                cache.extend(k[:, :, :keep], v[:, :, :keep])
            k, v = keys, values
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class XARBlock(nn.Module):
    """RMSNorm -> AdaLN-modulated attention and SwiGLU, each with a per-entity gate."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.norm1 = RMSNorm(dim, eps=1e-6, affine=False)
        self.attn = CachedAttention(dim, heads, attn_dropout, proj_dropout)
        self.norm2 = RMSNorm(dim, eps=1e-6, affine=False)
        self.mlp = GatedMlp(dim, int(dim * mlp_ratio * 2 / 3), proj_dropout)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(
        self,
        x: torch.Tensor,
        condition: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        keep: int = 0,
        expand: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``condition [B, G, dim]`` holds one condition per group of tokens and ``expand [N]`` each
        token's group; without ``expand`` it is each token's own condition ``[B, N, dim]``."""
        modulation = self.ada_lin(condition).view(*condition.shape[:2], 6, -1)
        if expand is not None:
            modulation = modulation[:, expand]
        gate1, gate2, scale1, scale2, shift1, shift2 = modulation.unbind(2)
        x = x + self.attn(self.norm1(x) * (1 + scale1) + shift1, rope, mask, cache, keep) * gate1
        return x + self.mlp(self.norm2(x) * (1 + scale2) + shift2) * gate2


class XAR(Generator):
    """xAR: block-causal flow-matching Transformer generating a latent grid one entity at a time.

    Args:
        tokenizer: name, repo or directory of the continuous tokenizer whose latents are modelled.
        latent_channels, grid: the latent's channels and square grid side (16 and 16 for KL-16 at 256 px).
        entity, cell, scales: the entity layout (see the module docstring).
        dim, encoder_depth, decoder_depth, heads, mlp_ratio: widths and depths of the two stacks.
        num_classes: class labels; the embedding has one more (null) row.
        class_dropout: probability of the null label in training (for guidance).
        attn_dropout, proj_dropout: dropouts inside the blocks (training only).
        default_steps: Euler-Maruyama steps per entity when ``sample`` is not told (40 for B, 50 for L/H).
    """

    def __init__(
        self,
        *,
        tokenizer: str | None = "kl16",
        latent_channels: int = 16,
        grid: int = 16,
        entity: str = "cell",
        cell: int = 8,
        scales: tuple[int, ...] = (),
        dim: int = 768,
        encoder_depth: int = 8,
        decoder_depth: int = 8,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        class_dropout: float = 0.1,
        attn_dropout: float = 0.1,
        proj_dropout: float = 0.1,
        default_steps: int = 40,
    ) -> None:
        super().__init__()
        self.channels, self.num_classes = latent_channels, num_classes
        self.grid = (grid, grid)
        self.layout = EntityLayout(grid, entity, cell, tuple(scales))
        self.class_dropout, self.default_steps = class_dropout, default_steps
        length = self.layout.length
        self.class_emb = nn.Embedding(num_classes + 1, dim)
        self.time_embed = TimestepEmbedder(dim)
        self.z_proj = nn.Linear(latent_channels, dim)
        self.z_proj_ln = RMSNorm(dim, eps=1e-6)
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, length, dim))
        blocks = lambda depth: nn.ModuleList(
            XARBlock(dim, heads, mlp_ratio, attn_dropout, proj_dropout) for _ in range(depth)
        )
        self.encoder_blocks = blocks(encoder_depth)
        self.encoder_norm = RMSNorm(dim, eps=1e-6)
        self.decoder_embed = nn.Linear(dim, dim)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, length, dim))
        self.decoder_blocks = blocks(decoder_depth)
        self.decoder_norm = RMSNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, latent_channels)
        self.heads, self.head_dim = heads, dim // heads
        rope = rope_2d_angles(self.layout.rows, self.layout.cols, dim // heads)
        self.register_buffer("rope", rope, persistent=False)
        self.register_buffer("mask", block_causal_mask(self.layout.sizes), persistent=False)
        self.register_buffer("entity", self.layout.entity_index(), persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Upstream's init: Xavier-uniform linears with zero biases, N(0, 0.02) class and position tables."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for table in (self.class_emb.weight, self.encoder_pos_embed_learned, self.decoder_pos_embed_learned):
            nn.init.normal_(table, std=0.02)

    # ------------------------------------------------------------------ spec
    @property
    def latent_channels(self) -> int:
        return self.channels

    def forward_passes(self, steps: int | None = None) -> int:
        return len(self.layout) * (steps or self.default_steps)

    def token_layout(self) -> dict[str, Any]:
        layout = super().token_layout()
        layout["entities"] = len(self.layout)
        layout["entity"] = self.layout.entity
        layout["tokens_per_entity"] = self.layout.sizes
        return layout

    # ------------------------------------------------------------------ network
    def _condition(
        self, labels: torch.Tensor, t: torch.Tensor, entity: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """AdaLN conditions: class plus time embedding, computed once per entity (as upstream does, and
        a third of a block's work less than once per token) with each token's entity index, or once per
        token when an entity's tokens carry different times."""
        _, counts = torch.unique_consecutive(entity, return_counts=True)
        expand = torch.repeat_interleave(torch.arange(len(counts), device=t.device), counts.to(t.device))
        first = (counts.cumsum(0) - counts).to(t.device)
        t_entity = t[:, first]
        if torch.equal(t_entity[:, expand], t):
            t, expand_or_none = t_entity, expand
        else:
            expand_or_none = None
        condition = self.class_emb(labels)[:, None] + self.time_embed(t.reshape(-1)).view(*t.shape, -1)
        return condition, expand_or_none

    def velocity(
        self,
        x_t: torch.Tensor,
        labels: torch.Tensor,
        t: torch.Tensor,
        *,
        span: slice | None = None,
        mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        keep: int = 0,
    ) -> torch.Tensor:
        """Predicted velocity ``[B, n, C]`` of tokens ``x_t [B, n, C]`` at sequence positions ``span``.

        ``t [B, n]`` is each token's flow time; ``labels [B]`` (the null class for the unguided half).
        Without a cache the tokens are the whole sequence and ``mask`` its block-causal mask.
        """
        span = span or slice(0, self.layout.length)
        condition, expand = self._condition(labels, t, self.entity[span])
        rope = self.rope[span]
        h = self.z_proj_ln(self.z_proj(x_t) + self.encoder_pos_embed_learned[:, span])
        encoder_caches = caches[: len(self.encoder_blocks)] if caches else [None] * len(self.encoder_blocks)
        decoder_caches = caches[len(self.encoder_blocks) :] if caches else [None] * len(self.decoder_blocks)
        for block, cache in zip(self.encoder_blocks, encoder_caches, strict=True):
            h = block(h, condition, rope, mask, cache, keep, expand)
        h = self.decoder_embed(self.encoder_norm(h)) + self.decoder_pos_embed_learned[:, span]
        for block, cache in zip(self.decoder_blocks, decoder_caches, strict=True):
            h = block(h, condition, rope, mask, cache, keep, expand)
        return self.pred(self.decoder_norm(h))

    def _latent_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        g = self.grid[0]
        if latents.ndim != 4 or tuple(latents.shape[1:]) != (self.channels, g, g):
            raise ValueError(
                f"{self.arch or 'xAR'} models latents [B, {self.channels}, {g}, {g}], got {tuple(latents.shape)}"
            )
        return self.layout.to_sequence(latents.float())

    def training_loss(self, batch: Mapping[str, torch.Tensor]) -> GeneratorOutput:
        """Noisy Context Learning: every entity gets its own logit-normal time; MSE to ``noise - x``."""
        x = self._latent_tokens(batch["latents"])
        labels = batch["labels"].long()
        b = len(x)
        if self.training:
            labels = torch.where(
                torch.rand(b, device=x.device) < self.class_dropout, self.num_classes, labels
            )
        t_entity = torch.sigmoid(torch.randn(b, len(self.layout), device=x.device))
        t = t_entity[:, self.entity]
        noise = torch.randn_like(x)
        x_t = (1 - t[..., None]) * x + t[..., None] * noise
        prediction = self.velocity(x_t, labels, t, mask=self.mask)
        loss = F.mse_loss(prediction.float(), noise - x)
        return GeneratorOutput(loss=loss, stats={"mse": loss.detach()})

    # ------------------------------------------------------------------ sampling
    def _new_caches(self, batch: int, dtype: torch.dtype) -> list[KVCache]:
        count = len(self.encoder_blocks) + len(self.decoder_blocks)
        return [
            KVCache(batch, self.heads, self.head_dim, dtype=dtype, device=self.device) for _ in range(count)
        ]

    @torch.no_grad()
    def sample(
        self,
        labels: Any,
        *,
        cfg: float = 1.0,
        steps: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        progress: bool = False,
        callback: Callable[[int, int, torch.Tensor, float, torch.Tensor], None] | None = None,
    ) -> Tokens:
        """Euler-Maruyama over ``steps`` times ``linspace(1, 0.04)`` then a deterministic step to 0, per
        entity, with guidance ``1 + (cfg - 1) e / (E - 1)`` on entity ``e``; returns scaled latents.

        ``temperature``, ``top_k`` and ``top_p`` apply to discrete generators and must stay at their
        defaults. ``callback(entity, step, x_t, t, velocity)`` sees every network input and output (both
        halves of the guided batch; tests use it). Upstream always runs the null-class half; without
        guidance (``cfg <= 1``) it is never used, so it is skipped here: half the work, same latents.
        """
        if (temperature, top_k, top_p) != (1.0, 0, 1.0):
            raise ValueError("xAR samples continuous latents: temperature, top_k and top_p do not apply")
        steps = steps or self.default_steps
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        labels = self.labels(labels)
        b, layout = len(labels), self.layout
        rng = self.make_generator(seed)
        guided = cfg > 1.0
        copies = 2 if guided else 1
        both = torch.cat([labels, torch.full_like(labels, self.num_classes)]) if guided else labels
        caches = self._new_caches(copies * b, self.z_proj.weight.dtype)
        times = torch.cat(
            [torch.linspace(1.0, 0.04, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
        )
        finished: list[torch.Tensor] = []
        from tqdm.auto import tqdm

        bar = tqdm(total=len(layout) * steps, desc="sample", disable=not progress, leave=False)
        for e, (start, size) in enumerate(zip(layout.starts, layout.sizes, strict=True)):
            scale = linear_cfg_schedule(cfg, e, len(layout))
            x = torch.randn(b, size, self.channels, device=self.device, generator=rng).double()
            for i in range(steps):
                t_cur, t_next = times[i], times[i + 1]
                current = x.repeat(copies, 1, 1).float()
                t = torch.full((copies * b, size), float(t_cur), device=self.device)
                if i == 0 and finished:
                    # Feed the previous entity clean (t = 0) once: its keys and values join the cache.
                    prev = finished[-1].repeat(copies, 1, 1)
                    prev_start = layout.starts[e - 1]
                    span = slice(prev_start, start + size)
                    tokens = torch.cat([prev, current], dim=1)
                    t = torch.cat([torch.zeros(copies * b, prev.shape[1], device=self.device), t], dim=1)
                    mask = self.mask[span, : start + size]  # keys: the cache, then these tokens
                    v = self.velocity(
                        tokens, both, t, span=span, mask=mask, caches=caches, keep=prev.shape[1]
                    )
                    v = v[:, prev.shape[1] :]
                else:
                    v = self.velocity(current, both, t, span=slice(start, start + size), caches=caches)
                v = v.double()
                score = -((1 - t_cur) * v + x.repeat(copies, 1, 1)) / t_cur
                drift = v - t_cur * score
                if guided:
                    cond, uncond = drift.chunk(2)
                    drift = uncond + scale * (cond - uncond) if scale > 1.0 else cond
                if callback:
                    callback(e, i, current, float(t_cur), v)
                dt = t_next - t_cur
                if i < steps - 1:
                    noise = torch.randn(x.shape, dtype=torch.float64, device=self.device, generator=rng)
                    x = x + drift * dt + torch.sqrt(2 * t_cur) * noise * torch.sqrt(dt.abs())
                else:
                    x = x + drift * dt
                bar.update()
            finished.append(x.float())
        bar.close()
        latents = layout.from_sequence(torch.cat(finished, dim=1))
        return self.sampled_tokens(labels, latents=latents, cfg=cfg, steps=steps, seed=seed)


# ---------------------------------------------------------------------------------------------- converter
def convert_xar(state_dict: Mapping[str, torch.Tensor], model: XAR | None = None) -> dict[str, torch.Tensor]:
    """Map an upstream xAR state dict (a bare ``state_dict``, or ``model``/``model_ema`` of a training
    checkpoint) onto `XAR`: DDP prefixes are stripped and upstream's buffers (the attention ``mask`` and
    each block's rotary ``freqs``/``freqs_cos``/``freqs_sin``) are dropped, as they are computed here.
    Every parameter keeps its upstream name."""
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key == "mask" or ".attn.rope." in key:
            continue
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- registry
_SIZES: dict[str, dict[str, Any]] = {
    "xar_b": {"dim": 768, "encoder_depth": 8, "decoder_depth": 8, "heads": 12, "default_steps": 40},
    "xar_l": {"dim": 1024, "encoder_depth": 16, "decoder_depth": 16, "heads": 16, "default_steps": 50},
    "xar_h": {"dim": 1280, "encoder_depth": 20, "decoder_depth": 20, "heads": 16, "default_steps": 50},
}
_TINY: dict[str, Any] = {
    "tokenizer": None,
    "latent_channels": 4,
    "grid": 8,
    "cell": 4,
    "dim": 64,
    "encoder_depth": 2,
    "decoder_depth": 2,
    "heads": 4,
    "num_classes": 10,
    "attn_dropout": 0.0,
    "proj_dropout": 0.0,
    "default_steps": 10,
}


@register_model(modality="generator", family="xar")
def xar_b(**kwargs: Any) -> XAR:
    """xAR-B: 8+8 blocks of width 768 over KL-16 latents in 4 cells of 8x8, 40 steps per cell (172.6M)."""
    return build(XAR, "xar_b", _SIZES["xar_b"], kwargs)


@register_model(modality="generator", family="xar")
def xar_l(**kwargs: Any) -> XAR:
    """xAR-L: 16+16 blocks of width 1024 over KL-16 latents in 4 cells of 8x8, 50 steps per cell."""
    return build(XAR, "xar_l", _SIZES["xar_l"], kwargs)


@register_model(modality="generator", family="xar")
def xar_h(**kwargs: Any) -> XAR:
    """xAR-H: 20+20 blocks of width 1280 over KL-16 latents in 4 cells of 8x8, 50 steps per cell."""
    return build(XAR, "xar_h", _SIZES["xar_h"], kwargs)


@register_model(modality="generator", family="xar", size="tiny")
def xar_tiny(**kwargs: Any) -> XAR:
    """A 2+2-block xAR for CPU tests: 8x8x4 latents (kl16_tiny) in 4 cells of 4x4, 10 classes."""
    return build(XAR, "xar_tiny", _TINY, kwargs)


for _arch, _file, _metric in (
    ("xar_b", "xAR-B.pth", 1.72),
    ("xar_l", "xAR-L.pth", 1.28),
    ("xar_h", "xAR-H.pth", 1.24),
):
    register_pretrained(
        f"{_arch}.in1k_256",
        PretrainedCfg(
            hf_hub_id="OliverRen/xAR",
            filename=_file,
            converter="convert_xar",
            checkpoint_key=("model_ema", "model", None),
            paper="arXiv:2502.20388",
            upstream="https://github.com/OliverRensu/xAR @ 121e9c9",
            description=(
                "xAR class-to-image on ImageNet 256 px over MAR's KL-16 latents (bare state dict as eval.py "
                "loads it; the file name follows the README and was not verified)."
            ),
            metrics={"FID-50k (ImageNet 256, cfg)": _metric},
        ),
    )
