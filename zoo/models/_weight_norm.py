"""Weight normalisation in upstream checkpoints, shared by the converters of the codecs that train with it.

Upstream files store a weight-normed layer as a gain ``g`` and a direction ``v``: new-style
``parametrizations.weight.original0``/``original1`` or legacy ``weight_g``/``weight_v``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = ["fold_weight_norm", "split_weight_norm"]

_WEIGHT_NORM = re.compile(r"(.+)\.(?:parametrizations\.weight\.original([01])|weight_([gv]))")


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``w = g * v / |v|`` with the norm over every axis but the first (torch's ``weight_norm(dim=0)``)."""
    return g * v / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))


def split_weight_norm(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """``(other entries, {layer stem: (g, v)})`` of a state dict in either naming.

    A layer with only one half raises a ``KeyError`` naming the missing key in the file's own style.
    """
    rest: dict[str, torch.Tensor] = {}
    halves: dict[str, dict[str, tuple[bool, torch.Tensor]]] = {}
    for key, value in state.items():
        match = _WEIGHT_NORM.fullmatch(key)
        if match is None:
            rest[key] = value
            continue
        stem, new_style, legacy = match.groups()
        part = "g" if new_style == "0" or legacy == "g" else "v"
        halves.setdefault(stem, {})[part] = (new_style is not None, value)
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for stem, half in halves.items():
        if set(half) != {"g", "v"}:
            lacking = "v" if "g" in half else "g"
            new_style = next(iter(half.values()))[0]
            name = (
                f"parametrizations.weight.original{'1' if lacking == 'v' else '0'}"
                if new_style
                else f"weight_{lacking}"
            )
            role = "direction" if lacking == "v" else "gain"
            raise KeyError(f"{stem}.{name} (weight norm's {role}) is missing")
        pairs[stem] = (half["g"][1], half["v"][1])
    return rest, pairs
