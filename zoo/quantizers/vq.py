"""Vector quantization with a codebook searched by nearest neighbour (VQ-VAE, VQGAN, EnCodec, LlamaGen)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import code_stats, nearest_code
from .base import Quantizer, QuantizerOutput, masked_mse, row_mask, to_rows, usage_stats
from .distributed import all_reduce_sum_, broadcast_, gather_rows

# Rows per rank that k-means initialisation and dead-code restarts draw from.
_SAMPLE_ROWS = 1 << 16


class VectorQuantizer(Quantizer):
    """Nearest-code VQ with a learned or EMA codebook, and the usual remedies for codebook collapse.

    Args:
        dim: channels of the input (and of the output).
        codebook_size: number of codes ``K``.
        codebook_dim: code dimension; when it differs from ``dim``, linear maps project into the
            code space and back (factorised codes, as in ViT-VQGAN and DAC).
        l2_norm: normalise inputs and codes to the unit sphere (cosine search, as in ViT-VQGAN and
            LlamaGen); the output is then the normalised code.
        l2_norm_output: with ``l2_norm``, whether the output, the losses and the straight-through
            estimator use the normalised vectors (True) or the raw projected input and raw code, the
            normalisation serving only the nearest-code search (False: DAC, MOSS-Audio-Tokenizer).
        commitment_weight: weight of ``|z - sg(q)|^2``, which keeps the encoder near its codes.
        codebook_weight: weight of ``|sg(z) - q|^2``, which pulls learned codes towards the encoder
            (unused with EMA codebooks, which move by averaging instead).
        ema_decay: ``None`` learns the codebook by gradient; a decay (e.g. 0.99) makes it a buffer
            updated as an exponential moving average of the vectors assigned to each code, with
            Laplace smoothing ``ema_epsilon`` of the counts (VQ-VAE-2, EnCodec, WavTokenizer).
        rotation_trick: pass gradients through a rotation-and-scale of ``z`` onto its code instead of
            straight through (Fifty et al., 2024; ReTok); the forward value is unchanged.
        entropy_weight: weight of an entropy penalty on a soft assignment at temperature
            ``entropy_temperature``: per-sample entropy minus batch entropy, which spreads usage.
            It builds an ``N x K`` matrix, so keep it off for large ``N x K``.
        kmeans_init: set the codebook by k-means (``kmeans_iters`` Lloyd steps) on the first
            training batch, gathered from every data-parallel rank.
        restart_threshold: codes whose running hit count per step (``cluster_size``) falls below
            this are moved onto random encoder outputs (EnCodec uses 2); 0 disables.
        usage_decay: decay of the running hit counts of learned codebooks (EMA codebooks use
            ``ema_decay``).

    State: ``codebook`` (a parameter, or a buffer with EMA), plus ``cluster_size`` when counts are
    tracked (EMA or restarts), ``embed_sum`` with EMA, and ``initted`` with k-means initialisation.
    Under DDP, counts and sums are all-reduced and k-means and restarts use rows gathered from every
    rank, so codebooks stay identical across ranks.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        codebook_dim: int | None = None,
        l2_norm: bool = False,
        l2_norm_output: bool = True,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        ema_decay: float | None = None,
        ema_epsilon: float = 1e-5,
        rotation_trick: bool = False,
        entropy_weight: float = 0.0,
        entropy_temperature: float = 0.01,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        restart_threshold: float = 0.0,
        usage_decay: float = 0.99,
    ) -> None:
        super().__init__()
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {ema_decay}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim or dim
        self.l2_norm = l2_norm
        self.l2_norm_output = l2_norm_output
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.rotation_trick = rotation_trick
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.kmeans_iters = kmeans_iters
        self.restart_threshold = restart_threshold
        self.usage_decay = usage_decay
        if self.codebook_dim != dim:
            self.project_in: nn.Module = nn.Linear(dim, self.codebook_dim)
            self.project_out: nn.Module = nn.Linear(self.codebook_dim, dim)
        else:
            self.project_in = self.project_out = nn.Identity()
        init = torch.empty(codebook_size, self.codebook_dim).uniform_(-1 / codebook_size, 1 / codebook_size)
        if ema_decay is None:
            self.codebook = nn.Parameter(init)
        else:
            self.register_buffer("codebook", init)
            self.register_buffer("embed_sum", init.clone())
        self.tracks_counts = ema_decay is not None or restart_threshold > 0
        if self.tracks_counts:
            self.register_buffer("cluster_size", torch.ones(codebook_size))
        if kmeans_init:
            self.register_buffer("initted", torch.tensor(False))
        self._generator = torch.Generator().manual_seed(0)

    # ------------------------------------------------------------------ codes
    def codes(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The effective codebook ``[K, codebook_dim]`` (unit-normalised with ``l2_norm``), in ``dtype``
        (the codebook's own by default) before normalising, so a bf16 model's codes normalise in fp32."""
        codebook = self.codebook if dtype is None else self.codebook.to(dtype)
        return F.normalize(codebook, dim=-1) if self.l2_norm else codebook

    def output_codes(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The code vectors ids stand for in the output: raw codes when only the search is normalised."""
        if self.l2_norm and not self.l2_norm_output:
            return self.codebook if dtype is None else self.codebook.to(dtype)
        return self.codes(dtype)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Channel-first vectors for ids ``[B, *grid]``; ids < 0 (dropped positions) give zeros."""
        valid = ids >= 0
        vectors = self.project_out(F.embedding(ids.clamp_min(0), self.output_codes()))
        return torch.movedim(vectors * valid.unsqueeze(-1), -1, 1)

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantize ``z [B, dim, *grid]``; ``mask [B, *grid]`` marks valid positions (e.g. unpadded
        audio frames): only those feed losses, statistics, k-means, EMA and restarts."""
        if z.ndim < 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected [B, {self.dim}, ...] input, got shape {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            return self._forward(z.float(), mask)

    def _forward(self, z: torch.Tensor, mask: torch.Tensor | None) -> QuantizerOutput:
        rows, restore = to_rows(z)
        keep = row_mask(mask, z)
        projected = project_float32(self.project_in, rows)
        search = F.normalize(projected, dim=-1) if self.l2_norm else projected
        if self.l2_norm_output:
            projected = search
        update = self.training
        if update:
            valid = search.detach() if keep is None else search.detach()[keep]
            if hasattr(self, "initted") and not bool(self.initted):
                self._kmeans_init(valid)
            if self.restart_threshold > 0:
                self._restart_dead_codes(valid)
        codes = self.codes(torch.float32)
        ids, _ = nearest_code(search, codes)
        q = F.embedding(ids, self.output_codes(torch.float32))
        counted_ids = ids if keep is None else ids.masked_fill(~keep, -1)
        counts = None
        if update:
            counts = self._update_statistics(search.detach(), counted_ids)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            losses["vq/commit"] = self.commitment_weight * masked_mse(projected, q.detach(), keep)
            if self.ema_decay is None and self.codebook_weight > 0:
                losses["vq/codebook"] = self.codebook_weight * masked_mse(q, projected.detach(), keep)
            if self.entropy_weight > 0:
                losses["vq/entropy"] = self.entropy_weight * self._entropy_penalty(search, codes, keep)
        if self.rotation_trick:
            passed = rotate_onto(projected, q.detach())
        else:
            passed = projected + (q - projected).detach()
        stats = usage_stats(counted_ids, self.codebook_size, counts)
        stats["dead_codes"] = self._dead_fraction(counts if counts is not None else stats["usage"])
        quantized = restore(project_float32(self.project_out, passed))
        return QuantizerOutput(
            quantized=quantized, ids=ids.view(z.shape[:1] + z.shape[2:]), losses=losses, stats=stats
        )

    # ------------------------------------------------------------------ state updates
    @torch.no_grad()
    def _update_statistics(self, projected: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """All-reduce this step's per-code counts (and sums for EMA); update running counts and EMA codes."""
        counts, sums = code_stats(projected, ids, self.codebook_size)
        if self.ema_decay is None:
            all_reduce_sum_(counts)
            if self.tracks_counts:
                self.cluster_size.lerp_(counts, 1 - self.usage_decay)
            return counts
        packed = all_reduce_sum_(torch.cat([counts.unsqueeze(1), sums], dim=1))  # one collective
        counts, sums = packed[:, 0], packed[:, 1:]
        self.cluster_size.lerp_(counts, 1 - self.ema_decay)
        self.embed_sum.lerp_(sums, 1 - self.ema_decay)
        total = self.cluster_size.sum()
        smoothed = (
            (self.cluster_size + self.ema_epsilon) / (total + self.codebook_size * self.ema_epsilon) * total
        )
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        return counts

    @torch.no_grad()
    def _kmeans_init(self, valid: torch.Tensor) -> None:
        """k-means on rows gathered from every rank; rank 0's result is broadcast bit-identically."""
        data = gather_rows(valid, _SAMPLE_ROWS, self._generator)
        if data.shape[0] == 0:
            return  # no valid rows anywhere yet: every rank skips alike and tries again next step
        centroids, sizes = kmeans(data, self.codebook_size, self.kmeans_iters, cosine=self.l2_norm)
        broadcast_(centroids)
        broadcast_(sizes)
        self.codebook.data.copy_(centroids)
        if self.tracks_counts:
            # Counts per step: k-means saw every rank's rows once.
            self.cluster_size.copy_(sizes)
        if self.ema_decay is not None:
            self.embed_sum.copy_(centroids * self.cluster_size.unsqueeze(1))
        self.initted.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, valid: torch.Tensor) -> None:
        """Move codes whose running count is under the threshold onto random rows of this step's data."""
        dead = self.cluster_size < self.restart_threshold  # identical on every rank
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        candidates = gather_rows(valid, _SAMPLE_ROWS, self._generator)
        if candidates.shape[0] == 0:
            return
        seed = torch.Generator().manual_seed(int(self.cluster_size.sum().item() * 1e3) + num_dead)
        pick = torch.randint(0, candidates.shape[0], (num_dead,), generator=seed).to(candidates.device)
        replacement = broadcast_(candidates[pick].clone())
        self.codebook.data[dead] = replacement.to(self.codebook.dtype)
        # A fresh code gets an average count, so it is not restarted again before it can win hits.
        fresh = max(float(self.cluster_size.mean()), 2.0 * self.restart_threshold)
        self.cluster_size[dead] = fresh
        if self.ema_decay is not None:
            self.embed_sum[dead] = replacement * fresh

    def _dead_fraction(self, counts_or_usage: torch.Tensor) -> torch.Tensor:
        if self.tracks_counts and self.restart_threshold > 0:
            return (self.cluster_size < self.restart_threshold).float().mean()
        if counts_or_usage.ndim == 0:  # no counts this call: the codes unused in the batch
            return 1.0 - counts_or_usage
        return (counts_or_usage == 0).float().mean()

    def _entropy_penalty(
        self, rows: torch.Tensor, codes: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        if keep is not None:
            rows = rows[keep]
        distances = codes.pow(2).sum(1) - 2 * rows @ codes.t() + rows.pow(2).sum(1, keepdim=True)
        logits = -distances / self.entropy_temperature
        probs = logits.softmax(-1)
        per_sample = -(probs * logits.log_softmax(-1)).sum(-1).mean()
        mean_probs = probs.mean(0)
        batch = -(mean_probs * mean_probs.clamp_min(1e-12).log()).sum()
        return per_sample - batch


def project_float32(layer: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """``layer(rows)`` for float32 ``rows`` whatever the weights' dtype: a linear projection of a bf16 or
    fp16 model runs on its weights upcast (exactly), so quantizer math stays float32 as documented."""
    if isinstance(layer, nn.Linear) and layer.weight.dtype != rows.dtype:
        bias = None if layer.bias is None else layer.bias.to(rows.dtype)
        return F.linear(rows, layer.weight.to(rows.dtype), bias)
    return layer(rows)


def rotate_onto(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Map each row of ``source`` onto ``target`` by a rotation and rescaling treated as constant.

    The forward value equals ``target``; the gradient reaching ``source`` is the incoming gradient
    rotated back, which keeps the angle between encoder output and code (rotation trick).
    """
    src_norm = source.norm(dim=-1, keepdim=True).detach().clamp_min(1e-12)
    tgt_norm = target.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u = source.detach() / src_norm
    v = target / tgt_norm
    w = F.normalize(u + v, dim=-1, eps=1e-12)
    # R s = s - 2 (s.w) w + 2 (s.u) v, the rotation taking u to v in their common plane.
    rotated = source - 2 * (source * w).sum(-1, keepdim=True) * w + 2 * (source * u).sum(-1, keepdim=True) * v
    return rotated * (tgt_norm / src_norm)


@torch.no_grad()
def kmeans(
    x: torch.Tensor, k: int, iters: int, *, cosine: bool = False, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` centroids of the rows of ``x`` by Lloyd's algorithm, and the final cluster sizes.

    Seeds by k-means++ (each new seed drawn in proportion to its squared distance from the seeds so
    far), which avoids the merged clusters that random seeding leaves behind; with fewer rows than
    ``k`` the rows repeat with a little noise so every code starts near data. Empty clusters keep
    their centroid. ``cosine`` renormalises centroids. Deterministic for a given ``x`` and ``seed``.
    """
    n = x.shape[0]
    x = x.float()
    generator = torch.Generator().manual_seed(seed + n)
    if n > k:
        centroids = _plus_plus_seeds(x, k, generator)
    else:
        pick = (
            torch.randperm(n, generator=generator)
            if n == k
            else torch.randint(0, n, (k,), generator=generator)
        )
        centroids = x[pick.to(x.device)].clone()
        if n < k:
            noise = torch.randn(centroids.shape, generator=generator).to(x.device)
            centroids += 1e-3 * x.std().clamp_min(1e-6) * noise
    if cosine:
        centroids = F.normalize(centroids, dim=-1)
    metric = "cosine" if cosine else "l2"
    for _ in range(iters):
        ids, _ = nearest_code(x, centroids, metric=metric)
        sizes, sums = code_stats(x, ids, k)
        centroids = torch.where(sizes.unsqueeze(1) > 0, sums / sizes.clamp_min(1).unsqueeze(1), centroids)
        if cosine:
            centroids = F.normalize(centroids, dim=-1)
    ids, _ = nearest_code(x, centroids, metric=metric)
    return centroids, torch.bincount(ids, minlength=k).float()


def _plus_plus_seeds(x: torch.Tensor, k: int, generator: torch.Generator, rounds: int = 64) -> torch.Tensor:
    """k-means++ seeding in at most ``rounds`` batches (exact k-means++ when ``k <= rounds + 1``).

    Each round draws a batch of seeds without replacement in proportion to the squared distance from
    the seeds so far, then updates the distances with one nearest-code search, so large codebooks
    cost ``rounds`` searches instead of ``k`` sequential passes over the data.
    """
    n = x.shape[0]
    seeds = [x[int(torch.randint(0, n, (1,), generator=generator))].unsqueeze(0)]
    _, closest = nearest_code(x, seeds[0], return_distances=True)
    remaining = k - 1
    per_round = -(-remaining // min(rounds, max(remaining, 1))) if remaining else 0
    while remaining > 0:
        take = min(per_round, remaining)
        weights = closest.double().cpu()
        if float(weights.sum()) <= 0:  # every row already coincides with a seed
            weights = torch.ones_like(weights)
        pick = torch.multinomial(weights, take, replacement=False, generator=generator).to(x.device)
        seeds.append(x[pick])
        _, batch_closest = nearest_code(x, seeds[-1], return_distances=True)
        closest = torch.minimum(closest, batch_closest)
        remaining -= take
    return torch.cat(seeds)
