"""Discriminators for the adversarial losses of image, audio and EEG tokenizers, written once.

Every discriminator returns a `DiscriminatorOutput`: one logits map and one list of hidden activations per
sub-discriminator (audiocraft's ``MultiDiscriminatorOutputType``), so the trainer computes GAN and
feature-matching losses the same way whichever discriminator a recipe picks.

- `PatchDiscriminator`: pix2pix's PatchGAN as used by taming-transformers and LlamaGen's VQGAN
  (FoundationVision/LlamaGen @ ce98ec4, ``tokenizer/tokenizer_image/discriminator_patchgan.py``; MIT).
- `MultiPeriodDiscriminator`: HiFi-GAN's MPD (arXiv:2010.05646) as in Vocos (gemelo-ai/vocos @ c859e3b)
  and DAC (descriptinc/descript-audio-codec @ c7cfc5d); both MIT.
- `MultiResolutionDiscriminator`: UnivNet's magnitude-STFT MRD (arXiv:2106.07889) as in Vocos 0.0.x
  (@ 41c7da6) and WavTokenizer.
- `MultiBandResolutionDiscriminator`: DAC's complex-STFT MRD with one conv stack per frequency band, also
  Vocos's MRD since 0.1.
- `MultiScaleSTFTDiscriminator`: EnCodec's MS-STFT discriminator (arXiv:2210.13438; facebookresearch/audiocraft
  @ 896ec7c, ``audiocraft/adversarial/discriminators/msstftd.py``; MIT), with the layer settings of its
  ``solver/compression/default.yaml``.

At their defaults, parameter counts equal upstream's (``tests/test_discriminators.py`` states them).
Differences from upstream, none of which change parameter shapes:
- ``features`` hold the activation of every hidden layer and never the logits (Vocos lists its logits as a
  feature and skips the first layer; DAC and EnCodec keep the first layer);
- weight norm is ``torch.nn.utils.parametrizations.weight_norm`` (same tensors, newer key names);
- logits keep their map shape instead of being flattened; the GAN losses average over all elements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from .conv2d import group_norm
from .spectral import stft

__all__ = [
    "DAC_BANDS",
    "DiscriminatorOutput",
    "MultiBandResolutionDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "PatchDiscriminator",
]

# Fractions of the Nyquist range that DAC's MRD gives a conv stack each.
DAC_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


@dataclass
class DiscriminatorOutput:
    """What every discriminator returns, with one entry per sub-discriminator.

    Args:
        logits: real-vs-fake score maps ``[B, ...]`` (one map per sub-discriminator; losses average it).
        features: each sub-discriminator's hidden activations in layer order, for feature matching.
        gan_losses: the GAN loss each map is judged with (``zoo.losses.gan_loss`` names), or ``None``
            for the trainer's ``gan_loss`` (a combination may mix them, as WavTokenizer does).
    """

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]]
    gan_losses: list[str | None] | None = None

    def loss_names(self) -> list[str | None]:
        """One entry per logits map (``None``: the trainer's default)."""
        return list(self.gan_losses) if self.gan_losses is not None else [None] * len(self.logits)

    @classmethod
    def merge(cls, *outputs: DiscriminatorOutput) -> DiscriminatorOutput:
        """Concatenate several discriminators' outputs (DAC's discriminator is an MPD plus a band MRD)."""
        names = [n for out in outputs for n in out.loss_names()]
        return cls(
            logits=[t for out in outputs for t in out.logits],
            features=[f for out in outputs for f in out.features],
            gan_losses=None if all(n is None for n in names) else names,
        )

    def judged_with(self, name: str | None) -> DiscriminatorOutput:
        """The same maps, all judged with ``name`` (entries that already name a loss keep theirs)."""
        names = [own if own is not None else name for own in self.loss_names()]
        return DiscriminatorOutput(
            self.logits, self.features, None if all(n is None for n in names) else names
        )


# --- shared pieces -------------------------------------------------------------------------------------


def _conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    *,
    dilation: int | tuple[int, int] = 1,
    weight_norm: bool = True,
) -> nn.Module:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation)
    return _weight_norm(conv) if weight_norm else conv


def _same_padding(kernel_size: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return ((kernel_size[0] - 1) * dilation[0] // 2, (kernel_size[1] - 1) * dilation[1] // 2)


def _as_audio(x: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` or ``[B, C, T]`` -> ``[B, C, T]``."""
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() != 3:
        raise ValueError(f"expected audio of shape [B, C, T] or [B, T], got {tuple(x.shape)}")
    return x


def _remove_dc_and_peak_normalize(x: torch.Tensor, peak: float = 0.8) -> torch.Tensor:
    """DAC's input preprocessing: the discriminator judges timbre, not level or DC offset."""
    x = x - x.mean(dim=-1, keepdim=True)
    return peak * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)


def _gather(results: Iterable[tuple[torch.Tensor, list[torch.Tensor]]]) -> DiscriminatorOutput:
    """Sub-discriminators' ``(logits, features)`` pairs -> one `DiscriminatorOutput`."""
    logits, features = zip(*results, strict=True)
    return DiscriminatorOutput(logits=list(logits), features=list(features))


class _LeakyStack(nn.Module):
    """Convolutions, each followed by LeakyReLU; returns every activation (the last feeds the head)."""

    def __init__(self, convs: Sequence[nn.Module], negative_slope: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        activations = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.negative_slope)
            activations.append(x)
        return activations


class _LogitHead(nn.Module):
    """Final conv to one score channel, plus an optional projection-discriminator term (Miyato & Koyama
    2018): ``<embedding[condition], h>`` per position, which is how Vocos conditions on the bandwidth id.
    """

    def __init__(self, conv: nn.Module, channels: int, num_embeddings: int | None) -> None:
        super().__init__()
        self.conv = conv
        self.embedding = nn.Embedding(num_embeddings, channels) if num_embeddings else None
        if self.embedding is not None:
            nn.init.zeros_(self.embedding.weight)  # starts unconditional

    def forward(self, h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        logits = self.conv(h)
        if self.embedding is not None and condition is not None:
            embedding = self.embedding(torch.as_tensor(condition, device=h.device).reshape(-1))  # [B or 1, C]
            logits = logits + (embedding[:, :, None, None] * h).sum(dim=1, keepdim=True)
        return logits


# --- images --------------------------------------------------------------------------------------------


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs (stride 2, then 1) scoring overlapping patches; one logit per patch.

    With 256x256 inputs and the defaults each logit sees a 70x70 patch; the map is ``[B, 1, 30, 30]``
    (``[B, 1, 2, 2]`` at 32x32).

    Args:
        in_channels: image channels.
        channels: width of the first conv; each further layer doubles it, up to ``8 * channels``.
        num_layers: number of stride-2 convs (the first of which has no norm).
        norm: ``"batch"`` (upstream), ``"group"`` (batch-size independent) or ``"none"``. Convs followed
            by a norm have no bias, as upstream.
    """

    def __init__(
        self, in_channels: int = 3, channels: int = 64, num_layers: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()
        if norm not in ("batch", "group", "none"):
            raise ValueError(f"norm must be 'batch', 'group' or 'none', got {norm!r}")
        widths = [channels * min(2**i, 8) for i in range(num_layers + 1)]
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, stride=2, padding=1)]
        for i in range(1, num_layers + 1):
            stride = 2 if i < num_layers else 1
            conv = nn.Conv2d(widths[i - 1], widths[i], 4, stride=stride, padding=1, bias=norm == "none")
            blocks.append(nn.Sequential(conv, self._norm(norm, widths[i])))
        self.blocks = nn.ModuleList(blocks)
        self.to_logits = nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1)
        self.apply(self._init_weights)

    @staticmethod
    def _norm(norm: str, channels: int) -> nn.Module:
        if norm == "batch":
            return nn.BatchNorm2d(channels)
        return group_norm(channels) if norm == "group" else nn.Identity()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # DCGAN init, as upstream: small conv weights, norm scales near 1.
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        """``x``: images ``[B, C, H, W]`` (any fixed range; the trainer feeds real and fake alike)."""
        features = []
        for block in self.blocks:
            x = F.leaky_relu(block(x), 0.2)
            features.append(x)
        return DiscriminatorOutput(logits=[self.to_logits(x)], features=[features])


class KeyedDiscriminator(nn.Module):
    """Several PatchGANs, one per key, each judging only what it is handed with its key.

    KARL's stage 2 trains one discriminator per token-count bucket, so that images rebuilt from few
    tokens are not judged against the same standard as images rebuilt from many. ``forward(x, key)``
    runs member ``key``; the trainer passes the key a tokenizer attaches to each reconstruction
    (``TokenizerOutput.judged``).

    Args:
        keys: number of members.
        in_channels, channels, num_layers, norm: each member's `PatchDiscriminator` settings.
    """

    def __init__(
        self,
        keys: int = 8,
        in_channels: int = 3,
        channels: int = 64,
        num_layers: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            PatchDiscriminator(in_channels, channels, num_layers, norm) for _ in range(keys)
        )

    def forward(self, x: torch.Tensor, key: int = 0) -> DiscriminatorOutput:
        if not 0 <= int(key) < len(self.members):
            raise ValueError(f"discriminator key {key} outside [0, {len(self.members)})")
        return self.members[int(key)](x)


# --- waveforms: periods --------------------------------------------------------------------------------


class _PeriodDiscriminator(nn.Module):
    """Folds ``[B, C, T]`` into ``[B, C, T / p, p]`` and convolves along time only, so each column sees
    samples ``p`` apart: periodic structure that waveform-scale discriminators miss.
    """

    def __init__(
        self,
        period: int,
        in_channels: int,
        channels: Sequence[int],
        kernel_size: int,
        stride: int,
        negative_slope: float,
        num_embeddings: int | None,
    ) -> None:
        super().__init__()
        self.period = period
        widths = [in_channels, *channels]
        self.stack = _LeakyStack(
            [
                _conv2d(
                    widths[i],
                    widths[i + 1],
                    (kernel_size, 1),
                    (stride if i < len(channels) - 1 else 1, 1),  # the last conv keeps the length
                    (kernel_size // 2, 0),
                )
                for i in range(len(channels))
            ],
            negative_slope,
        )
        self.head = _LogitHead(_conv2d(widths[-1], 1, (3, 1), 1, (1, 0)), widths[-1], num_embeddings)

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        features = self.stack(x.reshape(b, c, -1, self.period))
        return self.head(features[-1], condition), features


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's multi-period discriminator: one `_PeriodDiscriminator` per (prime) period.

    Args:
        periods: fold widths; primes keep the sub-discriminators from seeing the same structure.
        in_channels: audio channels.
        channels: widths of the strided convs (the last one has stride 1).
        kernel_size, stride: of each conv along time.
        negative_slope: of the LeakyReLUs (0.1 in HiFi-GAN, Vocos and DAC).
        num_embeddings: if set, condition on an id in ``[0, num_embeddings)`` by projection (Vocos and
            WavTokenizer condition on the bandwidth id with ``num_embeddings=4``).
        remove_dc_and_normalize: remove DC and peak-normalise to 0.8 first, as DAC's discriminator does.
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        *,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
        negative_slope: float = 0.1,
        num_embeddings: int | None = None,
        remove_dc_and_normalize: bool = False,
    ) -> None:
        super().__init__()
        self.remove_dc_and_normalize = remove_dc_and_normalize
        self.discriminators = nn.ModuleList(
            _PeriodDiscriminator(
                p, in_channels, channels, kernel_size, stride, negative_slope, num_embeddings
            )
            for p in periods
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> DiscriminatorOutput:
        """``x``: audio ``[B, C, T]`` (or ``[B, T]``); ``condition``: ids ``[B]`` or one id for the batch."""
        x = _as_audio(x)
        if self.remove_dc_and_normalize:
            x = _remove_dc_and_peak_normalize(x)
        return _gather(d(x, condition) for d in self.discriminators)


# --- waveforms: spectrograms ---------------------------------------------------------------------------


class _ResolutionDiscriminator(nn.Module):
    """2-D convs over one linear-magnitude spectrogram ``[B, C, F, frames]``, striding over both axes."""

    def __init__(
        self,
        resolution: tuple[int, int, int],
        in_channels: int,
        channels: int,
        negative_slope: float,
        num_embeddings: int | None,
        window: str,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = resolution
        self.window = window
        # (in, out, kernel, stride, padding) over (frequency, time)
        layers = [
            (in_channels, channels, (7, 5), (2, 2), (3, 2)),
            (channels, channels, (5, 3), (2, 1), (2, 1)),
            (channels, channels, (5, 3), (2, 2), (2, 1)),
            (channels, channels, (3, 3), (2, 1), (1, 1)),
            (channels, channels, (3, 3), (2, 2), (1, 1)),
        ]
        self.stack = _LeakyStack([_conv2d(*layer) for layer in layers], negative_slope)
        self.head = _LogitHead(_conv2d(channels, 1, (3, 3), 1, (1, 1)), channels, num_embeddings)

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = stft(x, self.n_fft, self.hop_length, self.win_length, window=self.window).abs()
        features = self.stack(spec)
        return self.head(features[-1], condition), features


class MultiResolutionDiscriminator(nn.Module):
    """UnivNet's multi-resolution discriminator over STFT magnitudes, as Vocos 0.0.x and WavTokenizer use.

    Args:
        resolutions: ``(n_fft, hop_length, win_length)`` per sub-discriminator.
        in_channels: audio channels (each gets its own spectrogram; they are the conv's input channels).
        channels: width of every conv.
        negative_slope: of the LeakyReLUs.
        num_embeddings: optional projection conditioning, see `MultiPeriodDiscriminator`.
        window: ``"rect"`` as upstream (whose comment notes that a rectangular window works here), or
            ``"hann"``.
    """

    def __init__(
        self,
        resolutions: Sequence[tuple[int, int, int]] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)),
        *,
        in_channels: int = 1,
        channels: int = 64,
        negative_slope: float = 0.1,
        num_embeddings: int | None = None,
        window: str = "rect",
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            _ResolutionDiscriminator(tuple(r), in_channels, channels, negative_slope, num_embeddings, window)
            for r in resolutions
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> DiscriminatorOutput:
        """``x``: audio ``[B, C, T]`` (or ``[B, T]``); ``condition``: ids ``[B]`` or one id for the batch."""
        x = _as_audio(x)
        return _gather(d(x, condition) for d in self.discriminators)


class _BandDiscriminator(nn.Module):
    """Complex spectrogram (real and imaginary parts as channels) split into frequency bands, each with
    its own conv stack, so low and high bands do not share filters; one head over the re-joined bands.
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        bands: Sequence[tuple[float, float]],
        in_channels: int,
        channels: int,
        negative_slope: float,
        num_embeddings: int | None,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        n_bins = n_fft // 2 + 1
        self.bands = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]

        def conv_stack() -> _LeakyStack:
            # (in, out, kernel, stride, padding) over (time, frequency): only frequency is strided
            layers = [
                (2 * in_channels, channels, (3, 9), (1, 1), (1, 4)),
                *[(channels, channels, (3, 9), (1, 2), (1, 4))] * 3,
                (channels, channels, (3, 3), (1, 1), (1, 1)),
            ]
            return _LeakyStack([_conv2d(*layer) for layer in layers], negative_slope)

        self.band_stacks = nn.ModuleList(conv_stack() for _ in self.bands)
        self.head = _LogitHead(_conv2d(channels, 1, (3, 3), 1, (1, 1)), channels, num_embeddings)

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = stft(x, self.n_fft, self.hop_length)  # [B, C, F, frames]
        spec = torch.cat([spec.real, spec.imag], dim=1).transpose(-1, -2)  # [B, 2C, frames, F]
        features, band_outputs = [], []
        for (lo, hi), stack in zip(self.bands, self.band_stacks, strict=True):
            activations = stack(spec[..., lo:hi])
            features += activations
            band_outputs.append(activations[-1])
        return self.head(torch.cat(band_outputs, dim=-1), condition), features


class MultiBandResolutionDiscriminator(nn.Module):
    """DAC's multi-resolution discriminator: complex STFTs at several window sizes, split into bands.

    Args:
        fft_sizes: window (= FFT) length per sub-discriminator; hop is ``hop_factor`` of it.
        bands: frequency bands as fractions of the ``n_fft // 2 + 1`` bins.
        in_channels: audio channels.
        channels: width of every conv.
        negative_slope: of the LeakyReLUs.
        num_embeddings: optional projection conditioning, see `MultiPeriodDiscriminator`.
        remove_dc_and_normalize: DAC and Vocos both remove DC and peak-normalise to 0.8 first.

    Framing is ``torch.stft(center=True)`` with a Hann window, as Vocos; DAC's ``match_stride`` framing
    drops two frames at each end.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (2048, 1024, 512),
        *,
        hop_factor: float = 0.25,
        bands: Sequence[tuple[float, float]] = DAC_BANDS,
        in_channels: int = 1,
        channels: int = 32,
        negative_slope: float = 0.1,
        num_embeddings: int | None = None,
        remove_dc_and_normalize: bool = True,
    ) -> None:
        super().__init__()
        self.remove_dc_and_normalize = remove_dc_and_normalize
        self.discriminators = nn.ModuleList(
            _BandDiscriminator(
                n, int(n * hop_factor), bands, in_channels, channels, negative_slope, num_embeddings
            )
            for n in fft_sizes
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> DiscriminatorOutput:
        """``x``: audio ``[B, C, T]`` (or ``[B, T]``); ``condition``: ids ``[B]`` or one id for the batch."""
        x = _as_audio(x)
        if self.remove_dc_and_normalize:
            x = _remove_dc_and_peak_normalize(x)
        return _gather(d(x, condition) for d in self.discriminators)


class _STFTDiscriminator(nn.Module):
    """EnCodec's sub-discriminator: complex STFT ``[B, 2C, frames, F]`` through convs that dilate along time
    and stride along frequency.
    """

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        *,
        in_channels: int,
        out_channels: int,
        filters: int,
        max_filters: int,
        filters_scale: int,
        kernel_size: tuple[int, int],
        dilations: Sequence[int],
        stride: tuple[int, int],
        normalized: bool,
        negative_slope: float,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.normalized = normalized
        widths = [min(filters * filters_scale**i, max_filters) for i in range(len(dilations) + 2)]
        square = (kernel_size[0], kernel_size[0])
        # NOTE: upstream's first conv has no weight norm (its NormConv2d defaults to norm='none').
        convs = [
            _conv2d(2 * in_channels, widths[0], kernel_size, 1, _same_padding(kernel_size), weight_norm=False)
        ]
        for i, d in enumerate(dilations):
            padding = _same_padding(kernel_size, (d, 1))
            convs.append(_conv2d(widths[i], widths[i + 1], kernel_size, stride, padding, dilation=(d, 1)))
        convs.append(_conv2d(widths[-2], widths[-1], square, 1, _same_padding(square)))
        self.stack = _LeakyStack(convs, negative_slope)
        self.to_logits = _conv2d(widths[-1], out_channels, square, 1, _same_padding(square))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = stft(
            x, self.n_fft, self.hop_length, self.win_length, center=False, normalized=self.normalized
        )  # [B, C, F, frames]
        spec = torch.cat([spec.real, spec.imag], dim=1).transpose(-1, -2)  # [B, 2C, frames, F]
        features = self.stack(spec)
        return self.to_logits(features[-1]), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's multi-scale STFT discriminator (MS-STFT).

    Inputs must be at least ``max(win_lengths)`` samples long (the STFT is not centred, as upstream).

    Args:
        n_ffts, hop_lengths, win_lengths: STFT settings per sub-discriminator (EnCodec's five scales).
        filters: conv width; ``filters_scale`` grows it per layer, capped at ``max_filters``.
        in_channels, out_channels: audio channels; logit channels.
        kernel_size, stride: of the convs over (time, frequency); stride only along frequency.
        dilations: time dilations of the strided convs.
        normalized: divide the STFT by the window's L2 norm.
        negative_slope: of the LeakyReLUs (EnCodec's training config uses 0.3, the class default is 0.2).
    """

    def __init__(
        self,
        n_ffts: Sequence[int] = (1024, 2048, 512, 256, 128),
        hop_lengths: Sequence[int] = (256, 512, 128, 64, 32),
        win_lengths: Sequence[int] = (1024, 2048, 512, 256, 128),
        *,
        filters: int = 32,
        in_channels: int = 1,
        out_channels: int = 1,
        max_filters: int = 1024,
        filters_scale: int = 1,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: Sequence[int] = (1, 2, 4),
        stride: tuple[int, int] = (1, 2),
        normalized: bool = True,
        negative_slope: float = 0.3,
    ) -> None:
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.discriminators = nn.ModuleList(
            _STFTDiscriminator(
                n_fft,
                hop,
                win,
                in_channels=in_channels,
                out_channels=out_channels,
                filters=filters,
                max_filters=max_filters,
                filters_scale=filters_scale,
                kernel_size=tuple(kernel_size),
                dilations=dilations,
                stride=tuple(stride),
                normalized=normalized,
                negative_slope=negative_slope,
            )
            for n_fft, hop, win in zip(n_ffts, hop_lengths, win_lengths, strict=True)
        )

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        """``x``: audio ``[B, C, T]`` (or ``[B, T]``)."""
        x = _as_audio(x)
        return _gather(d(x) for d in self.discriminators)


class CombinedDiscriminator(nn.Module):
    """Several discriminators judged as one: their outputs are merged, so GAN and feature-matching losses
    average over every sub-discriminator of every member (WavTokenizer's MPD + MRD + DAC's MPD and band
    MRD), and one optimizer trains them all.

    ``gan_losses`` names each member's GAN loss (``None``: the trainer's ``gan_loss``); WavTokenizer
    judges its own MPD and MRD with hinge losses and DAC's pair with least squares.
    """

    def __init__(
        self, discriminators: Sequence[nn.Module], gan_losses: Sequence[str | None] | None = None
    ) -> None:
        super().__init__()
        if not discriminators:
            raise ValueError("CombinedDiscriminator needs at least one discriminator")
        if gan_losses is not None and len(gan_losses) != len(discriminators):
            raise ValueError(f"{len(gan_losses)} GAN losses named for {len(discriminators)} discriminators")
        if gan_losses is not None:
            from ..losses.gan import gan_loss

            for name in gan_losses:
                if name is not None:
                    gan_loss(name)  # an unknown name fails here, not at the first GAN step
        self.discriminators = nn.ModuleList(discriminators)
        self.gan_losses = None if gan_losses is None else list(gan_losses)

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        names = self.gan_losses or [None] * len(self.discriminators)
        return DiscriminatorOutput.merge(
            *(d(x).judged_with(name) for d, name in zip(self.discriminators, names, strict=True))
        )
