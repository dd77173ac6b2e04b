"""Fused nearest-code search: distances and a running argmin in one pass, never an ``N x K`` matrix.

One program owns ``BLOCK_N`` rows and walks the codebook in ``BLOCK_K`` tiles; each tile's dot products
come from ``tl.dot`` over ``BLOCK_D`` slices of the features and fold into a per-row (min, argmin) held
in registers, so memory traffic is ``O(N D + K D)`` whatever ``K`` is.

The search ranks ``|e|^2 - 2 x.e`` (l2) or ``-2 x.e / |e|`` (cosine): ``|x|^2`` and ``|x|`` are constant
along a row, so they are added back only for the distances that are returned. Scaling the dot by
``1 / |e|`` instead of normalising the codebook keeps fp16/bf16 codes exact in the tensor-core path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .reference import check_search_inputs

# F.normalize's default eps: a zero vector stays zero instead of dividing by zero.
NORM_EPS = 1e-12
HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class SearchConfig:
    """Tile sizes and warps of one launch; every block dim is >= 16 because ``tl.dot`` needs it."""

    block_n: int
    block_k: int
    block_d: int
    num_warps: int


def search_config(num_rows: int, num_codes: int, dim: int) -> SearchConfig:
    """A fixed heuristic instead of ``@triton.autotune``, which is pathological under the interpreter.

    64 x 64 tiles (128 x 128 for big problems) are shapes the H100 tensor cores run well; a
    ``BLOCK_D`` of up to 64 lets typical code dims (8 to 64) keep the row tile resident in registers.
    """
    block_d = min(64, triton.next_power_of_2(max(dim, 16)))
    block_k = 128 if num_codes >= 1024 else 64
    block_n = 128 if num_rows >= 16384 and block_k == 128 else 64
    num_warps = 8 if block_n * block_k >= 8192 else 4
    return SearchConfig(block_n=block_n, block_k=block_k, block_d=block_d, num_warps=num_warps)


@triton.jit
def _dot_tile(x_tile, codes_tile, acc, NATIVE_DOT: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """``acc + x_tile @ codes_tile`` with fp32 accumulation.

    Half inputs of one dtype go to the tensor cores as they are (their products are exact); anything
    else, and everything under the interpreter (where bf16 loads are raw bits), is upcast first.
    """
    if NATIVE_DOT:
        return tl.dot(x_tile, codes_tile, acc)
    return tl.dot(x_tile.to(tl.float32), codes_tile.to(tl.float32), acc, input_precision=INPUT_PRECISION)


@triton.jit
def _nearest_code_kernel(
    x_ptr,
    codes_ptr,
    code_sq_ptr,
    code_inv_norm_ptr,
    ids_ptr,
    dists_ptr,
    num_rows,
    num_codes,
    dim,
    COSINE: tl.constexpr,
    RETURN_DISTANCES: tl.constexpr,
    NATIVE_DOT: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    X_RESIDENT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < num_rows
    row_offsets = rows.to(tl.int64) * dim
    dim_range = tl.arange(0, BLOCK_D)

    # |x|^2 only serves the returned distances; the search itself never needs it.
    row_sq = tl.zeros([BLOCK_N], dtype=tl.float32)
    if X_RESIDENT:
        # The whole feature dim fits one tile: load the rows once for every codebook tile.
        x_mask = row_mask[:, None] & (dim_range < dim)[None, :]
        x_tile = tl.load(x_ptr + row_offsets[:, None] + dim_range[None, :], mask=x_mask, other=0.0)
        if not NATIVE_DOT:
            x_tile = x_tile.to(tl.float32)
        if RETURN_DISTANCES:
            x_f32 = x_tile.to(tl.float32)
            row_sq = tl.sum(x_f32 * x_f32, axis=1)
    elif RETURN_DISTANCES:
        for dim_start in range(0, dim, BLOCK_D):
            dims = dim_start + dim_range
            x_mask = row_mask[:, None] & (dims < dim)[None, :]
            x_part = tl.load(x_ptr + row_offsets[:, None] + dims[None, :], mask=x_mask, other=0.0)
            x_part = x_part.to(tl.float32)
            row_sq += tl.sum(x_part * x_part, axis=1)

    best = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
    best_idx = tl.zeros([BLOCK_N], dtype=tl.int32)
    for code_start in range(0, num_codes, BLOCK_K):
        cols = code_start + tl.arange(0, BLOCK_K)
        col_mask = cols < num_codes
        col_offsets = cols.to(tl.int64) * dim
        dots = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        if X_RESIDENT:
            codes_mask = (dim_range < dim)[:, None] & col_mask[None, :]
            codes_tile = tl.load(
                codes_ptr + col_offsets[None, :] + dim_range[:, None], mask=codes_mask, other=0.0
            )
            dots = _dot_tile(x_tile, codes_tile, dots, NATIVE_DOT, INPUT_PRECISION)
        else:
            for dim_start in range(0, dim, BLOCK_D):
                dims = dim_start + dim_range
                dim_mask = dims < dim
                x_part = tl.load(
                    x_ptr + row_offsets[:, None] + dims[None, :],
                    mask=row_mask[:, None] & dim_mask[None, :],
                    other=0.0,
                )
                codes_part = tl.load(
                    codes_ptr + col_offsets[None, :] + dims[:, None],
                    mask=dim_mask[:, None] & col_mask[None, :],
                    other=0.0,
                )
                dots = _dot_tile(x_part, codes_part, dots, NATIVE_DOT, INPUT_PRECISION)
        if COSINE:
            inv_norm = tl.load(code_inv_norm_ptr + cols, mask=col_mask, other=0.0)
            scores = -2.0 * dots * inv_norm[None, :]
        else:
            code_sq = tl.load(code_sq_ptr + cols, mask=col_mask, other=0.0)
            scores = code_sq[None, :] - 2.0 * dots
        # Padded codes must never win the argmin.
        scores = tl.where(col_mask[None, :], scores, float("inf"))
        tile_best, tile_arg = tl.min(scores, axis=1, return_indices=True, return_indices_tie_break_left=True)
        # Strictly better only: on a tie the earlier tile, hence the lower index, is kept.
        improved = tile_best < best
        best = tl.where(improved, tile_best, best)
        best_idx = tl.where(improved, code_start + tile_arg, best_idx)

    tl.store(ids_ptr + rows, best_idx.to(tl.int64), mask=row_mask)
    if RETURN_DISTANCES:
        if COSINE:
            dists = 2.0 + best / tl.maximum(tl.sqrt(row_sq), NORM_EPS)
        else:
            dists = best + row_sq
        tl.store(dists_ptr + rows, tl.maximum(dists, 0.0), mask=row_mask)


def _dot_mode(x_dtype: torch.dtype, code_dtype: torch.dtype, allow_tf32: bool) -> tuple[bool, str]:
    """``(native_dot, input_precision)`` for a pair of input dtypes.

    The interpreter always takes the exact fp32 path. On a GPU, same-dtype fp16/bf16 feed the tensor
    cores directly; a mixed fp16/bf16 pair is upcast and may use tf32 at no cost, because both formats
    fit tf32's 10-bit mantissa exactly; fp32 uses ieee unless the caller opts into tf32.
    """
    if os.environ.get("TRITON_INTERPRET") == "1":
        return False, "ieee"
    if x_dtype == code_dtype and x_dtype in HALF_DTYPES:
        return True, "ieee"
    if x_dtype in HALF_DTYPES and code_dtype in HALF_DTYPES:
        return False, "tf32"
    return False, "tf32" if allow_tf32 else "ieee"


def nearest_code_triton(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    metric: str = "l2",
    return_distances: bool = False,
    allow_tf32: bool = False,
    config: SearchConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton twin of ``nearest_code_torch``: ``(ids [N] int64, distances [N] fp32 or None)``.

    ``allow_tf32`` trades exactness of fp32 inputs for tensor-core speed on a GPU; ``config`` overrides
    the tile heuristic (tests use it to reach every code path on tiny shapes).
    """
    check_search_inputs(x, codebook, metric)
    x = x.detach().contiguous()
    codebook = codebook.detach().contiguous()
    num_rows, dim = x.shape
    num_codes = codebook.shape[0]
    ids = torch.empty(num_rows, dtype=torch.int64, device=x.device)
    dists = torch.empty(num_rows, dtype=torch.float32, device=x.device) if return_distances else None
    if num_rows == 0:
        return ids, dists

    # K x D is small next to N x D: per-code constants are computed once here, in fp32.
    codes_f32 = codebook.float()
    cosine = metric == "cosine"
    if cosine:
        code_inv_norm = codes_f32.norm(dim=1).clamp_min(NORM_EPS).reciprocal()
        code_sq = code_inv_norm  # unread
    else:
        code_sq = codes_f32.pow(2).sum(1)
        code_inv_norm = code_sq  # unread
    native_dot, input_precision = _dot_mode(x.dtype, codebook.dtype, allow_tf32)
    cfg = config or search_config(num_rows, num_codes, dim)
    grid = (triton.cdiv(num_rows, cfg.block_n),)
    _nearest_code_kernel[grid](
        x,
        codebook,
        code_sq,
        code_inv_norm,
        ids,
        dists if dists is not None else ids,
        num_rows,
        num_codes,
        dim,
        COSINE=cosine,
        RETURN_DISTANCES=return_distances,
        NATIVE_DOT=native_dot,
        INPUT_PRECISION=input_precision,
        X_RESIDENT=dim <= cfg.block_d,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        BLOCK_D=cfg.block_d,
        num_warps=cfg.num_warps,
    )
    return ids, dists
