"""NAR: next-neighbour autoregressive generation over VQ-16 ids, one anti-diagonal per forward pass.

Paper: "Neighboring Autoregressive Modeling for Efficient Visual Generation", He et al. 2025,
arXiv:2503.10696. Upstream: ThisisBillhe/NAR @ 225c1fb (MIT), ``NAR-images/autoregressive/models/gpt.py``
and ``generate.py``, built on LlamaGen's GPT.

A LlamaGen GPT (RMSNorm, SwiGLU, 2-D RoPE, a class token in front) reads the ids in raster order
under a *proximity* mask: the token at ``(r, c)`` attends to every token with ``r' + c' <= r + c``,
its own anti-diagonal included, and to the class token. Two heads read the result: the "right" head
(``norm`` + ``output`` after ``depth`` blocks) predicts the token to the right of each position, and
the "below" head (one extra block ``layers[depth]``, then ``medusa_norm`` + ``medusa_output``) the
token below it. The logits for ``(r, c)`` are the mean of the right head at ``(r, c - 1)`` and the
below head at ``(r - 1, c)`` where both exist (one of them on the first row and column; both heads
at the class token for ``(0, 0)``). Averaging logits keeps a proper conditional, so the likelihood
is exact, and tokens on one anti-diagonal depend only on earlier diagonals: sampling takes
``2n - 1`` forward passes for an ``n x n`` grid instead of ``n^2``.

``order="raster"`` builds the same network without the extra block as a plain LlamaGen class-to-image
GPT (causal mask, next token in raster order, ``n^2`` passes); it is the baseline NAR is compared with.

Deliberate differences from upstream, none of which changes outputs of converted weights:

- the grid is a constructor argument and converted checkpoints are pinned to it (upstream loads a
  checkpoint into any grid without complaint);
- the KV cache and masks are built per call instead of being stored on the module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...errors import CheckpointError
from ...generator import Generator, GeneratorOutput
from ...nn.kv_cache import KVCache
from ...nn.llama import LlamaBlock, RMSNorm, rope_2d_table
from ...sampling import classifier_free_guidance, sample_logits
from ...tokens import Tokens

__all__ = ["NAR", "convert_nar", "proximity_mask"]


def anti_diagonals(grid: int) -> list[list[int]]:
    """Raster indices of each anti-diagonal ``r + c = d``, rows ascending (upstream's order)."""
    return [[r * grid + d - r for r in range(grid) if 0 <= d - r < grid] for d in range(2 * grid - 1)]


def proximity_mask(grid: int, prefix: int = 1) -> torch.Tensor:
    """Boolean ``[L, L]`` (``L = prefix + grid^2``, True: may attend) of NAR's training forward.

    Condition tokens are causal among themselves; every image token sees all of them, and image
    token ``(r, c)`` sees ``(r', c')`` iff ``r' + c' <= r + c``.
    """
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    diagonal = (rows + cols).flatten()
    length = prefix + grid * grid
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    mask[prefix:, prefix:] = diagonal[None, :] <= diagonal[:, None]
    return mask


class LabelEmbedder(nn.Module):
    """Class embedding with a null row ``num_classes`` for guidance, and label dropout in training."""

    def __init__(self, num_classes: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.num_classes, self.dropout = num_classes, dropout
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """``labels [B]`` -> ``[B, 1, dim]``; ``drop`` (bool ``[B]``) replaces labels by the null class."""
        if drop is not None:
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)[:, None]


class NAR(Generator):
    """NAR (LlamaGen GPT with right and below heads) over a tokenizer's ``grid x grid`` ids.

    Args:
        tokenizer: name, repo or directory of the tokenizer whose ids are modelled (``zoo.load`` input).
        vocab_size: codebook size of those ids.
        grid: side of the square id grid (16 for 256 px VQ-16 images).
        dim, depth, heads, kv_heads: width, blocks before the heads, attention heads, key/value heads.
        num_classes: class labels; the embedding has one more (null) row.
        cls_token_num: condition positions in front of the ids.
        norm_eps, multiple_of, ffn_dim_multiplier, rope_base: LlamaGen's block settings.
        token_dropout, attn_dropout, resid_dropout, ffn_dropout: LlamaGen's dropouts (training only).
        class_dropout: probability of replacing a label by the null class in training (for guidance).
        order: ``"neighbor"`` (NAR) or ``"raster"`` (plain LlamaGen GPT, the baseline).
    """

    def __init__(
        self,
        *,
        tokenizer: str | None = "vq16",
        vocab_size: int = 16384,
        grid: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        kv_heads: int | None = None,
        num_classes: int = 1000,
        cls_token_num: int = 1,
        norm_eps: float = 1e-5,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        rope_base: float = 10000.0,
        token_dropout: float = 0.1,
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.1,
        ffn_dropout: float = 0.1,
        class_dropout: float = 0.1,
        order: str = "neighbor",
    ) -> None:
        super().__init__()
        if order not in ("neighbor", "raster"):
            raise ValueError(f"order must be 'neighbor' or 'raster', got {order!r}")
        self.vocab_size, self.num_classes, self.order = vocab_size, num_classes, order
        self.grid = (grid, grid)
        self.side = grid
        self.depth, self.prefix = depth, cls_token_num
        self.class_dropout = class_dropout
        self.cls_embedding = LabelEmbedder(num_classes, dim, class_dropout)
        self.tok_embeddings = nn.Embedding(vocab_size, dim)
        self.tok_dropout = nn.Dropout(token_dropout)
        block = {
            "kv_heads": kv_heads,
            "norm_eps": norm_eps,
            "multiple_of": multiple_of,
            "ffn_dim_multiplier": ffn_dim_multiplier,
            "attn_dropout": attn_dropout,
            "resid_dropout": resid_dropout,
            "ffn_dropout": ffn_dropout,
        }
        extra = 1 if order == "neighbor" else 0
        self.layers = nn.ModuleList(LlamaBlock(dim, heads, **block) for _ in range(depth + extra))
        self.norm = RMSNorm(dim, norm_eps)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        if order == "neighbor":
            self.medusa_norm = RMSNorm(dim, norm_eps)
            self.medusa_output = nn.Linear(dim, vocab_size, bias=False)
        self.heads, self.head_dim = heads, dim // heads
        self.kv_heads = kv_heads or heads
        self.register_buffer(
            "rope", rope_2d_table(grid, dim // heads, rope_base, cls_token_num), persistent=False
        )
        self.register_buffer("mask", self._training_mask(), persistent=False)
        self.initialize_weights()

    def _training_mask(self) -> torch.Tensor:
        if self.order == "neighbor":
            return proximity_mask(self.side, self.prefix)
        length = self.prefix + self.side**2
        return torch.ones(length, length, dtype=torch.bool).tril()

    def initialize_weights(self) -> None:
        """LlamaGen's init: N(0, 0.02) for linear and embedding weights, a zero ``output`` head."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(self.output.weight)

    # ------------------------------------------------------------------ spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.vocab_size,)

    def forward_passes(self, steps: int | None = None) -> int:
        return 2 * self.side - 1 if self.order == "neighbor" else self.side**2

    # ------------------------------------------------------------------ network
    def _trunk(
        self,
        h: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor,
        caches: list[KVCache] | None = None,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blocks -> (right-head logits, below-head logits or None), both float32."""
        below = None
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, mask, None if caches is None else caches[i], positions)
            if i == self.depth - 1:
                right = self.output(self.norm(h)).float()
        if self.order == "neighbor":
            below = self.medusa_output(self.medusa_norm(h)).float()
        return right, below

    def assemble(self, right: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
        """Per-position head logits ``[B, P + n^2, V]`` -> logits of every target ``[B, n^2, V]`` (raster)."""
        n, p = self.side, self.prefix
        b, _, v = right.shape
        first = (right[:, p - 1] + below[:, p - 1]) / 2
        right = right[:, p:].reshape(b, n, n, v)
        below = below[:, p:].reshape(b, n, n, v)
        logits = torch.empty_like(right)
        logits[:, 0, 0] = first
        logits[:, 0, 1:] = right[:, 0, :-1]
        logits[:, 1:, 0] = below[:, :-1, 0]
        logits[:, 1:, 1:] = (right[:, 1:, :-1] + below[:, :-1, 1:]) / 2
        return logits.reshape(b, n * n, v)

    def logits(
        self, ids: torch.Tensor, labels: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits ``[B, n^2, V]`` of every id of ``ids [B, n^2]`` (the training forward)."""
        if self.order == "raster":
            ids = ids[:, :-1]
        h = torch.cat([self.cls_embedding(labels, drop)[:, : self.prefix], self.tok_embeddings(ids)], dim=1)
        h = self.tok_dropout(h)
        length = h.shape[1]
        right, below = self._trunk(h, self.rope[:length], self.mask[:length, :length])
        if self.order == "raster":
            return right[:, self.prefix - 1 :]
        return self.assemble(right, below)

    def _flat_ids(self, ids: torch.Tensor) -> torch.Tensor:
        n = self.side
        if ids.ndim != 3 or tuple(ids.shape[1:]) != (n, n):
            raise ValueError(
                f"{self.arch or 'NAR'} models [B, {n}, {n}] id grids, got shape {tuple(ids.shape)}"
            )
        if bool(((ids < 0) | (ids >= self.vocab_size)).any()):
            raise ValueError(f"ids outside the codebook of {self.vocab_size}")
        return ids.reshape(len(ids), n * n)

    def training_loss(self, batch: Mapping[str, torch.Tensor]) -> GeneratorOutput:
        ids = self._flat_ids(batch["ids"])
        labels = batch["labels"].long()
        drop = torch.rand(len(labels), device=labels.device) < self.class_dropout if self.training else None
        logits = self.logits(ids, labels, drop)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), ids.reshape(-1))
        accuracy = (logits.argmax(-1) == ids).float().mean()
        return GeneratorOutput(loss=loss, stats={"nll": loss.detach(), "accuracy": accuracy.detach()})

    @torch.no_grad()
    def log_prob(self, tokens: Tokens | torch.Tensor, labels: Any) -> torch.Tensor:
        """Exact ``log p(ids | label)`` in nats per item ``[B]`` (teacher-forced, dropout off)."""
        ids = tokens.ids if isinstance(tokens, Tokens) else tokens
        ids = self._flat_ids(ids.to(self.device))
        labels = self.labels(labels)
        logits = self.logits(ids, labels).log_softmax(-1)
        return logits.gather(-1, ids[..., None])[..., 0].sum(-1)

    # ------------------------------------------------------------------ sampling
    def _new_caches(self, batch: int, dtype: torch.dtype) -> list[KVCache]:
        length = self.prefix + self.side**2
        return [
            KVCache(batch, self.kv_heads, self.head_dim, length, dtype=dtype, device=self.device)
            for _ in self.layers
        ]

    def _step(
        self, h: torch.Tensor, positions: torch.Tensor, caches: list[KVCache]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One cached forward of the tokens embedded in ``h`` at sequence ``positions``."""
        mask = self.mask[positions][None].expand(len(h), -1, -1)
        return self._trunk(h, self.rope[positions], mask, caches, positions)

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
        cfg_interval: int = -1,
        callback: Callable[[int], None] | None = None,
    ) -> Tokens:
        """Sample ``[B, n, n]`` ids in ``2n - 1`` forward passes (``n^2`` for ``order="raster"``).

        ``cfg > 1`` runs a null-class copy of the batch and mixes logits as ``u + cfg (c - u)``;
        ``cfg_interval >= 0`` turns guidance off once more than that many tokens exist (upstream's
        option). ``steps`` is not used (the pass count is fixed by the grid). ``callback(i)`` is
        called after each forward pass (tests count them).
        """
        if steps is not None and steps != self.forward_passes():
            raise ValueError(f"{self.arch or 'NAR'} samples in exactly {self.forward_passes()} passes")
        labels = self.labels(labels)
        b, n, p = len(labels), self.side, self.prefix
        guided = cfg > 1.0
        cond = torch.cat([labels, torch.full_like(labels, self.num_classes)]) if guided else labels
        rng = self.make_generator(seed)
        draw = lambda logits: sample_logits(
            logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=rng
        )
        caches = self._new_caches(len(cond), self.tok_embeddings.weight.dtype)
        ids = torch.zeros(b, n * n, dtype=torch.long, device=self.device)
        h = self.tok_dropout(self.cls_embedding(cond)[:, :p])
        right, below = self._step(h, torch.arange(p, device=self.device), caches)
        first = right[:, -1:] if self.order == "raster" else (right[:, -1:] + below[:, -1:]) / 2
        ids[:, :1] = draw(classifier_free_guidance(first, cfg) if guided else first)
        if callback:
            callback(0)
        generated, use_cfg = 1, guided
        schedule = anti_diagonals(n) if self.order == "neighbor" else [[i] for i in range(n * n)]
        from tqdm.auto import tqdm

        for step in tqdm(range(1, len(schedule)), desc="sample", disable=not progress, leave=False):
            fed, targets = schedule[step - 1], schedule[step]
            if cfg_interval > -1 and generated > cfg_interval:
                use_cfg = False
            fed_ids = ids[:, fed]
            if guided:
                fed_ids = torch.cat([fed_ids, fed_ids])
            h = self.tok_dropout(self.tok_embeddings(fed_ids))
            right, below = self._step(h, torch.tensor(fed, device=self.device) + p, caches)
            if self.order == "raster":
                logits = right
            else:
                parts = [(below[:, :-1] + right[:, 1:]) / 2]
                if len(targets) > len(fed):  # the diagonal grows: its ends come from one head each
                    parts = [right[:, :1], *parts, below[:, -1:]]
                logits = torch.cat(parts, dim=1)
            if guided:
                logits = classifier_free_guidance(logits, cfg if use_cfg else None)
            ids[:, targets] = draw(logits)
            generated += len(targets)
            if callback:
                callback(step)
        return self.sampled_tokens(
            labels,
            ids=ids.reshape(b, n, n),
            cfg=cfg,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )


# ---------------------------------------------------------------------------------------------- converter
UPSTREAM_GRID = 16


def convert_nar(state_dict: Mapping[str, torch.Tensor], model: NAR | None = None) -> dict[str, torch.Tensor]:
    """Map an upstream NAR (or LlamaGen GPT, for ``order="raster"``) state dict onto `NAR`.

    Keys are upstream's own; DDP/FSDP prefixes (``module.``, ``_orig_mod.``) are stripped and the
    rotary table and KV caches, which upstream may have saved as buffers, are dropped. Anything else
    is kept, so strict loading names what does not fit. Nothing in the state dict records the grid,
    so ``model`` must have the released 16x16 grid (256 px class-to-image); any other is refused
    instead of loading with shifted positions as upstream does.
    """
    if model is not None and model.side != UPSTREAM_GRID:
        raise CheckpointError(
            f"upstream NAR checkpoints are trained on the {UPSTREAM_GRID}x{UPSTREAM_GRID} grid of 256 px images; "
            f"this model has a {model.side}x{model.side} grid (upstream would load it silently with wrong positions)"
        )
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.").removeprefix("_orig_mod.")
        if key == "freqs_cis" or ".kv_cache." in key:
            continue
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- registry
_SIZES: dict[str, dict[str, Any]] = {
    "nar_b": {"dim": 768, "depth": 12, "heads": 12},
    "nar_l": {"dim": 1024, "depth": 24, "heads": 16},
    "nar_xl": {"dim": 1280, "depth": 36, "heads": 20},
}
_TINY: dict[str, Any] = {
    "tokenizer": None,
    "vocab_size": 256,
    "grid": 8,
    "dim": 64,
    "depth": 2,
    "heads": 4,
    "num_classes": 10,
    "multiple_of": 32,
    "token_dropout": 0.0,
    "resid_dropout": 0.0,
    "ffn_dropout": 0.0,
}


@register_model(modality="generator", family="nar")
def nar_b(**kwargs: Any) -> NAR:
    """NAR-B: 12+1 blocks of width 768 over LlamaGen VQ-16 ids, 31 passes per 256 px image (130.6M)."""
    return build(NAR, "nar_b", _SIZES["nar_b"], kwargs)


@register_model(modality="generator", family="nar")
def nar_l(**kwargs: Any) -> NAR:
    """NAR-L: 24+1 blocks of width 1024 over LlamaGen VQ-16 ids, 31 passes per 256 px image."""
    return build(NAR, "nar_l", _SIZES["nar_l"], kwargs)


@register_model(modality="generator", family="nar")
def nar_xl(**kwargs: Any) -> NAR:
    """NAR-XL: 36+1 blocks of width 1280 over LlamaGen VQ-16 ids, 31 passes per 256 px image."""
    return build(NAR, "nar_xl", _SIZES["nar_xl"], kwargs)


@register_model(modality="generator", family="nar", size="tiny")
def nar_tiny(**kwargs: Any) -> NAR:
    """A 2+1-block NAR for CPU tests: 8x8 ids over 256 codes (vq16_tiny), 10 classes, 15 passes."""
    return build(NAR, "nar_tiny", _TINY, kwargs)


for _arch, _repo, _file in (
    ("nar_b", "chenfeng1271/NAR-imagenet-256-B", "last_version.pt"),
    ("nar_xl", "yefly/NAR-imagenet-256-XL", "last_version.pt"),
):
    register_pretrained(
        f"{_arch}.in1k_256",
        PretrainedCfg(
            hf_hub_id=_repo,
            filename=_file,
            converter="convert_nar",
            checkpoint_key=("model", "module", "state_dict", None),
            license="mit",
            paper="arXiv:2503.10696",
            upstream="https://github.com/ThisisBillhe/NAR @ 225c1fb",
            description=(
                "NAR class-to-image on ImageNet 256 px over LlamaGen's VQ-16 ids (final non-EMA weights, "
                "{'model': state_dict}); pinned to the 16x16 grid."
            ),
        ),
    )
