"""Image datasets and their DataModule: items are float32 [C, H, W] in [0, 1], batches [B, C, H, W].

Formats: a folder of image files, a CIFAR-10-style `.npz` (JPEG streams + offsets, or decoded
pixels `x`), Fashion-MNIST idx files, and scikit-image's bundled photos when no path is given.
Files are decoded per item, in the worker that needs them, so building a dataset costs nothing.
Every dataset also has class labels (`label(i)`, `class_names`, `num_classes`) for class-conditional
generators; they are read without decoding any image, so a token cache can label items cheaply.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from zoo.data._common import (
    Key,
    check_channels,
    check_split,
    existing,
    find_files,
    fit_image,
    hash_split,
    to_channels,
    unpack,
)
from zoo.data._module import ZooDataModule
from zoo.data.photos import SkimagePhotos
from zoo.errors import MediaError
from zoo.io import image_to_tensor, read_image
from zoo.io.image import IMAGE_SUFFIXES

__all__ = ["CifarNpz", "FashionMnistIdx", "ImageDataModule", "ImageFolder", "SkimagePhotos"]

IMAGE_FORMATS = ("auto", "folder", "npz", "idx", "skimage")

# Label order of Fashion-MNIST's idx files (see the data bundle's MANIFEST.md).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _check_resolution(resolution: int | None) -> int | None:
    if resolution is not None and int(resolution) < 1:
        raise ValueError(f"resolution must be a positive integer or None, got {resolution!r}")
    return None if resolution is None else int(resolution)


class ImageFolder(Dataset):
    """Every image file under `path` (recursively), resized and cropped to `resolution` squares.

    The shorter side is resized to `resolution`, then a square is cropped: at random with
    `augment` (plus a random horizontal flip), else centred. `split` "train"/"val" keeps the files
    whose relative path hashes to that side (see `hash_split`); "all" keeps every file.

    Labels follow ImageNet's layout: the first folder level under `path` is the class, indexed in
    sorted name order over every file (so both splits agree); files directly under `path` have
    class "" (which sorts first).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        resolution: int | None = 32,
        augment: bool = False,
        split: str = "all",
        val_fraction: float = 0.1,
        channels: int = 3,
    ) -> None:
        root = existing(path, "image folder")
        if not root.is_dir():
            raise MediaError(root, "is not a directory; ImageFolder needs a folder of image files")
        files = find_files(root, IMAGE_SUFFIXES, "image")
        keys = [f.relative_to(root).as_posix() for f in files]
        folders = [k.split("/", 1)[0] if "/" in k else "" for k in keys]
        self._class_names = sorted(set(folders))
        class_index = {name: i for i, name in enumerate(self._class_names)}
        kept = hash_split(keys, split, val_fraction)
        self.root = root
        self.files = [files[i] for i in kept]
        self._labels = [class_index[folders[i]] for i in kept]
        self.resolution = _check_resolution(resolution)
        self.augment, self.channels = augment, check_channels(channels)
        self.skipped: dict[str, str] = {}  # unreadable file -> why, filled as items are read

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Key) -> torch.Tensor:
        index, generator = unpack(key, len(self))
        x = self._read(index)
        return fit_image(x, self.resolution, generator, self.augment)

    def _read(self, index: int) -> torch.Tensor:
        """Item ``index``, or, when its file cannot be decoded (a truncated JPEG in a large folder), the
        next readable one: the bad file is reported once and listed in ``skipped`` instead of ending a
        training run mid-epoch. Only a folder in which nothing decodes raises."""
        mode = "L" if self.channels == 1 else "RGB"
        for step in range(len(self.files)):
            path = self.files[(index + step) % len(self.files)]
            if str(path) in self.skipped:
                continue
            try:
                return read_image(path, mode)
            except MediaError as exc:
                self.skipped[str(path)] = str(exc)
                warnings.warn(f"skipping an unreadable image: {exc}", stacklevel=2)
        raise MediaError(self.root, f"none of its {len(self.files)} image files can be decoded")

    def label(self, index: int) -> int:
        """Class of item `index`: its first folder under the root, as an index into `class_names`."""
        return self._labels[unpack(index, len(self))[0]]

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self._class_names)


def _npz_shape(z: Any, key: str, path: Path) -> tuple[int, ...]:
    """The shape of array `key` in an open .npz, read from its header without decompressing the data."""
    try:
        with z.zip.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read(f)
    except (OSError, ValueError, KeyError) as e:
        raise MediaError(path, f"cannot read the header of array {key!r} ({e})") from e
    return tuple(shape)


class CifarNpz(Dataset):
    """Images from a CIFAR-10-style `.npz`: JPEG streams `jpeg` + `offsets`, or decoded uint8 pixels `x`.

    `x` ([N, H, W, 3], [N, H, W] or [N, C, H, W]) is used when present; otherwise item i is the
    JPEG stream `jpeg[offsets[i]:offsets[i + 1]]`, decoded when the item is read. Either array is
    loaded once per process, on first use. `path` is the .npz itself, or a folder holding
    `train.npz` and `test.npz` (then `split` picks one: "train", or "val"/"test"). For a single
    file, "train"/"val" split its items by a hash of their index and "all" keeps every item.

    Labels are the array `y`, named by `classes` when present (class i is "i" otherwise); an archive
    without `y` labels every item 0. They are loaded on first use, without touching the pixels.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "all",
        resolution: int | None = None,
        augment: bool = False,
        channels: int = 3,
        val_fraction: float = 0.1,
    ) -> None:
        split = check_split(split)
        p = existing(path, "CIFAR .npz file or folder")
        if p.is_dir():
            if split == "all":
                raise MediaError(p, "is a folder; name the .npz file, or pass split='train' or 'val'")
            p = existing(p / ("train.npz" if split == "train" else "test.npz"), f"{split} split")
            split = "all"
        self.path = p
        try:
            with np.load(p, allow_pickle=False) as z:
                names = set(z.files)
                if "x" in names:
                    shape = _npz_shape(z, "x", p)
                    if len(shape) not in (3, 4):
                        raise MediaError(p, f"array 'x' must be [N, H, W] or [N, H, W, C], got shape {shape}")
                    n, self._offsets = shape[0], None
                elif {"jpeg", "offsets"} <= names:
                    self._offsets = np.asarray(z["offsets"], dtype=np.int64)
                    n = len(self._offsets) - 1
                else:
                    raise MediaError(
                        p, f"has neither 'x' nor 'jpeg' + 'offsets' arrays; it has {sorted(names)}"
                    )
            self._has_labels, self._has_classes = "y" in names, "classes" in names
        except MediaError:
            raise
        except (OSError, ValueError, EOFError) as e:
            raise MediaError(p, f"not a readable .npz archive ({e})") from e
        if n < 1:
            raise MediaError(p, "contains no images")
        self._n = n
        self._items = (
            hash_split([str(i) for i in range(n)], split, val_fraction) if split != "all" else range(n)
        )
        self.resolution = _check_resolution(resolution)
        self.augment, self.channels = augment, check_channels(channels)
        self._array: np.ndarray | None = None  # `x` or `jpeg`, loaded on first use in each process
        self._labels: np.ndarray | None = None  # `y`, loaded on first use
        self._classes: list[str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # workers reload instead of receiving a pickled copy

    def _label_data(self) -> tuple[np.ndarray, list[str]]:
        """(`y` as int64 over every stored item, class names), read once; all zeros without `y`."""
        if self._labels is None or self._classes is None:
            if not self._has_labels:
                self._labels, self._classes = np.zeros(self._n, dtype=np.int64), ["0"]
                return self._labels, self._classes
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    y = np.asarray(z["y"]).astype(np.int64).reshape(-1)
                    classes = [str(c) for c in z["classes"].reshape(-1)] if self._has_classes else None
            except (OSError, ValueError, EOFError) as e:
                raise MediaError(self.path, f"cannot read the labels 'y' ({e})") from e
            if len(y) != self._n:
                raise MediaError(self.path, f"has {len(y)} labels 'y' for {self._n} images")
            if len(y) and int(y.min()) < 0:
                raise MediaError(self.path, f"labels 'y' must be >= 0, found {int(y.min())}")
            top = int(y.max()) + 1 if len(y) else 1
            if classes is None:
                classes = [str(i) for i in range(top)]
            elif top > len(classes):
                raise MediaError(self.path, f"label {top - 1} in 'y' but only {len(classes)} 'classes'")
            self._labels, self._classes = y, classes
        return self._labels, self._classes

    def label(self, index: int) -> int:
        """Class of item `index` (after the split), from `y`."""
        return int(self._label_data()[0][self._items[unpack(index, len(self))[0]]])

    @property
    def class_names(self) -> list[str]:
        return list(self._label_data()[1])

    @property
    def num_classes(self) -> int:
        return len(self._label_data()[1])

    def __len__(self) -> int:
        return len(self._items)

    def _data(self) -> np.ndarray:
        if self._array is None:
            with np.load(self.path, allow_pickle=False) as z:
                self._array = z["jpeg" if self._offsets is not None else "x"]
        return self._array

    def _decode(self, i: int) -> torch.Tensor:
        data = self._data()
        if self._offsets is None:
            pixels = data[i]
            if pixels.dtype != np.uint8:
                raise MediaError(self.path, f"array 'x' must be uint8, got {pixels.dtype}")
            if pixels.ndim == 2:
                pixels = pixels[..., None]
            elif pixels.shape[0] in (1, 3) and pixels.shape[-1] not in (1, 3):
                pixels = pixels.transpose(1, 2, 0)  # stored channel-first
            x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 255
            return to_channels(x, self.channels)
        stream = data[self._offsets[i] : self._offsets[i + 1]].tobytes()
        try:
            with Image.open(io.BytesIO(stream)) as img:
                img.load()
                return image_to_tensor(img, "L" if self.channels == 1 else "RGB", path=self.path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise MediaError(self.path, f"image {i}: not a decodable image stream ({e})") from e

    def __getitem__(self, key: Key) -> torch.Tensor:
        index, generator = unpack(key, len(self))
        return fit_image(self._decode(self._items[index]), self.resolution, generator, self.augment)


def _idx_file(root: Path, prefix: str) -> Path:
    for name in (
        f"{prefix}-images-idx3-ubyte.gz",
        f"{prefix}-images-idx3-ubyte",
        f"{prefix}-images.idx3-ubyte",
    ):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        errno.ENOENT, f"no {prefix}-images-idx3-ubyte[.gz] file in this folder", str(root)
    )


def _labels_file(images: Path) -> Path | None:
    """The labels file that belongs to an images file (same prefix and compression), or None."""
    prefix = images.name.split("-images", 1)[0]
    for name in (
        f"{prefix}-labels-idx1-ubyte.gz",
        f"{prefix}-labels-idx1-ubyte",
        f"{prefix}-labels.idx1-ubyte",
    ):
        if (images.parent / name).is_file():
            return images.parent / name
    return None


def _open_idx(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_header(path: Path, raw: bytes, expect_ndim: int = 3) -> tuple[int, tuple[int, ...]]:
    """(header size, dims) of an idx file of unsigned bytes, from its first bytes."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise MediaError(path, "not an idx file (bad magic number)")
    if raw[2] != 0x08:
        raise MediaError(path, f"idx data type 0x{raw[2]:02x} is not unsigned bytes (0x08)")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if ndim != expect_ndim or len(raw) < head:
        what = "image" if expect_ndim == 3 else "label"
        raise MediaError(path, f"expected a {expect_ndim}-d idx {what} array, header says {ndim} dimensions")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return head, dims


class FashionMnistIdx(Dataset):
    """Fashion-MNIST (or MNIST) images from the original idx files in `path`, gzip'd or not.

    `split` "train" reads `train-images-idx3-ubyte[.gz]`, "val"/"test" reads `t10k-...`: the
    official split. Grey images give 1 channel; `channels=3` repeats it for RGB models. The
    header is read at construction, the pixels once per process on first use.

    Labels come from the matching `*-labels-idx1-ubyte[.gz]` beside the images, named by
    `FASHION_MNIST_CLASSES`; without that file every item is labelled 0.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        resolution: int | None = None,
        augment: bool = False,
        channels: int = 1,
    ) -> None:
        split = check_split(split)
        if split == "all":
            raise ValueError("FashionMnistIdx reads one official split: pass split='train' or 'test'")
        root = existing(path, "Fashion-MNIST folder")
        if not root.is_dir():
            raise MediaError(root, "is not a directory; FashionMnistIdx needs the folder of idx files")
        self.path = _idx_file(root, "train" if split == "train" else "t10k")
        try:
            with _open_idx(self.path) as f:
                self._head, self.shape = _idx_header(self.path, f.read(16))
        except (OSError, EOFError) as e:
            raise MediaError(self.path, f"cannot read the idx header ({e})") from e
        self.resolution = _check_resolution(resolution)
        self.augment, self.channels = augment, check_channels(channels)
        self.labels_path = _labels_file(self.path)
        self._array: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def __len__(self) -> int:
        return self.shape[0]

    def _label_data(self) -> np.ndarray:
        if self._labels is None:
            if self.labels_path is None:
                self._labels = np.zeros(len(self), dtype=np.uint8)
                return self._labels
            try:
                with _open_idx(self.labels_path) as f:
                    raw = f.read()
            except (OSError, EOFError) as e:
                raise MediaError(self.labels_path, f"cannot read the idx labels ({e})") from e
            head, dims = _idx_header(self.labels_path, raw[:8], expect_ndim=1)
            if dims[0] != len(self) or len(raw) < head + dims[0]:
                raise MediaError(
                    self.labels_path,
                    f"holds {min(dims[0], len(raw) - head)} labels for the {len(self)} images of {self.path.name}",
                )
            self._labels = np.frombuffer(raw, np.uint8, count=dims[0], offset=head)
        return self._labels

    def label(self, index: int) -> int:
        """Class of item `index`, from the labels idx file (0 without one)."""
        return int(self._label_data()[unpack(index, len(self))[0]])

    @property
    def class_names(self) -> list[str]:
        return list(FASHION_MNIST_CLASSES) if self.labels_path is not None else ["0"]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _data(self) -> np.ndarray:
        if self._array is None:
            try:
                with _open_idx(self.path) as f:
                    raw = f.read()
            except (OSError, EOFError) as e:
                raise MediaError(self.path, f"cannot read the idx file ({e})") from e
            need = self._head + int(np.prod(self.shape))
            if len(raw) < need:
                raise MediaError(self.path, f"truncated idx file: {len(raw)} bytes, header needs {need}")
            self._array = np.frombuffer(raw, np.uint8, count=need - self._head, offset=self._head).reshape(
                self.shape
            )
        return self._array

    def __getitem__(self, key: Key) -> torch.Tensor:
        index, generator = unpack(key, len(self))
        x = torch.from_numpy(self._data()[index].copy()).float()[None] / 255
        return fit_image(to_channels(x, self.channels), self.resolution, generator, self.augment)


def detect_image_format(path: str | os.PathLike[str] | None) -> str:
    """Guess the layout: None is "skimage"; a .npz file or a folder with train.npz is "npz"; a folder
    with idx files is "idx"; any other folder is "folder" (image files)."""
    if path is None:
        return "skimage"
    p = existing(path, "image data")
    if p.is_file():
        if p.suffix.lower() == ".npz":
            return "npz"
        raise MediaError(p, "is a file; expected an image folder, a .npz file, or a folder of idx files")
    names = {c.name for c in p.iterdir()}
    if any("-images-idx3-ubyte" in n or "-images.idx3-ubyte" in n for n in names):
        return "idx"
    if "train.npz" in names:
        return "npz"
    return "folder"


class ImageDataModule(ZooDataModule):
    """Image batches [B, C, resolution, resolution] in [0, 1] from any supported format.

    `path=None` trains on scikit-image's photos (validated on other photos, with crops that do
    not depend on `seed`, so scores compare across runs). `format="auto"` detects the layout.
    CIFAR folders and Fashion-MNIST use their official train/test files for train/val (then
    `val_fraction` is unused); a folder, or a single .npz, is split by hashed file name or index.
    `augment` (train only) crops at random and flips; validation crops are centred.
    """

    def __init__(
        self,
        path: str | None = None,
        format: str = "auto",
        resolution: int = 32,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        augment: bool = True,
        seed: int = 0,
        limit: int | None = None,
        channels: int = 3,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, limit)
        if format not in IMAGE_FORMATS:
            raise ValueError(f"format must be one of {', '.join(IMAGE_FORMATS)}, got {format!r}")
        if format == "skimage" and path is not None:
            raise ValueError("format='skimage' uses the built-in photos; pass path=None")
        self.save_hyperparameters()
        self.path, self.format = path, format
        self.resolution = _check_resolution(resolution)
        self.augment, self.channels = augment, check_channels(channels)

    def _build(self) -> tuple[Dataset, Dataset]:
        fmt = detect_image_format(self.path) if self.format == "auto" else self.format
        if fmt != "skimage" and self.path is None:
            raise ValueError(f"format={fmt!r} needs a path")
        res, ch, aug, frac = self.resolution, self.channels, self.augment, self.val_fraction
        if fmt == "skimage":
            return (
                SkimagePhotos(res or 32, "train", seed=self.seed, augment=aug, channels=ch),
                SkimagePhotos(res or 32, "val", channels=ch),
            )
        if fmt == "folder":
            return (
                ImageFolder(self.path, res, aug, "train", frac, ch),  # type: ignore[arg-type]
                ImageFolder(self.path, res, False, "val", frac, ch),  # type: ignore[arg-type]
            )
        if fmt == "npz":
            return (
                CifarNpz(self.path, "train", res, aug, ch, frac),  # type: ignore[arg-type]
                CifarNpz(self.path, "val", res, False, ch, frac),  # type: ignore[arg-type]
            )
        return (
            FashionMnistIdx(self.path, "train", res, aug, ch),  # type: ignore[arg-type]
            FashionMnistIdx(self.path, "test", res, False, ch),  # type: ignore[arg-type]
        )
