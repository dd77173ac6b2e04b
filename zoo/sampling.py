"""Sampling pieces the generators share: logit filtering, classifier-free guidance and its schedules.

Filtering and drawing follow LlamaGen's ``generate.py`` step for step (temperature floor 1e-5, top-k
then nucleus filtering that always keeps the most likely token, one multinomial draw per position in
order), so a generator seeded like an upstream run draws the same tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "classifier_free_guidance",
    "filter_logits",
    "linear_cfg_schedule",
    "sample_logits",
]


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``logits [B, V]`` with everything outside the top ``k`` and outside the nucleus of mass ``p`` at -inf.

    ``top_k=0`` and ``top_p=1`` disable each filter. The nucleus keeps the smallest set of tokens whose
    probability reaches ``top_p``, and never less than the most likely token.
    """
    logits = logits.clone()
    if top_k > 0:
        k = min(top_k, logits.shape[-1])
        logits[logits < torch.topk(logits, k)[0][..., -1, None]] = -float("inf")
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        remove = ordered.softmax(-1).cumsum(-1) > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits[remove.scatter(-1, order, remove)] = -float("inf")
    return logits


def sample_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One id per position from ``logits [B, N, V]`` -> ``[B, N]``; ``temperature=0`` is greedy."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(
            f"need temperature >= 0, top_k >= 0 and 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}"
        )
    ids = []
    for i in range(logits.shape[1]):
        one = logits[:, i].float()
        if temperature == 0:
            ids.append(one.argmax(-1))
            continue
        one = one / max(temperature, 1e-5)
        if top_k > 0 or top_p < 1.0:
            one = filter_logits(one, top_k, top_p)
        ids.append(torch.multinomial(F.softmax(one, dim=-1), 1, generator=generator)[:, 0])
    return torch.stack(ids, dim=1)


def classifier_free_guidance(output: torch.Tensor, scale: float | torch.Tensor | None) -> torch.Tensor:
    """Mix a batch stacked as ``[conditional; unconditional]`` into ``u + scale (c - u)``.

    ``scale=None`` returns the conditional half unguided.
    """
    cond, uncond = output.chunk(2, dim=0)
    if scale is None:
        return cond
    return uncond + (cond - uncond) * scale


def linear_cfg_schedule(cfg: float, step: int, total: int) -> float:
    """xAR's per-entity ramp: guidance ``1 + (cfg - 1) k / (K - 1)`` for entity ``k`` of ``K``, so the
    first entity is unguided and the last gets the full scale."""
    if total <= 1:
        return cfg
    return 1.0 + (cfg - 1.0) * step / (total - 1)
