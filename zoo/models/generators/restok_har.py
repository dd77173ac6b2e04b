"""HAR: ResTok's hierarchical autoregressive generator, one whole token level per forward pass.

Paper: "ResTok: Learning Hierarchical Residuals in 1D Visual Tokenizers for Autoregressive Image
Generation", arXiv:2601.03955. Upstream: Kwai-Kolors/ResTok @ e0059cb (Apache-2.0),
``autoregressive/models/gpt_har.py`` and ``autoregressive/models/generate.py`` (``generate_har``), a
LlamaGen GPT (RMSNorm, SwiGLU, a class token in front) with 1-D rotary positions.

ResTok's ``n`` ids come in coarse-to-fine levels of 1, 1, 2, 4, ..., n/2 tokens, and a level depends
only on coarser ones. HAR exploits that: the first ``a = ar_tokens`` ids are drawn one at a time, then
every further level of ``m`` ids is drawn in one pass. Sequence position ``p`` always predicts id
``t_p``; what it *reads* is

- ``p = 0``: the class token; ``1 <= p < a``: ``t_{p-1}`` (plain next-token prediction);
- the block of positions ``[m, 2m)`` for ``m = a, 2a, ..., n/2``: the ``m/2`` ids of the previous level
  followed by learned placeholders (for ``m = a``: ``t_{a-1}`` and ``a - 1`` placeholders), so all ``m``
  outputs of the block predict the next level at once.

Attention is block-causal over the levels (a block sees itself and everything coarser), except that
the first ``a`` positions are strictly causal. Sampling with a KV cache therefore takes
``a + log2(n / a)`` passes: 9 for ResTok's 128 ids with ``a = 4``. Ids inside one level are drawn
independently given the coarser levels, so ``log_prob`` is the exact likelihood of what ``sample``
draws at temperature 1 without guidance. ``ar_tokens = n`` is a plain next-token GPT (the baseline).

Deliberate differences from upstream, none of which changes outputs of converted weights:

- the placeholder table is ``placeholders.weight`` (upstream ``spe_tok_embeddings.special_embeddings``;
  the converter renames it). Upstream allocates ``n - 1`` rows but reads only ``n/2 - 1``; all are kept;
- the sequence layout, mask and pass schedule are computed for any power-of-two ``n`` and ``a`` (tiny
  sizes), instead of being assembled from the 128-token case; upstream's sampler mis-places the first
  ids when ``a = 1``, this one does not;
- ``cfg_interval`` is not offered (upstream's counts positions differently in its two loops).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...errors import CheckpointError
from ...generator import Generator
from ...nn.kv_cache import KVCache
from ...nn.llama import LlamaBlock, RMSNorm
from ...sampling import classifier_free_guidance, sample_logits
from ...tokens import Tokens
from .nar import NAR, LabelEmbedder

__all__ = ["HAR", "convert_restok_har", "har_inputs", "har_mask", "har_schedule", "step_cfg_schedule"]


def _check_sizes(num_tokens: int, ar_tokens: int) -> None:
    power = lambda x: x >= 1 and not x & (x - 1)
    if num_tokens < 2 or not power(num_tokens) or not power(ar_tokens) or ar_tokens > num_tokens:
        raise ValueError(
            f"HAR needs a power-of-two token count (>= 2) and a power-of-two ar_tokens <= it; "
            f"got {num_tokens} and {ar_tokens}"
        )


def har_inputs(num_tokens: int, ar_tokens: int) -> torch.Tensor:
    """What each sequence position reads, ``[n]``: ``k >= 0`` is id ``t_k``, ``-1 - j`` is placeholder
    ``j``; position 0 (the class token) holds a dummy 0."""
    _check_sizes(num_tokens, ar_tokens)
    out = [0]
    for p in range(1, num_tokens):
        m = 1 << (p.bit_length() - 1)  # start of p's level block
        j = p - m
        if p < ar_tokens or (m == ar_tokens and j == 0):
            out.append(p - 1)
        elif m > ar_tokens and j < m // 2:
            out.append(p - m // 2)
        else:
            out.append(-j)  # placeholder j - 1
    return torch.tensor(out)


def har_mask(num_tokens: int, ar_tokens: int) -> torch.Tensor:
    """Boolean ``[n, n]`` (True: may attend): a position sees its own and coarser level blocks; the
    first ``ar_tokens`` positions are strictly causal."""
    _check_sizes(num_tokens, ar_tokens)
    level = torch.tensor([0] + [p.bit_length() for p in range(1, num_tokens)])
    mask = level[:, None] >= level[None, :]
    mask[:ar_tokens, :ar_tokens] = torch.ones(ar_tokens, ar_tokens, dtype=torch.bool).tril()
    return mask


def har_schedule(num_tokens: int, ar_tokens: int) -> list[list[int]]:
    """Positions fed (and ids drawn) at each forward pass: ``[0], [1], ..., [a-1]``, then one block per level."""
    _check_sizes(num_tokens, ar_tokens)
    steps = [[p] for p in range(ar_tokens)]
    m = ar_tokens
    while m < num_tokens:
        steps.append(list(range(m, 2 * m)))
        m *= 2
    return steps


def step_cfg_schedule(cfg: float, step: int, total: int, start: float) -> float:
    """Upstream's ``step`` guidance: the full scale from pass ``start * (total - 1)`` on, before it
    ``1 + 1e-4`` (upstream's nudge that keeps the guided branch; it is nearly unguided)."""
    if cfg == 1.0:
        return cfg
    return cfg if step / max(total - 1, 1) >= start else 1.0 + 1e-4


def rope_1d_table(length: int, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Rotary ``(cos, sin)`` table ``[length, head_dim / 2, 2]`` for positions ``0 .. length - 1``, in
    float32 as upstream computes it; the class token is position 0 (an identity rotation)."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(length).float(), freqs)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


class HAR(Generator):
    """LlamaGen GPT with level-parallel decoding over a ResTok tokenizer's ``num_tokens`` ids.

    Args:
        tokenizer: name, repo or directory of the ResTok tokenizer whose ids are modelled.
        vocab_size: its codebook size.
        num_tokens: ids per image (a power of two; levels 1, 1, 2, ..., n/2).
        ar_tokens: ids drawn one at a time before the level-parallel passes (upstream 4).
        num_placeholders: rows of the placeholder table (default ``num_tokens - 1``, upstream's 127).
        dim, depth, heads, kv_heads: width, blocks, attention heads, key/value heads.
        num_classes: class labels; the embedding has one more (null) row.
        norm_eps, multiple_of, ffn_dim_multiplier, rope_base: LlamaGen's block settings.
        token_dropout, attn_dropout, resid_dropout, ffn_dropout: dropouts (training only).
        class_dropout: probability of replacing a label by the null class in training (for guidance).
    """

    def __init__(
        self,
        *,
        tokenizer: str | None = "restok",
        vocab_size: int = 8192,
        num_tokens: int = 128,
        ar_tokens: int = 4,
        num_placeholders: int | None = None,
        dim: int = 1024,
        depth: int = 24,
        heads: int = 16,
        kv_heads: int | None = None,
        num_classes: int = 1000,
        norm_eps: float = 1e-5,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        rope_base: float = 10000.0,
        token_dropout: float = 0.1,
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.1,
        ffn_dropout: float = 0.1,
        class_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _check_sizes(num_tokens, ar_tokens)
        num_placeholders = num_tokens - 1 if num_placeholders is None else num_placeholders
        needed = num_tokens // 2 - 1 if ar_tokens < num_tokens else 0
        if num_placeholders < needed:
            raise ValueError(
                f"{num_tokens} tokens need at least {needed} placeholders, got {num_placeholders}"
            )
        self.vocab_size, self.num_classes = vocab_size, num_classes
        self.num_tokens, self.ar_tokens = num_tokens, ar_tokens
        self.grid = (num_tokens,)
        self.class_dropout = class_dropout
        self.cls_embedding = LabelEmbedder(num_classes, dim, class_dropout)
        self.tok_embeddings = nn.Embedding(vocab_size, dim)
        self.placeholders = nn.Embedding(num_placeholders, dim)
        self.tok_dropout = nn.Dropout(token_dropout)
        self.layers = nn.ModuleList(
            LlamaBlock(
                dim,
                heads,
                kv_heads=kv_heads,
                norm_eps=norm_eps,
                multiple_of=multiple_of,
                ffn_dim_multiplier=ffn_dim_multiplier,
                attn_dropout=attn_dropout,
                resid_dropout=resid_dropout,
                ffn_dropout=ffn_dropout,
            )
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim, norm_eps)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        self.head_dim, self.kv_heads = dim // heads, kv_heads or heads
        self.register_buffer("rope", rope_1d_table(num_tokens, dim // heads, rope_base), persistent=False)
        self.register_buffer("mask", har_mask(num_tokens, ar_tokens), persistent=False)
        self.register_buffer("inputs", har_inputs(num_tokens, ar_tokens), persistent=False)
        self.initialize_weights()

    initialize_weights = NAR.initialize_weights  # LlamaGen's: N(0, 0.02) weights, a zero output head

    # ------------------------------------------------------------------ spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.vocab_size,)

    def forward_passes(self, steps: int | None = None) -> int:
        return len(har_schedule(self.num_tokens, self.ar_tokens))

    def token_layout(self) -> dict[str, Any]:
        levels = [1] + [1 << i for i in range(int(math.log2(self.num_tokens)))]
        return {**super().token_layout(), "levels": levels, "ar_tokens": self.ar_tokens}

    # ------------------------------------------------------------------ network
    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, len(positions), dim]`` of what positions ``>= 1`` read (ids or placeholders)."""
        source = self.inputs[positions]
        tokens = self.tok_embeddings(ids[:, source.clamp(min=0)])
        holders = self.placeholders.weight[(-1 - source).clamp(min=0)]
        return torch.where((source >= 0)[None, :, None], tokens, holders.to(tokens.dtype))

    def _trunk(
        self,
        h: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        rope = self.rope[positions]
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, mask, None if caches is None else caches[i], positions)
        return self.output(self.norm(h)).float()

    def logits(
        self, ids: torch.Tensor, labels: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits ``[B, n, V]`` of every id of ``ids [B, n]`` (the training forward)."""
        positions = torch.arange(self.num_tokens, device=ids.device)
        h = torch.cat([self.cls_embedding(labels, drop), self._embed(ids, positions[1:])], dim=1)
        return self._trunk(self.tok_dropout(h), positions, self.mask)

    def _flat_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.shape[1] != self.num_tokens:
            raise ValueError(
                f"{self.arch or 'HAR'} models [B, {self.num_tokens}] id sequences, got shape {tuple(ids.shape)}"
            )
        if bool(((ids < 0) | (ids >= self.vocab_size)).any()):
            raise ValueError(f"ids outside the codebook of {self.vocab_size}")
        return ids.long()

    # NAR's cross-entropy objective and exact likelihood; they need only ``_flat_ids`` and ``logits``.
    training_loss = NAR.training_loss
    log_prob = NAR.log_prob

    # ------------------------------------------------------------------ sampling
    def _new_caches(self, batch: int, dtype: torch.dtype) -> list[KVCache]:
        return [
            KVCache(batch, self.kv_heads, self.head_dim, self.num_tokens, dtype=dtype, device=self.device)
            for _ in self.layers
        ]

    def _step(
        self, cond: torch.Tensor, ids: torch.Tensor, positions: list[int], caches: list[KVCache]
    ) -> torch.Tensor:
        """One cached pass over sequence ``positions`` -> logits ``[B, len(positions), V]``."""
        where = torch.tensor(positions, device=self.device)
        h = self.cls_embedding(cond) if positions == [0] else self._embed(ids, where)
        mask = self.mask[where][None].expand(len(h), -1, -1)
        return self._trunk(self.tok_dropout(h), where, mask, caches)

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
        cfg_schedule: str = "constant",
        cfg_start: float = 0.25,
        callback: Callable[[int], None] | None = None,
    ) -> Tokens:
        """Sample ``[B, n]`` ids in ``a + log2(n / a)`` forward passes (9 for 128 ids).

        ``cfg > 1`` runs a null-class copy of the batch and mixes logits as ``u + s (c - u)`` with
        ``s = cfg`` (``cfg_schedule="constant"``) or, with ``"step"``, ``cfg`` from the pass at fraction
        ``cfg_start`` of the run on (the paper's gFID 2.34: cfg 3.75, start 0.25, top-p 0.95). The ids of
        one level are drawn in one multinomial call in item-major order, as upstream does, so the same
        seed draws the same ids. ``callback(i)`` is called after pass ``i`` (tests count them).
        """
        if steps is not None and steps != self.forward_passes():
            raise ValueError(f"{self.arch or 'HAR'} samples in exactly {self.forward_passes()} passes")
        if cfg_schedule not in ("constant", "step"):
            raise ValueError(f"cfg_schedule must be 'constant' or 'step', got {cfg_schedule!r}")
        labels = self.labels(labels)
        b, n = len(labels), self.num_tokens
        guided = cfg > 1.0
        cond = torch.cat([labels, torch.full_like(labels, self.num_classes)]) if guided else labels
        rng = self.make_generator(seed)
        caches = self._new_caches(len(cond), self.tok_embeddings.weight.dtype)
        ids = torch.zeros(len(cond), n, dtype=torch.long, device=self.device)
        schedule = har_schedule(n, self.ar_tokens)
        from tqdm.auto import tqdm

        for step, positions in enumerate(tqdm(schedule, desc="sample", disable=not progress, leave=False)):
            logits = self._step(cond, ids, positions, caches)
            if guided:
                scale = (
                    cfg
                    if cfg_schedule == "constant"
                    else step_cfg_schedule(cfg, step, len(schedule), cfg_start)
                )
                logits = classifier_free_guidance(logits, scale)
            drawn = sample_logits(
                logits.reshape(-1, 1, self.vocab_size),
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=rng,
            ).view(b, len(positions))
            ids[:, positions] = drawn.repeat(2, 1) if guided else drawn
            if callback:
                callback(step)
        return self.sampled_tokens(
            labels,
            ids=ids[:b],
            cfg=cfg,
            cfg_schedule=cfg_schedule if guided else None,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )


# ---------------------------------------------------------------------------------------------- converter
UPSTREAM_TOKENS, UPSTREAM_AR_TOKENS = 128, 4
_RENAMES = {"spe_tok_embeddings.special_embeddings.weight": "placeholders.weight"}


def convert_restok_har(
    state_dict: Mapping[str, torch.Tensor], model: HAR | None = None
) -> dict[str, torch.Tensor]:
    """Map an upstream HAR ``Transformer`` state dict (``model.safetensors`` of the Hub release, or a
    training ``pytorch_model.bin``) onto `HAR`.

    Strips ``_orig_mod.``/``module.`` prefixes, renames the placeholder table and drops rotary tables,
    masks and KV caches should a checkpoint carry them; any other key is kept, so strict loading names
    what does not fit. The state dict does not record the sequence layout, so ``model`` must have the
    released one (128 ids, 4 drawn one by one); any other is refused rather than loaded misaligned.
    """
    if model is not None and (model.num_tokens, model.ar_tokens) != (UPSTREAM_TOKENS, UPSTREAM_AR_TOKENS):
        raise CheckpointError(
            f"the released HAR models {UPSTREAM_TOKENS} ResTok ids with {UPSTREAM_AR_TOKENS} drawn one by one; "
            f"this model has {model.num_tokens} ids and ar_tokens={model.ar_tokens}"
        )
    out = {}
    for key, value in state_dict.items():
        key = key.replace("_orig_mod.", "").removeprefix("module.")
        if key in ("freqs_cis", "causal_mask", "group_mask") or ".kv_cache." in key:
            continue
        out[_RENAMES.get(key, key)] = value
    return out


# ---------------------------------------------------------------------------------------------- registry
_L: dict[str, Any] = {"dim": 1024, "depth": 24, "heads": 16}
_TINY: dict[str, Any] = {
    "tokenizer": None,
    "vocab_size": 256,
    "num_tokens": 16,
    "ar_tokens": 2,
    "dim": 64,
    "depth": 2,
    "heads": 4,
    "num_classes": 10,
    "multiple_of": 32,
    "token_dropout": 0.0,
    "resid_dropout": 0.0,
    "ffn_dropout": 0.0,
}


@register_model(modality="generator", family="restok_har")
def restok_har_l(**kwargs: Any) -> HAR:
    """HAR with LlamaGen GPT-L (24 blocks, width 1024) over ResTok's 128 ids, 9 passes per 256 px image."""
    return build(HAR, "restok_har_l", _L, kwargs)


@register_model(modality="generator", family="restok_har", size="tiny")
def restok_har_tiny(**kwargs: Any) -> HAR:
    """A 2-block HAR for CPU tests over restok_tiny's 16 ids (levels 1, 1, 2, 4, 8), 10 classes, 5 passes."""
    return build(HAR, "restok_har_tiny", _TINY, kwargs)


register_pretrained(
    "restok_har_l.in1k_256",
    PretrainedCfg(
        hf_hub_id="xushu-me/llamagen_l_c2i_restok_l_128.r256_in1k",
        filename="model.safetensors",
        converter="convert_restok_har",
        license="apache-2.0",
        paper="arXiv:2601.03955",
        upstream="https://github.com/Kwai-Kolors/ResTok @ e0059cbae1858a9da66e4ba32d4db686a5db4996",
        description=(
            "HAR (LlamaGen GPT-L) class-to-image on ImageNet 256 px over ResTok-L's 128 ids (EMA, step 1.5M); "
            "pinned to 128 ids with 4 drawn one by one."
        ),
        metrics={"gFID (ImageNet 256, 50k, cfg 3.75 step from 25 %, top-p 0.95, 9 passes)": 2.34},
    ),
)
