"""Datasets and Lightning DataModules for every modality the zoo tokenizes.

- image: `ImageDataModule` over `ImageFolder`, `CifarNpz`, `FashionMnistIdx` or `SkimagePhotos`
  (real photos inside scikit-image, used when no path is given); batches [B, C, H, W] in [0, 1]
- audio: `AudioDataModule` over `AudioClips` (folder or packed `.npz`); batches [B, C, T]
- EEG:   `EEGDataModule` over `EEGWindows`; batches [B, 1, T] per channel or [B, C, T]
- SVG:   `SVGDataModule` over `SVGCorpus` (folder of `.svg` or `.jsonl`); batches list[str];
  `SVGTokenDataModule`: the same corpus tokenized once, as padded id batches with a length curriculum
- tokens: `build_token_cache` encodes an image dataset once into a sharded cache; `TokenCacheDataModule`
  over `TokenCache` serves it to generators; batches {"ids" or "latents", "labels"}

Every DataModule takes a path, builds a train and a val split, and shuffles training batches
reproducibly from `seed` (see `SeededSampler`). Names are imported on first use, so that the
datasets (and `zoo.demo`) do not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AudioClips": "audio",
    "AudioDataModule": "audio",
    "CifarNpz": "image",
    "EEGDataModule": "eeg",
    "EEGWindows": "eeg",
    "FashionMnistIdx": "image",
    "ImageDataModule": "image",
    "ImageFolder": "image",
    "SVGCorpus": "svg",
    "SVGDataModule": "svg",
    "SVGTokenDataModule": "svg_tokens",
    "ResumableDataLoader": "loader",
    "SeededSampler": "_common",
    "SkimagePhotos": "photos",
    "TokenCache": "token_cache",
    "TokenCacheDataModule": "token_cache",
    "ZooDataModule": "_module",
    "build_token_cache": "token_cache",
    "hash_split": "_common",
    "normalise_channels": "eeg",
}
__all__ = [
    "AudioClips",
    "AudioDataModule",
    "CifarNpz",
    "EEGDataModule",
    "EEGWindows",
    "FashionMnistIdx",
    "ImageDataModule",
    "ImageFolder",
    "ResumableDataLoader",
    "SVGCorpus",
    "SVGDataModule",
    "SVGTokenDataModule",
    "SeededSampler",
    "SkimagePhotos",
    "TokenCache",
    "TokenCacheDataModule",
    "ZooDataModule",
    "build_token_cache",
    "hash_split",
    "normalise_channels",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from zoo.data._common import SeededSampler, hash_split
    from zoo.data._module import ZooDataModule
    from zoo.data.audio import AudioClips, AudioDataModule
    from zoo.data.eeg import EEGDataModule, EEGWindows, normalise_channels
    from zoo.data.image import CifarNpz, FashionMnistIdx, ImageDataModule, ImageFolder
    from zoo.data.photos import SkimagePhotos
    from zoo.data.svg import SVGCorpus, SVGDataModule
    from zoo.data.svg_tokens import SVGTokenDataModule
    from zoo.data.token_cache import TokenCache, TokenCacheDataModule, build_token_cache
