"""Audio clips and their DataModule: items are float32 [C, T] at one sample rate, batches [B, C, T].

Sources: a folder of audio files (any rate, mono or stereo; resampled per item) or a packed
`.npz` of clips in the FSDD layout (`audio` samples concatenated, `offsets`, `sample_rate`,
optional `is_test` for the official split, optional `filename`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.data._common import Key, check_split, existing, find_files, hash_split, randint, unpack
from zoo.data._module import ZooDataModule
from zoo.errors import MediaError
from zoo.io import read_audio, resample
from zoo.io.audio import AUDIO_SUFFIXES, read_packed_arrays

__all__ = ["AudioClips", "AudioDataModule"]


def _crop_resampled(
    wav: torch.Tensor,
    rate: int,
    target_rate: int,
    length: int,
    random: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """A `length`-sample crop of `wav` resampled to `target_rate`, zero-padded at the end if too short.

    Only the stretch the crop needs (plus the resampling filter's reach) is resampled, so long
    files cost no more than short ones. The stretch starts on a whole period of the rate ratio,
    so the result equals the same samples of the fully resampled clip, not a shifted version.
    """
    g = math.gcd(rate, target_rate)
    up, down = target_rate // g, rate // g  # output sample j sits at input time j * down / up
    n = wav.shape[1]
    total = -(-n * up // down)  # length of the fully resampled clip, as torchaudio computes it
    start = randint(total - length + 1, generator) if random else 0
    if up == down:
        crop = wav[:, start : start + length]
    else:
        # torchaudio's sinc kernel reaches about 6 / rolloff periods of the lower rate each way
        reach = 16 + math.ceil(8 * rate / min(rate, target_rate))
        lo = max(0, math.floor((start * down / up - reach) / down)) * down
        hi = min(n, math.ceil((start + length) * down / up) + reach)
        out = resample(wav[:, lo:hi], rate, target_rate)
        skip = start - lo // down * up
        crop = out[:, skip : skip + length]
    return F.pad(crop, (0, length - crop.shape[1])) if crop.shape[1] < length else crop.contiguous()


class AudioClips(Dataset):
    """Fixed-length clips [channels, round(clip_seconds * sample_rate)] from a folder or a packed `.npz`.

    `random_crop` (default: on for "train") picks a random start; otherwise every clip starts at
    0, so validation is deterministic. Shorter clips are zero-padded at the end. `channels` 1
    averages stereo to mono; 2 duplicates mono. `split` "train"/"val" use the `.npz`'s `is_test`
    when present, else a hash of each file name (see `hash_split`); "all" keeps everything.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int = 24000,
        clip_seconds: float = 1.0,
        channels: int = 1,
        split: str = "all",
        val_fraction: float = 0.1,
        random_crop: bool | None = None,
    ) -> None:
        split = check_split(split)
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 (mono) or 2 (stereo), got {channels!r}")
        self.sample_rate, self.channels = int(sample_rate), channels
        self.length = round(float(clip_seconds) * self.sample_rate)
        if self.length < 1:
            raise ValueError(f"clip_seconds={clip_seconds!r} gives clips of no samples at {sample_rate} Hz")
        self.random_crop = split == "train" if random_crop is None else random_crop
        p = existing(path, "audio folder or .npz")
        self.path = p
        self.files: list[Any] = []
        self._offsets: np.ndarray | None = None
        self._array: np.ndarray | None = None
        if p.is_dir():
            files = find_files(p, AUDIO_SUFFIXES, "audio")
            keys = [f.relative_to(p).as_posix() for f in files]
            self.files = [files[i] for i in hash_split(keys, split, val_fraction)]
            self._items: list[int] | range = range(len(self.files))
            return
        if p.suffix.lower() != ".npz":
            raise MediaError(p, "is a file; expected a folder of audio files or a packed .npz of clips")
        index = read_packed_arrays(p, ("offsets", "sample_rate", "is_test", "filename"))
        self._offsets = np.asarray(index["offsets"], dtype=np.int64)
        self._rate = int(np.asarray(index["sample_rate"]).reshape(()))
        is_test = np.asarray(index["is_test"], dtype=bool) if "is_test" in index else None
        names = [str(s) for s in index["filename"]] if "filename" in index else None
        n = len(self._offsets) - 1
        if n < 1:
            raise MediaError(p, "contains no clips")
        if split == "all":
            self._items = range(n)
        elif is_test is not None:
            self._items = np.flatnonzero(is_test == (split == "val")).tolist()
        else:
            self._items = hash_split(names or [str(i) for i in range(n)], split, val_fraction)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # workers reload instead of receiving a pickled copy

    def __len__(self) -> int:
        return len(self._items)

    def _clip(self, i: int) -> tuple[torch.Tensor, int]:
        if self._offsets is None:
            return read_audio(self.files[i], channels="mono" if self.channels == 1 else "stereo")
        if self._array is None:
            with np.load(self.path, allow_pickle=False) as z:
                self._array = z["audio"]
        raw = self._array[self._offsets[i] : self._offsets[i + 1]]
        if raw.dtype.kind == "i":  # PCM: full scale is 2 ** (bits - 1), as soundfile reads it
            wav = torch.from_numpy(raw.astype(np.float32) / float(np.iinfo(raw.dtype).max + 1))
        elif raw.dtype.kind == "f":
            wav = torch.from_numpy(raw.astype(np.float32))
        else:
            raise MediaError(self.path, f"array 'audio' must hold signed PCM or floats, got {raw.dtype}")
        wav = wav[None] if wav.ndim == 1 else wav.T  # stored [T] or [T, C]
        if self.channels == 1 and wav.shape[0] > 1:
            wav = wav.mean(0, keepdim=True)
        elif self.channels == 2 and wav.shape[0] == 1:
            wav = wav.repeat(2, 1)
        return wav, self._rate

    def __getitem__(self, key: Key) -> torch.Tensor:
        index, generator = unpack(key, len(self))
        wav, rate = self._clip(self._items[index])
        return _crop_resampled(wav, rate, self.sample_rate, self.length, self.random_crop, generator)


class AudioDataModule(ZooDataModule):
    """Audio batches [B, channels, round(clip_seconds * sample_rate)].

    Train clips are random crops (new every epoch, reproducible from `seed`); validation clips
    start at 0. A packed `.npz` with `is_test` (FSDD) uses that official split, ignoring `val_fraction`.
    """

    def __init__(
        self,
        path: str,
        sample_rate: int = 24000,
        clip_seconds: float = 1.0,
        channels: int = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, limit)
        self.save_hyperparameters()
        self.path, self.sample_rate, self.clip_seconds, self.channels = (
            path,
            sample_rate,
            clip_seconds,
            channels,
        )

    def _build(self) -> tuple[Dataset, Dataset]:
        args = (self.path, self.sample_rate, self.clip_seconds, self.channels)
        return AudioClips(*args, "train", self.val_fraction), AudioClips(*args, "val", self.val_fraction)
