"""Adapters for ``benchmarks/upstream_parity.py``: one module per model family, each naming the upstream
files it imports, building upstream's network from the user's checkout, and running upstream's official
preprocessing and entry point next to the zoo's on the same real files.

An adapter module defines ``ADAPTERS``: a dict from a zoo model name (``"vq16"``, ``"kl16"``...) to an
:class:`~parity.common.Adapter` subclass. ``parity.common`` holds what they share (importing from a
checkout, recording which files were imported, the real test files, the comparison).
"""

from __future__ import annotations

import importlib

# module (under benchmarks/parity) -> the model names its ADAPTERS provide; the command lists these
# without importing anything, and imports one module when asked for one of its models.
MODULES: dict[str, tuple[str, ...]] = {
    "images": ("vq16", "kl16", "restok", "retok"),
    "wavtokenizer": ("wavtokenizer",),
    "cat": ("cat",),
    "reasoningcodec": ("reasoningcodec", "sqcodec"),
    "eeg": ("tfm_tokenizer", "biocodec"),
    "seed": ("seed",),
    "karl": ("karl",),
    "tokenbridge": ("tokenbridge",),
    "hivg": ("hivg",),
    "vqgan_mage": ("vqgan_mage",),
    "nar": ("nar",),
    "xar": ("xar",),
    "himar": ("himar",),
    "restok_har": ("restok_har",),
    "tokenbridge_gen": ("tokenbridge_gen",),
}


def available() -> list[str]:
    return [name for names in MODULES.values() for name in names]


def adapter_class(name: str) -> type:
    for module, names in MODULES.items():
        if name in names:
            return importlib.import_module(f"parity.{module}").ADAPTERS[name]
    raise KeyError(f"no parity adapter for {name!r}; adapters exist for: {', '.join(available())}")
