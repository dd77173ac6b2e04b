"""What tokens cost: raw bits (log2 of the codebook sizes) and the empirical entropy of the ids on a dataset.

A learned tokenizer whose ids are far from uniform costs less than its raw rate once an entropy coder
(or the language model that consumes them) is used, so a fair comparison with classic codecs reports
both. The entropy here is the zeroth-order (unigram) entropy per codebook, measured on the dataset
itself: a lower bound for a coder that uses no context, an upper bound for one that does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..tokens import Tokens

__all__ = ["CodebookUse", "TokenRate", "codebook_summary", "codebook_use", "token_rate"]


@dataclass(frozen=True)
class TokenRate:
    """Bits per item of a set of token batches: raw (fixed-length ids) and at the ids' empirical entropy.

    For continuous tokens, ``raw_bits`` counts each latent value at ``float_bits`` (16: bfloat16 or
    float16 storage) and ``entropy_bits`` is ``None``."""

    items: int
    positions_per_item: float
    raw_bits: float
    entropy_bits: float | None
    continuous: bool = False


@dataclass(frozen=True)
class CodebookUse:
    """Per codebook: the share of codes used on the dataset and the perplexity ``2 ** entropy``."""

    used_fraction: tuple[float, ...]
    perplexity: tuple[float, ...]
    entropy_bits: tuple[float, ...]


def _ids_per_codebook(tokens: Tokens) -> list[torch.Tensor]:
    """Valid ids of each codebook, flattened over items and positions (padding dropped)."""
    ids = tokens.ids
    assert ids is not None
    k = tokens.num_codebooks
    grid_dims = len(tokens.grid)
    if k == 1 and ids.ndim == 1 + grid_dims:
        ids = ids.unsqueeze(1)
    mask = tokens.mask() if tokens.lengths is not None else None
    out = []
    for index in range(ids.shape[1]):
        stream = ids[:, index]
        if mask is not None:
            stream = stream[mask.reshape(stream.shape)]
        out.append(stream[stream >= 0].flatten().cpu())
    return out


def _entropy_bits(ids: torch.Tensor, size: int) -> float:
    """Unigram entropy (bits per symbol) of ``ids`` over ``size`` symbols."""
    if ids.numel() == 0:
        return 0.0
    counts = torch.bincount(ids.long(), minlength=size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())


def codebook_use(batches: list[Tokens]) -> CodebookUse:
    """Usage and perplexity of each codebook over all ``batches`` (discrete tokens only)."""
    sizes = batches[0].codebook_sizes
    streams = [torch.cat(parts) for parts in zip(*(_ids_per_codebook(t) for t in batches), strict=True)]
    used, perplexity, entropy = [], [], []
    for size, ids in zip(sizes, streams, strict=True):
        bits = _entropy_bits(ids, size)
        used.append(float(ids.unique().numel()) / size)
        perplexity.append(2.0**bits)
        entropy.append(bits)
    return CodebookUse(tuple(used), tuple(perplexity), tuple(entropy))


def token_rate(batches: list[Tokens], *, float_bits: int = 16) -> TokenRate:
    """Average bits per item over ``batches`` (all from one tokenizer)."""
    items = sum(len(t) for t in batches)
    first = batches[0]
    if not first.discrete:
        assert first.latents is not None
        values = sum(t.latents[0].numel() * len(t) for t in batches if t.latents is not None)
        per_item = values / items
        return TokenRate(items, per_item, per_item * float_bits, None, continuous=True)
    positions = sum(
        float(t.lengths.sum()) if t.lengths is not None else float(t.num_positions * len(t)) for t in batches
    )
    per_item = positions / items
    raw = per_item * sum(math.log2(s) for s in first.codebook_sizes)
    use = codebook_use(batches)
    entropy = per_item * sum(use.entropy_bits)
    return TokenRate(items, per_item, raw, entropy)


def codebook_summary(batches: list[Tokens]) -> dict[str, list[float]]:
    """``Row.extra`` entries of a discrete tokenizer: per codebook, the share of codes used and the perplexity
    (the report prints them under its table)."""
    use = codebook_use(batches)
    return {
        "codebook_used": [round(u, 4) for u in use.used_fraction],
        "perplexity": [round(p, 2) for p in use.perplexity],
    }
