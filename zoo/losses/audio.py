"""Spectral reconstruction losses for audio codecs, on the shared STFT of `zoo.nn.spectral`.

- `MultiResolutionSTFTLoss`: spectral convergence + log-magnitude L1 at several resolutions (Parallel
  WaveGAN, arXiv:1910.11480; EnCodec's ``mrstft``), averaged over resolutions as both do.
- `MultiResolutionMelLoss`: L1 between log-mel spectrograms at several window sizes, summed over windows as
  DAC does (descriptinc/descript-audio-codec @ c7cfc5d, ``MelSpectrogramLoss``; its training config is the
  default). Vocos/WavTokenizer's mel loss is the one-window case: ``window_lengths=(1024,)``,
  ``n_mels=(100,)``, ``floor=1e-7``, ``natural_log=True``, ``mel_scale="htk"``, ``mel_norm=None``.

Inputs are waveforms ``[B, C, T]`` (``[B, T]`` works too); ``forward(input, target)`` returns a scalar.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from ..nn.spectral import magnitude, stft

__all__ = ["MultiResolutionMelLoss", "MultiResolutionSTFTLoss"]


class MultiResolutionSTFTLoss(nn.Module):
    """``sc_weight * |Y - X|_F / |Y|_F + log_mag_weight * mean|log Y - log X|`` over STFT magnitudes.

    Spectral convergence weighs loud bins (where errors are audible); the log term weighs quiet ones.
    Several resolutions keep the generator from trading time resolution for frequency resolution.

    Args:
        fft_sizes, hop_lengths, win_lengths: one STFT per entry (Parallel WaveGAN's three by default).
        window: analysis window, see `zoo.nn.spectral.stft_window`.
        sc_weight, log_mag_weight: weights of the two terms.
        floor: floor of the squared magnitude, keeping the log finite in silence.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (1024, 2048, 512),
        hop_lengths: Sequence[int] = (120, 240, 50),
        win_lengths: Sequence[int] = (600, 1200, 240),
        *,
        window: str = "hann",
        sc_weight: float = 1.0,
        log_mag_weight: float = 1.0,
        floor: float = 1e-7,
    ) -> None:
        super().__init__()
        self.resolutions = list(zip(fft_sizes, hop_lengths, win_lengths, strict=True))
        self.window = window
        self.sc_weight, self.log_mag_weight, self.floor = sc_weight, log_mag_weight, floor

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input``: reconstruction, ``target``: reference, both ``[B, C, T]``."""
        total = input.new_zeros((), dtype=torch.float32)
        for n_fft, hop, win in self.resolutions:
            x = magnitude(stft(input, n_fft, hop, win, window=self.window), self.floor)
            y = magnitude(stft(target, n_fft, hop, win, window=self.window), self.floor)
            spectral_convergence = torch.linalg.vector_norm(y - x) / torch.linalg.vector_norm(y)
            log_magnitude = F.l1_loss(x.log(), y.log())
            total = total + self.sc_weight * spectral_convergence + self.log_mag_weight * log_magnitude
        return total / len(self.resolutions)


class MultiResolutionMelLoss(nn.Module):
    """L1 between log-mel magnitude spectrograms, summed over window sizes (hop = ``hop_factor`` x window).

    Args:
        sample_rate: of the audio, for the mel filterbank.
        window_lengths: STFT window (= FFT) sizes; DAC uses seven, from 32 to 2048 samples.
        n_mels: mel bands per window size (small windows have few frequency bins to share out).
        f_min, f_max: filterbank range (``f_max=None``: Nyquist).
        log_weight, mag_weight: weights of the log-mel L1 and of the linear mel L1 (DAC trains with 1 and 0).
        floor: mel magnitudes are clamped to it before the log.
        natural_log: ``log`` instead of ``log10`` (Vocos's mel loss).
        mel_scale, mel_norm: filterbank type, torchaudio's ``melscale_fbanks`` (the one its
            ``MelSpectrogram`` uses); ``"slaney"``/``"slaney"`` equals librosa's default, which DAC uses.
        window: analysis window.
    """

    def __init__(
        self,
        sample_rate: int,
        window_lengths: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
        *,
        hop_factor: float = 0.25,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_weight: float = 1.0,
        mag_weight: float = 0.0,
        floor: float = 1e-5,
        natural_log: bool = False,
        mel_scale: str = "slaney",
        mel_norm: str | None = "slaney",
        window: str = "hann",
    ) -> None:
        super().__init__()
        self.windows = [(n, max(1, int(n * hop_factor))) for n in window_lengths]
        self.log_weight, self.mag_weight, self.floor = log_weight, mag_weight, floor
        self.natural_log = natural_log
        self.window = window
        for i, (n_fft, bands) in enumerate(zip(window_lengths, n_mels, strict=True)):
            filterbank = torchaudio.functional.melscale_fbanks(
                n_fft // 2 + 1, f_min, f_max or sample_rate / 2, bands, sample_rate, mel_norm, mel_scale
            )  # [F, n_mels]
            self.register_buffer(f"filterbank{i}", filterbank, persistent=False)

    def _mel(self, x: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop = self.windows[i]
        spec = stft(x, n_fft, hop, window=self.window).abs()  # [B, C, F, frames]
        return spec.transpose(-1, -2) @ getattr(self, f"filterbank{i}")  # [B, C, frames, n_mels]

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input``: reconstruction, ``target``: reference, both ``[B, C, T]``."""
        total = input.new_zeros((), dtype=torch.float32)
        for i in range(len(self.windows)):
            x, y = self._mel(input, i), self._mel(target, i)
            if self.log_weight:
                log = torch.log if self.natural_log else torch.log10
                log_x, log_y = log(x.clamp_min(self.floor)), log(y.clamp_min(self.floor))
                total = total + self.log_weight * F.l1_loss(log_x, log_y)
            if self.mag_weight:
                total = total + self.mag_weight * F.l1_loss(x, y)
        return total
