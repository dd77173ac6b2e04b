"""TFM-Tokenizer: single-channel EEG -> one id over 8,192 codes per half second.

Paper: "Tokenizing Single-Channel EEG with Time-Frequency Motif Learning", Pradeepkumar et al.,
arXiv:2502.16060 (v3). Upstream: Jathurshan0330/TFM-Tokenizer (MIT licence), ``models/tfm_token.py``
class ``TFM_VQVAE2_deep`` in its "2x2x8" configuration (``get_tfm_tokenizer_2x2x8``), trained by
``tfm_tokenizer_token_learning.py`` with ``configs/tfm_tokenizer_training_configs.yaml``; the PyHealth
port (sunlabuiuc/PyHealth ``pyhealth/models/tfm_tokenizer.py``) has the same inference path.

Preprocessing (``prepare`` and ``encode``), as upstream's data scripts and loaders for the released
checkpoints: ``datasets_processing/TUAB/process.py`` and ``TUEV/process.py`` read the EDF with MNE, band-pass
0.1-75 Hz (``raw.filter``), notch 50 Hz (``raw.notch_filter``: the scripts say 50 although TUH was
recorded on 60 Hz mains) and resample to 256 Hz (``raw.resample``), all with MNE's defaults, and store
10 s (TUAB) or 5 s (TUEV) windows; ``CHB-MIT/process_*.py`` reads its 256 Hz EDFs unfiltered in 10 s
windows. ``datasets/data_loaders.py`` then resamples each stored window to 200 Hz on its own
(``scipy.signal.resample``) and divides each channel of it by ``quantile(|x|, 0.95) + 1e-8`` (in the
stored unit: volts for TUAB, microvolts for the others). ``prepare`` does the same on any recording
(``highpass``, ``lowpass``, ``notch``, ``preprocess_rate``; MNE's filter design is reimplemented in
``zoo.io.eeg`` so MNE is not needed) and ``encode`` normalises every window on its own; each tag sets
its dataset's window length and filters. A constant offset therefore changes no id when the high-pass is
on (its DC gain is zero).

Structure, per channel of a 200 Hz window divided by its 95th percentile of ``|x|``:
- magnitude STFT (n_fft 200 = 1 s Hann, hop 100, no centring, no log), first 100 bins -> ``S [100, F]``;
- frequency path, per frame: Conv1d(1->64, k5, s5) over the 100 bins (20 patches) and two 1x1 convs,
  each with GELU + GroupNorm -> 2-layer linear-attention Transformer over the 20 patches -> gated
  pooling sigmoid(conv k5 s5) * conv k5 s5 (64 -> 8 channels at 4 positions) -> 32 dims;
- temporal path on the raw window: Conv1d(1->64, k200, s100, aligned with the STFT frames) and two
  1x1 convs with GELU + GroupNorm -> 32 dims;
- concatenation (64) -> 2-layer linear-attention Transformer over frames -> L2 normalisation ->
  EMA vector quantizer (8,192 x 64, Euclidean on the normalised vectors, straight-through);
- decoder: 8-layer linear-attention Transformer -> Linear-Tanh-Linear -> 100 magnitude bins per frame.

Training (``training_output``) masks the spectrogram twice, complementarily: 10 of the 20 five-bin
frequency bands and half of the frames, one draw shared by the whole batch; view A keeps the
intersection of kept bands and kept frames, view B everything else. The waveform path sees the
unmasked window in both. Both views reconstruct the full spectrogram: loss = MSE(A) + MSE(B) +
beta * (commit(A) + commit(B)), beta = 1.

What ``decode`` returns: tokens carry no phase, and the model reconstructs magnitudes only. So
``decode_windows`` synthesises a waveform from the decoded magnitudes by (fast) Griffin-Lim from
zero phase, deterministic, and the shared ``decode`` returns the recording's shape and units.
Its waveform matches the input's spectral content, not its sample values. The faithful output is
``decode_spectrogram``.

Differences from upstream:
- ``encode`` tokenizes the samples after the last whole window too (zero-padded into one more window);
  ``encode(x, drop_partial=True)`` keeps whole windows only, as upstream's scripts do. Upstream's
  filters would refuse a recording whose Nyquist frequency is at or below 75 Hz; ``prepare`` then
  applies the high-pass alone (and the notch if it fits);
- the codebook is a buffer moved only by its EMA (upstream also keeps it as a trainable
  ``nn.Embedding`` with a codebook MSE term, but overwrites it from the EMA statistics on every
  forward pass, so that gradient never lasts and the term is left out here);
- EMA counts start at 1 rather than 0 (upstream's zero start sends codes unused in the first batch
  far off the unit sphere at the first update); a converted checkpoint carries its own counts;
- the two views share one pass of the waveform path (it is unmasked, so the values are identical);
- the linear-attention Transformer is ``zoo.nn.linear_attention`` (the same computation as
  lucidrains' ``linear-attention-transformer`` for global non-causal heads).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.linear_attention import LinearAttentionTransformer
from ...quantizers import VectorQuantizer
from ...tokenizer import EEGTokenizer, TokenizerOutput
from ...tokens import Tokens

__all__: list[str] = [
    "TFMTokenizer",
    "complementary_masks",
    "convert_tfm_tokenizer",
    "griffin_lim",
    "magnitude_stft",
]


def magnitude_stft(x: torch.Tensor, n_fft: int, hop: int, bins: int) -> torch.Tensor:
    """``|STFT|`` of ``x [N, T]`` with a periodic Hann window, no centring: ``[N, bins, frames]``."""
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=False, return_complex=True)
    return spec.abs()[:, :bins]


def griffin_lim(
    magnitude: torch.Tensor, n_fft: int, hop: int, *, iterations: int = 32, momentum: float = 0.99
) -> torch.Tensor:
    """A waveform ``[N, (frames - 1) * hop + n_fft]`` whose uncentred Hann STFT has magnitudes close to
    ``magnitude [N, bins <= n_fft // 2 + 1, frames]`` (missing top bins are zero).

    Fast Griffin-Lim (Perraudin et al., 2013) from zero phase, so the result is deterministic.
    Overlap-add divides by the summed squared window, floored at a tenth of its peak: in the first and
    last half frame of an uncentred STFT only one window's tapering edge covers a sample, and dividing
    by its near-zero square would blow phase errors up by orders of magnitude; there the output tapers
    towards 0 instead.
    """
    n, bins, frames = magnitude.shape
    full = n_fft // 2 + 1
    mag = F.pad(magnitude.double(), (0, 0, 0, full - bins))
    window = torch.hann_window(n_fft, dtype=torch.float64, device=magnitude.device)
    length = (frames - 1) * hop + n_fft
    envelope = F.fold(
        (window**2)[None, :, None].expand(1, n_fft, frames), (1, length), (1, n_fft), stride=(1, hop)
    ).reshape(length)
    envelope = envelope.clamp_min(0.1 * float(envelope.max()))

    def synthesise(spec: torch.Tensor) -> torch.Tensor:
        frames_t = torch.fft.irfft(spec, n=n_fft, dim=1) * window[:, None]  # [N, n_fft, frames]
        return F.fold(frames_t, (1, length), (1, n_fft), stride=(1, hop)).reshape(n, length) / envelope

    def analyse(y: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(y.unfold(-1, n_fft, hop) * window, dim=-1).transpose(1, 2)

    angles = torch.ones_like(mag, dtype=torch.complex128)
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = analyse(synthesise(mag * angles))
        angles = rebuilt - momentum / (1 + momentum) * previous
        angles = angles / angles.abs().clamp_min(1e-16)
        previous = rebuilt
    return synthesise(mag * angles).to(magnitude.dtype)


def complementary_masks(
    shape: tuple[int, int, int],
    *,
    band_size: int = 5,
    band_ratio: float = 0.5,
    frame_ratio: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep-masks ``(A, B)`` of a spectrogram batch ``shape = (N, bins, frames)``, shared over ``N``.

    ``int(bands * band_ratio)`` of the ``bins // band_size`` frequency bands and ``int(frames *
    frame_ratio)`` frames are masked; ``A`` keeps what is in both a kept band and a kept frame,
    ``B = ~A`` the rest.
    """
    n, bins, frames = shape
    bands = bins // band_size
    keep_band = torch.ones(bands, dtype=torch.bool)
    keep_band[torch.randperm(bands, generator=generator)[: int(bands * band_ratio)]] = False
    keep_frame = torch.ones(frames, dtype=torch.bool)
    keep_frame[torch.randperm(frames, generator=generator)[: int(frames * frame_ratio)]] = False
    keep_bin = F.pad(keep_band.repeat_interleave(band_size), (0, bins - bands * band_size), value=True)
    view_a = (keep_bin[:, None] & keep_frame[None, :]).expand(n, bins, frames).to(device)
    return view_a, ~view_a


def _conv_gelu_norm(cin: int, cout: int, kernel: int, stride: int, groups: int) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, kernel, stride), nn.GELU(), nn.GroupNorm(groups, cout)]


class TFMTokenizer(EEGTokenizer):
    """TFM-Tokenizer: normalised single-channel windows ``[N, 1, L]`` at 200 Hz -> ids ``[N, F]``,
    ``F = (L - n_fft) // hop + 1`` (9 for 5 s, 19 for 10 s): 2 tokens per second per channel.

    Args:
        window_samples: window length ``encode`` cuts recordings into (1000 = 5 s as TUEV; 2000 for
            TUAB/CHB-MIT's 10 s). Any multiple of ``hop_length`` of at least ``n_fft`` works.
        n_fft, hop_length: STFT frame (1 s) and hop (0.5 s), also the temporal conv's kernel and stride.
        n_freq: spectrum bins kept (0-99 Hz at 1 Hz resolution).
        n_freq_patch: frequency patch size of the first conv (and of the gated pooling).
        emb_size: model width and code dimension.
        heads: attention heads of every Transformer.
        freq_depth, temporal_depth, decoder_depth: Transformer depths ("2x2x8").
        dropout: dropout after each attention output projection.
        codebook_size: number of codes.
        ema_decay: codebook EMA decay.
        commitment_weight: beta, the weight of each view's commitment MSE.
        kmeans_init, restart_threshold: not in upstream (uniform init, no restarts), which relies on
            millions of diverse windows; at init the encoder maps nearly every window to one direction,
            so on small data the codebook collapses to a single code. k-means on the first batch and
            moving codes used fewer than ``restart_threshold`` times per step onto encoder outputs keep it
            alive (the tiny size uses both; the paper size keeps upstream's behaviour).
        spectrogram_scale: the model sees and reconstructs ``|STFT| / spectrogram_scale`` (1: upstream).
            Unnormalised magnitudes of 95th-percentile-normalised EEG are O(1) with large low-frequency
            bins; in short training the decoder spends its first hundreds of steps on that mean and the
            encoder collapses to one direction meanwhile (every window gets the same code). A scale of 10
            avoids it (the tiny size; measured on the shared EEG, see the card); decoded magnitudes are
            always returned in the input's units.
        griffin_lim_iters: Griffin-Lim iterations of the waveform ``decode``.
        highpass, lowpass: band-pass edges (Hz) ``prepare`` applies at the recording's own rate with MNE's
            default FIR design, as upstream's TUAB/TUEV scripts (0.1, 75); ``None`` leaves that side open
            (CHB-MIT's script filters nothing). A low-pass at or above the Nyquist frequency is skipped.
        notch: mains frequency (Hz) ``prepare`` notches out with MNE's default notch, after the band-pass;
            upstream's TUAB/TUEV scripts use 50 (pass 60 for a 60 Hz notch, ``None`` for none).
        preprocess_rate: rate ``prepare`` resamples the filtered recording to (MNE's FFT resampling)
            before each window is resampled to 200 Hz on its own (``scipy.signal.resample``), as upstream
            stores 256 Hz windows and its loaders resample them; ``None`` resamples the whole recording
            straight to 200 Hz. ``window_samples * preprocess_rate / 200`` must be a whole number.
        norm_eps: added to each window's 95th percentile before dividing (upstream's 1e-8, in the unit of
            the stored data: 1e-8 V = 0.01 uV for TUAB, whose script stores volts).
    """

    def __init__(
        self,
        *,
        window_samples: int = 1000,
        n_fft: int = 200,
        hop_length: int = 100,
        n_freq: int = 100,
        n_freq_patch: int = 5,
        emb_size: int = 64,
        heads: int = 8,
        freq_depth: int = 2,
        temporal_depth: int = 2,
        decoder_depth: int = 8,
        dropout: float = 0.2,
        codebook_size: int = 8192,
        ema_decay: float = 0.99,
        commitment_weight: float = 1.0,
        kmeans_init: bool = False,
        restart_threshold: float = 0.0,
        spectrogram_scale: float = 1.0,
        griffin_lim_iters: int = 32,
        highpass: float | None = 0.1,
        lowpass: float | None = 75.0,
        notch: float | None = 50.0,
        preprocess_rate: float | None = 256.0,
        norm_eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if window_samples < n_fft or window_samples % hop_length or n_fft % hop_length:
            raise ValueError(
                f"window_samples ({window_samples}) must be at least n_fft ({n_fft}) and, like n_fft, "
                f"a multiple of hop_length ({hop_length})"
            )
        if n_freq > n_fft // 2 + 1 or n_freq % (n_freq_patch * n_freq_patch):
            raise ValueError(
                f"n_freq ({n_freq}) must be at most n_fft // 2 + 1 and a multiple of n_freq_patch ** 2"
            )
        self.sample_rate = 200.0
        self.window_samples = window_samples
        self.hop_length = hop_length
        self.normalisation = "percentile95"
        self.normalise_windows = True
        self.norm_eps = float(norm_eps)
        self.highpass = None if highpass is None else float(highpass)
        self.lowpass = None if lowpass is None else float(lowpass)
        self.notch = None if notch is None else float(notch)
        self.preprocess_rate = None if preprocess_rate is None else float(preprocess_rate)
        if self.preprocess_rate is not None:
            block = window_samples * self.preprocess_rate / self.sample_rate
            if block != round(block):
                raise ValueError(
                    f"window_samples ({window_samples}) x preprocess_rate ({preprocess_rate:g}) / 200 must be "
                    "a whole number of samples"
                )
        self.n_fft, self.n_freq, self.n_freq_patch = n_fft, n_freq, n_freq_patch
        self.griffin_lim_iters = griffin_lim_iters
        if not spectrogram_scale > 0:
            raise ValueError(f"spectrogram_scale must be positive, got {spectrogram_scale}")
        self.spectrogram_scale = float(spectrogram_scale)
        groups = emb_size // 4
        self.freq_patch_embedding = nn.Sequential(
            *_conv_gelu_norm(1, emb_size, n_freq_patch, n_freq_patch, groups),
            *_conv_gelu_norm(emb_size, emb_size, 1, 1, groups),
            *_conv_gelu_norm(emb_size, emb_size, 1, 1, groups),
        )
        self.freq_transformer = LinearAttentionTransformer(emb_size, freq_depth, heads, dropout=dropout)
        # Gated pooling of the n_freq / n_freq_patch patches in groups of n_freq_patch; the channel count
        # makes channels x positions = emb_size / 2 (upstream's "global_freq_divider").
        pooled = n_freq // (n_freq_patch * n_freq_patch)
        gate_channels = emb_size // (2 * pooled)
        self.freq_gate = nn.Conv1d(emb_size, gate_channels, n_freq_patch, n_freq_patch)
        self.freq_value = nn.Conv1d(emb_size, gate_channels, n_freq_patch, n_freq_patch)
        self.temporal_patch_embedding = nn.Sequential(
            *_conv_gelu_norm(1, emb_size, n_fft, hop_length, groups),
            *_conv_gelu_norm(emb_size, emb_size, 1, 1, groups),
            *_conv_gelu_norm(emb_size, emb_size // 2, 1, 1, groups),
        )
        self.temporal_transformer = LinearAttentionTransformer(
            emb_size, temporal_depth, heads, dropout=dropout
        )
        self.quantizer = VectorQuantizer(
            emb_size,
            codebook_size,
            commitment_weight=commitment_weight,
            ema_decay=ema_decay,
            kmeans_init=kmeans_init,
            restart_threshold=restart_threshold,
        )
        self.decoder_transformer = LinearAttentionTransformer(emb_size, decoder_depth, heads, dropout=dropout)
        self.spectrum_head = nn.Sequential(
            nn.Linear(emb_size, emb_size), nn.Tanh(), nn.Linear(emb_size, n_freq)
        )

    # ------------------------------------------------------------------ spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantizer.codebook_size,)

    @property
    def frames_per_window(self) -> int:
        return (self.window_samples - self.n_fft) // self.hop_length + 1

    def last_layer(self) -> torch.Tensor:
        return self.spectrum_head[-1].weight

    @property
    def input_spec(self) -> dict[str, Any]:
        return {
            **super().input_spec,
            "normalised_per": "window",
            "highpass": self.highpass,
            "lowpass": self.lowpass,
            "notch": self.notch,
            "preprocess_rate": self.preprocess_rate,
        }

    # ------------------------------------------------------------------ preprocessing
    def prepare(
        self,
        media: Any,
        *,
        path: str | Path | None = None,
        channels: list[str] | None = None,
    ) -> torch.Tensor:
        """An ``EEGRecording`` -> ``[1, C, T]`` at 200 Hz, preprocessed as upstream's data scripts do:
        band-pass ``highpass``-``lowpass`` and ``notch`` at the recording's rate (MNE's default FIR
        designs, see ``zoo.io.eeg``), MNE's FFT resampling to ``preprocess_rate``, then every
        ``window_samples``-long stretch resampled to 200 Hz on its own (``scipy.signal.resample``), so
        ``encode``'s windows are exactly upstream's. Channels are picked and checked as
        :meth:`EEGTokenizer.prepare` does."""
        from ...io.eeg import apply_fir, blockwise_resample, fft_resample, fir_kernel, notch_kernel

        rec = self.checked_recording(media, path=path, channels=channels)
        rate = rec.sample_rate
        data = rec.data.double().numpy()
        lowpass = self.lowpass if self.lowpass is not None and self.lowpass < rate / 2 else None
        kernel = fir_kernel(rate, self.highpass, lowpass)
        if kernel is not None:
            data = apply_fir(data, kernel)
        if self.notch is not None and self.notch * (1 + 1 / 400) + 0.5 <= rate / 2:
            data = apply_fir(data, notch_kernel(rate, self.notch))
        if self.preprocess_rate is None:
            data = fft_resample(data, rate, self.sample_rate)
        else:
            data = fft_resample(data, rate, self.preprocess_rate)
            block = round(self.window_samples * self.preprocess_rate / self.sample_rate)
            data = blockwise_resample(data, block, self.window_samples)
        return torch.from_numpy(np.ascontiguousarray(data)).float()[None]

    # ------------------------------------------------------------------ pieces
    def check_windows(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != 1 or x.shape[-1] < self.n_fft or x.shape[-1] % self.hop_length:
            raise ValueError(
                f"expected normalised single-channel windows [N, 1, L] at 200 Hz with L >= {self.n_fft} a "
                f"multiple of {self.hop_length}, got shape {tuple(x.shape)}; encode() cuts recordings"
            )

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Upstream's magnitude spectrogram ``[N, n_freq, F]`` of windows ``[N, 1, L]``."""
        return magnitude_stft(x[:, 0].float(), self.n_fft, self.hop_length, self.n_freq)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`magnitude` over ``spectrogram_scale``: the model's input and reconstruction target."""
        spec = self.magnitude(x)
        return spec if self.spectrogram_scale == 1.0 else spec / self.spectrogram_scale

    def _frequency_features(self, spec: torch.Tensor) -> torch.Tensor:
        """``[N, n_freq, F]`` -> ``[N, F, emb_size / 2]``, each frame's spectrum encoded on its own."""
        n, bins, frames = spec.shape
        spec = spec.to(self.compute_dtype)  # the float32 STFT meets a bf16 or fp16 model's weights here
        patches = self.freq_patch_embedding(spec.transpose(1, 2).reshape(n * frames, 1, bins))
        patches = self.freq_transformer(patches.transpose(1, 2)).transpose(1, 2)
        pooled = self.freq_value(patches) * torch.sigmoid(self.freq_gate(patches))
        return pooled.reshape(n, frames, -1)

    def _temporal_features(self, x: torch.Tensor) -> torch.Tensor:
        """Windows ``[N, 1, L]`` -> ``[N, F, emb_size / 2]``, one conv step per STFT frame."""
        return self.temporal_patch_embedding(x.to(self.compute_dtype)).transpose(1, 2)

    def _encode(self, spec: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        """Unit-norm vectors ``[N, emb_size, F]`` that the quantizer sees."""
        h = torch.cat([self._frequency_features(spec), temporal], dim=-1)
        return F.normalize(self.temporal_transformer(h), dim=-1).transpose(1, 2)

    def _decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[N, emb_size, F]`` -> magnitudes ``[N, n_freq, F]``."""
        return self.spectrum_head(self.decoder_transformer(quantized.transpose(1, 2))).transpose(1, 2)

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Unmasked pass over windows ``[N, 1, L]``: ``recon`` and ``target`` are spectrograms ``[N, 100, F]``."""
        self.check_windows(x)
        spec = self.spectrogram(x)
        q = self.quantizer(self._encode(spec, self._temporal_features(x)))
        recon = self._decode(q.quantized)
        losses = {"rec/spectrogram": F.mse_loss(recon, spec), **q.losses}
        return TokenizerOutput(recon=recon, target=spec, ids=q.ids, losses=losses, stats=q.stats)

    def training_output(
        self, x: torch.Tensor, step: int, *, generator: torch.Generator | None = None
    ) -> TokenizerOutput:
        """The paper's complementary-masking step (see the module docstring) on windows ``[N, 1, L]``.

        ``recon`` stacks view A's and view B's reconstructions ``[2N, 100, F]`` and ``target`` holds
        the unmasked spectrogram twice; ``losses`` already has their MSE sum as ``rec/spectrogram``,
        so recipes add no reconstruction term of their own.
        """
        self.check_windows(x)
        spec = self.spectrogram(x)
        keep_a, keep_b = complementary_masks(tuple(spec.shape), generator=generator, device=spec.device)
        temporal = self._temporal_features(x)
        latents = self._encode(torch.cat([spec * keep_a, spec * keep_b]), temporal.repeat(2, 1, 1))
        n = x.shape[0]
        first, second = self.quantizer(latents[:n]), self.quantizer(latents[n:])  # two EMA updates
        recon = self._decode(torch.cat([first.quantized, second.quantized]))
        target = torch.cat([spec, spec])
        losses = {
            "rec/spectrogram": F.mse_loss(recon[:n], spec) + F.mse_loss(recon[n:], spec),
            "vq/commit": first.losses["vq/commit"] + second.losses["vq/commit"],
        }
        return TokenizerOutput(
            recon=recon,
            target=target,
            ids=torch.cat([first.ids, second.ids]),
            losses=losses,
            stats=first.stats,
        )

    # ------------------------------------------------------------------ windows
    def encode_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised windows ``[N, 1, L]`` -> ids ``[N, F]``."""
        self.check_windows(x)
        return self.quantizer.encode(self._encode(self.spectrogram(x), self._temporal_features(x)))

    def decode_windows_spectrogram(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[N, F]`` -> reconstructed magnitudes ``[N, n_freq, F]`` (of the normalised signal)."""
        spec = self._decode(self.quantizer.lookup(ids))
        return spec if self.spectrogram_scale == 1.0 else spec * self.spectrogram_scale

    def decode_windows(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[N, F]`` -> Griffin-Lim waveforms ``[N, 1, (F - 1) * hop + n_fft]`` (normalised units)."""
        spec = self.decode_windows_spectrogram(ids).clamp_min(0)
        return griffin_lim(spec, self.n_fft, self.hop_length, iterations=self.griffin_lim_iters)[:, None]

    @torch.no_grad()
    def decode_spectrogram(self, tokens: Tokens) -> torch.Tensor:
        """What the model actually reconstructs: magnitudes ``[B, C, W, n_freq, F]`` per window, in the
        input's units (times each channel's gain; magnitudes scale with amplitude)."""
        ids = self.decodable_ids(tokens, 3)
        b, (c, count, frames) = ids.shape[0], tokens.grid
        spec = self.decode_windows_spectrogram(ids.reshape(-1, frames)).reshape(
            b, c, count, self.n_freq, frames
        )
        gain = self.side_statistics(tokens)[1].to(spec)
        if gain.ndim == 2:  # one gain per channel (tokens from before per-window normalisation)
            gain = gain[..., None]
        return spec * gain[..., None, None]


# ---------------------------------------------------------------------------------------------- converter
_PREFIXES = (
    ("trans_freq_encoder.transformer.", "freq_transformer."),
    ("trans_temporal_encoder.transformer.", "temporal_transformer."),
    ("trans_decoder.transformer.", "decoder_transformer."),
    ("freq_patch_embedding_2_atten.0.", "freq_gate."),
    ("freq_patch_embedding_2.0.", "freq_value."),
    ("decoder.", "spectrum_head."),
    ("freq_patch_embedding.", "freq_patch_embedding."),
    ("temporal_patch_embedding.", "temporal_patch_embedding."),
)
_QUANTIZER = {
    "quantizer.embedding.weight": "quantizer.codebook",
    "quantizer.ema_w": "quantizer.embed_sum",
    "quantizer.cluster_size": "quantizer.cluster_size",
}


def convert_tfm_tokenizer(
    state_dict: Mapping[str, torch.Tensor], model: TFMTokenizer | None = None
) -> dict[str, torch.Tensor]:
    """Upstream ``TFM_VQVAE2_deep`` state dict (``tfm_tokenizer_last.pth``) -> ``TFMTokenizer`` keys.

    A ``module.`` (DDP) or ``vqvae.`` (Lightning wrapper) prefix is stripped. Keys of neither layout
    are kept as they are, so ``load_weights`` names them as unexpected. When ``model`` initialises its
    codebook by k-means (an option upstream lacks), the trained codebook is marked as initialised.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for strip in ("module.", "vqvae."):
            key = key.removeprefix(strip)
        new = _QUANTIZER.get(key)
        if new is None:
            new = next((dst + key[len(src) :] for src, dst in _PREFIXES if key.startswith(src)), key)
        out[new] = value
    if model is not None and hasattr(model.quantizer, "initted"):
        out.setdefault("quantizer.initted", torch.tensor(True))
    return out


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "emb_size": 32,
    "heads": 4,
    "freq_depth": 1,
    "temporal_depth": 1,
    "decoder_depth": 1,
    "dropout": 0.0,
    "codebook_size": 512,
    "kmeans_init": True,
    "restart_threshold": 0.05,
    "spectrogram_scale": 10.0,
    "griffin_lim_iters": 8,
}


@register_model(modality="eeg", family="tfm")
def tfm_tokenizer(**kwargs: Any) -> TFMTokenizer:
    """TFM-Tokenizer "2x2x8" at the paper size: 5 s windows at 200 Hz -> 9 ids over 8,192 codes per channel."""
    return build(TFMTokenizer, "tfm_tokenizer", _PAPER, kwargs)


@register_model(modality="eeg", family="tfm", size="tiny")
def tfm_tokenizer_tiny(**kwargs: Any) -> TFMTokenizer:
    """A tiny TFM-Tokenizer for CPU tests: width 32, one layer per Transformer, 512 codes."""
    return build(TFMTokenizer, "tfm_tokenizer_tiny", _TINY, kwargs)


_REPO = "https://github.com/Jathurshan0330/TFM-Tokenizer"
_COMMIT = "d716ab9"
# (folder, what, constructor arguments): each tag preprocesses as its dataset's upstream script did
_WEIGHTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "multi_dataset": (
        "multiple_dataset_settings/Pretrained_tfm_tokenizer_2x2x8",
        (
            "trained on TUAB + TUEV + CHB-MIT together (the paper's multi-dataset setting); loads with TUEV's "
            "preprocessing (5 s windows, 0.1-75 Hz band-pass, 50 Hz notch)"
        ),
        {},
    ),
    "tuev": (
        "single_dataset_settings/TUEV_tfm_tokenizer_2x2x8",
        "trained on TUEV: 5 s windows, 0.1-75 Hz band-pass, 50 Hz notch",
        {},
    ),
    "tuab": (
        "single_dataset_settings/TUAB_tfm_tokenizer_2x2x8",
        (
            "trained on TUAB: 10 s windows, 0.1-75 Hz band-pass, 50 Hz notch (TUAB's script stores volts, so "
            "its 1e-8 guard is 0.01 uV)"
        ),
        {"window_samples": 2000, "norm_eps": 1e-2},
    ),
    "chbmit": (
        "single_dataset_settings/CHBMIT_tfm_tokenizer_2x2x8",
        "trained on CHB-MIT: 10 s windows, no filtering (CHB-MIT's script filters nothing)",
        {"window_samples": 2000, "highpass": None, "lowpass": None, "notch": None},
    ),
}
for _tag, (_folder, _what, _args) in _WEIGHTS.items():
    register_pretrained(
        f"tfm_tokenizer.{_tag}",
        PretrainedCfg(
            hf_hub_id=None,  # type: ignore[arg-type]  # in the GitHub repository only: no Hub repo exists
            filename=f"pretrained_weigths/{_folder}/tfm_tokenizer_last.pth",
            converter="convert_tfm_tokenizer",
            checkpoint_key=("state_dict", None),  # a Lightning checkpoint or the bare state dict
            license="MIT",
            paper="arXiv:2502.16060",
            upstream=f"{_REPO} @ {_COMMIT} (file pretrained_weigths/{_folder}/tfm_tokenizer_last.pth)",
            description=(
                f"TFM-Tokenizer 2x2x8 {_what}. The weights are in the authors' GitHub repository, not on "
                f"the Hub: download pretrained_weigths/{_folder}/tfm_tokenizer_last.pth from {_REPO} by "
                f"hand, then zoo.load_upstream('tfm_tokenizer.{_tag}', path).save_pretrained(dir) and "
                "zoo.load(dir). Override the preprocessing with load_upstream(..., notch=60.0) and the like."
            ),
            model_args=_args,
        ),
    )
del _tag, _folder, _what, _args
