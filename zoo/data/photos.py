"""Real photographs shipped inside the scikit-image wheel, cut into crops: image data that needs no download.

It is the default image data (`ImageDataModule(path=None)`) and what `zoo.demo` trains on, so a
tokenizer can be trained and evaluated on real photos on any machine. Training and validation
use different photos, so validation scores measure generalisation, not memorisation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.data._common import Key, check_channels, check_split, coin, mix_seed, randint, to_channels, unpack

__all__ = [
    "SKIMAGE_TRAIN_PHOTOS",
    "SKIMAGE_VAL_PHOTOS",
    "SkimagePhotos",
    "grid_crops",
    "random_crops",
    "skimage_photo",
]

SKIMAGE_TRAIN_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "immunohistochemistry",
    "hubble_deep_field",
)
# skimage's `cat` is the same picture as `chelsea`, so it is not listed twice; `clock` is a real
# (grey, motion-blurred) photo, like `camera` and `coins` in the training list.
SKIMAGE_VAL_PHOTOS = ("chelsea", "clock")


def skimage_photo(name: str, short_side: int) -> torch.Tensor:
    """One scikit-image photo as float32 [3, H, W] in [0, 1], area-resized to shorter side `short_side`."""
    try:
        from skimage import data
    except ImportError:
        raise ModuleNotFoundError(
            "the built-in photo dataset needs scikit-image: pip install scikit-image (or zoo[dev])"
        ) from None

    array = getattr(data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float()[None] / 255
    scale = short_side / min(x.shape[-2:])
    size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
    return F.interpolate(x, size=size, mode="area")[0]


def random_crops(photos: list[torch.Tensor], n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`n` random `size` crops, each from a random photo, flipped with probability 1/2: [n, 3, size, size]."""
    crops = []
    for _ in range(n):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=generator))
        crop = photo[:, top : top + size, left : left + size]
        crops.append(crop.flip(-1) if bool(torch.rand(1, generator=generator) < 0.5) else crop)
    return torch.stack(crops)


def grid_crops(photo: torch.Tensor, size: int) -> torch.Tensor:
    """Non-overlapping `size` tiles of a [3, H, W] photo, row by row (the remainder is dropped)."""
    h, w = photo.shape[1] // size * size, photo.shape[2] // size * size
    tiles = photo[:, :h, :w].unfold(1, size, size).unfold(2, size, size)  # [3, nh, nw, s, s]
    return tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size)


class SkimagePhotos(Dataset):
    """`crops_per_photo` square crops of each scikit-image photo in the split: [C, resolution, resolution].

    Split by photo: "train" uses SKIMAGE_TRAIN_PHOTOS, "val" SKIMAGE_VAL_PHOTOS. Crop positions
    are a fixed function of (seed, photo, crop), so the dataset is deterministic; with `augment`,
    positions and flips are drawn afresh for every access instead (from the per-item seed the
    train sampler hands out, so still reproducible). Photos are resized to a shorter side of
    `short_side` (default 3 * resolution, as in the demo) and decoded on first use.

    The crops have no classes: every item is labelled 0, so class-conditional code runs on them too.
    """

    def __init__(
        self,
        resolution: int = 32,
        split: str = "train",
        crops_per_photo: int = 64,
        seed: int = 0,
        augment: bool = False,
        channels: int = 3,
        short_side: int | None = None,
    ) -> None:
        split = check_split(split)
        if split == "all":
            self.photos: tuple[str, ...] = SKIMAGE_TRAIN_PHOTOS + SKIMAGE_VAL_PHOTOS
        else:
            self.photos = SKIMAGE_TRAIN_PHOTOS if split == "train" else SKIMAGE_VAL_PHOTOS
        self.resolution = int(resolution)
        self.short_side = 3 * self.resolution if short_side is None else int(short_side)
        if self.resolution < 1 or self.short_side < self.resolution:
            raise ValueError(f"need 1 <= resolution <= short_side, got {resolution} and {self.short_side}")
        if int(crops_per_photo) < 1:
            raise ValueError(f"crops_per_photo must be positive, got {crops_per_photo!r}")
        self.crops_per_photo = int(crops_per_photo)
        self.seed, self.augment, self.channels = int(seed), augment, check_channels(channels)
        self._loaded: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.photos) * self.crops_per_photo

    def _photos(self) -> list[torch.Tensor]:
        if self._loaded is None:
            self._loaded = [skimage_photo(name, self.short_side) for name in self.photos]
        return self._loaded

    def __getitem__(self, key: Key) -> torch.Tensor:
        index, generator = unpack(key, len(self))
        p, k = divmod(index, self.crops_per_photo)
        photo = self._photos()[p]
        if not self.augment:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, p, k))
        s = self.resolution
        top, left = randint(photo.shape[1] - s + 1, generator), randint(photo.shape[2] - s + 1, generator)
        crop = photo[:, top : top + s, left : left + s]
        if self.augment and coin(generator):
            crop = crop.flip(-1)
        return to_channels(crop, self.channels).contiguous()

    def label(self, index: int) -> int:
        """Always 0 (after checking `index`): the photos are not a classification set."""
        unpack(index, len(self))
        return 0

    @property
    def class_names(self) -> list[str]:
        return ["0"]

    @property
    def num_classes(self) -> int:
        return 1
