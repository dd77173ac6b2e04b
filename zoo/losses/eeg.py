"""Reconstruction loss for EEG (and other biosignal) codecs, after BioCodec.

BioCodec (Avramidis et al., arXiv:2510.09095; klean2050/BioCodec-release @ 575bf6e, ``biocodec/objective.py``
and ``spectra.py``; MIT) trains without a GAN on ``0.2 * L_t + 1.0 * L_f``:
- ``L_t``: Huber (beta 0.7) between waveforms;
- ``L_f``: for n_fft in {32, 64, 128, 256} (hop n_fft / 8, Hann, reflect padding of (n_fft - hop) / 2,
  uncentred frames), per-bin features ``[log1p|X|, cos(phase), sin(phase)]`` scaled by ``[1, 0.2, 0.2]``,
  compared with L1 + L2, summed over scales.
Phase enters as a unit phasor (cos, sin) rather than an angle, so it has no wrap-around discontinuity;
log1p compresses EEG's large dynamic range without a floor parameter. Defaults reproduce BioCodec at
250 Hz; the scales are in samples, so choose them for other sampling rates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.spectral import stft

__all__ = ["EEGReconstructionLoss"]


class EEGReconstructionLoss(nn.Module):
    """``time_weight * L_t + spectral_weight * L_f`` for signals ``[B, C, T]`` (each channel on its own).

    Args:
        fft_sizes: STFT sizes of the multi-scale spectral term.
        hop_divisor: hop = ``n_fft // hop_divisor``.
        time_loss: ``"huber"`` (BioCodec) or ``"l1"``.
        huber_beta: where the Huber loss turns from quadratic to linear.
        time_weight, spectral_weight: weights of ``L_t`` and ``L_f``.
        magnitude_weight, phase_weight: feature scales of ``log1p|X|`` and of ``cos``/``sin`` of the phase.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (32, 64, 128, 256),
        *,
        hop_divisor: int = 8,
        time_loss: str = "huber",
        huber_beta: float = 0.7,
        time_weight: float = 0.2,
        spectral_weight: float = 1.0,
        magnitude_weight: float = 1.0,
        phase_weight: float = 0.2,
    ) -> None:
        super().__init__()
        if time_loss not in ("huber", "l1"):
            raise ValueError(f"time_loss must be 'huber' or 'l1', got {time_loss!r}")
        self.fft_sizes = tuple(fft_sizes)
        self.hop_divisor = hop_divisor
        self.time_loss, self.huber_beta = time_loss, huber_beta
        self.time_weight, self.spectral_weight = time_weight, spectral_weight
        self.feature_scales = (magnitude_weight, phase_weight, phase_weight)

    def _spectral_features(self, x: torch.Tensor, n_fft: int) -> torch.Tensor:
        """``[B, C, T] -> [B, C, 3, F, frames]``: scaled ``log1p|X|``, ``cos(phase)``, ``sin(phase)``."""
        hop = max(1, n_fft // self.hop_divisor)
        pad = (n_fft - hop) // 2
        spec = stft(F.pad(x, (pad, pad), mode="reflect"), n_fft, hop, center=False)
        mag = spec.abs()
        phasor = spec / mag.clamp_min(1e-8)
        features = torch.stack([mag.log1p(), phasor.real, phasor.imag], dim=-3)
        return features * features.new_tensor(self.feature_scales).view(3, 1, 1)

    def components(self, input: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted ``{"time": L_t, "spectral": L_f}``, for logging."""
        if self.time_loss == "huber":
            time = F.smooth_l1_loss(input, target, beta=self.huber_beta)
        else:
            time = F.l1_loss(input, target)
        spectral = input.new_zeros((), dtype=torch.float32)
        for n_fft in self.fft_sizes:
            x, y = self._spectral_features(input, n_fft), self._spectral_features(target, n_fft)
            spectral = spectral + F.l1_loss(x, y) + F.mse_loss(x, y)
        return {"time": time, "spectral": spectral}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input``: reconstruction, ``target``: reference, both ``[B, C, T]``."""
        parts = self.components(input, target)
        return self.time_weight * parts["time"] + self.spectral_weight * parts["spectral"]
