"""Model registry: `arch` names for configurations and `arch.tag` names for pretrained weights.

Following timm, what changes the state dict's shapes goes before the dot (``vq16``, ``vq16_tiny``) and
where the weights came from goes after it (``vq16.llamagen_in1k``). A bare architecture name with
pretrained weights resolves to its default tag (the first one registered).
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .errors import UnknownModelError

F = TypeVar("F", bound=Callable[..., Any])

MODALITIES = ("image", "audio", "eeg", "svg", "generator")


@dataclass(frozen=True)
class PretrainedCfg:
    """Where one set of weights lives and where it came from.

    Args:
        hf_hub_id: Hub repository holding the weights.
        revision: commit sha the weights are pinned to (``None`` follows the default branch).
        filename: weights file inside the repo. ``model.safetensors`` means the zoo's own format
            (beside a ``config.json``); anything else is an upstream checkpoint run through ``converter``.
        converter: name of the converter (in the model's module) that maps the upstream state dict
            into the zoo's; ``None`` for repos in the zoo's own format.
        checkpoint_key: key of the state dict inside an upstream checkpoint file (``"model"``, ``"ema"``),
            or alternatives in order of preference (``("ema", "model")``; ``None`` among them: the file
            itself is the state dict).
        license, paper, upstream, description: provenance shown by ``zoo info`` and model cards.
        metrics: headline numbers with their settings, e.g. ``{"rFID (ImageNet val 256)": 2.19}``.
        model_args: constructor arguments the tag's weights were trained with that do not change the state
            dict (TFM-Tokenizer's 10 s windows and preprocessing per dataset); ``load_upstream`` applies them
            under the caller's own overrides.
    """

    hf_hub_id: str
    revision: str | None = None
    filename: str = "model.safetensors"
    converter: str | None = None
    checkpoint_key: str | tuple[str | None, ...] | None = None
    license: str | None = None
    paper: str | None = None
    upstream: str | None = None
    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)

    @property
    def is_upstream_format(self) -> bool:
        return self.converter is not None


@dataclass
class ModelEntry:
    """One registered architecture: its factory and the facts `zoo info` reports."""

    name: str
    fn: Callable[..., Any]
    family: str
    modality: str
    size: str
    module: str
    pretrained: dict[str, PretrainedCfg] = field(default_factory=dict)

    @property
    def default_tag(self) -> str | None:
        return next(iter(self.pretrained), None)


_ENTRIES: dict[str, ModelEntry] = {}


def register_model(
    fn: F | None = None, *, family: str | None = None, modality: str, size: str = "paper"
) -> Callable[[F], F] | F:
    """Register a factory ``fn(**overrides) -> model`` under its function name.

    Use as ``@register_model(modality="image", family="vq16", size="tiny")``. ``family`` groups the
    sizes of one model (default: the function name); ``size`` is ``"paper"`` for the published
    configuration(s) and ``"tiny"`` for the CPU test configuration.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def wrap(f: F) -> F:
        name = f.__name__
        if name in _ENTRIES and _ENTRIES[name].fn is not f:
            raise ValueError(
                f"model {name!r} is registered twice ({_ENTRIES[name].module} and {f.__module__})"
            )
        _ENTRIES[name] = ModelEntry(
            name=name, fn=f, family=family or name, modality=modality, size=size, module=f.__module__
        )
        module = sys.modules.get(f.__module__)
        if module is not None and hasattr(module, "__all__") and name not in module.__all__:
            module.__all__.append(name)
        return f

    return wrap(fn) if fn is not None else wrap


def register_pretrained(name: str, cfg: PretrainedCfg) -> None:
    """Attach pretrained weights to architecture ``arch`` under ``name = "arch.tag"``."""
    arch, tag = split_model_name_tag(name)
    if not tag:
        raise ValueError(f"pretrained weights need an 'arch.tag' name, got {name!r}")
    entry = get_entry(arch)
    entry.pretrained[tag] = cfg


def unregister_pretrained(name: str) -> None:
    """Remove pretrained weights (used by tests that register temporary tags)."""
    arch, tag = split_model_name_tag(name)
    get_entry(arch).pretrained.pop(tag, None)


def split_model_name_tag(name: str) -> tuple[str, str]:
    arch, _, tag = name.partition(".")
    return arch, tag


def _ensure_models_imported() -> None:
    from . import models  # noqa: F401  (registers every model on import)


def get_entry(arch: str) -> ModelEntry:
    _ensure_models_imported()
    try:
        return _ENTRIES[arch]
    except KeyError:
        close = difflib.get_close_matches(arch, list(_ENTRIES), n=4, cutoff=0.6)
        hint = f" Did you mean one of {sorted(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {arch!r}.{hint} `zoo.list_models()` lists the {len(_ENTRIES)} registered models."
        ) from None


def is_model(name: str) -> bool:
    _ensure_models_imported()
    arch, tag = split_model_name_tag(name)
    entry = _ENTRIES.get(arch)
    return entry is not None and (not tag or tag in entry.pretrained)


def get_pretrained_cfg(name: str) -> tuple[str, PretrainedCfg]:
    """Resolve ``arch`` or ``arch.tag`` to ``("arch.tag", cfg)``."""
    arch, tag = split_model_name_tag(name)
    entry = get_entry(arch)
    tag = tag or entry.default_tag or ""
    if tag not in entry.pretrained:
        have = [f"{arch}.{t}" for t in entry.pretrained]
        if have:
            hint = f"available: {', '.join(have)}. Use zoo.create({arch!r}) for an untrained model."
        else:
            from .recipes import packaged_recipes

            recipe = arch if arch in packaged_recipes() else "RECIPE.yaml"
            hint = (
                f"none are published for this size. Train and export your own "
                f"(zoo train {recipe}; zoo export runs/{arch} -o {arch}-export) and load the folder "
                f"(zoo.load('./{arch}-export')), or use zoo.create({arch!r}) for an untrained model."
            )
        raise UnknownModelError(
            f"no pretrained weights {f'{arch}.{tag}' if tag else f'for {arch!r}'}; {hint}"
        )
    return f"{arch}.{tag}", entry.pretrained[tag]


def list_models(
    pattern: str | None = None, modality: str | None = None, pretrained: bool = False
) -> list[str]:
    """Registered names matching a glob ``pattern``; with ``pretrained=True``, the ``arch.tag`` names."""
    _ensure_models_imported()
    names: list[str] = []
    for entry in _ENTRIES.values():
        if modality is not None and entry.modality != modality:
            continue
        if pretrained:
            names.extend(f"{entry.name}.{tag}" for tag in entry.pretrained)
        else:
            names.append(entry.name)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return sorted(names)


def entries() -> list[ModelEntry]:
    _ensure_models_imported()
    return list(_ENTRIES.values())


def family_entries(family: str) -> list[ModelEntry]:
    """Every registered size of one model family."""
    return [e for e in entries() if e.family == family]


def with_revision(cfg: PretrainedCfg, revision: str | None) -> PretrainedCfg:
    return cfg if revision is None else replace(cfg, revision=revision)
