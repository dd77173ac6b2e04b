"""An unconditional SVG language model over HiVG token ids: a decoder-only Llama-style Transformer.

HiVG (arXiv:2604.05072) turns an SVG document into a sequence of atomic tokens (elements, path commands,
quantised coordinates, arc flags), byte-level text ids for attribute strings, and optionally learned
``<SEG_k>`` ids that each stand for a frequent run of atomic tokens. This model learns ``p(ids)`` over
that vocabulary with a causal Transformer built from the zoo's LlamaGen blocks (RMSNorm, SwiGLU,
rotary attention with a positional KV cache), so that samples decode to SVG with the same tokenizer.

Id layout of the model: the tokenizer's ids ``[0, V)`` keep their meaning; ``V`` is end-of-sequence
and ``V + 1`` begin-of-sequence. The head predicts ``V + 1`` classes (the ids and EOS, never BOS), so
``log_prob`` is the exact likelihood of an item including its EOS. Padding (``-1``) is never fed as a
target; positions after an item's end do not influence it because attention is causal.

Positions are 1-D rotary angles over the sequence index (LlamaGen's 2-D table is for image grids; SVG
streams have no second axis).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import register_model
from ...generator import Generator, GeneratorOutput
from ...nn.kv_cache import KVCache
from ...nn.llama import LlamaBlock, RMSNorm
from ...sampling import sample_logits
from ...tokens import PAD_ID, Tokens

__all__ = ["HiVGLM", "pad_sequences", "resolve_tokenizer", "rope_1d_table"]

# The HiVG tokenizer at its default size: 784 atomic ids + 256 bytes + 1 end-of-text id, no segments.
HIVG_VOCAB = 784 + 257


def rope_1d_table(length: int, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Rotary ``(cos, sin)`` table ``[length, head_dim / 2, 2]`` for positions ``0 .. length - 1``, laid
    out for `zoo.nn.llama.apply_rope_pairs` (adjacent pairs, one frequency each)."""
    if head_dim % 2:
        raise ValueError(f"head_dim {head_dim} must be even for rotary positions")
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.arange(length).float()[:, None] * freqs[None]
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def pad_sequences(
    sequences: Sequence[Sequence[int] | torch.Tensor], length: int | None = None
) -> torch.Tensor:
    """Variable-length id lists -> LongTensor ``[B, L]`` padded with ``-1`` (``L``: the longest, or ``length``)."""
    longest = max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), max(longest, length or 0)), PAD_ID, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def _registered_without_weights(name: str) -> bool:
    """True for the registry name of an SVG tokenizer without pretrained weights: those are rule-based
    (HiVG's atomic level works untrained), so the name alone builds them. Other models without weights
    would come out randomly initialised, so they are left to ``zoo.load`` to refuse."""
    from ..._registry import get_entry
    from ...errors import UnknownModelError

    if Path(name).exists():
        return False
    try:
        entry = get_entry(name)
    except UnknownModelError:
        return False
    return entry.modality == "svg" and not entry.pretrained


def resolve_tokenizer(name_or_path: str, device: torch.device | str | None = None) -> Any:
    """A tokenizer from a registry name or a saved directory, in eval mode. Rule-based tokenizers
    registered without weights (``"hivg"``) are built with ``zoo.create``, which ``zoo.load`` refuses."""
    if _registered_without_weights(name_or_path):
        from ..._factory import create

        tokenizer = create(name_or_path)
        return (tokenizer if device is None else tokenizer.to(device)).eval()
    from ...hub import load

    return load(name_or_path, device=device)


class HiVGLM(Generator):
    """Decoder-only Llama-style SVG language model over HiVG ids, with its own BOS and EOS.

    Args:
        tokenizer: name or directory of the SVG tokenizer whose ids are modelled (``"hivg"``, or a
            saved HiVG tokenizer with learned segments).
        vocab_size: that tokenizer's ``vocab_size``; ``None`` reads it from the tokenizer (the config
            then records the number, so reloading needs no tokenizer).
        max_length: the longest id sequence modelled (BOS and EOS not counted); sampling stops there.
        dim, depth, heads, kv_heads: width, blocks, attention heads, key/value heads.
        norm_eps, multiple_of, ffn_dim_multiplier, rope_base: Llama block settings.
        dropout: embedding, residual and feed-forward dropout in training.
    """

    num_classes = 1

    def __init__(
        self,
        *,
        tokenizer: str | None = "hivg",
        vocab_size: int | None = HIVG_VOCAB,
        max_length: int = 1024,
        dim: int = 512,
        depth: int = 8,
        heads: int = 8,
        kv_heads: int | None = None,
        norm_eps: float = 1e-5,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        rope_base: float = 10000.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if vocab_size is None:
            if not tokenizer:
                raise ValueError("vocab_size=None reads the size from the tokenizer; name one")
            vocab_size = int(resolve_tokenizer(tokenizer).codebook_sizes[0])
            self.update_config(vocab_size=vocab_size)
        if vocab_size < 1 or max_length < 1:
            raise ValueError(f"need vocab_size >= 1 and max_length >= 1, got {vocab_size}, {max_length}")
        self.vocab_size, self.max_length = int(vocab_size), int(max_length)
        self.eos_id, self.bos_id = self.vocab_size, self.vocab_size + 1
        self.grid = (self.max_length,)
        self.heads, self.head_dim = heads, dim // heads
        self.kv_heads = kv_heads or heads
        self.tok_embeddings = nn.Embedding(self.vocab_size + 2, dim)
        self.tok_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            LlamaBlock(
                dim,
                heads,
                kv_heads=kv_heads,
                norm_eps=norm_eps,
                multiple_of=multiple_of,
                ffn_dim_multiplier=ffn_dim_multiplier,
                resid_dropout=dropout,
                ffn_dropout=dropout,
            )
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim, norm_eps)
        self.output = nn.Linear(dim, self.vocab_size + 1, bias=False)
        self.register_buffer(
            "rope", rope_1d_table(self.max_length + 1, self.head_dim, rope_base), persistent=False
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """N(0, 0.02) for matrices and embeddings; a zero head, so training starts from the uniform
        distribution (LlamaGen's choice)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(self.output.weight)

    # ------------------------------------------------------------------ spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.vocab_size,)

    @property
    def input_spec(self) -> dict[str, Any]:
        return {
            "condition": "none (unconditional; label 0)",
            "num_classes": 1,
            "tokenizer": self.tokenizer_name,
        }

    def forward_passes(self, steps: int | None = None) -> int:
        """Sampling's most passes: one per drawn id or EOS, and no EOS pass after ``max_length`` ids."""
        return self.max_length

    def token_layout(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer_name,
            "codebook_sizes": [self.vocab_size],
            "max_length": self.max_length,
            "eos_id": self.eos_id,
            "bos_id": self.bos_id,
            "forward_passes": f"one per id, up to {self.forward_passes()}",
        }

    def layout_problems(
        self, grid: Sequence[int], codebook_sizes: Sequence[int], latent_channels: int | None
    ) -> list[str]:
        """Only the vocabulary has to match: SVG token streams have no fixed grid."""
        problems = []
        if tuple(codebook_sizes) != (self.vocab_size,):
            problems.append(
                f"vocabulary {tuple(codebook_sizes)} instead of ({self.vocab_size},) "
                "(a tokenizer with other learned segments, or none)"
            )
        if latent_channels is not None:
            problems.append("continuous latents instead of ids")
        return problems

    def load_tokenizer(self, name_or_path: str | None = None, **load_kwargs: Any) -> Any:
        """The SVG tokenizer, checked to have this model's vocabulary. A registry name of a tokenizer
        without weights (``"hivg"``) is built with ``zoo.create``; anything else goes through ``zoo.load``."""
        name = name_or_path or self.tokenizer_name
        if name and _registered_without_weights(name):
            tokenizer = resolve_tokenizer(name, load_kwargs.get("device"))
            self.check_tokenizer(tokenizer)
            return tokenizer
        return super().load_tokenizer(name_or_path, **load_kwargs)

    # ------------------------------------------------------------------ network
    def _trunk(
        self,
        h: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """Blocks, norm and head -> float32 logits ``[B, N, V + 1]``."""
        rope = self.rope[positions]
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, mask, None if caches is None else caches[i], positions)
        return self.output(self.norm(h)).float()

    def _checked(self, ids: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids [B, L]`` (``-1`` padded) and lengths, validated; lengths default to the non-pad count."""
        if ids.ndim != 2:
            raise ValueError(
                f"{self.arch or 'HiVGLM'} models [B, L] id sequences, got shape {tuple(ids.shape)}"
            )
        ids = ids.long()
        positions = torch.arange(ids.shape[1], device=ids.device)
        if lengths is None:
            lengths = (ids != PAD_ID).sum(1)
        lengths = lengths.to(ids.device).long()
        valid = positions[None] < lengths[:, None]
        if bool((ids[valid] == PAD_ID).any()):
            raise ValueError("padding (-1) inside a sequence: padding may only follow an item's ids")
        bad = ids[valid & ((ids < 0) | (ids >= self.vocab_size))]
        if bad.numel():
            raise ValueError(f"ids {bad.unique().tolist()[:5]} outside the vocabulary of {self.vocab_size}")
        longest = int(lengths.max()) if lengths.numel() else 0
        if longest > self.max_length:
            raise ValueError(
                f"a sequence of {longest} ids is longer than max_length {self.max_length}; "
                "drop or cut it before training (zoo.data.SVGTokenDataModule drops them)"
            )
        return ids.masked_fill(~valid, PAD_ID), lengths

    def logits(
        self, ids: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced ``(logits [B, L + 1, V + 1], targets [B, L + 1])`` of ``[BOS, ids]``; targets are
        the ids followed by EOS at each item's length and ``-1`` after it."""
        ids, lengths = self._checked(ids, lengths)
        b, length = ids.shape
        length = min(length, int(lengths.max()) if lengths.numel() else 0)
        ids = ids[:, :length]
        bos = torch.full((b, 1), self.bos_id, dtype=torch.long, device=ids.device)
        inputs = torch.cat([bos, ids.clamp(min=0)], dim=1)
        targets = torch.cat([ids, torch.full_like(bos, PAD_ID)], dim=1)
        targets[torch.arange(b, device=ids.device), lengths] = self.eos_id
        positions = torch.arange(length + 1, device=ids.device)
        mask = torch.ones(length + 1, length + 1, dtype=torch.bool, device=ids.device).tril()
        h = self.tok_dropout(self.tok_embeddings(inputs))
        return self._trunk(h, positions, mask), targets

    def training_loss(self, batch: Mapping[str, torch.Tensor]) -> GeneratorOutput:
        """Next-token cross-entropy per target token (ids and EOS; padding ignored)."""
        logits, targets = self.logits(batch["ids"], batch.get("lengths"))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID)
        valid = targets != PAD_ID
        accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
        per_item = loss.detach() * valid.sum() / len(targets)
        return GeneratorOutput(
            loss=loss,
            stats={"nll": loss.detach(), "accuracy": accuracy.detach(), "nll_per_item": per_item},
        )

    @torch.no_grad()
    def log_prob(self, tokens: Tokens | torch.Tensor, labels: Any = None) -> torch.Tensor:
        """Exact ``log p(ids, EOS)`` in nats per item ``[B]`` (teacher-forced, dropout off); ``labels`` is
        accepted for the Generator contract and must be 0 if given."""
        if isinstance(tokens, Tokens):
            ids, lengths = tokens.ids, tokens.lengths
        else:
            ids, lengths = tokens, None
        assert ids is not None
        if ids.ndim == 1:
            ids = ids[None]
        if labels is not None:
            self.labels(labels)
        with self._evaluating():
            logits, targets = self.logits(
                ids.to(self.device), None if lengths is None else lengths.to(self.device)
            )
        logp = logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        return logp.masked_fill(targets == PAD_ID, 0.0).sum(-1)

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Dropout off for scoring and sampling, whatever mode the model is in; the mode is restored."""
        training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(training)

    # ------------------------------------------------------------------ sampling
    def _new_caches(self, batch: int, length: int) -> list[KVCache]:
        dtype = self.tok_embeddings.weight.dtype
        return [
            KVCache(batch, self.kv_heads, self.head_dim, length, dtype=dtype, device=self.device)
            for _ in self.layers
        ]

    def _cached_step(self, fed: torch.Tensor, t: int, caches: list[KVCache]) -> torch.Tensor:
        """Feed one id per row (``fed [B]``) at position ``t`` through the caches -> next-id logits ``[B, V + 1]``."""
        slots = torch.arange(caches[0].length, device=self.device)
        h = self.tok_embeddings(fed[:, None])
        return self._trunk(h, slots[t : t + 1], slots[None] <= t, caches)[:, 0]

    @torch.no_grad()
    def cached_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-id logits ``[B, L + 1, V + 1]`` of ``[BOS, ids [B, L]]`` computed one position at a time
        through the KV cache, exactly as `sample` computes them (equal to `logits` up to rounding)."""
        ids = ids.to(self.device).long()
        b, length = ids.shape
        caches = self._new_caches(b, length + 1)
        fed = torch.full((b,), self.bos_id, dtype=torch.long, device=self.device)
        out = []
        for t in range(length + 1):
            out.append(self._cached_step(fed, t, caches))
            if t < length:
                fed = ids[:, t].clamp(min=0)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def sample(
        self,
        labels: int | Sequence[int] | torch.Tensor | None = None,
        *,
        n: int | None = None,
        cfg: float = 1.0,
        steps: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        progress: bool = False,
        max_length: int | None = None,
    ) -> Tokens:
        """Draw ``n`` icons (or one per label, all 0) token by token through a KV cache until EOS.

        Returns ``Tokens`` with ids ``[B, max_length]`` padded with ``-1``, ``lengths`` (EOS excluded)
        and ``meta["ended"]``: whether each item reached EOS (False: cut at ``max_length``). The width
        is the asked ``max_length`` whatever the samples' lengths, so batches of one call concatenate.
        """
        if cfg != 1.0:
            raise ValueError(
                f"{self.arch or 'HiVGLM'} is unconditional: classifier-free guidance does not apply"
            )
        if steps is not None:
            raise ValueError(
                f"{self.arch or 'HiVGLM'} samples one id per pass until EOS; use max_length, not steps"
            )
        if labels is None:
            labels = [0] * (1 if n is None else int(n))
        elif n is not None:
            raise ValueError("pass labels or n, not both")
        labels = self.labels(labels)
        limit = self.max_length if max_length is None else int(max_length)
        if not 1 <= limit <= self.max_length:
            raise ValueError(f"max_length must be in [1, {self.max_length}], got {max_length}")
        b, device = len(labels), self.device
        rng = self.make_generator(seed)
        caches = self._new_caches(b, limit)
        ids = torch.full((b, limit), PAD_ID, dtype=torch.long, device=device)
        lengths = torch.full((b,), limit, dtype=torch.long, device=device)
        ended = torch.zeros(b, dtype=torch.bool, device=device)
        fed = torch.full((b,), self.bos_id, dtype=torch.long, device=device)
        from tqdm.auto import tqdm

        with self._evaluating():
            for t in tqdm(range(limit), desc="sample", disable=not progress, leave=False):
                logits = self._cached_step(fed, t, caches)
                drawn = sample_logits(
                    logits[:, None], temperature=temperature, top_k=top_k, top_p=top_p, generator=rng
                )[:, 0]
                stop = (drawn == self.eos_id) & ~ended
                lengths[stop] = t
                ended |= stop
                ids[:, t] = torch.where(ended, PAD_ID, drawn)
                if bool(ended.all()):
                    break
                # Rows that ended feed any id: their outputs are never used.
                fed = drawn.clamp(max=self.eos_id - 1)
        return Tokens(
            ids=ids,
            grid=(limit,),
            codebook_sizes=self.codebook_sizes,
            lengths=lengths,
            meta={
                "generator": getattr(self, "source", None) or self.arch,
                "labels": labels.tolist(),
                "ended": ended.tolist(),
                "temperature": temperature,
                "top_k": top_k,
                "top_p": top_p,
                "max_length": limit,
                **({} if seed is None else {"seed": seed}),
            },
            model=self.tokenizer_name,
        )


# ---------------------------------------------------------------------------------------------- registry
_SMALL: dict[str, Any] = {"max_length": 2048, "dim": 512, "depth": 8, "heads": 8, "dropout": 0.1}
_TINY: dict[str, Any] = {"max_length": 1024, "dim": 64, "depth": 2, "heads": 4, "multiple_of": 32}


@register_model(modality="generator", family="hivg_lm")
def hivg_lm_small(**kwargs: Any) -> HiVGLM:
    """HiVG LM small: 8 Llama blocks of width 512 over HiVG ids (up to 2,048 per icon), unconditional."""
    return build(HiVGLM, "hivg_lm_small", _SMALL, kwargs)


@register_model(modality="generator", family="hivg_lm", size="tiny")
def hivg_lm_tiny(**kwargs: Any) -> HiVGLM:
    """A 2-block HiVG LM of width 64 for CPU tests and recipes (up to 1,024 ids per icon)."""
    return build(HiVGLM, "hivg_lm_tiny", _TINY, kwargs)
