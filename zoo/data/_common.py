"""Pieces every dataset here shares: path checks, stable splits, seeded order and per-item seeds.

Nothing in this module imports Lightning, so the datasets (and `zoo.demo`, which uses the
scikit-image photos) stay cheap to import.
"""

from __future__ import annotations

import errno
import hashlib
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from zoo.errors import MediaError

# A dataset key is a plain index (from a SequentialSampler or a DistributedSampler) or
# (index, augmentation seed) from SeededSampler.
Key = int | tuple[int, int]

SPLITS = ("train", "val", "test", "all")


# --------------------------------------------------------------------------------------------------
# Arguments and paths


def check_split(split: str) -> str:
    """Return "train", "val" or "all"; "test" is accepted as a synonym of "val"."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return "val" if split == "test" else split


def check_fraction(val_fraction: float) -> float:
    f = float(val_fraction)
    if not 0.0 <= f < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    return f


def existing(path: str | os.PathLike[str], what: str) -> Path:
    """`path` as a Path, or FileNotFoundError naming it (the data bundle is absent on most machines)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, f"{what} not found", str(p))
    return p


def find_files(root: Path, suffixes: Iterable[str], what: str) -> list[Path]:
    """Every file under `root` with one of `suffixes` (any case), sorted, hidden files and folders skipped.

    Hidden entries are skipped because macOS copies leave `._name.png` resource forks next to
    every image, which no decoder can read.
    """
    wanted = {s.lower() for s in suffixes}
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            Path(folder, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in wanted
        ]
    if not found:
        raise MediaError(
            root, f"contains no {what} files (looked for {' '.join(sorted(wanted))} recursively)"
        )
    return sorted(found)


# --------------------------------------------------------------------------------------------------
# Stable splits and seeds


def unit_hash(key: str) -> float:
    """A number in [0, 1) that depends only on `key` (Python's own hash() changes with every process)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def hash_split(keys: Sequence[str], split: str, val_fraction: float) -> list[int]:
    """Indices of `keys` that fall in `split` ("train", "val" or "all").

    A key's side depends on its own hash, not on the order or number of the others, so adding
    files to a corpus never moves an old file across the split. With two or more keys and a
    positive fraction each side gets at least one; a single key always goes to train.
    """
    split = check_split(split)
    n = len(keys)
    if split == "all":
        return list(range(n))
    fraction = check_fraction(val_fraction)
    scores = [unit_hash(k) for k in keys]
    val = {i for i, s in enumerate(scores) if s < fraction}
    if n == 1:
        val = set()
    elif fraction > 0 and n >= 2:
        if not val:
            val = {min(range(n), key=scores.__getitem__)}
        elif len(val) == n:
            val.discard(max(range(n), key=scores.__getitem__))
    return [i for i in range(n) if (i in val) == (split == "val")]


def mix_seed(*parts: int) -> int:
    """Combine integers into one non-negative 63-bit seed, the same in every process."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(int(part).to_bytes(16, "little", signed=True))
    return int.from_bytes(h.digest(), "little") >> 1


def unpack(key: Any, n: int) -> tuple[int, torch.Generator | None]:
    """Split a dataset key into (index in [0, n), generator or None).

    None means "use torch's global RNG": that is what a plain index (from a DistributedSampler
    that replaced ours) gets, and DataLoader workers seed that RNG per worker.
    """
    seed = None
    if isinstance(key, tuple):
        key, seed = key
    index = operator.index(key)
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(f"index {key} out of range for a dataset of {n} items")
    return index, None if seed is None else torch.Generator().manual_seed(int(seed))


def randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in [0, high) from `generator` (global RNG when None); 0 when high <= 1."""
    return int(torch.randint(high, (1,), generator=generator)) if high > 1 else 0


def coin(generator: torch.Generator | None) -> bool:
    return bool(torch.rand(1, generator=generator) < 0.5)


class SeededSampler(Sampler):
    """Random order drawn from (seed, epoch), split across data-parallel ranks, with item seeds.

    Lightning calls `set_epoch` before each epoch, so a run resumed at epoch k sees the order and
    the crops it would have seen; `skip` (set by `ResumableDataLoader` on restore) starts an epoch
    part-way through. Every rank draws the same permutation (padded to a multiple of the world
    size) and takes an interleaved slice of it. With `with_seeds`, each index comes with its own
    augmentation seed, so augmentations do not depend on which worker decodes the item: any
    `num_workers` gives the same batches. Without `set_epoch`, each full pass advances the epoch.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, *, with_seeds: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0
        self.with_seeds = with_seeds
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rank_items(self) -> list:
        rank, world = rank_and_world()
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        seeds = torch.randint(2**62, (self.n,), generator=g).tolist()
        items = list(zip(order, seeds, strict=True)) if self.with_seeds else order
        padded = -(-self.n // world) * world
        items += items[: padded - self.n]
        return items[rank::world]

    def __len__(self) -> int:
        world = rank_and_world()[1]
        return (self.n + world - 1) // world

    def __iter__(self) -> Iterator:
        items = self._rank_items()[self.skip :]
        self.skip = 0
        self.epoch += 1
        return iter(items)


def rank_and_world() -> tuple[int, int]:
    """This process's data-parallel rank and the world size (0 and 1 outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Subsample(Dataset):
    """`limit` items spread evenly over `dataset`, for quick runs.

    Evenly spread rather than the first `limit`: the bundle's files are sorted by class or
    speaker, so a prefix would be a single class.
    """

    def __init__(self, dataset: Dataset, limit: int) -> None:
        if int(limit) < 1:
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        self.dataset, self.limit = dataset, int(limit)

    def __len__(self) -> int:
        return min(self.limit, len(self.dataset))  # type: ignore[arg-type]

    def __getitem__(self, key: Key) -> Any:
        index, seed = key if isinstance(key, tuple) else (key, None)
        index, _ = unpack(index, len(self))
        inner = index * len(self.dataset) // len(self)  # type: ignore[arg-type]
        return self.dataset[inner if seed is None else (inner, seed)]


# --------------------------------------------------------------------------------------------------
# Image geometry

# ITU-R BT.601 luma, the weights zoo.io and PIL use for RGB -> L.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[C, H, W] with C in (1, 3) to `channels` (1 or 3): grey is repeated, colour becomes luma."""
    if x.shape[0] == channels:
        return x
    if channels == 3 and x.shape[0] == 1:
        return x.expand(3, -1, -1).contiguous()
    if channels == 1 and x.shape[0] == 3:
        return torch.einsum("chw,c->hw", x, _LUMA.to(x.dtype))[None].clamp(0.0, 1.0)
    raise ValueError(f"cannot convert {x.shape[0]} channels to {channels}")


def check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return channels


def fit_image(
    x: torch.Tensor, resolution: int | None, generator: torch.Generator | None, augment: bool
) -> torch.Tensor:
    """Resize the shorter side to `resolution`, crop a square (random if `augment`, else centred), maybe flip.

    `resolution=None` keeps the stored size (then `augment` only flips). Antialiased resizing,
    so downscaled photos do not alias.
    """
    if resolution is not None:
        h, w = x.shape[-2:]
        if min(h, w) != resolution:
            scale = resolution / min(h, w)
            size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
            x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
            x = x.clamp(0.0, 1.0)
            h, w = size
        if augment:
            top, left = randint(h - resolution + 1, generator), randint(w - resolution + 1, generator)
        else:
            top, left = (h - resolution) // 2, (w - resolution) // 2
        x = x[:, top : top + resolution, left : left + resolution]
    if augment and coin(generator):
        x = x.flip(-1)
    return x.contiguous()
