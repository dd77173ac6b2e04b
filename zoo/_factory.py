"""Building models by name: `create` (untrained) and `info` (facts without allocating weights)."""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from ._registry import family_entries, get_entry, split_model_name_tag
from .model import ZooModel

T = TypeVar("T", bound=ZooModel)


def build(cls: type[T], arch: str, defaults: dict[str, Any], overrides: dict[str, Any]) -> T:
    """Instantiate ``cls`` with a registered configuration; used by every ``@register_model`` factory."""
    unknown = set(overrides) - set(defaults) - set(_init_parameters(cls))
    if unknown:
        raise TypeError(
            f"{arch} has no argument(s) {sorted(unknown)}; it takes {sorted(_init_parameters(cls))}"
        )
    model = cls(**{**defaults, **overrides})
    model.arch = arch
    return model


def _init_parameters(cls: type) -> list[str]:
    import inspect

    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def create(name: str, **overrides: Any) -> ZooModel:
    """An untrained model in a named configuration (``"vq16"``, ``"vq16_tiny"``), with overrides."""
    arch, _ = split_model_name_tag(name)
    return get_entry(arch).fn(**overrides)


def info(name: str) -> dict[str, Any]:
    """Modality, sizes, token layout, parameter count and provenance, built on the meta device."""
    arch, tag = split_model_name_tag(name)
    entry = get_entry(arch)
    with torch.device("meta"):
        model = entry.fn()
    family_sizes = sorted(e.name for e in family_entries(entry.family))
    facts: dict[str, Any] = {
        "name": arch,
        "family": entry.family,
        "modality": entry.modality,
        "size": entry.size,
        "sizes": family_sizes,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": model.num_parameters(),
        "discrete": model.discrete,
        "input": model.input_spec,
        "tokens": model.token_layout(),
        "pretrained": {},
    }
    for t, cfg in entry.pretrained.items():
        if tag and t != tag:
            continue
        facts["pretrained"][f"{arch}.{t}"] = {
            "hf_hub_id": cfg.hf_hub_id,
            "revision": cfg.revision or "unpinned (default branch)",
            "file": cfg.filename,
            "format": "upstream, converted on load" if cfg.converter else "zoo",
            "license": cfg.license,
            "paper": cfg.paper,
            "upstream": cfg.upstream,
            "metrics": cfg.metrics,
        }
    # the registered function's docstring describes this size (a tiny size's grid and rate, not the paper's)
    doc = (entry.fn.__doc__ or type(model).__doc__ or "").strip().splitlines()
    facts["summary"] = doc[0] if doc else ""
    return facts
