"""Vector quantization with a learned codebook (VQ-VAE / VQGAN / LlamaGen style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .base import Quantizer, QuantizerOutput, usage_stats
from .search import nearest_code


class VectorQuantizer(Quantizer):
    """Nearest-neighbour VQ with straight-through gradients and codebook/commitment losses.

    Args:
        dim: code dimension ``D`` (channels of the input).
        codebook_size: number of codes ``K``.
        l2_norm: normalise inputs and codes to the unit sphere before the search (cosine VQ, as in
            ViT-VQGAN and LlamaGen); the quantized output is then the normalised code.
        commitment_weight: weight ``beta`` of ``|z - sg(q)|^2`` that keeps the encoder near its codes.
        codebook_weight: weight of ``|sg(z) - q|^2`` that pulls codes towards the encoder outputs.
        entropy_weight: weight of an entropy penalty (per-sample entropy minus batch entropy of a
            soft assignment at temperature ``entropy_temperature``) that spreads usage across codes.
        kmeans_init: initialise the codebook by k-means on the first training batch, instead of at
            random; prevents the collapse onto a few codes that small models and batches suffer.
            Adds a persistent ``initted`` flag to the state dict.
        kmeans_iters: Lloyd iterations of that initialisation.
        restart_threshold: codes whose running usage falls below this are moved onto random encoder
            outputs of the current batch; 0 disables. Usage is an EMA (decay ``usage_decay``) of each
            code's share of the hits relative to a uniform share, so 1.0 is "used as often as average"
            whatever the batch size. Adds a persistent ``usage`` buffer to the state dict.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        l2_norm: bool = False,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        entropy_weight: float = 0.0,
        entropy_temperature: float = 0.01,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        restart_threshold: float = 0.0,
        usage_decay: float = 0.99,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.l2_norm = l2_norm
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim))
        nn.init.uniform_(self.codebook, -1.0 / codebook_size, 1.0 / codebook_size)
        self.kmeans_iters = kmeans_iters
        if kmeans_init:
            self.register_buffer("initted", torch.tensor(False))
        else:
            self.initted = None
        self.restart_threshold = restart_threshold
        self.usage_decay = usage_decay
        if restart_threshold > 0:
            self.register_buffer("usage", torch.ones(codebook_size))
        else:
            self.usage = None

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor, ids: torch.Tensor) -> int:
        """Move rarely used codes onto encoder outputs; identical on every data-parallel rank."""
        counts = torch.bincount(ids.reshape(-1), minlength=self.codebook_size).float()
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed:
            torch.distributed.all_reduce(counts)
        share = counts * self.codebook_size / counts.sum().clamp_min(1)
        self.usage.mul_(self.usage_decay).add_(share, alpha=1 - self.usage_decay)
        dead = self.usage < self.restart_threshold
        num_dead = int(dead.sum())
        if num_dead:
            generator = torch.Generator(device="cpu").manual_seed(int(counts.sum()) + num_dead)
            pick = torch.randint(0, flat.shape[0], (num_dead,), generator=generator).to(flat.device)
            replacement = flat[pick].float()
            if distributed:
                torch.distributed.broadcast(replacement, src=0)
            self.codebook.data[dead] = replacement
            self.usage[dead] = 1.0
        return num_dead

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """Lloyd's k-means on rank 0's batch, broadcast so every data-parallel rank starts identical."""
        centroids = kmeans(flat.float(), self.codebook_size, self.kmeans_iters, cosine=self.l2_norm)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(centroids, src=0)
        self.codebook.data.copy_(centroids)
        self.initted.fill_(True)

    def codes(self) -> torch.Tensor:
        """The effective codebook (unit-normalised when ``l2_norm``)."""
        return F.normalize(self.codebook, dim=-1) if self.l2_norm else self.codebook

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, *grid]`` for channel-first ``z`` ``[B, D, *grid]``."""
        flat = rearrange(z, "b d ... -> (b ...) d")
        if self.l2_norm:
            flat = F.normalize(flat, dim=-1)
        ids, _ = nearest_code(flat, self.codes())
        return ids.view(z.shape[0], *z.shape[2:])

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        vectors = F.embedding(ids, self.codes())  # [B, *grid, D]
        return torch.movedim(vectors, -1, 1)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} channels, got input of shape {tuple(z.shape)}")
        z = z.float()
        if self.l2_norm:
            z = F.normalize(z, dim=1)
        if self.training and self.initted is not None and not bool(self.initted):
            self._kmeans_init(rearrange(z.detach(), "b d ... -> (b ...) d"))
        ids = self.encode(z)
        stats = usage_stats(ids, self.codebook_size)
        if self.training and self.usage is not None:
            flat = rearrange(z.detach(), "b d ... -> (b ...) d")
            stats["restarted"] = torch.tensor(float(self._restart_dead_codes(flat, ids)))
        q = self.lookup(ids)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            losses["vq/codebook"] = self.codebook_weight * F.mse_loss(q, z.detach())
            losses["vq/commit"] = self.commitment_weight * F.mse_loss(z, q.detach())
            if self.entropy_weight > 0:
                losses["vq/entropy"] = self.entropy_weight * self._entropy_penalty(z)
        quantized = z + (q - z).detach()
        return QuantizerOutput(quantized=quantized, ids=ids, losses=losses, stats=stats)

    def _entropy_penalty(self, z: torch.Tensor) -> torch.Tensor:
        flat = rearrange(z, "b d ... -> (b ...) d")
        logits = -torch.cdist(flat, self.codes()).pow(2) / self.entropy_temperature
        probs = logits.softmax(-1)
        per_sample = -(probs * logits.log_softmax(-1)).sum(-1).mean()
        mean_probs = probs.mean(0)
        batch = -(mean_probs * mean_probs.clamp_min(1e-12).log()).sum()
        return per_sample - batch


def kmeans(x: torch.Tensor, k: int, iters: int, *, cosine: bool = False) -> torch.Tensor:
    """``k`` centroids of rows of ``x`` by Lloyd's algorithm, seeded with random rows.

    With fewer rows than ``k`` the rows are repeated (with a little noise) so every code starts near
    data. Empty clusters keep their previous centroid. ``cosine`` renormalises centroids each step.
    """
    n = x.shape[0]
    generator = torch.Generator(device="cpu").manual_seed(n)
    pick = (
        torch.randperm(n, generator=generator)[:k]
        if n >= k
        else torch.randint(0, n, (k,), generator=generator)
    )
    centroids = x[pick.to(x.device)].clone()
    if n < k:
        centroids += 1e-3 * x.std() * torch.randn(centroids.shape, generator=generator).to(x.device)
    for _ in range(iters):
        ids, _ = nearest_code(x, centroids, metric="cosine" if cosine else "l2")
        sums = torch.zeros_like(centroids).index_add_(0, ids, x)
        counts = torch.bincount(ids, minlength=k).unsqueeze(1).to(x.dtype)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if cosine:
            centroids = F.normalize(centroids, dim=-1)
    return centroids
