"""Frozen feature teachers: pretrained encoders whose features a tokenizer learns from but never trains.

ReasoningCodec (UniAudio 2.0) builds its token streams from Whisper-medium encoder features, the mean of
WavLM layers 6-9 and two layers of a BEST-RQ music SSL model. Those networks are big, separately licensed
and supplied by the user as local files; nothing here downloads anything. Every teacher:

- declares ``sample_rate`` (what it consumes), ``frame_rate`` (features per second), ``dim`` and the
  ``roles`` it serves (one feature map per role, e.g. a music SSL model serves ``acoustic`` and
  ``semantic`` from two of its layers in one pass);
- takes audio ``[B, 1, T]`` at the caller's rate (``forward(wav, sample_rate)``), resamples it, and returns
  ``{role: [B, dim, F]}`` with ``F = ceil(T_own / (sample_rate / frame_rate))`` frames;
- is permanently frozen: parameters never require grad, ``train()`` keeps it in eval mode and the forward
  pass runs under ``torch.no_grad()``.

Tokenizers keep teachers *outside* their module tree (see ReasoningCodec), so the weights a zoo model saves
or pushes are the codec's own, never a copy of Whisper or WavLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Frozen",
    "FrozenTeacher",
    "MelConvTeacher",
    "MusicSSLTeacher",
    "TeacherSet",
    "WavLMTeacher",
    "WhisperEncoderTeacher",
    "fit_frames",
]


def fit_frames(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Trim ``[B, C, F]`` to ``frames``, or repeat its last frame up to it (encoders differ by a frame or two
    at the end depending on their padding conventions)."""
    have = features.shape[-1]
    if have >= frames:
        return features[..., :frames]
    if have == 0:
        raise ValueError("teacher returned no frames")
    return torch.cat([features, features[..., -1:].expand(*features.shape[:-1], frames - have)], dim=-1)


class Frozen(nn.Module):
    """A module that never trains: no parameter requires grad and it stays in eval mode (dropout off,
    frozen norms) whatever its owner's mode. Base of every teacher, audio or image."""

    def freeze(self) -> Frozen:
        self.requires_grad_(False)
        nn.Module.train(self, False)
        return self

    def train(self, mode: bool = True) -> Frozen:
        return nn.Module.train(self, False)


class TeacherSet(dict):
    """Teachers by name, kept outside a tokenizer's module tree (so never saved with it) and shared, not
    copied, by deep copies of the tokenizer such as the trainer's EMA copy."""

    def __deepcopy__(self, memo: dict) -> TeacherSet:
        return self


class FrozenTeacher(Frozen):
    """Base class: a frozen encoder ``wav -> {role: [B, dim, F]}`` at ``frame_rate``."""

    sample_rate: int = 16000
    frame_rate: float = 50.0
    dim: int = 0
    roles: tuple[str, ...] = ()

    def num_frames(self, num_samples: int, sample_rate: int) -> int:
        """Frames this teacher yields for ``num_samples`` at ``sample_rate``."""
        return math.ceil(num_samples * self.frame_rate / sample_rate - 1e-9)

    def extract(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """``wav [B, T]`` at ``self.sample_rate`` -> ``{role: [B, dim, F]}``; implemented by each teacher."""
        raise NotImplementedError

    def forward(self, wav: torch.Tensor, sample_rate: int) -> dict[str, torch.Tensor]:
        if wav.ndim != 3 or wav.shape[1] != 1:
            raise ValueError(f"teachers take mono audio [B, 1, T], got shape {tuple(wav.shape)}")
        frames = self.num_frames(wav.shape[-1], sample_rate)
        with torch.no_grad():
            audio = wav[:, 0].float()
            if sample_rate != self.sample_rate:
                from ..io.audio import resample

                audio = resample(audio, sample_rate, self.sample_rate)
            out = self.extract(audio)
        missing = set(self.roles) - set(out)
        if missing:
            raise RuntimeError(f"{type(self).__name__} did not return {sorted(missing)}")
        return {role: fit_frames(out[role].float(), frames) for role in self.roles}


class MelConvTeacher(FrozenTeacher):
    """A small fixed feature extractor: log-mel at ``frame_rate`` then seeded random convolutions.

    Stands in for the pretrained teachers in tiny configurations (CPU tests, smoke runs): the features are
    deterministic functions of the audio that carry spectral content, so a codec trained to reconstruct
    them and to be conditioned by them learns something, yet nothing is downloaded. Role ``i`` reads the
    output of conv layer ``layers[i]`` (a deeper layer is "more semantic" only in name). The weights are
    regenerated from ``seed`` on construction, which is why they are buffers that are never saved.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        frame_rate: float,
        dim: int,
        roles: Sequence[str] = ("features",),
        layers: Sequence[int] | None = None,
        n_mels: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        hop = sample_rate / frame_rate
        if hop != int(hop):
            raise ValueError(f"frame_rate {frame_rate} does not divide sample_rate {sample_rate}")
        self.sample_rate, self.frame_rate, self.dim = sample_rate, float(frame_rate), dim
        self.roles = tuple(roles)
        self.layers = tuple(layers) if layers is not None else tuple(range(len(self.roles)))
        if len(self.layers) != len(self.roles):
            raise ValueError("one layer per role is needed")
        self.hop = int(hop)
        self.n_fft = 1 << max(self.hop * 2 - 1, 1).bit_length()
        import torchaudio

        fbanks = torchaudio.functional.melscale_fbanks(
            self.n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
        )
        g = torch.Generator().manual_seed(seed)
        weights, width = [], n_mels
        for _ in range(max(self.layers) + 1):
            weights.append(torch.randn(dim, width, 3, generator=g) / math.sqrt(3 * width))
            width = dim
        self.register_buffer("fbanks", fbanks, persistent=False)
        for i, w in enumerate(weights):
            self.register_buffer(f"conv{i}", w, persistent=False)
        self.depth = len(weights)
        self.freeze()

    def extract(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        window = torch.hann_window(2 * self.hop, device=wav.device)
        spec = torch.stft(
            wav, self.n_fft, self.hop, 2 * self.hop, window=window, center=True, return_complex=True
        ).abs()
        mel = torch.log(torch.einsum("bft,fm->bmt", spec.square(), self.fbanks).clamp_min(1e-5))
        h = (mel - mel.mean(1, keepdim=True)) / 4
        by_layer = []
        for i in range(self.depth):
            h = torch.tanh(F.conv1d(h, getattr(self, f"conv{i}"), padding=1))
            by_layer.append(h)
        return {role: by_layer[layer] for role, layer in zip(self.roles, self.layers, strict=True)}


def _require_transformers() -> object:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Whisper and WavLM teachers need `transformers`: pip install 'zoo[reasoning]'"
        ) from exc
    return transformers


def _local_dir(path: str | Path, what: str) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{what}: {directory} is not a directory (pass a local model folder)")
    return directory


class WhisperEncoderTeacher(FrozenTeacher):
    """The encoder of a Whisper checkpoint in a local ``transformers`` folder (Whisper-medium: 1024-dim, 50 Hz).

    Audio is resampled to 16 kHz, turned into log-mel by the folder's ``WhisperFeatureExtractor`` (which
    pads to 30 s, as Whisper expects) and cut into 30 s chunks for longer inputs; the encoder output of each
    chunk is trimmed to the chunk's real length. The folder needs ``config.json``, the weights and
    ``preprocessor_config.json``.
    """

    def __init__(self, path: str | Path, *, role: str = "whisper") -> None:
        super().__init__()
        transformers = _require_transformers()
        directory = _local_dir(path, "Whisper teacher")
        model = transformers.WhisperModel.from_pretrained(str(directory), local_files_only=True)
        self.encoder = model.get_encoder()
        self.processor = transformers.WhisperFeatureExtractor.from_pretrained(
            str(directory), local_files_only=True
        )
        self.sample_rate, self.frame_rate = 16000, 50.0
        self.dim = int(model.config.d_model)
        self.roles = (role,)
        self.chunk = int(self.processor.n_samples)
        self.freeze()

    def extract(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = []
        for start in range(0, wav.shape[-1], self.chunk):
            piece = wav[:, start : start + self.chunk]
            mel = self.processor([p.cpu().numpy() for p in piece], sampling_rate=16000, return_tensors="pt")[
                "input_features"
            ].to(wav.device, self.encoder.dtype)
            hidden = self.encoder(mel).last_hidden_state
            outputs.append(hidden[:, : math.ceil(piece.shape[-1] / 320)])
        return {self.roles[0]: torch.cat(outputs, 1).transpose(1, 2)}


class WavLMTeacher(FrozenTeacher):
    """A WavLM checkpoint in a local ``transformers`` folder; features are the mean of hidden states
    ``layers`` (upstream: 6-9, counting the CNN-projection output as 0), 768-dim at 50 Hz from 16 kHz.

    As upstream, 160 zero samples are appended so the last 20 ms frame is complete.
    """

    def __init__(
        self, path: str | Path, *, layers: Sequence[int] = (6, 7, 8, 9), role: str = "phone"
    ) -> None:
        super().__init__()
        transformers = _require_transformers()
        directory = _local_dir(path, "WavLM teacher")
        self.model = transformers.WavLMModel.from_pretrained(str(directory), local_files_only=True)
        self.layers = tuple(layers)
        if max(self.layers) > self.model.config.num_hidden_layers:
            raise ValueError(
                f"WavLM in {directory} has {self.model.config.num_hidden_layers} layers; {self.layers} requested"
            )
        self.sample_rate, self.frame_rate = 16000, 50.0
        self.dim = int(self.model.config.hidden_size)
        self.roles = (role,)
        self.freeze()

    def extract(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        wav = F.pad(wav, (0, 160))
        hidden = self.model(wav.to(self.model.dtype), output_hidden_states=True).hidden_states
        mean = torch.stack([hidden[i] for i in self.layers]).mean(0)
        return {self.roles[0]: mean.transpose(1, 2)}


class MusicSSLTeacher(FrozenTeacher):
    """A BEST-RQ / MusicFM-style music SSL model exported by the user as TorchScript.

    Expected interface of the scripted module: ``forward(wav [B, T] float at sample_rate) ->
    List[Tensor [B, F, dim]]``, the hidden states of every layer (index 0 the input projection), at
    ``frame_rate`` (upstream: 24 kHz in, 25 Hz, 1024-dim). ``layers`` picks one hidden state per role
    (upstream: layer 4 "acoustic", layer 11 "semantic"). A ``torch.jit`` file carries its own code, so no
    fairseq or MuCodec install is needed; export with ``torch.jit.script(model).save(path)`` (or
    ``torch.export.save(torch.export.export(model, (wav,)), "x.pt2")`` for a fixed-shape ``.pt2``). A plain
    ``nn.Module`` with the same interface can be passed instead of a path.
    """

    def __init__(
        self,
        path_or_module: str | Path | nn.Module,
        *,
        layers: Sequence[int] = (4, 11),
        roles: Sequence[str] = ("acoustic", "semantic"),
        sample_rate: int = 24000,
        frame_rate: float = 25.0,
        dim: int = 1024,
    ) -> None:
        super().__init__()
        if isinstance(path_or_module, nn.Module):
            self.model = path_or_module
        else:
            path = Path(path_or_module)
            if not path.is_file():
                raise FileNotFoundError(f"music SSL teacher: {path} is not a file (a TorchScript export)")
            if path.suffix == ".pt2":  # torch.export archive
                self.model = torch.export.load(str(path)).module()
            else:
                self.model = torch.jit.load(str(path), map_location="cpu")
        self.layers, self.roles = tuple(layers), tuple(roles)
        if len(self.layers) != len(self.roles):
            raise ValueError("one layer per role is needed")
        self.sample_rate, self.frame_rate, self.dim = sample_rate, float(frame_rate), dim
        self.freeze()

    def extract(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.model(wav)
        if len(hidden) <= max(self.layers):
            raise RuntimeError(
                f"music SSL model returned {len(hidden)} hidden states; need layer {max(self.layers)}"
            )
        out = {}
        for role, layer in zip(self.roles, self.layers, strict=True):
            h = hidden[layer]
            if h.shape[-1] != self.dim:
                raise RuntimeError(f"music SSL layer {layer} has width {h.shape[-1]}, expected {self.dim}")
            out[role] = h.transpose(1, 2)
        return out
