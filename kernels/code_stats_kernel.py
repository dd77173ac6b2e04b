"""Per-code hit counts and vector sums by fp32 atomic scatter, without an ``N x K`` one-hot.

These are the sufficient statistics of an EMA codebook update and of a Lloyd step. Buffers are fp32
because ``tl.atomic_add`` has no bf16 and because sums of many rows need the precision anyway. The
order of atomic adds is not fixed on a GPU, so sums agree with the reference to rounding, not bits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_ROWS = 64
MAX_BLOCK_D = 128


@triton.jit
def _code_stats_kernel(
    x_ptr,
    ids_ptr,
    counts_ptr,
    sums_ptr,
    num_rows,
    num_codes,
    dim,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < num_rows
    ids = tl.load(ids_ptr + rows, mask=row_mask, other=-1).to(tl.int64)
    # Negative ids mark rows to skip; ids past the codebook would write out of bounds.
    keep = row_mask & (ids >= 0) & (ids < num_codes)
    tl.atomic_add(counts_ptr + ids, tl.full([BLOCK_N], 1.0, dtype=tl.float32), mask=keep)

    row_offsets = rows.to(tl.int64) * dim
    code_offsets = ids * dim
    for dim_start in range(0, dim, BLOCK_D):
        dims = dim_start + tl.arange(0, BLOCK_D)
        mask = keep[:, None] & (dims < dim)[None, :]
        # Upcast on load: fp32 sums, and bf16 is only correct this way under the interpreter.
        values = tl.load(x_ptr + row_offsets[:, None] + dims[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.atomic_add(sums_ptr + code_offsets[:, None] + dims[None, :], values, mask=mask)


def code_stats_triton(
    x: torch.Tensor, ids: torch.Tensor, num_codes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton twin of ``code_stats_torch``: counts ``[K]`` and sums ``[K, D]`` in fp32.

    Rows with ``id < 0`` are skipped; so are ids ``>= num_codes``, which the reference rejects.
    """
    if x.ndim != 2 or ids.shape != x.shape[:1]:
        raise ValueError(f"expected x [N, D] and ids [N], got {tuple(x.shape)} and {tuple(ids.shape)}")
    x = x.detach().contiguous()
    ids = ids.detach().contiguous()
    num_rows, dim = x.shape
    counts = torch.zeros(num_codes, dtype=torch.float32, device=x.device)
    sums = torch.zeros(num_codes, dim, dtype=torch.float32, device=x.device)
    if num_rows == 0 or num_codes == 0:
        return counts, sums
    block_d = min(MAX_BLOCK_D, triton.next_power_of_2(max(dim, 1)))
    grid = (triton.cdiv(num_rows, BLOCK_ROWS),)
    _code_stats_kernel[grid](
        x, ids, counts, sums, num_rows, num_codes, dim, BLOCK_N=BLOCK_ROWS, BLOCK_D=block_d, num_warps=4
    )
    return counts, sums
