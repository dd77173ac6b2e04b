"""TokenBridge's generator: a MAR backbone over dequantized per-channel tokens and a channel-wise AR head.

Paper: "Bridging Continuous and Discrete Tokens for Autoregressive Visual Generation", Wang et al. 2025,
arXiv:2503.16430. Upstream: YuqingWang1029/TokenBridge @ 3ede281 (MIT), ``models/tokenbridge.py``.

The tokens are TokenBridge's (`zoo.models.image.tokenbridge`): at every grid position one id per
latent channel. A position's 16 ids jointly span ``64**16`` values, far too many for one softmax, so
the model factorises them twice:

- over positions, MAR's masked bidirectional encoder/decoder (timm ViT blocks) reads the dequantized
  values of the known positions (plus ``buffer_size`` slots holding the class embedding) and gives a
  feature for every unknown one; positions are revealed in a random order over ``steps`` iterations
  on a cosine schedule;
- over the channels of one position, a small causal Transformer: the sequence is the projected
  feature followed by embeddings of the ids already drawn (one table per step), every block is
  AdaLN-modulated by the feature plus a learned per-step embedding and uses qk-norm, and step ``i``
  has its own linear head over the levels. Channels go in the order the tokenizer records
  (``CHANNEL_ORDER``), so a position costs one head step per channel.

Guidance mixes the backbone features of the class and the null class (``u + s (c - u)``) before the
channel head, with ``s`` growing linearly with the revealed fraction; ``temperature`` divides the head's
logits. Training is cross-entropy on every channel id of the masked positions (mask ratio drawn from a
normal truncated to ``[mask_ratio_min, 1]``).

``log_prob`` is exact for the sampler given one position order (drawn from ``seed``): the sum, over the
sampling iterations, of the channel head's log-likelihood of the positions revealed there. Over random
orders it is a lower bound (in expectation) of the order-marginal likelihood.

Upstream's channel head sees the bare feature as its first input in training but the feature plus the
first step embedding in sampling; both are kept (``training_loss`` and ``sample`` match upstream's, and
``log_prob`` scores what the sampler draws).

Deliberate differences from upstream (none changes outputs of converted weights):

- grid, channels, levels, channel order and class count are constructor arguments;
- the null class is the label ``num_classes`` (upstream's separate ``fake_latent`` row, same parameter);
- random orders, mask ratios and label dropout come from torch's generator instead of numpy/scipy, so
  seeded sampling is reproducible on any device;
- the level table and range are the tokenizer's quantizer (``ptq``; upstream's ``reconstruction_values``
  and ``[quant_min, quant_max]``), which the converter rebuilds since checkpoints hold parameters only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...generator import Generator, GeneratorOutput
from ...nn.transformer import Attention, Mlp, TransformerBlock
from ...quantizers import GaussianQuantileQuantizer
from ...sampling import sample_logits
from ...tokens import Tokens
from ..image.tokenbridge import CHANNEL_ORDER

__all__ = ["ChannelHead", "TokenBridgeGenerator", "convert_tokenbridge_gen", "truncated_mask_ratio"]

UPSTREAM_BUFFERS = ("channel_mask", "reconstruction_values", "boundaries")
HEAD_KEYS = (
    "condition_proj.", "channel_embed", "timesteps_embeddings", "token_embeddings.", "channel_blocks.",
    "channel_norm.", "channel_final.", "channel_heads.",
)  # fmt: skip


def truncated_mask_ratio(low: float, generator: torch.Generator | None = None) -> float:
    """MAR's mask ratio: N(1, 0.25) truncated to ``[low, 1]``, drawn by inverting the normal CDF."""
    sd = 0.25
    lo = torch.special.ndtr(torch.tensor((low - 1.0) / sd, dtype=torch.float64))
    u = lo + (0.5 - lo) * torch.rand((), dtype=torch.float64, generator=generator)
    return float(1.0 + sd * torch.special.ndtri(u))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class ChannelBlock(nn.Module):
    """Causal pre-norm block whose two halves are shifted, scaled and gated by AdaLN from a per-step
    condition (DiT's modulation), with qk-norm; ``adaLN_modulation.1`` gives (shift, scale, gate) x 2."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, attn_dropout: float, proj_dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim, heads, qkv_bias="fused", qk_norm=True, attn_dropout=attn_dropout, proj_dropout=proj_dropout
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), proj_dropout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(condition).chunk(6, dim=-1)
        x = x + gate1 * self.attn(_modulate(self.norm1(x), shift1, scale1), mask)
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class FinalModulation(nn.Module):
    """Weightless LayerNorm then AdaLN (scale, shift) before the per-step heads."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.adaLN_modulation(condition).chunk(2, dim=-1)
        return _modulate(self.norm_final(x), shift, scale)


class ChannelHead(nn.Module):
    """The channel-wise AR head: ``p(ids of one position | backbone feature)`` one channel at a time.

    ``autoregressive=False`` feeds no ids back (channels independent given the feature): the baseline
    that says what the channel-wise factorisation is worth.

    Attribute names are upstream's (``condition_proj``, ``channel_embed``, ``timesteps_embeddings``,
    ``token_embeddings``, ``channel_blocks``, ``channel_norm``, ``channel_final``, ``channel_heads``);
    upstream keeps them at the top level, here they live under ``head.``.
    """

    def __init__(
        self,
        feature_dim: int,
        dim: int,
        depth: int,
        heads: int,
        channels: int,
        levels: int,
        mlp_ratio: float,
        attn_dropout: float,
        proj_dropout: float,
        autoregressive: bool = True,
    ) -> None:
        super().__init__()
        self.channels, self.levels, self.autoregressive = channels, levels, autoregressive
        self.condition_proj = nn.Linear(feature_dim, dim)
        self.channel_embed = nn.Parameter(torch.zeros(1, channels, dim))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, channels, dim))
        tables = channels - 1 if autoregressive else 0
        self.token_embeddings = nn.ModuleList(nn.Embedding(levels, dim) for _ in range(tables))
        self.channel_blocks = nn.ModuleList(
            ChannelBlock(dim, heads, mlp_ratio, attn_dropout, proj_dropout) for _ in range(depth)
        )
        self.channel_norm = nn.LayerNorm(dim, eps=1e-6)
        self.channel_final = FinalModulation(dim)
        self.channel_heads = nn.ModuleList(nn.Linear(dim, levels) for _ in range(channels))
        causal = torch.ones(channels, channels, dtype=torch.bool).tril()
        self.register_buffer("causal", causal, persistent=False)

    def _hidden(self, condition: torch.Tensor, ids: torch.Tensor, sampling: bool) -> torch.Tensor:
        """Hidden states ``[N, k + 1, dim]`` after the condition ``[N, dim]`` and ``k`` ids ``[N, k]``.

        Upstream's sampler feeds the condition plus the first step embedding as the first input, its
        training forward the bare condition; ``sampling`` picks which (converted weights were evaluated
        with the former).
        """
        k = ids.shape[1]
        step_condition = condition[:, None] + self.timesteps_embeddings[:, : k + 1]
        first = step_condition[:, :1] if sampling else condition[:, None]
        if self.autoregressive:
            x = torch.cat([first, *(self.token_embeddings[i](ids[:, i])[:, None] for i in range(k))], 1)
        else:  # every step sees the feature only: channels independent given the position's feature
            x = torch.cat([first, step_condition[:, 1:]], 1)
        x = x + self.channel_embed[:, : k + 1]
        mask = self.causal[: k + 1, : k + 1]
        for block in self.channel_blocks:
            x = block(x, step_condition, mask)
        return self.channel_final(self.channel_norm(x), step_condition)

    def logits(self, features: torch.Tensor, ids: torch.Tensor, sampling: bool = False) -> torch.Tensor:
        """Teacher-forced logits ``[N, C, levels]`` of ids ``[N, C]`` (AR order) given features ``[N, F]``;
        ``sampling=True`` gives exactly the step-by-step sampler's logits (see `_hidden`)."""
        h = self._hidden(self.condition_proj(features), ids[:, :-1], sampling)
        return torch.stack([head(h[:, i]) for i, head in enumerate(self.channel_heads)], dim=1)

    def sample(
        self,
        features: torch.Tensor,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ids ``[N, C]`` (AR order) one channel per step, re-running the prefix as upstream does;
        also returns their unfiltered log-likelihood at temperature 1 ``[N]``. ``callback(step, logits)``
        sees every head evaluation."""
        condition = self.condition_proj(features)
        ids = torch.zeros(len(features), 0, dtype=torch.long, device=features.device)
        logp = torch.zeros(len(features), device=features.device)
        for c in range(self.channels):
            logits = self.channel_heads[c](self._hidden(condition, ids, True)[:, -1]).float()
            if callback:
                callback(c, logits)
            drawn = sample_logits(
                logits[:, None], temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            )
            logp = logp + logits.log_softmax(-1).gather(-1, drawn)[:, 0]
            ids = torch.cat([ids, drawn], dim=1)
        return ids, logp


class TokenBridgeGenerator(Generator):
    """TokenBridge's MAR + channel-wise AR generator over a TokenBridge tokenizer's ``[B, C, n, n]`` ids.

    Args:
        tokenizer: name, repo or directory of the TokenBridge tokenizer whose ids are modelled.
        latent_channels, bits, grid: the ids' layout (16 channels of ``2**6`` levels on 16x16 at 256 px).
        channel_order: the order the head predicts channels in (default: the tokenizer's, ``CHANNEL_ORDER``
            for 16 channels, else identity).
        std_range, value_range: the quantizer's settings, to dequantize ids as the tokenizer does.
        dim, encoder_depth, decoder_depth, heads, mlp_ratio: the MAR backbone.
        channel_dim, channel_depth, channel_heads: the channel head's width, blocks and attention heads.
        num_classes: class labels; label ``num_classes`` is the null class (``fake_latent``).
        buffer_size: class-embedding slots in front of the positions.
        mask_ratio_min: lower end of the truncated-normal mask ratio in training.
        class_dropout: probability of the null class in training (for guidance).
        attn_dropout, proj_dropout: dropouts of every block (training only).
        default_steps: sampling iterations when ``sample`` is not told (64; upstream evaluates with 256).
        channel_ar: ``False`` replaces the channel-wise AR head by one that predicts the channels
            independently (a baseline, not upstream).
    """

    def __init__(
        self,
        *,
        tokenizer: str | None = "tokenbridge",
        latent_channels: int = 16,
        bits: int = 6,
        grid: int = 16,
        channel_order: tuple[int, ...] | None = None,
        std_range: float = 3.0,
        value_range: float = 5.0,
        dim: int = 1024,
        encoder_depth: int = 16,
        decoder_depth: int = 16,
        heads: int = 16,
        mlp_ratio: float = 4.0,
        channel_dim: int = 1024,
        channel_depth: int = 4,
        channel_heads: int = 8,
        num_classes: int = 1000,
        buffer_size: int = 64,
        mask_ratio_min: float = 0.7,
        class_dropout: float = 0.1,
        attn_dropout: float = 0.1,
        proj_dropout: float = 0.1,
        default_steps: int = 64,
        channel_ar: bool = True,
    ) -> None:
        super().__init__()
        if channel_order is None:
            channel_order = CHANNEL_ORDER if latent_channels == 16 else tuple(range(latent_channels))
        if sorted(channel_order) != list(range(latent_channels)):
            raise ValueError(f"channel_order must permute 0..{latent_channels - 1}, got {channel_order}")
        self.channels, self.num_classes = latent_channels, num_classes
        self.grid = (grid, grid)
        self.seq_len = grid * grid
        self.buffer_size, self.mask_ratio_min = buffer_size, mask_ratio_min
        self.class_dropout, self.default_steps = class_dropout, default_steps
        self.ptq = GaussianQuantileQuantizer(
            latent_channels, bits, std_range=std_range, value_range=value_range
        )
        self.order = tuple(int(c) for c in channel_order)
        order = torch.tensor(self.order, dtype=torch.long)
        self.register_buffer("channel_order", order, persistent=False)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)

        length = self.seq_len + buffer_size
        block = lambda: TransformerBlock(
            dim, heads, mlp_ratio, "fused", 1e-6, attn_dropout=attn_dropout, proj_dropout=proj_dropout
        )
        self.class_emb = nn.Embedding(num_classes, dim)
        self.fake_latent = nn.Parameter(torch.zeros(1, dim))
        self.z_proj = nn.Linear(latent_channels, dim)
        self.z_proj_ln = nn.LayerNorm(dim, eps=1e-6)
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, length, dim))
        self.encoder_blocks = nn.ModuleList(block() for _ in range(encoder_depth))
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_embed = nn.Linear(dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, length, dim))
        self.decoder_blocks = nn.ModuleList(block() for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.output_pos_embed = nn.Parameter(torch.zeros(1, self.seq_len, dim))
        self.head = ChannelHead(
            dim, channel_dim, channel_depth, channel_heads, latent_channels, 2**bits, mlp_ratio,
            attn_dropout, proj_dropout, channel_ar,
        )  # fmt: skip
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Upstream's init: Xavier-uniform linears with zero biases, N(0, 0.02) tables, zero AdaLN outputs."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for table in (
            self.class_emb.weight, self.fake_latent, self.mask_token, self.head.channel_embed,
            self.head.timesteps_embeddings, self.encoder_pos_embed_learned, self.decoder_pos_embed_learned,
            self.output_pos_embed,
        ):  # fmt: skip
            nn.init.normal_(table, std=0.02)
        for embedding in self.head.token_embeddings:  # nn.Embedding's own N(0, 1), as upstream leaves it
            nn.init.normal_(embedding.weight)
        for block in [*self.head.channel_blocks, self.head.channel_final]:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)

    # ------------------------------------------------------------------ spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.ptq.codebook_sizes

    def forward_passes(self, steps: int | None = None) -> int:
        return steps or self.default_steps

    def token_layout(self) -> dict[str, Any]:
        layout = super().token_layout()
        layout["channel_order"] = list(self.order)
        layout["channel_steps"] = self.seq_len * self.channels
        return layout

    # ------------------------------------------------------------------ network
    def class_embedding(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, dim]``; label ``num_classes`` is the null class."""
        table = torch.cat([self.class_emb.weight, self.fake_latent])
        return table[labels]

    def features(self, values: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Backbone features ``[B, L, dim]`` of every position from dequantized values ``[B, L, C]``, where
        ``mask [B, L]`` (True: unknown; the same count per item) hides the values the model may not see."""
        b = len(values)
        keep = torch.cat([mask.new_ones(b, self.buffer_size), ~mask], dim=1)
        x = self.z_proj(values)
        x = torch.cat(
            [self.class_embedding(labels)[:, None].expand(-1, self.buffer_size, -1).to(x.dtype), x], 1
        )
        x = self.z_proj_ln(x + self.encoder_pos_embed_learned)
        x = x[keep].view(b, -1, x.shape[-1])
        for block in self.encoder_blocks:
            x = block(x)
        x = self.decoder_embed(self.encoder_norm(x))
        full = self.mask_token.to(x.dtype).expand(b, keep.shape[1], -1).clone()
        full[keep] = x.reshape(-1, x.shape[-1])
        x = full + self.decoder_pos_embed_learned
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_norm(x)[:, self.buffer_size :] + self.output_pos_embed

    def _ids(self, ids: torch.Tensor) -> torch.Tensor:
        """``[B, C, n, n]`` ids -> ``[B, L, C]`` (positions row-major, channels in the VAE's order)."""
        shape = (self.channels, *self.grid)
        if ids.ndim != 4 or tuple(ids.shape[1:]) != shape:
            raise ValueError(f"{self.arch or 'TokenBridge'} models ids [B, {', '.join(map(str, shape))}], "
                             f"got {tuple(ids.shape)}")  # fmt: skip
        if bool(((ids < 0) | (ids >= self.ptq.codebook_size)).any()):
            raise ValueError(f"ids outside the {self.ptq.codebook_size} levels")
        return ids.long().flatten(2).transpose(1, 2)

    def _values(self, tokens: torch.Tensor) -> torch.Tensor:
        """Dequantized values ``[B, L, C]`` of ids ``[B, L, C]``."""
        return self.ptq.dequantize_levels(self.ptq.levels[tokens].transpose(1, 2)).transpose(1, 2)

    def _random_orders(self, b: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.stack([torch.randperm(self.seq_len, generator=generator) for _ in range(b)]).to(
            self.device
        )

    def _mask_first(self, orders: torch.Tensor, count: int) -> torch.Tensor:
        """Boolean ``[B, L]``: the first ``count`` positions of each order."""
        mask = torch.zeros(orders.shape, dtype=torch.bool, device=orders.device)
        return mask.scatter(1, orders[:, :count], True)

    def training_loss(self, batch: Mapping[str, torch.Tensor]) -> GeneratorOutput:
        """Cross-entropy of every channel id at the masked positions (mask ratio ~ truncated normal)."""
        tokens = self._ids(batch["ids"].to(self.device))
        labels = batch["labels"].long().to(self.device)
        b = len(tokens)
        if self.training:
            labels = torch.where(
                torch.rand(b, device=self.device) < self.class_dropout, self.num_classes, labels
            )
        ratio = truncated_mask_ratio(self.mask_ratio_min)
        mask = self._mask_first(self._random_orders(b, None), math.ceil(self.seq_len * ratio))
        z = self.features(self._values(tokens), mask, labels)
        targets = tokens[..., self.channel_order][mask]
        logits = self.head.logits(z[mask], targets)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return GeneratorOutput(loss=loss, stats={"nll": loss.detach(), "accuracy": accuracy.detach()})

    # ------------------------------------------------------------------ sampling
    def _schedule(self, steps: int, mask: torch.Tensor, step: int) -> int:
        """Positions still unknown after iteration ``step``: ``floor(L cos(pi/2 (step+1)/steps))`` kept
        in ``[1, unknown - 1]``."""
        target = math.floor(self.seq_len * math.cos(math.pi / 2.0 * (step + 1) / steps))
        return max(1, min(int(mask[0].sum()) - 1, target))

    def _run(
        self,
        labels: torch.Tensor,
        steps: int,
        cfg: float,
        generator: torch.Generator | None,
        draw: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The MAR loop; ``draw(step, features [N, F], where [B, L]) -> (ids [N, C] AR order, logp [N])``.
        Returns ids ``[B, L, C]`` (VAE order) and per-item summed log-likelihood ``[B]``."""
        b = len(labels)
        guided = cfg != 1.0
        both = torch.cat([labels, torch.full_like(labels, self.num_classes)]) if guided else labels
        orders = self._random_orders(b, generator)
        mask = torch.ones(b, self.seq_len, dtype=torch.bool, device=self.device)
        tokens = torch.zeros(b, self.seq_len, self.channels, dtype=torch.long, device=self.device)
        total = torch.zeros(b, device=self.device)
        for step in range(steps):
            values = self._values(tokens).to(self.z_proj.weight.dtype)
            if guided:
                z = self.features(values.repeat(2, 1, 1), mask.repeat(2, 1), both)
            else:
                z = self.features(values, mask, both)
            remaining = self._schedule(steps, mask, step)
            mask_next = self._mask_first(orders, remaining)
            where = mask if step == steps - 1 else mask & ~mask_next
            if guided:
                cond, uncond = z.chunk(2)
                # upstream's float32 arithmetic for the linear schedule, so guided features match bit for bit
                scale = 1 + (cfg - 1) * (self.seq_len - torch.tensor(float(remaining))) / self.seq_len
                chosen = uncond[where] + scale.to(z.dtype) * (cond[where] - uncond[where])
            else:
                chosen = z[where]
            ids, logp = draw(step, chosen, where)
            tokens[where] = ids[:, self.inverse_order]
            total = total.index_add(0, where.nonzero()[:, 0], logp.float())
            mask = mask_next
        return tokens, total

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
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> Tokens:
        """Reveal the positions in a random order over ``steps`` cosine-scheduled iterations; each revealed
        position's channels are drawn by the head from (guided) backbone features.

        Guidance ``1 + (cfg - 1) (revealed after this step) / L`` on the features; ``temperature``,
        ``top_k`` and ``top_p`` filter each channel's logits. ``callback(step, channel, logits)`` sees
        every head evaluation (``[N, levels]`` for the ``N`` positions revealed in that step).
        """
        steps = steps or self.default_steps
        if not 1 <= steps <= self.seq_len:
            raise ValueError(f"steps must lie in [1, {self.seq_len}], got {steps}")
        labels = self.labels(labels)
        rng = self.make_generator(seed)
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="sample", disable=not progress, leave=False)

        def draw(step: int, features: torch.Tensor, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hook = (lambda c, logits: callback(step, c, logits)) if callback else None
            out = self.head.sample(
                features, temperature=temperature, top_k=top_k, top_p=top_p, generator=rng, callback=hook
            )
            bar.update()
            return out

        tokens, _ = self._run(labels, steps, cfg, rng, draw)
        bar.close()
        ids = tokens.transpose(1, 2).reshape(len(labels), self.channels, *self.grid)
        return self.sampled_tokens(
            labels,
            ids=ids,
            cfg=cfg,
            steps=steps,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )

    @torch.no_grad()
    def log_prob(
        self, tokens: Tokens | torch.Tensor, labels: Any, *, steps: int | None = None, seed: int | None = 0
    ) -> torch.Tensor:
        """``log p(ids | label, order)`` in nats per item ``[B]``: the unguided sampler's exact likelihood of
        these ids with ``steps`` iterations and the position order drawn from ``seed``."""
        ids = tokens.ids if isinstance(tokens, Tokens) else tokens
        target = self._ids(ids.to(self.device))
        labels = self.labels(labels)
        steps = steps or self.default_steps

        def score(
            step: int, features: torch.Tensor, where: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            ordered = target[where][:, self.channel_order]
            logits = self.head.logits(features, ordered, sampling=True).float().log_softmax(-1)
            return ordered, logits.gather(-1, ordered[..., None])[..., 0].sum(-1)

        _, total = self._run(labels, steps, 1.0, self.make_generator(seed), score)
        return total


# ---------------------------------------------------------------------------------------------- converter
def convert_tokenbridge_gen(
    state_dict: Mapping[str, torch.Tensor], model: TokenBridgeGenerator | None = None
) -> dict[str, torch.Tensor]:
    """Map an upstream TokenBridge generator state dict (``model``, or ``model_ema`` which holds named
    parameters only) onto `TokenBridgeGenerator`: the channel head's keys move under ``head.``, DDP
    prefixes and upstream's computed buffers (``channel_mask``, ``reconstruction_values``,
    ``boundaries``) are dropped, and the quantizer's range buffers are rebuilt (upstream's fixed
    ``[quant_min, quant_max] = [-5, 5]``). Anything else is kept, so strict loading names it."""
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key in UPSTREAM_BUFFERS:
            continue
        out[f"head.{key}" if key.startswith(HEAD_KEYS) else key] = value
    channels = out["z_proj.weight"].shape[1] if "z_proj.weight" in out else 16
    ptq = model.ptq if model is not None else GaussianQuantileQuantizer(channels)
    out.setdefault("ptq.low", torch.full_like(ptq.low, -ptq.value_range))
    out.setdefault("ptq.high", torch.full_like(ptq.high, ptq.value_range))
    return out


# ---------------------------------------------------------------------------------------------- registry
_SIZES: dict[str, dict[str, Any]] = {
    "tokenbridge_gen_l": {"dim": 1024, "encoder_depth": 16, "decoder_depth": 16, "heads": 16,
                          "channel_dim": 1024, "channel_depth": 4},
    "tokenbridge_gen_h": {"dim": 1280, "encoder_depth": 20, "decoder_depth": 20, "heads": 16,
                          "channel_dim": 1024, "channel_depth": 6},
}  # fmt: skip
_TINY: dict[str, Any] = {
    "tokenizer": None,
    "latent_channels": 4,
    "bits": 4,
    "grid": 8,
    "dim": 64,
    "encoder_depth": 2,
    "decoder_depth": 2,
    "heads": 4,
    "channel_dim": 64,
    "channel_depth": 1,
    "channel_heads": 4,
    "num_classes": 10,
    "buffer_size": 4,
    "attn_dropout": 0.0,
    "proj_dropout": 0.0,
    "default_steps": 8,
}


@register_model(modality="generator", family="tokenbridge_gen")
def tokenbridge_gen_l(**kwargs: Any) -> TokenBridgeGenerator:
    """TokenBridge-L: MAR 16+16 blocks of width 1024 + a 4-block channel head over 16x16x16 6-bit ids (486.9M)."""
    return build(TokenBridgeGenerator, "tokenbridge_gen_l", _SIZES["tokenbridge_gen_l"], kwargs)


@register_model(modality="generator", family="tokenbridge_gen")
def tokenbridge_gen_h(**kwargs: Any) -> TokenBridgeGenerator:
    """TokenBridge-H: MAR 20+20 blocks of width 1280 + a 6-block channel head over 16x16x16 6-bit ids."""
    return build(TokenBridgeGenerator, "tokenbridge_gen_h", _SIZES["tokenbridge_gen_h"], kwargs)


@register_model(modality="generator", family="tokenbridge_gen", size="tiny")
def tokenbridge_gen_tiny(**kwargs: Any) -> TokenBridgeGenerator:
    """A 2+2-block TokenBridge generator for CPU tests: 8x8 positions x 4 ids over 16 levels (tokenbridge_tiny)."""
    return build(TokenBridgeGenerator, "tokenbridge_gen_tiny", _TINY, kwargs)


for _arch, _folder, _metric in (
    ("tokenbridge_gen_l", "tokenbridge_large", 1.76),
    ("tokenbridge_gen_h", "tokenbridge_huge", 1.55),
):
    register_pretrained(
        f"{_arch}.in1k_256",
        PretrainedCfg(
            hf_hub_id="Epiphqny/TokenBridge",
            filename=f"tokenbridge/{_folder}/checkpoint-last.pth",
            converter="convert_tokenbridge_gen",
            checkpoint_key=("model_ema", "model"),
            license="mit",
            paper="arXiv:2503.16430",
            upstream="https://github.com/YuqingWang1029/TokenBridge @ 3ede281",
            description=(
                "TokenBridge class-to-image on ImageNet 256 px over the tokenbridge tokenizer's 6-bit ids "
                "(EMA weights of checkpoint-last.pth; the path inside the Hub repo follows the README's "
                "pretrained_models/ layout and was not verified)."
            ),
            metrics={"FID-50k (ImageNet 256, cfg, 256 iterations)": _metric},
        ),
    )
