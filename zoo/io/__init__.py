"""Media I/O for every modality the zoo tokenizes, with one tensor convention per modality.

- image: float32 [C, H, W] in [0, 1] (``read_image(..., keep_uint8=True)``: uint8 for 8-bit files, a
  quarter of the memory, which every image tokenizer's ``prepare`` takes; images over ``MAX_PIXELS`` are
  refused from their header unless ``max_pixels=`` raises the cap)
- audio: (float32 [C, T], sample rate)
- EEG:   EEGRecording (float32 [C, T] in microvolts, sample rate, channel names)
- SVG:   validated text (str)

Every bad file raises `zoo.errors.MediaError` naming the file and the problem, and every writer
replaces its target atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.errors import MediaError
from zoo.io.audio import AUDIO_SUFFIXES, read_audio, resample, write_audio
from zoo.io.eeg import EEG_SUFFIXES, EEGRecording, read_eeg, write_eeg
from zoo.io.image import IMAGE_SUFFIXES, image_to_tensor, read_image, tensor_to_image, write_image
from zoo.io.svg import parse_svg, read_svg, write_svg

__all__ = [
    "EEGRecording",
    "MediaError",
    "image_to_tensor",
    "modality_of",
    "parse_svg",
    "read_audio",
    "read_eeg",
    "read_image",
    "read_media",
    "read_svg",
    "resample",
    "tensor_to_image",
    "write_audio",
    "write_eeg",
    "write_image",
    "write_media",
    "write_svg",
]

_SUFFIXES: dict[str, frozenset[str]] = {
    "image": IMAGE_SUFFIXES,
    "audio": AUDIO_SUFFIXES,
    "eeg": EEG_SUFFIXES,
    "svg": frozenset({".svg"}),
}
MODALITIES = tuple(_SUFFIXES)
SUFFIXES: dict[str, frozenset[str]] = dict(_SUFFIXES)
"""File suffixes each modality's reader accepts."""


def modality_of(path: str | Path) -> str:
    """Return "image", "audio", "eeg" or "svg" from the file suffix (case-insensitive).

    `.npy`/`.npz` count as EEG: they are the only array files the readers here accept.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    for modality, suffixes in _SUFFIXES.items():
        if suffix in suffixes:
            return modality
    known = "; ".join(f"{m}: {' '.join(sorted(s))}" for m, s in _SUFFIXES.items())
    raise MediaError(p, f"unknown media suffix {p.suffix or '(none)'!r}; known suffixes are {known}")


def _check_modality(modality: str, path: Path) -> str:
    if modality not in _SUFFIXES:
        raise MediaError(path, f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    return modality


def read_media(path: str | Path, modality: str | None = None, **kw: Any) -> Any:
    """Read any supported file; `modality` overrides the guess from the suffix, `kw` go to the reader.

    Returns a tensor (image), (tensor, rate) (audio), EEGRecording (eeg) or str (svg).
    """
    p = Path(path)
    m = modality_of(p) if modality is None else _check_modality(modality, p)
    if m == "image":
        return read_image(p, **kw)
    if m == "audio":
        return read_audio(p, **kw)
    if m == "eeg":
        return read_eeg(p, **kw)
    return read_svg(p, **kw)


def write_media(path: str | Path, obj: Any, *, modality: str | None = None, **kw: Any) -> None:
    """Write what `read_media` returns back to a file of the modality its suffix names.

    Audio accepts the (wav, sample_rate) pair `read_audio` returns, or a tensor plus
    `sample_rate=`.
    """
    p = Path(path)
    m = modality_of(p) if modality is None else _check_modality(modality, p)
    if m == "image":
        write_image(p, obj, **kw)
    elif m == "audio":
        if isinstance(obj, tuple):
            if len(obj) != 2:
                raise MediaError(p, f"audio must be (wav, sample_rate), got a tuple of {len(obj)}")
            wav, rate = obj
            write_audio(p, wav, rate, **kw)
        else:
            write_audio(p, obj, **kw)
    elif m == "eeg":
        if not isinstance(obj, EEGRecording):
            raise MediaError(p, f"EEG must be an EEGRecording, got {type(obj).__name__}")
        write_eeg(p, obj, **kw)
    else:
        write_svg(p, obj, **kw)
