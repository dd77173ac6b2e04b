"""Search-free quantizers: FSQ (bound, round, mixed-radix pack) and LFQ (sign, bit pack) in one pass.

Both are memory-bound elementwise work; fusing them saves the intermediates (bounded values, digits,
bits) that the PyTorch version writes out. One program takes a block of rows; the few code dims of a
row fit one masked block.

The math avoids libdevice (``tanh``, ``rint``), which the CPU interpreter cannot run, so the same code
is tested on CPU and run on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from .reference import fsq_constants

# Elements per program: enough work per program on a GPU, few programs under the interpreter.
ELEMENTS_PER_PROGRAM = 4096
MAX_LFQ_DIM = 62


def _rows_per_program(block_dim: int) -> int:
    return max(16, ELEMENTS_PER_PROGRAM // block_dim)


@triton.jit
def _tanh(y):
    """``tanh`` from one ``exp`` of a non-positive argument: no overflow, about 1e-7 absolute error."""
    decay = tl.exp(-2.0 * tl.abs(y))
    magnitude = (1.0 - decay) / (1.0 + decay)
    return tl.where(y < 0.0, -magnitude, magnitude)


@triton.jit
def _round_half_even(v):
    """``torch.round`` semantics from ``floor``; exact because ``v - floor(v)`` is exact in fp32.

    (``floor(v + 0.5)`` is not: ``v + 0.5`` itself can round up to the next integer.)
    """
    lower = tl.floor(v)
    frac = v - lower
    lower_is_odd = (lower - 2.0 * tl.floor(lower * 0.5)) == 1.0
    round_up = (frac > 0.5) | ((frac == 0.5) & lower_is_odd)
    return tl.where(round_up, lower + 1.0, lower)


@triton.jit
def _row_tile(num_rows, dim, BLOCK_N: tl.constexpr, BLOCK_DIM: tl.constexpr):
    """This program's block of rows of a row-major ``[num_rows, dim]`` tensor, with its masks."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_DIM)
    row_mask = rows < num_rows
    dim_mask = dims < dim
    mask = row_mask[:, None] & dim_mask[None, :]
    offsets = rows.to(tl.int64)[:, None] * dim + dims[None, :]
    return rows, dims, row_mask, dim_mask, mask, offsets


@triton.jit
def _fsq_kernel(
    z_ptr,
    shift_ptr,
    half_l_ptr,
    offset_ptr,
    half_width_ptr,
    basis_ptr,
    codes_ptr,
    ids_ptr,
    num_rows,
    dim,
    BLOCK_N: tl.constexpr,
    BLOCK_DIM: tl.constexpr,
):
    rows, dims, row_mask, dim_mask, mask, offsets = _row_tile(num_rows, dim, BLOCK_N, BLOCK_DIM)

    shift = tl.load(shift_ptr + dims, mask=dim_mask, other=0.0)
    half_l = tl.load(half_l_ptr + dims, mask=dim_mask, other=0.0)
    offset = tl.load(offset_ptr + dims, mask=dim_mask, other=0.0)
    half_width = tl.load(half_width_ptr + dims, mask=dim_mask, other=1.0)
    basis = tl.load(basis_ptr + dims, mask=dim_mask, other=0)

    z = tl.load(z_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    bounded = _tanh(z + shift[None, :]) * half_l[None, :] - offset[None, :]
    rounded = _round_half_even(bounded)
    tl.store(codes_ptr + offsets, rounded / half_width[None, :], mask=mask)

    # Digit i of the mixed-radix id: 0 .. L_i - 1; padded dims have basis 0.
    digits = (rounded + half_width[None, :]).to(tl.int64)
    ids = tl.sum(tl.where(mask, digits * basis[None, :], 0), axis=1)
    tl.store(ids_ptr + rows, ids, mask=row_mask)


@triton.jit
def _lfq_kernel(
    z_ptr,
    codes_ptr,
    ids_ptr,
    scale,
    num_rows,
    dim,
    BLOCK_N: tl.constexpr,
    BLOCK_DIM: tl.constexpr,
):
    rows, dims, row_mask, _, mask, offsets = _row_tile(num_rows, dim, BLOCK_N, BLOCK_DIM)

    z = tl.load(z_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    positive = z > 0.0
    tl.store(codes_ptr + offsets, tl.where(positive, scale, -scale), mask=mask)

    # Dimension 0 is the most significant bit; padded dims contribute nothing.
    bit_positions = tl.maximum(dim - 1 - dims, 0).to(tl.int64)
    bit_weights = tl.full([BLOCK_DIM], 1, dtype=tl.int64) << bit_positions
    bits = (positive & mask).to(tl.int64)
    tl.store(ids_ptr + rows, tl.sum(bits * bit_weights[None, :], axis=1), mask=row_mask)


def fsq_quantize_triton(z: torch.Tensor, levels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton twin of ``fsq_quantize_torch``: codes ``[N, d]`` fp32 in ``[-1, 1]`` and ids ``[N]`` int64.

    Rounding is half-to-even like ``torch.round``; ``tanh`` may differ from PyTorch's by an ulp or so,
    which can move a value lying within ~1e-6 of a rounding boundary to the other side.
    """
    if z.ndim != 2 or z.shape[1] != len(levels):
        raise ValueError(f"expected z [N, {len(levels)}], got {tuple(z.shape)}")
    z = z.detach().contiguous()
    consts = fsq_constants(levels, z.device)
    num_rows, dim = z.shape
    codes = torch.empty(num_rows, dim, dtype=torch.float32, device=z.device)
    ids = torch.empty(num_rows, dtype=torch.int64, device=z.device)
    if num_rows == 0:
        return codes, ids
    block_dim = triton.next_power_of_2(dim)
    block_n = _rows_per_program(block_dim)
    _fsq_kernel[(triton.cdiv(num_rows, block_n),)](
        z,
        consts["shift"],
        consts["half_l"],
        consts["offset"],
        consts["half_width"],
        consts["basis"],
        codes,
        ids,
        num_rows,
        dim,
        BLOCK_N=block_n,
        BLOCK_DIM=block_dim,
    )
    return codes, ids


def lfq_quantize_triton(z: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton twin of ``lfq_quantize_torch``: codes ``+-scale`` ``[N, d]`` fp32 and bit-packed ids ``[N]``."""
    if z.ndim != 2:
        raise ValueError(f"expected z [N, d], got {tuple(z.shape)}")
    if z.shape[1] > MAX_LFQ_DIM:
        raise ValueError(f"LFQ ids are int64, so at most {MAX_LFQ_DIM} dimensions, got {z.shape[1]}")
    z = z.detach().contiguous()
    num_rows, dim = z.shape
    codes = torch.empty(num_rows, dim, dtype=torch.float32, device=z.device)
    ids = torch.empty(num_rows, dtype=torch.int64, device=z.device)
    if num_rows == 0:
        return codes, ids
    block_dim = triton.next_power_of_2(max(dim, 1))
    block_n = _rows_per_program(block_dim)
    _lfq_kernel[(triton.cdiv(num_rows, block_n),)](
        z, codes, ids, float(scale), num_rows, dim, BLOCK_N=block_n, BLOCK_DIM=block_dim
    )
    return codes, ids
