"""The one STFT used by every spectral discriminator and spectral loss, so that framing, windows and
normalisation are decided in a single place.
"""

from __future__ import annotations

import torch

WINDOWS = ("hann", "sqrt_hann", "rect")


def stft_window(name: str, length: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A periodic analysis window: ``hann``, ``sqrt_hann`` (MOSS's mel loss) or ``rect`` (the UnivNet MRD)."""
    if name == "rect":
        return torch.ones(length, device=device, dtype=dtype)
    if name in ("hann", "sqrt_hann"):
        window = torch.hann_window(length, periodic=True, device=device, dtype=dtype)
        return window.sqrt() if name == "sqrt_hann" else window
    raise ValueError(f"unknown STFT window {name!r}; choose one of {WINDOWS}")


def stft(
    x: torch.Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    *,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "reflect",
    normalized: bool = False,
) -> torch.Tensor:
    """Complex one-sided STFT of the last axis: ``[..., T] -> [..., n_fft // 2 + 1, frames]``.

    Args:
        window: see `stft_window`; it is built on the fly (cheap) so modules carry no window buffers.
        center: pad ``n_fft // 2`` on both sides (``pad_mode``) so frame ``k`` is centred on sample
            ``k * hop_length``; without it the signal must be at least ``n_fft`` long.
        normalized: divide by the window's L2 norm (torchaudio's ``normalized=True``, used by EnCodec's
            MS-STFT discriminator), which makes levels independent of the window length.

    Half-precision inputs are computed in float32: FFTs in fp16/bf16 lose too much precision for losses.
    """
    win_length = win_length or n_fft
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    win = stft_window(window, win_length, device=x.device, dtype=x.dtype)
    leading = x.shape[:-1]
    spec = torch.stft(
        x.reshape(-1, x.shape[-1]),
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=win,
        center=center,
        pad_mode=pad_mode,
        return_complex=True,
    )
    if normalized:
        spec = spec / win.square().sum().sqrt()
    return spec.reshape(*leading, *spec.shape[-2:])


def magnitude(spec: torch.Tensor, floor: float = 1e-7) -> torch.Tensor:
    """``|spec|`` with the squared magnitude floored at ``floor``, so its log and gradient stay finite at 0."""
    return (spec.real.square() + spec.imag.square()).clamp_min(floor).sqrt()
