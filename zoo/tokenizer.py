"""The contract every zoo tokenizer follows, whatever its modality.

``encode(x) -> Tokens`` and ``decode(tokens) -> x`` are the inference API; ``forward(x)`` is the
training step's model call and returns reconstruction, losses and statistics. Constructor arguments
must be JSON-serialisable primitives: they are captured automatically and become ``config.json``, so a
saved model can be rebuilt from its config alone (as with huggingface_hub's ``PyTorchModelHubMixin``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import MediaError
from .model import ZooModel
from .tokens import Tokens


@dataclass
class TokenizerOutput:
    """What ``forward`` returns during training.

    ``losses`` uses stable keys (``rec/l1``, ``vq/commit``, ...) that recipes weight by name;
    ``stats`` holds detached diagnostics (codebook usage, perplexity) for logging.
    ``target`` is what ``recon`` reconstructs when that is not the input itself (TFM-Tokenizer
    reconstructs a magnitude spectrogram); ``None`` means the input.
    ``judged`` lists reconstructions that are scored and judged instead of ``recon`` alone, each with
    the member of a keyed discriminator that judges it (KARL's two passes, one discriminator per
    token-count bucket); ``recon`` is then only logged. ``recon`` is ``None`` for a model scored by its
    own losses alone (SEED without a pixel decoder, whose output is an embedding).
    """

    recon: torch.Tensor | None
    ids: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    target: torch.Tensor | None = None
    judged: list[tuple[torch.Tensor, int]] | None = None


class Tokenizer(ZooModel):
    """Base class of every tokenizer.

    Subclasses set ``modality`` and implement ``encode``, ``decode`` and ``forward`` plus the token
    spec properties. ``arch`` is the registry name the model was created under (set by the factory),
    and goes into ``config.json`` as ``architecture``; config capture, saving and loading come from
    `ZooModel`, which generators share.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = ["encode", "encode_windows", "decode"]
        if "encode_windows" in cls.__dict__ and "encode" in cls.__dict__:
            # A windowing encode (EEG) normalises the float32 recording and encode_windows casts the
            # normalised windows; a recording cast before normalising loses its signal under a DC offset
            # in bf16's 8 bits, and overflows fp16 from 65504 uV.
            names.remove("encode")
        for name in names:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_zoo_casts_inputs", False):
                setattr(cls, name, _casting_inputs(method))

    @property
    def compute_dtype(self) -> torch.dtype | None:
        """The floating dtype of the weights (``zoo.load(..., dtype=torch.bfloat16)``); inputs are cast to it."""
        for tensor in self.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return None

    # ------------------------------------------------------------------ token spec
    @property
    def codebook_size(self) -> int | None:
        return self.codebook_sizes[0] if self.codebook_sizes else None

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def bits_per_token(self) -> float:
        """Bits carried by the ids at one token position (summed over codebooks)."""
        return sum(math.log2(c) for c in self.codebook_sizes)

    # ------------------------------------------------------------------ API
    def encode(self, x: torch.Tensor) -> Tokens:
        raise NotImplementedError

    def decode(self, tokens: Tokens) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, media: Any, *, path: str | Path | None = None) -> torch.Tensor:
        """Turn one item read by ``zoo.io`` into a batch of one that ``encode`` accepts."""
        raise NotImplementedError

    def finish(self, decoded: torch.Tensor, tokens: Tokens) -> Any:
        """Turn one decoded item (batch of one) back into media that ``zoo.io`` can write."""
        raise NotImplementedError

    def media_meta(self, media: Any, **options: Any) -> dict[str, Any]:
        """Facts about one input file, given the ``prepare`` options, that ``finish`` needs back and
        ``encode`` cannot see (EEG channel names); ``zoo encode`` stores them in ``Tokens.meta``."""
        return {}

    def make_tokens(self, **fields: Any) -> Tokens:
        """A ``Tokens`` stamped with this model's source and revision, so token files say what made them."""
        return Tokens(
            model=getattr(self, "source", self.arch), revision=getattr(self, "revision", None), **fields
        )

    def decodable_ids(self, tokens: Tokens, grid_dims: int, *, allow_padding: bool = False) -> torch.Tensor:
        """``tokens.ids`` on this model's device, after :meth:`check_token_layout` and :meth:`check_id_range`."""
        self.check_token_layout(tokens, grid_dims)
        return self.check_id_range(tokens.ids.to(self.device), allow_padding=allow_padding)

    def check_token_layout(self, tokens: Tokens, grid_dims: int) -> None:
        """Reject continuous tokens, other codebooks and a grid of the wrong rank before decoding."""
        if (
            tokens.ids is None
            or tokens.codebook_sizes != self.codebook_sizes
            or len(tokens.grid) != grid_dims
        ):
            raise ValueError(
                f"{type(self).__name__} decodes a {grid_dims}-D grid of ids over {self.codebook_sizes[0]} codes; "
                f"got grid {tokens.grid} with codebooks {tokens.codebook_sizes}"
            )

    def check_id_range(self, ids: torch.Tensor, *, allow_padding: bool = False) -> torch.Tensor:
        """``ids`` unchanged if every one is a code (or -1 with ``allow_padding``); a ValueError otherwise."""
        lowest = -1 if allow_padding else 0
        size = self.codebook_sizes[0]
        bad = (ids < lowest) | (ids >= size)
        if bool(bad.any()):
            first = int(ids[bad].flatten()[0])
            where = tuple(int(i) for i in bad.nonzero()[0])
            hint = " (-1 is padding, which cannot be decoded)" if first == -1 else ""
            raise ValueError(
                f"{int(bad.sum())} id(s) outside the codebook of {size} codes, e.g. {first} at {where}{hint}"
            )
        return ids

    def training_output(self, x: torch.Tensor, step: int) -> TokenizerOutput:
        """The training forward pass at iteration ``step``; models with phased or masked training
        (two-phase KARL, masked TFM) override this instead of copying the trainer."""
        return self(x)

    def last_layer(self) -> torch.Tensor | None:
        """Weight of the decoder's output layer, for VQGAN's adaptive GAN weight (``None``: unused)."""
        return None


def _casting_inputs(method: Any) -> Any:
    """``method`` with floating tensor inputs (or a ``Tokens``' latents) cast to the model's dtype first, so
    a model loaded in bf16 or fp16 takes ``prepare``'s float32 output as it is."""

    @functools.wraps(method)
    def casting(self: Tokenizer, x: Any, *args: Any, **kwargs: Any) -> Any:
        dtype = self.compute_dtype
        if dtype is not None and dtype != torch.float32:
            if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype:
                x = x.to(dtype)
            elif isinstance(x, Tokens) and x.latents is not None and x.latents.dtype != dtype:
                x = dataclasses.replace(x, latents=x.latents.to(dtype))
        return method(self, x, *args, **kwargs)

    casting._zoo_casts_inputs = True  # type: ignore[attr-defined]
    return casting


def check_finite(x: torch.Tensor, what: str = "input") -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or infinite values")


class ImageTokenizer(Tokenizer):
    """Image tokenizers: inputs and outputs are ``[B, C, H, W]`` floats in ``[0, 1]``.

    The networks themselves mostly work in ``[-1, 1]`` (as upstream); conversion happens at the
    boundary so that every image model shares ``zoo.io``'s convention.
    """

    modality = "image"
    resolution: int = 256
    in_channels: int = 3
    downsample: int = 16
    # How ``prepare`` brings a photo to ``resolution``: "adm" (ADM's centre crop: box halving, PIL
    # bicubic, centre square; what LlamaGen, MAR, ReTok and ResTok tokenize with) or "bicubic" (one
    # antialiased float bicubic resize; the zoo's original behaviour). Each model sets its upstream's.
    resize: str = "bicubic"

    @property
    def input_spec(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "channels": self.in_channels,
            "value_range": [0.0, 1.0],
            "multiple_of": self.downsample,
        }

    def grid_for(self, height: int, width: int) -> tuple[int, int]:
        return height // self.downsample, width // self.downsample

    def token_layout(self) -> dict[str, Any]:
        grid = self.grid_for(self.resolution, self.resolution)
        return {
            "grid": list(grid),
            "tokens_per_item": math.prod(grid) * max(self.num_codebooks, 1),
            "codebook_sizes": list(self.codebook_sizes),
            "bits_per_token": self.bits_per_token,
            "downsample": self.downsample,
            "resolution": self.resolution,
        }

    def check_images(self, x: torch.Tensor) -> None:
        """Reject inputs the network would silently mangle."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images [B, {self.in_channels}, H, W] in [0, 1], got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        if h % self.downsample or w % self.downsample:
            raise ValueError(
                f"image size {h}x{w} is not a multiple of the downsampling factor {self.downsample}; "
                f"resize or crop it (zoo encode --resolution does this)"
            )
        check_finite(x, "image")

    def prepare(
        self,
        media: torch.Tensor,
        *,
        path: str | Path | None = None,
        resolution: int | None = 0,
        resize: str | None = None,
    ) -> torch.Tensor:
        """Resize and centre-crop to a ``resolution`` square (default: the native one).

        ``resize`` (default: the model's ``resize`` attribute) picks the filter: ``"adm"`` is ADM's
        centre crop as upstream tokenization scripts run it (PIL box halving, PIL bicubic, centre
        square), bit-identical to them for 8-bit images (what ``zoo.io.read_image`` returns);
        ``"torchvision"`` is torchvision's ``Resize(S, BICUBIC)`` + ``CenterCrop(S)`` on the PIL image
        (KARL's and MAGE's VQGAN's), likewise bit-identical for 8-bit images; ``"bicubic"`` is one
        antialiased float bicubic resize of the short side. ``resolution=None``
        keeps the size, cropping only to a multiple of the downsampling factor. ``media`` may also be
        uint8 (``read_image(..., keep_uint8=True)``, as ``zoo encode`` reads): the same result, and a
        large image is shrunk before any float copy of it is made.
        """
        from .io.image import CENTER_CROPS, RESIZE_MODES, unit_float

        if media.ndim != 3 or media.shape[0] != self.in_channels:
            raise MediaError(
                path, f"expected a {self.in_channels}-channel image, got shape {tuple(media.shape)}"
            )
        mode = resize or self.resize
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
        x = media[None]
        if resolution is None:
            h, w = (s // self.downsample * self.downsample for s in x.shape[-2:])
            if h == 0 or w == 0:
                raise MediaError(
                    path, f"image {tuple(x.shape[-2:])} is smaller than one {self.downsample}px token"
                )
            top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
            return unit_float(x[..., top : top + h, left : left + w])
        size = resolution or self.resolution
        if size % self.downsample:
            raise ValueError(f"resolution {size} is not a multiple of {self.downsample}")
        return CENTER_CROPS[mode](media, size)[None]

    def finish(self, decoded: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        return decoded[0].clamp(0, 1)


class SignalTokenizer(Tokenizer):
    """Tokenizers of sampled signals (audio, EEG): one token position every ``hop_length`` samples at
    ``sample_rate``, so the rates follow from the two."""

    sample_rate: float = 24000
    hop_length: int = 320

    @property
    def tokens_per_second(self) -> float:
        """Token positions per second of one channel (each position carries one id per codebook)."""
        return self.sample_rate / self.hop_length

    @property
    def bits_per_second(self) -> float:
        """Bits per second of one channel."""
        return self.tokens_per_second * self.bits_per_token


class AudioTokenizer(SignalTokenizer):
    """Audio tokenizers: inputs and outputs are ``[B, channels, T]`` floats, nominally in ``[-1, 1]``.

    Encoders downsample by ``hop_length``: inputs are zero-padded at the end to a multiple of it
    (``pad_to_hop``; a model whose upstream pads otherwise does as upstream, e.g. WavTokenizer's convs
    reflect-pad inside), and ``decode`` trims back to the length recorded in
    ``Tokens.meta["num_samples"]``, so a clip of any length round-trips to its own length. ``prepare`` resamples and down- or up-mixes whatever a file
    holds to the model's native rate and channel count.
    """

    modality = "audio"
    sample_rate: int = 24000
    channels: int = 1
    hop_length: int = 320
    # inference on longer clips runs this much audio per call (``zoo.nn.chunking``), so memory stays flat
    chunk_seconds: float = 10.0

    @property
    def chunk_frames(self) -> int:
        """Token frames per inference chunk (``chunk_seconds`` of audio)."""
        return max(1, round(self.chunk_seconds * self.sample_rate / self.hop_length))

    @property
    def input_spec(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "value_range": [-1.0, 1.0],
            "multiple_of": self.hop_length,
        }

    def token_layout(self) -> dict[str, Any]:
        return {
            "tokens_per_second": self.tokens_per_second,
            "tokens_per_item": math.ceil(self.tokens_per_second) * max(self.num_codebooks, 1),
            "codebook_sizes": list(self.codebook_sizes),
            "bits_per_token": self.bits_per_token,
            "bits_per_second": self.bits_per_second,
            "hop_length": self.hop_length,
            "sample_rate": self.sample_rate,
        }

    def check_audio(self, x: torch.Tensor) -> None:
        """Reject inputs the network would silently mangle."""
        if x.ndim != 3 or x.shape[1] != self.channels or x.shape[-1] == 0:
            raise ValueError(
                f"expected audio [B, {self.channels}, T] at {self.sample_rate} Hz with T > 0, got shape "
                f"{tuple(x.shape)}; use prepare() to resample and mix down"
            )
        check_finite(x, "audio")

    def pad_to_hop(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad the end of ``x`` to a whole number of hops (silence, which every codec has seen)."""
        return F.pad(x, (0, -x.shape[-1] % self.hop_length))

    def trim(self, decoded: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        """Cut the decode of padded input back to the original length, when the tokens record it."""
        length = tokens.meta.get("num_samples")
        return decoded if length is None else decoded[..., : int(length)]

    def prepare(
        self,
        media: tuple[torch.Tensor, int] | torch.Tensor,
        *,
        path: str | Path | None = None,
        sample_rate: int | None = None,
    ) -> torch.Tensor:
        """``(wav [C, T], rate)`` as ``zoo.io`` reads it (or a tensor plus ``sample_rate``) -> ``[1, C', T']``.

        Channels are averaged to mono (or mono duplicated) and the rate is converted to the model's.
        """
        from .io.audio import resample

        if isinstance(media, tuple):
            media, sample_rate = media
        if sample_rate is None:
            raise MediaError(path, "the audio's sample rate is needed to resample it")
        wav = media if media.ndim == 2 else media.reshape(1, -1)
        if wav.ndim != 2 or wav.shape[-1] == 0:
            raise MediaError(path, f"expected audio [C, T] with T > 0, got shape {tuple(media.shape)}")
        if wav.shape[0] != self.channels:
            if self.channels == 1:
                wav = wav.mean(0, keepdim=True)
            elif wav.shape[0] == 1:
                wav = wav.repeat(self.channels, 1)
            else:
                raise MediaError(path, f"cannot map {wav.shape[0]} channels onto {self.channels}")
        return resample(wav.float(), int(sample_rate), self.sample_rate)[None]

    def finish(self, decoded: torch.Tensor, tokens: Tokens) -> tuple[torch.Tensor, int]:
        return decoded[0].clamp(-1, 1), self.sample_rate


class EEGTokenizer(SignalTokenizer):
    """EEG tokenizers: channel-agnostic models that tokenize every channel of every window on its own.

    ``encode(x)`` takes a recording batch ``[B, C, T]`` at ``sample_rate`` in any unit (microvolts as
    ``zoo.io.read_eeg`` returns them), cuts it into windows of ``window_samples`` stepping by
    ``window_stride(overlap)`` (the end zero-padded to a whole window, or dropped with
    ``drop_partial=True`` as upstream data scripts do), normalises (``normalisation``, see
    ``zoo.io.eeg.channel_statistics``, over each channel of the whole recording, or of each window on
    its own when ``normalise_windows``: TFM-Tokenizer's loaders scale every window by its own percentile),
    and hands ``[N, 1, window_samples]`` to the subclass's :meth:`encode_windows`, ``window_batch``
    windows per call so memory stays flat in the recording's length. The offsets and gains (``[B, C]``,
    or ``[B, C, W]`` per window) travel in ``Tokens.side`` so decoding restores the units. Ids are
    ``[B, (K,) C, W, F]`` with grid ``(channels, windows, frames)``. ``decode`` runs
    :meth:`decode_windows`, undoes the normalisation, overlap-adds the windows with linear cross-fades and
    trims to the recording's length, so ``decode(encode(x))`` has ``x``'s shape and units. ``forward``
    (training) works on single windows ``[B, 1, window_samples]`` that are already normalised, as
    ``EEGDataModule(per_channel=True)`` gives.

    ``prepare`` maps a ``zoo.io.EEGRecording`` of any montage to the model: channels picked by name,
    resampled to ``sample_rate``, and rejected with a message naming the file and channels when a channel
    is flat, non-finite or clipped (saturated at its extreme value).
    """

    modality = "eeg"
    sample_rate: float = 250.0
    window_samples: int = 1250
    hop_length: int = 12
    normalisation: str = "zscore"
    normalise_windows: bool = False  # statistics per window (TFM-Tokenizer) instead of per recording
    norm_eps: float | None = None  # added to the gain; None: upstream's for the normalisation
    clip: float | None = None
    window_batch: int = 256  # windows x channels per encode_windows / decode_windows call
    statistics_samples: int = 1 << 22  # samples per channel_statistics call over whole channels

    # ------------------------------------------------------------------ subclass contract
    @property
    def frames_per_window(self) -> int:
        """Token frames per window and channel (``F``)."""
        return math.ceil(self.window_samples / self.hop_length)

    def encode_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised single-channel windows ``[N, 1, window_samples]`` -> ids ``[N, F]`` or ``[N, K, F]``."""
        raise NotImplementedError

    def decode_windows(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids from :meth:`encode_windows` -> normalised windows ``[N, 1, window_samples]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ spec
    @property
    def input_spec(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "channels": "any",
            "window_samples": self.window_samples,
            "normalisation": self.normalisation,
        }

    def token_layout(self) -> dict[str, Any]:
        return {
            "frames_per_window": self.frames_per_window,
            "tokens_per_window": self.frames_per_window * max(self.num_codebooks, 1),
            "window_seconds": self.window_samples / self.sample_rate,
            "tokens_per_second": self.tokens_per_second,
            "codebook_sizes": list(self.codebook_sizes),
            "bits_per_token": self.bits_per_token,
            "bits_per_second": self.bits_per_second,
            "per": "channel",
            "sample_rate": self.sample_rate,
        }

    # ------------------------------------------------------------------ windows
    def window_stride(self, overlap: float = 0.0) -> int:
        """Samples between window starts for a fractional ``overlap`` in ``[0, 1)``."""
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
        return max(1, round(self.window_samples * (1.0 - overlap)))

    def _window_count(self, length: int, stride: int) -> int:
        return 1 + math.ceil(max(length - self.window_samples, 0) / stride)

    def to_windows(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        """``[B, C, T]`` -> ``[B, C, W, window_samples]``, the end zero-padded to cover every sample."""
        count = self._window_count(x.shape[-1], stride)
        padded = F.pad(x, (0, (count - 1) * stride + self.window_samples - x.shape[-1]))
        return padded.unfold(-1, self.window_samples, stride)

    def from_windows(self, windows: torch.Tensor, stride: int, length: int) -> torch.Tensor:
        """Overlap-add ``[B, C, W, L]`` with linear cross-fades over the overlaps -> ``[B, C, length]``.

        Each window's weight ramps over the overlap at both ends and the sum is divided by the total
        weight, so a sample covered by one window is that window's value exactly.
        """
        b, c, count, size = windows.shape
        fade = size - stride
        weight = torch.ones(size, dtype=windows.dtype, device=windows.device)
        if fade > 0 and count > 1:
            ramp = (torch.arange(size, dtype=windows.dtype, device=windows.device) + 0.5) / fade
            weight = torch.minimum(weight, torch.minimum(ramp, ramp.flip(0)))
        total = (count - 1) * stride + size
        cols = (windows * weight).reshape(b * c, count, size).transpose(1, 2)
        summed = F.fold(cols, (1, total), (1, size), stride=(1, stride))
        norm = F.fold(weight[None, :, None].expand(1, size, count), (1, total), (1, size), stride=(1, stride))
        return (summed / norm).reshape(b, c, total)[..., :length]

    # ------------------------------------------------------------------ normalisation
    def channel_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(offset, gain)`` ``[...]`` of ``x [..., T]`` (channels or windows) for ``normalisation``."""
        from .io.eeg import channel_statistics

        return channel_statistics(x, self.normalisation, self.norm_eps)

    def side_statistics(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(offset, gain)`` that ``encode`` put in ``tokens.side``: ``[B, C]`` per channel or
        ``[B, C, W]`` per window. Without them a decode would come out in normalised units, silently
        wrong by each channel's scale, so tokens that lack them (or carry a non-positive gain) are refused."""
        b, (c, count, _) = len(tokens), tokens.grid
        stats = []
        for name in ("offset", "gain"):
            value = tokens.side.get(name)
            if value is None:
                raise ValueError(
                    f"EEG tokens carry no {name!r} (Tokens.side); it restores each channel's units on decode, "
                    "so these tokens were not made by encode or lost it on the way"
                )
            if tuple(value.shape) not in ((b, c), (b, c, count)):
                raise ValueError(
                    f"side[{name!r}] has shape {tuple(value.shape)}, expected [{b}, {c}(, {count})]"
                )
            stats.append(value)
        if bool((stats[1] <= 0).any()):
            raise ValueError("side['gain'] must be positive")
        return stats[0], stats[1]

    def normalise(self, x: torch.Tensor, offset: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        out = (x - offset[..., None]) / gain[..., None]
        return out if self.clip is None else out.clamp(-self.clip, self.clip)

    # ------------------------------------------------------------------ API
    def check_eeg(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"expected EEG [B, C, T] at {self.sample_rate:g} Hz with C, T > 0, got shape {tuple(x.shape)}; "
                "use prepare() to pick channels and resample a recording"
            )
        check_finite(x, "EEG")

    def _window_calls(self, rows: int, count: int) -> Iterator[list[tuple[int, int, int]]]:
        """The windows of each ``encode_windows``/``decode_windows`` call as ``(row, first, end)`` runs of
        window indices: ``window_batch`` windows at a time, row (batch item x channel) after row, so only
        one call's windows exist at once and every call sees the same windows whatever the length."""
        total = rows * count
        for start in range(0, total, self.window_batch):
            stop, runs = min(start + self.window_batch, total), []
            while start < stop:
                row, first = divmod(start, count)
                end = min(count, first + stop - start)
                runs.append((row, first, end))
                start += end - first
            yield runs

    def _statistics_by_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`channel_statistics` of ``rows [R, T]``, a few rows at a time: the median and percentile
        statistics copy what they are given several times over, so a whole recording at once would
        cost several times its size."""
        step = max(1, self.statistics_samples // max(rows.shape[-1], 1))
        parts = [self.channel_statistics(rows[i : i + step].float()) for i in range(0, rows.shape[0], step)]
        return torch.cat([o for o, _ in parts]), torch.cat([g for _, g in parts])

    @torch.no_grad()
    def encode(self, x: torch.Tensor, *, overlap: float = 0.0, drop_partial: bool = False) -> Tokens:
        """Recordings ``[B, C, T]`` -> ids ``[B, (K,) C, W, F]`` (see the class docstring).

        ``drop_partial`` leaves out the samples after the last whole window instead of zero-padding them
        into one more window (upstream's data scripts keep whole windows only); ``decode`` then returns
        the covered length. Windows are cut, normalised and tokenized ``window_batch`` at a time, so
        beyond the input and the ids, memory does not grow with the recording's length.
        """
        self.check_eeg(x)
        b, c, length = x.shape
        stride, size = self.window_stride(overlap), self.window_samples
        rows = x.reshape(b * c, length)
        if not self.normalise_windows:  # statistics of the whole recording, tail included (as upstream)
            offset, gain = self._statistics_by_rows(rows)
        if drop_partial:
            if length < size:
                raise ValueError(
                    f"drop_partial needs at least one whole window of {size} samples, got {length}"
                )
            length = (length - size) // stride * stride + size
        count = self._window_count(length, stride)
        if self.normalise_windows:  # one (offset, gain) per window, filled in as the windows are cut
            offset, gain = (rows.new_empty(b * c, count, dtype=torch.float32) for _ in range(2))
        ids = by_window = None
        for runs in self._window_calls(b * c, count):
            pieces = []
            for row, first, end in runs:
                start = first * stride
                signal = rows[row, start : min((end - 1) * stride + size, length)].float()
                if not self.normalise_windows:
                    signal = self.normalise(signal, offset[row], gain[row])
                signal = F.pad(signal, (0, (end - 1 - first) * stride + size - signal.shape[-1]))
                windows = signal.unfold(-1, size, stride)  # the recording's end zero-padded, as to_windows
                if self.normalise_windows:
                    offset[row, first:end], gain[row, first:end] = self.channel_statistics(windows)
                    windows = self.normalise(windows, offset[row, first:end], gain[row, first:end])
                pieces.append(windows)
            out = self.encode_windows(torch.cat(pieces)[:, None].to(self.device))  # [N, (K,) F]
            if ids is None:  # laid out [B, (K,) C, W, F] from the start, so nothing is permuted or copied
                k = out.shape[1:-1]
                ids = out.new_empty((b, *k, c, count, out.shape[-1]))
                by_window = ids.permute(0, 2, 3, 1, 4) if k else ids  # [B, C, W, (K,) F] view
            done = 0
            for row, first, end in runs:
                by_window[row // c, row % c, first:end] = out[done : done + end - first]
                done += end - first
        if self.normalise_windows:
            offset, gain = offset.reshape(b, c, count), gain.reshape(b, c, count)
        else:
            offset, gain = offset.reshape(b, c), gain.reshape(b, c)
        return self.make_tokens(
            ids=ids,
            grid=(c, count, ids.shape[-1]),
            codebook_sizes=self.codebook_sizes,
            side={"offset": offset, "gain": gain},
            meta={
                "num_samples": length,
                "sample_rate": self.sample_rate,
                "window_samples": size,
                "window_stride": stride,
            },
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Tokens from :meth:`encode` -> recordings ``[B, C, T]`` in the input's units.

        Windows are decoded ``window_batch`` at a time and blended into the output as soon as every
        window that covers a stretch of it is decoded, so beyond the ids and the output, memory does not
        grow with the recording's length; the result is what :meth:`from_windows` gives for all windows.
        """
        ids = self.decodable_ids(tokens, 3)
        c, count, _ = tokens.grid
        by_window = ids.permute(0, 2, 3, 1, 4) if ids.ndim == 5 else ids  # [B, C, W, (K,) F]
        b, size = ids.shape[0], self.window_samples
        stride = int(tokens.meta.get("window_stride", size))
        if not 1 <= stride <= size:
            raise ValueError(
                f"tokens' window_stride must lie in 1..{size} samples (window_samples), got {stride}"
            )
        total = (count - 1) * stride + size
        length = min(int(tokens.meta.get("num_samples", total)), total)
        if length < 1:
            raise ValueError(f"tokens' num_samples must be positive, got {tokens.meta['num_samples']}")
        offset, gain = self.side_statistics(tokens)
        per_window = gain.ndim == 3
        offset = offset.to(self.device, torch.float32).reshape(b * c, -1)
        gain = gain.to(self.device, torch.float32).reshape(b * c, -1)
        out = torch.empty(b * c, length, dtype=torch.float32, device=self.device)
        weight = torch.ones(size, dtype=torch.float32, device=self.device)  # from_windows' cross-fade
        fade = size - stride
        if fade > 0 and count > 1:
            ramp = (torch.arange(size, dtype=weight.dtype, device=weight.device) + 0.5) / fade
            weight = torch.minimum(weight, torch.minimum(ramp, ramp.flip(0)))
        held = out.new_empty(0, size)  # the current row's windows that are not yet fully blended
        first_held = written = 0  # window index of held[0]; samples of the current row in out
        for runs in self._window_calls(b * c, count):
            chunk = torch.cat([by_window[row // c, row % c, first:end] for row, first, end in runs])
            windows = self.decode_windows(chunk)
            windows = windows.reshape(windows.shape[0], -1)[:, :size].float()
            done = 0
            for row, first, end in runs:
                part = windows[done : done + end - first]
                done += end - first
                if per_window:  # per-window statistics: undone before the windows are blended
                    part = part * gain[row, first:end, None] + offset[row, first:end, None]
                if first == 0:  # a new row
                    held, first_held, written = part[:0], 0, 0
                held = torch.cat([held, part])
                # the samples before the next window's start: every window that covers them is held
                upto = min(length, total if end == count else end * stride)
                blended = self._overlap_add(held, weight, stride)
                block = blended[written - first_held * stride : upto - first_held * stride]
                if not per_window:
                    block = block * gain[row, 0] + offset[row, 0]
                out[row, written:upto] = block
                written = upto
                # keep the windows that reach past it (from ceil((upto - size + 1) / stride) on)
                keep = max(0, -(-(upto - size + 1) // stride) - first_held)
                held, first_held = held[keep:], first_held + keep
        return out.reshape(b, c, length)

    @staticmethod
    def _overlap_add(windows: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
        """Consecutive windows ``[N, L]`` weighted, summed where they overlap and divided by the summed
        weight: :meth:`from_windows`' fold, which adds each sample's windows in the same order."""
        count, size = windows.shape
        span = (count - 1) * stride + size
        cols = (windows * weight).t()[None]
        summed = F.fold(cols, (1, span), (1, size), stride=(1, stride))
        norm = F.fold(weight[None, :, None].expand(1, size, count), (1, span), (1, size), stride=(1, stride))
        return (summed / norm).reshape(span)

    def prepare(
        self,
        media: Any,
        *,
        path: str | Path | None = None,
        channels: list[str] | None = None,
    ) -> torch.Tensor:
        """An ``EEGRecording`` (any montage and rate) -> ``[1, C, T]`` at ``sample_rate``.

        ``channels`` picks and orders channels by name. Flat, non-finite or clipped channels raise a
        ``MediaError`` naming them; leave them out with ``channels``.
        """
        rec = self.checked_recording(media, path=path, channels=channels)
        if rec.sample_rate != self.sample_rate:
            rec = rec.resample(self.sample_rate)
        return rec.data[None]

    def checked_recording(
        self, media: Any, *, path: str | Path | None = None, channels: list[str] | None = None
    ) -> Any:
        """``media`` with ``channels`` picked, after rejecting flat, non-finite or clipped channels."""
        from .io.eeg import EEGRecording, bad_channels

        if not isinstance(media, EEGRecording):
            raise MediaError(path, f"expected an EEG recording, got {type(media).__name__}")
        rec = media.pick(channels) if channels else media
        path = path or rec.path
        problems = bad_channels(rec.data, rec.channel_names)
        if problems:
            listed = "; ".join(f"{name}: {why}" for name, why in problems.items())
            raise MediaError(path, f"unusable channel(s) {listed}; pick the others with channels=[...]")
        return rec

    def media_meta(self, media: Any, *, channels: list[str] | None = None, **_: Any) -> dict[str, Any]:
        """The recording's names of the channels ``prepare`` keeps, for ``finish`` to write back."""
        if not channels:
            return {"channel_names": list(media.channel_names)}
        return {"channel_names": media.stored_names(channels)}  # other-rate signals too, as pick finds them

    def finish(self, decoded: torch.Tensor, tokens: Tokens) -> Any:
        from .io.eeg import EEGRecording

        names = tokens.meta.get("channel_names") or [f"ch{i}" for i in range(decoded.shape[1])]
        return EEGRecording(
            decoded[0].float().cpu(), float(tokens.meta.get("sample_rate", self.sample_rate)), names
        )
