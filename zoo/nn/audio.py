"""1-D building blocks shared by the audio and biosignal codecs: EnCodec's SEANet convolutional encoder and
decoder (WavTokenizer, BioCodec), a Vocos ConvNeXt backbone and an inverse-STFT head.

Module names follow the upstream layouts (EnCodec's ``model.{i}``, Vocos's ``convnext.{i}``), so that
converters only rename a few keys instead of re-indexing whole networks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .chunking import conv_context, encode_in_chunks
from .spectral import stft_window

__all__ = [
    "AdaLayerNorm",
    "ConvNeXtBlock1d",
    "ISTFTHead",
    "SEANetDecoder",
    "SEANetEncoder",
    "SamePadConv1d",
    "TrimmedConvTranspose1d",
    "VocosBackbone",
]


def _activation(name: str) -> nn.Module:
    """``torch.nn`` activation by class name (``"ELU"``, ``"GELU"``, ...), built with its defaults."""
    cls = getattr(nn, name, None)
    module = cls() if isinstance(cls, type) and issubclass(cls, nn.Module) else None
    if module is None:
        raise ValueError(f"unknown activation {name!r}; name a torch.nn module such as 'ELU'")
    return module


def _maybe_weight_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module.weight`` in the new-style weight-norm parametrisation (``parametrizations.weight.original0``
    = gain ``g``, ``original1`` = direction ``v``), as EnCodec-derived codecs train."""
    return nn.utils.parametrizations.weight_norm(module) if enabled else module


class SamePadConv1d(nn.Module):
    """A conv whose output has ``ceil(T / stride)`` frames, padded (reflect by default) around the input.

    EnCodec pads ``kernel - stride`` in total, split towards the left, plus whatever extra is needed on
    the right for the last window to be complete, so no input sample is ever dropped. ``causal`` puts
    all of the fixed padding on the left (EnCodec's causal mode: the output never depends on later
    frames' inputs beyond the ragged end). Reflect padding of a clip shorter than the pad falls back
    to zero-extending it first (reflection needs ``T > pad``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        pad_mode: str = "reflect",
        causal: bool = False,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        self.conv = _maybe_weight_norm(conv, weight_norm)
        self.pad_mode = pad_mode
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.conv.stride[0]
        kernel = (self.conv.kernel_size[0] - 1) * self.conv.dilation[0] + 1
        total = kernel - stride
        length = x.shape[-1]
        frames = math.ceil((length - kernel + total) / stride + 1)
        extra = (frames - 1) * stride + kernel - total - length
        right = 0 if self.causal else total // 2
        left, right = total - right, right + extra
        if self.pad_mode == "reflect" and length <= max(left, right):
            grow = max(left, right) - length + 1
            x = F.pad(F.pad(x, (0, grow)), (left, right), mode="reflect")[..., : length + left + right]
        else:
            x = F.pad(x, (left, right), mode=self.pad_mode)
        return self.conv(x)


class TrimmedConvTranspose1d(nn.Module):
    """A transposed conv that upsamples ``T`` frames to ``T * stride`` samples, as EnCodec's decoder.

    The ``kernel - stride`` samples the overlap adds beyond ``T * stride`` are cut: split as
    ``SamePadConv1d`` pads (``causal=False``), or, when ``causal``, a ``trim_right_ratio`` share from the
    right and the rest from the left (1.0: all from the right, so no output depends on later frames).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        trim_right_ratio: float = 1.0,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= trim_right_ratio <= 1.0 or (not causal and trim_right_ratio != 1.0):
            raise ValueError("trim_right_ratio must lie in [0, 1] and only differs from 1 for causal convs")
        convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.convtr = _maybe_weight_norm(convtr, weight_norm)
        self.causal, self.trim_right_ratio = causal, trim_right_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.convtr.kernel_size[0] - self.convtr.stride[0]
        y = self.convtr(x)
        right = math.ceil(total * self.trim_right_ratio) if self.causal else total // 2
        left = total - right
        return y[..., left : y.shape[-1] - right]


class _SEANetResBlock(nn.Module):
    """act -> k3 conv to ``dim // compress`` -> act -> 1x1 conv back, plus a skip: a 1x1 conv, or the
    identity with ``true_skip``."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        dilation: int,
        compress: int,
        *,
        true_skip: bool = False,
        activation: str = "ELU",
        causal: bool = False,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        hidden = dim // compress
        conv = {"causal": causal, "weight_norm": weight_norm}
        self.block = nn.Sequential(
            _activation(activation),
            SamePadConv1d(dim, hidden, kernel_size, dilation=dilation, **conv),
            _activation(activation),
            SamePadConv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if true_skip else SamePadConv1d(dim, dim, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class _SkipLSTM(nn.Module):
    """A multi-layer LSTM over time with a residual connection, on ``[B, C, T]``."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """``chunk_frames``: run the LSTM that many frames at a time, carrying its state (the same output
        as one call, with the gates' workspace bounded by the chunk)."""
        if chunk_frames is None:
            y, _ = self.lstm(x.permute(2, 0, 1))
            return y.permute(1, 2, 0) + x
        out = torch.empty_like(x)
        state = None
        for start in range(0, x.shape[-1], chunk_frames):
            piece = x[..., start : start + chunk_frames]
            y, state = self.lstm(piece.permute(2, 0, 1), state)
            out[..., start : start + chunk_frames] = y.permute(1, 2, 0) + piece
        return out


class SEANetEncoder(nn.Module):
    """EnCodec's SEANet encoder: waveform ``[B, C, T]`` -> ``[B, dimension, ceil(T / hop)]``.

    Args:
        ratios: downsampling ratios in the *decoder's* order (EnCodec's convention; the encoder applies
            them reversed), each a strided conv of kernel ``2 * ratio``.
        n_filters: width of the first stage; it doubles at every downsampling.
        n_residual_layers: residual blocks per stage, with dilations ``dilation_base ** j``.
        kernel_size, last_kernel_size, residual_kernel_size: kernels of the first, last and residual convs.
        compress: channel reduction inside the residual branches.
        lstm_layers: layers of the final skip-LSTM (0: none).
        causal: pad every conv on the left only (EnCodec's causal mode; BioCodec).
        true_skip: identity skips in the residual blocks instead of 1x1 convs.
        activation: ``torch.nn`` activation class name.
        weight_norm: train with weight normalisation, keeping upstream's ``parametrizations.weight``
            gain/direction pair. Off, converters fold it into plain weights, the same function for inference.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        lstm_layers: int = 2,
        causal: bool = False,
        true_skip: bool = False,
        activation: str = "ELU",
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        self.hop_length = math.prod(ratios)
        conv = {"causal": causal, "weight_norm": weight_norm}
        block = {"true_skip": true_skip, "activation": activation, **conv}
        layers: list[nn.Module] = [SamePadConv1d(channels, n_filters, kernel_size, **conv)]
        width = n_filters
        for ratio in reversed(tuple(ratios)):
            for j in range(n_residual_layers):
                layers.append(
                    _SEANetResBlock(width, residual_kernel_size, dilation_base**j, compress, **block)
                )
            layers += [
                _activation(activation),
                SamePadConv1d(width, width * 2, 2 * ratio, stride=ratio, **conv),
            ]
            width *= 2
        self.conv_layers = len(layers)  # the stack before the LSTM: convolutions only
        if lstm_layers:
            layers.append(_SkipLSTM(width, lstm_layers))
        layers += [_activation(activation), SamePadConv1d(width, dimension, last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """``chunk_frames``: run the convolutional stack that many frames at a time with its receptive
        field's overlap (``zoo.nn.chunking``: the same features, memory flat in the clip's length), then the
        LSTM chunk by chunk carrying its state and the last conv with its own overlap."""
        if chunk_frames is None:
            return self.model(x)
        convs = self.model[: self.conv_layers]
        context = math.ceil(conv_context(convs)) + self.hop_length
        h = encode_in_chunks(convs, x, hop=self.hop_length, chunk_frames=chunk_frames, context=context)
        tail = list(self.model[self.conv_layers :])
        if isinstance(tail[0], _SkipLSTM):
            h = tail.pop(0)(h, chunk_frames=chunk_frames)
        rest = nn.Sequential(*tail)
        return encode_in_chunks(
            rest, h, hop=1, chunk_frames=chunk_frames, context=math.ceil(conv_context(rest)) + 1
        )


class SEANetDecoder(nn.Module):
    """EnCodec's SEANet decoder, the encoder's mirror: ``[B, dimension, F]`` -> ``[B, channels, F * hop]``.

    A conv to ``n_filters * 2 ** len(ratios)`` channels, the skip-LSTM, then per ratio (in the given
    order) a transposed conv of kernel ``2 * ratio`` halving the width followed by residual blocks, and
    a last conv to ``channels``. Inputs of ``T`` samples encode to ``ceil(T / hop)`` frames, so callers
    trim the ``F * hop`` output back to ``T``. Arguments as :class:`SEANetEncoder`, plus
    ``trim_right_ratio`` (see :class:`TrimmedConvTranspose1d`).
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        lstm_layers: int = 2,
        causal: bool = False,
        true_skip: bool = False,
        activation: str = "ELU",
        weight_norm: bool = False,
        trim_right_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.hop_length = math.prod(ratios)
        conv = {"causal": causal, "weight_norm": weight_norm}
        block = {"true_skip": true_skip, "activation": activation, **conv}
        width = n_filters * 2 ** len(ratios)
        layers: list[nn.Module] = [SamePadConv1d(dimension, width, kernel_size, **conv)]
        if lstm_layers:
            layers.append(_SkipLSTM(width, lstm_layers))
        for ratio in ratios:
            layers += [
                _activation(activation),
                TrimmedConvTranspose1d(
                    width, width // 2, 2 * ratio, ratio, causal, trim_right_ratio, weight_norm
                ),
            ]
            width //= 2
            for j in range(n_residual_layers):
                layers.append(
                    _SEANetResBlock(width, residual_kernel_size, dilation_base**j, compress, **block)
                )
        layers += [_activation(activation), SamePadConv1d(width, channels, last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)


# ---------------------------------------------------------------------------------------------- Vocos
class AdaLayerNorm(nn.Module):
    """LayerNorm over the last axis whose scale and shift are looked up per condition id.

    WavTokenizer keeps Vocos's bandwidth-conditioned norm but always passes id 0 at inference.
    """

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return x * self.scale(cond)[:, None] + self.shift(cond)[:, None]


class ConvNeXtBlock1d(nn.Module):
    """Depthwise k7 conv -> (Ada)LayerNorm -> Linear-GELU-Linear -> layer scale, residual; ``[B, C, T]``."""

    def __init__(
        self, dim: int, intermediate_dim: int, layer_scale: float, adanorm_num_embeddings: int | None
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm: nn.Module = (
            AdaLayerNorm(adanorm_num_embeddings, dim)
            if adanorm_num_embeddings
            else nn.LayerNorm(dim, eps=1e-6)
        )
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale > 0 else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.norm(h, cond) if isinstance(self.norm, AdaLayerNorm) else self.norm(h)
        h = self.pwconv2(self.act(self.pwconv1(h)))
        if self.gamma is not None:
            h = self.gamma * h
        return x + h.transpose(1, 2)


class _ResnetBlock1d(nn.Module):
    """GroupNorm-swish-conv3 twice with dropout, residual (the LDM block in 1-D, same width)."""

    def __init__(self, dim: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, dim, eps=1e-6)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(self.dropout(F.silu(self.norm2(h))))


class _AttnBlock1d(nn.Module):
    """Single-head self-attention over all frames with 1x1-conv q/k/v/out, pre-GroupNorm, residual."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.q = nn.Conv1d(dim, dim, 1)
        self.k = nn.Conv1d(dim, dim, 1)
        self.v = nn.Conv1d(dim, dim, 1)
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        # contiguous [B, 1, T, C]: strided inputs send CPU attention to its T x T math path (17 GB for a
        # minute of wavtokenizer_tiny); contiguous ones take the fused kernel, whose memory is O(T)
        q, k, v = (m(h).transpose(1, 2)[:, None].contiguous() for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0]
        return x + self.proj_out(out.transpose(1, 2))


class VocosBackbone(nn.Module):
    """Vocos's ConvNeXt backbone with WavTokenizer's attention stack before it: ``[B, C_in, T] -> [B, T, dim]``.

    ``pos_net`` (two ResNet blocks, global attention, two ResNet blocks, GroupNorm) gives every frame a
    view of the whole clip, which the paper credits for decoding one 4096-code stream well.
    """

    def __init__(
        self,
        input_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        adanorm_num_embeddings: int | None = 4,
        attention: bool = True,
        dropout: float = 0.1,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, 7, padding=3)
        self.pos_net: nn.Module = (
            nn.Sequential(
                _ResnetBlock1d(dim, dropout, norm_groups),
                _ResnetBlock1d(dim, dropout, norm_groups),
                _AttnBlock1d(dim, norm_groups),
                _ResnetBlock1d(dim, dropout, norm_groups),
                _ResnetBlock1d(dim, dropout, norm_groups),
                nn.GroupNorm(norm_groups, dim, eps=1e-6),
            )
            if attention
            else nn.Identity()
        )
        self.norm: nn.Module = (
            AdaLayerNorm(adanorm_num_embeddings, dim)
            if adanorm_num_embeddings
            else nn.LayerNorm(dim, eps=1e-6)
        )
        self.convnext = nn.ModuleList(
            ConvNeXtBlock1d(dim, intermediate_dim, 1 / num_layers, adanorm_num_embeddings)
            for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None:
            cond = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        x = self.pos_net(self.embed(x))
        h = x.transpose(1, 2)
        h = self.norm(h, cond) if isinstance(self.norm, AdaLayerNorm) else self.norm(h)
        x = h.transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFTHead(nn.Module):
    """Linear to log-magnitude and phase, then an inverse STFT with "same" padding: ``[B, T, dim] -> [B, T * hop]``.

    "Same" padding trims ``(n_fft - hop) / 2`` samples from each end of the overlap-add, so frame ``k``
    is centred on sample ``k * hop + hop / 2`` and ``T`` frames give exactly ``T * hop`` samples, unlike
    ``torch.istft(center=True)``. The magnitude is capped at 100 to keep early training finite.
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        if (n_fft - hop_length) % 2:
            raise ValueError(f"n_fft - hop_length must be even, got {n_fft} and {hop_length}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.out = nn.Linear(dim, n_fft + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_mag, phase = self.out(x).float().transpose(1, 2).chunk(2, dim=1)
        spec = torch.exp(log_mag).clamp(max=1e2) * torch.polar(torch.ones_like(phase), phase)
        return self.istft(spec)

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Overlap-add inverse of a ``[B, n_fft // 2 + 1, T]`` spectrum, normalised by the window envelope."""
        frames = spec.shape[-1]
        window = stft_window("hann", self.n_fft, device=spec.device, dtype=torch.float32)
        chunks = torch.fft.irfft(spec, self.n_fft, dim=1) * window[:, None]
        size = (frames - 1) * self.hop_length + self.n_fft
        fold = {"output_size": (1, size), "kernel_size": (1, self.n_fft), "stride": (1, self.hop_length)}
        y = F.fold(chunks, **fold)[:, 0, 0]
        envelope = F.fold(window.square()[None, :, None].expand(1, -1, frames), **fold)[0, 0, 0]
        pad = (self.n_fft - self.hop_length) // 2
        return y[:, pad : size - pad] / envelope[pad : size - pad]
