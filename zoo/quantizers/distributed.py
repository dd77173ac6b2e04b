"""Collectives for quantizer state under data parallelism.

Every helper here is called on every rank with the same arguments' shapes, whatever each rank's batch
holds (even zero valid rows): uneven collective calls are what hangs other VQ libraries under DDP.
Outside an initialised process group each helper is a cheap no-op.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (identity on a single process)."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` with rank ``src``'s copy in place, so every rank holds identical bits."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def gather_rows(rows: torch.Tensor, max_rows_per_rank: int, generator: torch.Generator) -> torch.Tensor:
    """The rows of every rank, concatenated in rank order and identical on every rank.

    Each rank first keeps at most ``max_rows_per_rank`` random rows (drawn with ``generator``, which
    lives on the CPU), so k-means data and restart candidates stay small. Ranks may hold different
    numbers of rows, including none.
    """
    if rows.shape[0] > max_rows_per_rank:
        keep = torch.randperm(rows.shape[0], generator=generator)[:max_rows_per_rank]
        rows = rows[keep.to(rows.device)]
    if not is_distributed():
        return rows
    world = dist.get_world_size()
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = rows.new_zeros(max(max(sizes), 1), rows.shape[1])
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(gathered, sizes, strict=True)])
