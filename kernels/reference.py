"""Exact PyTorch implementations of every kernel: the fallback off-GPU and the oracle in tests.

Each function here has a Triton twin with the same signature and outputs; the dispatcher in
``zoo.kernels`` picks one. All arithmetic is fp32 whatever the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Elements of one chunk's [rows, K] distance block: 2**24 fp32 values = 64 MiB.
CHUNK_ELEMENTS = 1 << 24
FSQ_EPS = 1e-3


def check_search_inputs(x: torch.Tensor, codebook: torch.Tensor, metric: str) -> None:
    if x.ndim != 2 or codebook.ndim != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"expected x [N, D] and codebook [K, D], got {tuple(x.shape)} and {tuple(codebook.shape)}"
        )
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    if not (x.is_floating_point() and codebook.is_floating_point()):
        raise TypeError(f"x and codebook must be floating point, got {x.dtype} and {codebook.dtype}")
    if codebook.shape[0] == 0:
        raise ValueError("the codebook is empty")


def default_chunk_rows(num_codes: int) -> int:
    """Rows per chunk so that one chunk's distance block stays near ``CHUNK_ELEMENTS``."""
    return max(1, CHUNK_ELEMENTS // max(num_codes, 1))


def nearest_code_torch(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    metric: str = "l2",
    return_distances: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked nearest-code search; peak memory grows with ``chunk_size x K``, never ``N x K``.

    ``l2`` distances are squared Euclidean; ``cosine`` normalises both sides and reports
    ``2 - 2 cos`` (the squared distance between the unit vectors). Ties go to the lowest index.
    Returns ``(ids [N] int64, distances [N] fp32 or None)``.
    """
    check_search_inputs(x, codebook, metric)
    rows_per_chunk = chunk_size or default_chunk_rows(codebook.shape[0])
    codes = codebook.detach().float()
    if metric == "cosine":
        codes = F.normalize(codes, dim=-1)
    # |x|^2 is constant along a row, so the search only needs |e|^2 - 2 x.e.
    code_sq = codes.pow(2).sum(1) if metric == "l2" else torch.zeros(codes.shape[0], device=codes.device)
    n = x.shape[0]
    ids = torch.empty(n, dtype=torch.long, device=x.device)
    dists = torch.empty(n, dtype=torch.float32, device=x.device) if return_distances else None
    for start in range(0, n, rows_per_chunk):
        rows = x[start : start + rows_per_chunk].detach().float()
        if metric == "cosine":
            rows = F.normalize(rows, dim=-1)
        partial = torch.addmm(code_sq, rows, codes.t(), alpha=-2.0)
        best, idx = partial.min(dim=1)
        ids[start : start + rows_per_chunk] = idx
        if dists is not None:
            offset = rows.pow(2).sum(1) if metric == "l2" else 2.0
            dists[start : start + rows_per_chunk] = (best + offset).clamp_min(0)
        del partial  # free this block before the next one is allocated: peak stays one block
    return ids, dists


def code_stats_torch(x: torch.Tensor, ids: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-code hit counts ``[K]`` and vector sums ``[K, D]`` (fp32); rows with ``id < 0`` are skipped.

    These are the sufficient statistics of an EMA codebook update and of one Lloyd step.
    """
    if x.ndim != 2 or ids.shape != x.shape[:1]:
        raise ValueError(f"expected x [N, D] and ids [N], got {tuple(x.shape)} and {tuple(ids.shape)}")
    keep = ids >= 0
    ids, rows = ids[keep], x[keep].detach().float()
    counts = torch.bincount(ids, minlength=num_codes)[:num_codes].float()
    sums = torch.zeros(num_codes, x.shape[1], dtype=torch.float32, device=x.device).index_add_(0, ids, rows)
    return counts, sums


def fsq_constants(levels: Sequence[int], device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """Per-dimension constants of finite scalar quantization (Mentzer et al., 2023).

    ``tanh`` bounds each value to ``(-half_l - offset, half_l - offset)``; rounding then yields exactly
    ``L`` integers ``-(L // 2) .. (L - 1) // 2``; even ``L`` needs the half-step ``offset``.
    """
    lv = torch.tensor([int(level) for level in levels], dtype=torch.float64, device=device)
    if (lv < 2).any():
        raise ValueError(f"every FSQ level must be >= 2, got {list(levels)}")
    half_l = (lv - 1) * (1 + FSQ_EPS) / 2
    offset = torch.where(lv.remainder(2) == 0, 0.5, 0.0).to(lv)
    shift = torch.atanh(offset / half_l)
    half_width = torch.floor(lv / 2)
    basis = torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0)
    return {
        "half_l": half_l.float(),
        "offset": offset.float(),
        "shift": shift.float(),
        "half_width": half_width.float(),
        "basis": basis.long(),
    }


def fsq_bound(z: torch.Tensor, consts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Differentiable bounding of ``z [..., d]`` into the rounding range (kept for the STE)."""
    return torch.tanh(z.float() + consts["shift"]) * consts["half_l"] - consts["offset"]


def fsq_quantize_torch(z: torch.Tensor, levels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bound, round and pack ``z [N, d]``: codes in ``[-1, 1]`` ``[N, d]`` fp32 and ids ``[N]`` int64.

    Codes are ``round(bound(z)) / (L // 2)``; the id is the mixed-radix number whose digit ``i`` is
    ``round(bound(z_i)) + L_i // 2`` with dimension 0 least significant. Rounding is half-to-even.
    """
    if z.ndim != 2 or z.shape[1] != len(levels):
        raise ValueError(f"expected z [N, {len(levels)}], got {tuple(z.shape)}")
    consts = fsq_constants(levels, z.device)
    rounded = torch.round(fsq_bound(z.detach(), consts))
    codes = rounded / consts["half_width"]
    digits = (rounded + consts["half_width"]).long()
    return codes, (digits * consts["basis"]).sum(-1)


def fsq_ids_to_codes(ids: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    """Inverse of the packing: codes ``[*ids.shape, d]`` in ``[-1, 1]`` from mixed-radix ids."""
    consts = fsq_constants(levels, ids.device)
    lv = torch.tensor([int(level) for level in levels], device=ids.device)
    digits = (ids.long().unsqueeze(-1) // consts["basis"]) % lv
    return (digits.float() - consts["half_width"]) / consts["half_width"]


def lfq_quantize_torch(z: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sign-quantize ``z [N, d]``: codes ``+-scale`` (``z > 0`` is positive) and ids from the bits.

    Bit ``i`` (``z_i > 0``) has weight ``2 ** (d - 1 - i)``: dimension 0 is the most significant.
    """
    if z.ndim != 2:
        raise ValueError(f"expected z [N, d], got {tuple(z.shape)}")
    if z.shape[1] > 62:
        raise ValueError(f"LFQ ids are int64, so at most 62 dimensions, got {z.shape[1]}")
    bits = z.detach() > 0
    codes = torch.where(bits, scale, -scale).float()
    weights = 2 ** torch.arange(z.shape[1] - 1, -1, -1, device=z.device)
    return codes, (bits.long() * weights).sum(-1)


def lfq_ids_to_codes(ids: torch.Tensor, dim: int, scale: float = 1.0) -> torch.Tensor:
    """Inverse of the bit packing: codes ``[*ids.shape, dim]`` of ``+-scale``."""
    weights = 2 ** torch.arange(dim - 1, -1, -1, device=ids.device)
    bits = (ids.long().unsqueeze(-1) // weights) % 2
    return torch.where(bits > 0, scale, -scale).float()


def spherical_scale(dim: int) -> float:
    """Code magnitude per dimension that puts binary codes on the unit sphere (BSQ)."""
    return 1.0 / math.sqrt(dim)
