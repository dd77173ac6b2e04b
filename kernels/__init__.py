"""Fused quantization kernels: Triton on CUDA tensors, an exact PyTorch path everywhere else.

Installed as ``zoo.kernels``. Every public function takes plain tensors, returns fp32 statistics and
int64 ids, and is forward-only (the quantizers build their straight-through gradients around it).

Backend choice, per call: ``backend="torch" | "triton" | None``; ``None`` reads ``ZOO_KERNELS``
(``auto`` by default: Triton for CUDA tensors when Triton is installed, PyTorch otherwise). Forcing
``triton`` on CPU tensors needs ``TRITON_INTERPRET=1`` set before this package is imported.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import torch

from .reference import (
    code_stats_torch,
    default_chunk_rows,
    fsq_bound,
    fsq_constants,
    fsq_ids_to_codes,
    fsq_quantize_torch,
    lfq_ids_to_codes,
    lfq_quantize_torch,
    nearest_code_torch,
    spherical_scale,
)

HAS_TRITON = importlib.util.find_spec("triton") is not None
BACKENDS = ("auto", "torch", "triton")


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def use_triton(t: torch.Tensor, backend: str | None = None) -> bool:
    """Whether a call on ``t`` runs the Triton kernel."""
    choice = backend or os.environ.get("ZOO_KERNELS", "auto")
    if choice not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {choice!r}")
    if choice == "torch":
        return False
    if choice == "triton":
        if not HAS_TRITON:
            raise RuntimeError("backend 'triton' was requested but triton is not installed")
        if not t.is_cuda and not triton_interpreted():
            raise RuntimeError("Triton kernels need CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors")
        return True
    return t.is_cuda and HAS_TRITON


def nearest_code(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    metric: str = "l2",
    return_distances: bool = False,
    chunk_size: int | None = None,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Index of the closest code for each row of ``x [N, D]`` among ``codebook [K, D]``.

    ``metric="l2"`` reports squared Euclidean distances, ``"cosine"`` the squared distance between
    unit vectors (``2 - 2 cos``). Inputs may be fp32, fp16 or bf16; distances accumulate in fp32.
    Returns ``(ids [N] int64, distances [N] fp32 or None)``.
    """
    if use_triton(x, backend):
        from .nearest_code_kernel import nearest_code_triton

        return nearest_code_triton(x, codebook, metric=metric, return_distances=return_distances)
    return nearest_code_torch(
        x, codebook, metric=metric, return_distances=return_distances, chunk_size=chunk_size
    )


def code_stats(
    x: torch.Tensor, ids: torch.Tensor, num_codes: int, *, backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-code hit counts ``[K]`` and vector sums ``[K, D]`` in fp32; rows with ``id < 0`` are skipped."""
    if use_triton(x, backend):
        from .code_stats_kernel import code_stats_triton

        return code_stats_triton(x, ids, num_codes)
    return code_stats_torch(x, ids, num_codes)


def fsq_quantize(
    z: torch.Tensor, levels: Sequence[int], *, backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """FSQ bound, round and pack of ``z [N, d]``: codes in ``[-1, 1]`` and mixed-radix ids."""
    if use_triton(z, backend):
        from .scalar_kernel import fsq_quantize_triton

        return fsq_quantize_triton(z, levels)
    return fsq_quantize_torch(z, levels)


def lfq_quantize(
    z: torch.Tensor, scale: float = 1.0, *, backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary (sign) quantization of ``z [N, d]``: codes ``+-scale`` and ids from the bits."""
    if use_triton(z, backend):
        from .scalar_kernel import lfq_quantize_triton

        return lfq_quantize_triton(z, scale)
    return lfq_quantize_torch(z, scale)


__all__ = [
    "HAS_TRITON",
    "code_stats",
    "code_stats_torch",
    "default_chunk_rows",
    "fsq_bound",
    "fsq_constants",
    "fsq_ids_to_codes",
    "fsq_quantize",
    "fsq_quantize_torch",
    "lfq_ids_to_codes",
    "lfq_quantize",
    "lfq_quantize_torch",
    "nearest_code",
    "nearest_code_torch",
    "spherical_scale",
    "triton_interpreted",
    "use_triton",
]
