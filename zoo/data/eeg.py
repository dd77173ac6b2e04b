"""EEG windows and their DataModule: items are float32 [1, T] (one channel) or [C, T], batches [B, ., T].

Recordings are read with `zoo.io.read_eeg` (EDF/BDF/EEGLAB natively, `.npz`, other formats through MNE),
resampled to one rate and normalised per channel per recording. A recording is decoded in full
on first use and then kept: normalisation needs whole-recording statistics anyway, and the
window index needs every recording's length.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data._common import Key, check_fraction, check_split, existing, find_files, hash_split, unpack
from zoo.data._module import ZooDataModule
from zoo.errors import MediaError
from zoo.io import read_eeg
from zoo.io.eeg import (  # the statistics and filters live with the reader, which needs no Lightning
    EEG_SUFFIXES,
    NORMALISATIONS,
    apply_fir,
    bad_channels,
    blockwise_resample,
    channel_statistics,
    fft_resample,
    fir_kernel,
    notch_kernel,
)

__all__ = [
    "EEGDataModule",
    "EEGWindows",
    "apply_fir",
    "blockwise_resample",
    "channel_statistics",
    "fft_resample",
    "fir_kernel",
    "notch_kernel",
]

_NATIVE = frozenset(
    {".edf", ".bdf", ".set", ".npz"}
)  # read without MNE; .npy is left out as it stores no rate
_HEADERS = (".vhdr", ".ahdr")  # BrainVision headers whose data file may be called <stem>.eeg


def _scan(root: Path) -> list[Path]:
    """Recordings under `root`: EDF/BDF/.npz always, MNE's formats when MNE is installed."""
    files = find_files(root, EEG_SUFFIXES - {".npy"}, "EEG recording")
    # BrainVision stores its samples in <stem>.eeg next to the .vhdr that MNE opens
    files = [
        f
        for f in files
        if not (f.suffix.lower() == ".eeg" and any(f.with_suffix(h).exists() for h in _HEADERS))
    ]
    if importlib.util.find_spec("mne") is None:
        need_mne = [f for f in files if f.suffix.lower() not in _NATIVE]
        files = [f for f in files if f.suffix.lower() in _NATIVE]
        if need_mne:
            names = ", ".join(f.name for f in need_mne[:5]) + (", ..." if len(need_mne) > 5 else "")
            if not files:
                raise MediaError(root, f"its recordings ({names}) need MNE-Python: pip install zoo[eeg]")
            warnings.warn(
                f"{root}: skipping {len(need_mne)} recording(s) that need MNE-Python ({names}); "
                "pip install zoo[eeg] to use them",
                stacklevel=3,
            )
    return files


def _recordings(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> tuple[list[Path], list[str]]:
    """(files, split keys) for one file, a folder, or a list of files."""
    if isinstance(path, (str, os.PathLike)):
        p = existing(path, "EEG recording or folder")
        if p.is_dir():
            files = _scan(p)
            return files, [f.relative_to(p).as_posix() for f in files]
        return [p], [p.name]
    files = [existing(f, "EEG recording") for f in path]
    if not files:
        raise ValueError("EEGWindows needs at least one recording")
    return files, [f.as_posix() for f in files]


def normalise_channels(x: torch.Tensor, how: str) -> torch.Tensor:
    """Per-channel normalisation of ``[C, T]`` with `channel_statistics`."""
    offset, gain = channel_statistics(x, how)
    if how == "zscore":  # in float64, as the statistics
        return ((x.double() - offset.double()[:, None]) / gain.double()[:, None]).float()
    return (x - offset[:, None]) / gain[:, None]


@functools.lru_cache(maxsize=4)
def _load(
    path: str, stamp: tuple[int, int], rate: float, channels: tuple[str, ...] | None, how: str
) -> tuple[torch.Tensor, tuple[str, ...], dict[str, str]]:
    """Read, resample and normalise one recording, and name its unusable channels (`bad_channels`, judged
    before resampling). Cached so train and val views of one recording share it; `stamp` (mtime, size)
    keeps an edited file from being served stale."""
    names = None if channels is None else list(channels)
    # arrays may store no rate (theirs is then `rate`); recordings are judged at their own rate, as
    # resampling turns a clipped plateau into ringing
    rec = read_eeg(
        path, sample_rate=rate if path.lower().endswith((".npy", ".npz")) else None, channel_names=names
    )
    problems = bad_channels(rec.data, rec.channel_names)
    if rec.sample_rate != rate:
        rec = rec.resample(rate)
    return normalise_channels(rec.data, how).contiguous(), tuple(rec.channel_names), problems


class EEGWindows(Dataset):
    """Windows of `window_seconds` every `stride_seconds` (default: no overlap) from EEG recordings.

    `path` is one recording, a folder (searched recursively) or a list of files. With
    `per_channel` each item is one channel of one window, [1, T] (BioCodec / TFM-Tokenizer
    style, any montage); otherwise [C, T], which needs the same channel count in every recording
    (`channels` picks channels by name, in that order). `split` "train"/"val" assigns whole
    recordings by a hash of their path when there are several; a single recording is split in
    time instead, its last `val_fraction` (at least one window) going to "val"; "all" keeps
    everything. `.npy` and rate-less `.npz` files are taken to be at `sample_rate` already.
    `clip` bounds the normalised values to ``[-clip, clip]`` (BioCodec trains on windows clipped at 10).
    `normalise_per_window` computes the statistics of each window (and channel) on its own instead of
    over the recording: TFM-Tokenizer's loaders scale every window by its own 95th percentile.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        sample_rate: float = 200.0,
        window_seconds: float = 5.0,
        stride_seconds: float | None = None,
        per_channel: bool = True,
        normalise: str = "zscore",
        channels: Sequence[str] | None = None,
        split: str = "all",
        val_fraction: float = 0.1,
        clip: float | None = None,
        normalise_per_window: bool = False,
    ) -> None:
        self.split = check_split(split)
        self.val_fraction = check_fraction(val_fraction)
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
        if not float(sample_rate) > 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
        self.sample_rate = float(sample_rate)
        self.window = round(float(window_seconds) * self.sample_rate)
        stride = window_seconds if stride_seconds is None else stride_seconds
        self.stride = round(float(stride) * self.sample_rate)
        if self.window < 1 or self.stride < 1:
            raise ValueError(
                f"window_seconds={window_seconds!r} and stride_seconds={stride_seconds!r} must each span "
                f"at least one sample at {self.sample_rate:g} Hz"
            )
        self.per_channel, self.normalise = per_channel, normalise
        self.normalise_per_window = bool(normalise_per_window)
        if clip is not None and not float(clip) > 0:
            raise ValueError(f"clip must be positive or None, got {clip!r}")
        self.clip = None if clip is None else float(clip)
        self.channels = (
            None if channels is None else tuple([channels] if isinstance(channels, str) else channels)
        )
        files, keys = _recordings(path)
        self.by_time = len(files) == 1 and self.split != "all"
        if not self.by_time:
            files = [files[i] for i in hash_split(keys, self.split, self.val_fraction)]
        self.files = files
        self._data: list[torch.Tensor] | None = None  # decoded on first use
        self._spans: list[tuple[int, int, int]] = []  # (first sample, windows, items per window)
        self._ends = np.zeros(0, dtype=np.int64)  # cumulative item counts

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}  # workers reload instead of receiving a pickled copy

    def _span(self, t: int) -> tuple[int, int]:
        """The [start, end) samples of a recording of `t` samples that this split may use."""
        if not self.by_time:
            return 0, t
        val = round(t * self.val_fraction)
        if 0 < val < self.window <= t - self.window:  # give validation at least one window
            val = self.window
        cut = t - val
        return (0, cut) if self.split == "train" else (cut, t)

    def _prepare(self) -> list[torch.Tensor]:
        if self._data is not None:
            return self._data
        data, spans, names = [], [], []
        for f in self.files:
            st = f.stat()
            x, ch, problems = _load(
                str(f),
                (st.st_mtime_ns, st.st_size),
                self.sample_rate,
                self.channels,
                "none" if self.normalise_per_window else self.normalise,
            )
            if problems:
                listed = "; ".join(f"{name}: {why}" for name, why in problems.items())
                if not self.per_channel:
                    raise MediaError(f, f"unusable channel(s) {listed}; pick the others with channels=[...]")
                warnings.warn(f"{f}: leaving out unusable channel(s) {listed}", stacklevel=2)
                keep = [i for i, name in enumerate(ch) if name not in problems]
                x, ch = x[keep], tuple(ch[i] for i in keep)
            lo, hi = self._span(x.shape[1])
            windows = (hi - lo - self.window) // self.stride + 1 if hi - lo >= self.window else 0
            data.append(x)
            spans.append((lo, windows, x.shape[0] if self.per_channel else 1))
            names.append(ch)
        if not self.per_channel and len({len(n) for n in names}) > 1:
            counts = ", ".join(f"{f.name}: {len(n)}" for f, n in zip(self.files, names, strict=True))
            raise MediaError(
                self.files[0].parent,
                f"recordings have different channel counts ({counts}); pass channels=[...] to pick the same "
                "ones from each, or use per_channel=True",
            )
        if not self.per_channel and len(set(names)) > 1:
            warnings.warn(
                "EEG recordings have the same channel count but different channel names; "
                "pass channels=[...] so that row i is the same electrode in every window",
                stacklevel=2,
            )
        ends = np.cumsum([w * c for _, w, c in spans], dtype=np.int64)
        if self.split != "val" and (len(ends) == 0 or ends[-1] == 0):
            raise MediaError(
                self.files[0] if len(self.files) == 1 else self.files[0].parent,
                f"no {self.window / self.sample_rate:g}-s window fits in the {self.split} part of "
                f"{len(self.files)} recording(s)",
            )
        self._spans, self._ends, self._data = spans, ends, data
        return data

    @property
    def windows(self) -> int:
        """Number of time windows (each gives one item per channel when `per_channel`)."""
        self._prepare()
        return sum(w for _, w, _ in self._spans)

    def __len__(self) -> int:
        self._prepare()
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, key: Key) -> torch.Tensor:
        data = self._prepare()
        index, _ = unpack(key, len(self))
        r = int(np.searchsorted(self._ends, index, side="right"))
        local = index - (int(self._ends[r - 1]) if r else 0)
        lo, _, per_window = self._spans[r]
        w, c = divmod(local, per_window)
        start = lo + w * self.stride
        rows = slice(c, c + 1) if self.per_channel else slice(None)
        window = data[r][rows, start : start + self.window]
        if self.normalise_per_window:
            window = normalise_channels(window, self.normalise)
        return window.clone() if self.clip is None else window.clamp(-self.clip, self.clip)


class EEGDataModule(ZooDataModule):
    """EEG batches [B, 1, T] (`per_channel`) or [B, C, T], T = round(window_seconds * sample_rate).

    Training windows step by `stride_seconds`; validation windows never overlap, so no stretch
    of signal is scored twice. `clip` bounds normalised values and `normalise_per_window` scales each
    window on its own (see `EEGWindows`).
    """

    def __init__(
        self,
        path: str | list[str],
        sample_rate: float = 200.0,
        window_seconds: float = 5.0,
        stride_seconds: float | None = None,
        per_channel: bool = True,
        normalise: str = "zscore",
        channels: list[str] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        limit: int | None = None,
        clip: float | None = None,
        normalise_per_window: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, limit)
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
        self.save_hyperparameters()
        self.path, self.sample_rate, self.window_seconds = path, sample_rate, window_seconds
        self.stride_seconds, self.per_channel, self.normalise = stride_seconds, per_channel, normalise
        self.channels = channels
        self.clip = clip
        self.normalise_per_window = normalise_per_window

    def _build(self) -> tuple[Dataset, Dataset]:
        common: dict[str, Any] = {
            "sample_rate": self.sample_rate,
            "window_seconds": self.window_seconds,
            "per_channel": self.per_channel,
            "normalise": self.normalise,
            "channels": self.channels,
            "val_fraction": self.val_fraction,
            "clip": self.clip,
            "normalise_per_window": self.normalise_per_window,
        }
        train = EEGWindows(self.path, stride_seconds=self.stride_seconds, split="train", **common)
        return train, EEGWindows(self.path, split="val", **common)
