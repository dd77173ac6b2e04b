"""Nearest-code search without materialising the full ``N x K`` distance matrix.

The PyTorch path processes rows in chunks, so peak memory grows with ``chunk x K`` rather than
``N x K``; distances are computed in fp32 whatever the input dtype. ``kernels/`` provides fused GPU
kernels behind the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 4096


def nearest_code(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    metric: str = "l2",
    chunk_size: int = DEFAULT_CHUNK,
    return_distances: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Index of the closest code for each row of ``x``.

    Args:
        x: ``[N, D]`` queries.
        codebook: ``[K, D]`` codes.
        metric: ``"l2"`` (squared Euclidean) or ``"cosine"`` (both sides l2-normalised; the returned
            distance is ``2 - 2 cos``, the squared distance between unit vectors).
        chunk_size: rows per chunk; bounds peak memory at ``chunk_size x K`` floats.
        return_distances: also return each row's distance to its code.

    Returns:
        ``(ids [N] int64, distances [N] fp32 or None)``.
    """
    if x.ndim != 2 or codebook.ndim != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"expected x [N, D] and codebook [K, D], got {tuple(x.shape)} and {tuple(codebook.shape)}"
        )
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    x = x.detach().float()
    codes = codebook.detach().float()
    if metric == "cosine":
        x, codes = F.normalize(x, dim=-1), F.normalize(codes, dim=-1)
    code_sq = codes.pow(2).sum(1)  # the row-constant |x|^2 does not change the argmin
    ids = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    dists = torch.empty(x.shape[0], dtype=torch.float32, device=x.device) if return_distances else None
    for start in range(0, x.shape[0], chunk_size):
        rows = x[start : start + chunk_size]
        partial = torch.addmm(code_sq, rows, codes.t(), alpha=-2.0)  # |e|^2 - 2 x.e, [chunk, K]
        best, idx = partial.min(dim=1)
        ids[start : start + chunk_size] = idx
        if dists is not None:
            dists[start : start + chunk_size] = (best + rows.pow(2).sum(1)).clamp_min(0)
    return ids, dists
