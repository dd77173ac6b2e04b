"""Audio reading and writing with one tensor convention: float32 [C, T], samples nominally in [-1, 1].

Decoding goes through `soundfile` (libsndfile), not `torchaudio.load`: recent torchaudio hands
I/O to optional backends that may be missing, while libsndfile reads WAV (PCM, float, mu-law),
FLAC and Ogg the same way everywhere. Resampling uses torchaudio's windowed-sinc resampler.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from zoo._atomic import atomic_path
from zoo.errors import MediaError

__all__ = ["AUDIO_SUFFIXES", "read_audio", "read_packed_arrays", "resample", "write_audio"]

# Suffix -> (libsndfile format, default subtype). 16-bit PCM is what speech corpora ship as.
_WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
}
AUDIO_SUFFIXES = frozenset(_WRITE_FORMATS) | {".mp3", ".aiff", ".aif", ".au", ".opus"}


def _as_rate(value: float, what: str, path: str | Path | None) -> int:
    """Validate a sample rate; torchaudio's resampler needs integers (it reduces by their gcd)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise MediaError(path, f"{what} must be a positive integer, got {value!r}") from None
    if not math.isfinite(f) or f <= 0 or f != int(f):
        raise MediaError(path, f"{what} must be a positive integer, got {value!r}")
    return int(f)


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample along the last axis with a band-limited sinc filter (anti-aliased when downsampling).

    Returns `wav` itself when the rates are equal, so callers may resample unconditionally.
    """
    orig_sr = _as_rate(orig_sr, "orig_sr", None)
    new_sr = _as_rate(new_sr, "new_sr", None)
    if orig_sr == new_sr:
        return wav
    if not torch.is_floating_point(wav):
        wav = wav.to(torch.float32)
    return AF.resample(wav, orig_sr, new_sr)


def _check_finite(x: np.ndarray | torch.Tensor, path: str | Path | None) -> None:
    if isinstance(x, torch.Tensor):
        nan, inf = bool(torch.isnan(x).any()), bool(torch.isinf(x).any())
    else:
        nan, inf = bool(np.isnan(x).any()), bool(np.isinf(x).any())
    if nan:
        raise MediaError(path, "contains NaN")
    if inf:
        raise MediaError(path, "contains infinite values")


def _check_wav_length(path: Path) -> None:
    """Refuse a WAV file cut short: libsndfile quietly reads the frames that are there, so a truncated
    download would otherwise be encoded as if it were the whole recording. The RIFF ``data`` chunk
    states its size; streaming writers that leave it 0 or 0xFFFFFFFF are not judged."""
    if path.suffix.lower() not in (".wav", ".wave"):
        return
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
        if magic not in (b"RIFF", b"RIFX"):
            return
        order = "little" if magic == b"RIFF" else "big"
        fh.seek(12)
        while True:
            header = fh.read(8)
            if len(header) < 8:
                return
            chunk, length = header[:4], int.from_bytes(header[4:], order)
            if chunk == b"data":
                if length in (0, 0xFFFFFFFF):
                    return
                held = size - fh.tell()
                if held < length:
                    raise MediaError(
                        path,
                        f"is truncated: its header promises {length} bytes of audio, the file holds {held} "
                        f"({100 * held / length:.0f} %)",
                    )
                return
            fh.seek(length + (length & 1), 1)  # chunks are padded to an even size


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channels: Literal["keep", "mono", "stereo"] = "keep",
) -> tuple[torch.Tensor, int]:
    """Read an audio file as (float32 [C, T], sample rate).

    `sample_rate`, when given, resamples to it. `channels`: "keep" as stored; "mono" averages all
    channels (keeps loudness, unlike summing); "stereo" duplicates a mono file and refuses files
    with more than two channels, since there is no neutral way to fold a surround layout.
    """
    p = Path(path)
    if channels not in ("keep", "mono", "stereo"):
        raise MediaError(p, f"channels must be 'keep', 'mono' or 'stereo', got {channels!r}")
    target = None if sample_rate is None else _as_rate(sample_rate, "sample_rate", p)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    try:
        data, sr = sf.read(p, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as e:
        raise MediaError(p, f"not a readable audio file ({e})") from e
    _check_wav_length(p)
    if data.shape[0] == 0:
        raise MediaError(p, "contains no audio (0 frames)")
    _check_finite(data, p)
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    c = wav.shape[0]
    if channels == "mono" and c > 1:
        wav = wav.mean(dim=0, keepdim=True)
    elif channels == "stereo":
        if c == 1:
            wav = wav.repeat(2, 1)
        elif c > 2:
            raise MediaError(
                p, f"has {c} channels; cannot make stereo from more than 2 (use channels='mono')"
            )
    if target is not None and target != sr:
        wav = resample(wav, sr, target)
        sr = target
    return wav.contiguous(), int(sr)


def write_audio(path: str | Path, wav: torch.Tensor, sample_rate: int, subtype: str | None = None) -> None:
    """Write [C, T] or [T] audio atomically; the container follows the suffix (wav, flac, ogg).

    Samples are clipped to [-1, 1] first, so every subtype stores the same signal: float WAV would
    otherwise keep the overshoot, and integer PCM relies on libsndfile's own clipping, without
    which an overshoot wraps around to a full-scale click of the opposite sign.
    """
    p = Path(path)
    fmt = _WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise MediaError(p, f"unknown audio suffix {p.suffix!r}; known: {', '.join(sorted(_WRITE_FORMATS))}")
    sr = _as_rate(sample_rate, "sample_rate", p)
    x = wav if isinstance(wav, torch.Tensor) else torch.as_tensor(np.asarray(wav))
    x = x.detach().to("cpu", torch.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise MediaError(p, f"audio must be [C, T] or [T], got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise MediaError(p, "audio has no samples")
    if x.shape[0] > x.shape[1]:
        raise MediaError(
            p, f"audio has more channels than samples (shape {tuple(x.shape)}); expected [C, T], not [T, C]"
        )
    _check_finite(x, p)
    container, default_subtype = fmt
    st = (subtype or default_subtype).upper()
    if not sf.check_format(container, st):
        raise MediaError(p, f"subtype {st!r} cannot be written in a {container} file")
    data = x.clamp(-1.0, 1.0).T.contiguous().numpy()
    try:
        with atomic_path(p) as tmp:
            sf.write(tmp, data, sr, subtype=st, format=container)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise MediaError(p, f"cannot write {container} ({e})") from e


PACKED_REQUIRED = ("audio", "offsets", "sample_rate")


def read_packed_arrays(path: str | Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``names`` (those present) of a packed-clips ``.npz`` (FSDD's layout: every clip's samples
    concatenated in ``audio``, clip ``i`` at ``audio[offsets[i]:offsets[i + 1]]``, one ``sample_rate``, and
    optional per-clip ``is_test``, ``speaker``, ``filename``...). An archive that lacks a required array or
    cannot be read raises a ``MediaError`` naming it. Only the arrays asked for are read, so an index can be
    loaded without the samples."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = set(PACKED_REQUIRED) - set(archive.files)
            if missing:
                raise MediaError(
                    path, f"packed clips need arrays {sorted(missing)}; it has {sorted(archive.files)}"
                )
            return {name: archive[name] for name in names if name in archive.files}
    except MediaError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise MediaError(path, f"not a readable .npz archive ({error})") from error
