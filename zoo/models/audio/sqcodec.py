"""SQ-Codec: SimpleSpeech's scalar-quantized waveform autoencoder, the latent space of ReasoningCodec's decoder.

Papers: "SimpleSpeech: Towards Simple and Efficient Text-to-Speech with Scalar Latent Transformer Diffusion
Models", Yang et al., Interspeech 2024, arXiv:2406.02328 (and SimpleSpeech 2, arXiv:2408.13893); used at 24 kHz
by UniAudio 2.0 / ReasoningCodec, arXiv:2602.04683. Upstream code: yangdongchao/UniAudio2
``tools/tokenizer/ReasoningCodec_film/models/scalar24k.py`` (``ScalarModel`` inside the ``ScalarAE`` wrapper;
16 kHz original: yangdongchao/SimpleSpeech ``ldm/models/scalar16k.py``).

Structure (all convolutions causal unless noted, PReLU activations with one slope each):

- encoder: conv k7 (1 -> C) -> [PreProcessor: conv k7 + PReLU + average pooling by ``num_samples``] ->
  per stride ``s_i``: 5 residual units (conv k7 with dilation 1/3/5/7/9 + PReLU, conv k1 + PReLU, skip) at width
  ``C 2^i``, then a strided conv (kernel ``k_i``) to ``C 2^(i+1)`` + PReLU -> conv k7 to ``latent_dim`` -> tanh.
- quantizer: ``round(9 z) / 9`` per channel with a straight-through gradient: 19 values ``k / 9`` for
  ``k = -9..9`` (the "9" is the scale; tanh outputs can reach both ends), so the ids are ``k + 9`` in ``[0, 19)``.
- decoder: non-causal "look-ahead" conv (kernel ``delay_kernel_size``) to ``C 2^n`` -> per stride: transposed conv
  (no activation) then 5 residual units -> [PostProcessor: repeat each frame ``num_samples`` times + conv k7 +
  PReLU] -> conv k7 to 1 channel (no output activation).

Differences from upstream:
- weight normalisation is folded into plain weights (the converter does it), like the zoo's other codecs;
- upstream passes one module-level ``nn.PReLU()`` instance as the default activation of every encoder
  ``DownsampleLayer``, so those strided convs share a single slope; here each has its own (the converter copies
  the shared value into each, so outputs are identical; training here has ``n - 1`` more scalars);
- upstream's ``ScalarModel.encode`` returns the tanh output *before* rounding (its ``decode`` rounds first);
  ``encode_latents`` here returns the rounded latents by default (``quantize=False`` gives upstream's).

Latents are rounded as upstream's ``ScalarModel.decode`` does, without clamping: generated latents (ReasoningCodec's
flow-matching decoder) can leave ``[-1, 1]`` and then decode to values past ``+-1`` exactly as upstream decodes them.
``clamp_latents=True`` clamps to ``[-1, 1]`` first (a guard for latents from an untrained or foreign generator; not
upstream's behaviour). Ids are always clamped to ``[0, 2 levels]``, since ids outside the vocabulary do not exist
(encoder outputs are tanh, so this never changes an encoded id).

The paper-size configuration (``sqcodec``: 24 kHz, 136 channels at 25 Hz) is **not verified**: upstream's
``sqcodec_config.yaml`` lives only in the Hugging Face repo ``Dongchao/UniAudio2_ckpt``, which could not be read.
What is certain from the ReasoningCodec code: 24 kHz, 25 latent frames per second (hop 960) and 136 channels.
The strides/kernels/widths below follow the 48 kHz SQ-codec of the same lineage (HeartCodec: init width 64,
strides 3,4,4,4,5 with kernels twice the stride, delay kernel 5, causal) without its 2x pre-pooling, which
gives hop 960 at 24 kHz. ``infer_sqcodec_config`` reads every shape-determining value from a checkpoint, so a
real ``sqcodec.pth`` can be loaded even if these defaults are wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.chunking import conv_context, decode_in_chunks, encode_in_chunks
from ...tokenizer import AudioTokenizer, TokenizerOutput
from ...tokens import Tokens
from .._weight_norm import fold_weight_norm, split_weight_norm

__all__: list[str] = ["SQCodec", "convert_sqcodec", "infer_sqcodec_config", "scalar_quantize"]

DILATIONS = (1, 3, 5, 7, 9)


def scalar_quantize(z: torch.Tensor, scale: int = 9) -> torch.Tensor:
    """``round(scale * z) / scale`` with a straight-through gradient."""
    return z + (torch.round(z * scale) / scale - z).detach()


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only (causal) or symmetrically (``causal=False``), output length ``ceil(T / s)``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = True,
    ) -> None:
        super().__init__(cin, cout, kernel_size, stride=stride, dilation=dilation)
        total = dilation * (kernel_size - 1)
        self.pad = (total, 0) if causal else (total // 2, total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """Transposed conv giving exactly ``T * stride`` samples: causal (``kernel = 2 * stride``, cut the last
    ``stride``) or centred (padding ``(kernel - stride) / 2``)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, *, causal: bool = True) -> None:
        if causal and kernel_size != 2 * stride:
            raise ValueError(f"a causal upsampling needs kernel = 2 * stride, got {kernel_size} and {stride}")
        if not causal and (kernel_size - stride) % 2:
            raise ValueError(
                f"a centred upsampling needs kernel - stride even, got {kernel_size} and {stride}"
            )
        super().__init__(
            cin, cout, kernel_size, stride=stride, padding=0 if causal else (kernel_size - stride) // 2
        )
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y[..., : -self.stride[0]] if self.causal else y


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int, kernel_size: int, causal: bool) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(dim, dim, kernel_size, dilation=dilation, causal=causal)
        self.conv2 = CausalConv1d(dim, dim, 1, causal=causal)
        self.activation1 = nn.PReLU()
        self.activation2 = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.activation2(self.conv2(self.activation1(self.conv1(x))))


class _Strided(nn.Module):
    """Upstream's Down/UpsampleLayer: ``layer`` then an optional PReLU ``activation``."""

    def __init__(self, layer: nn.Module, activation: bool) -> None:
        super().__init__()
        self.layer = layer
        self.activation = nn.PReLU() if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer(x)
        return x if self.activation is None else self.activation(x)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int, kernel_size: int, res_kernel: int, causal: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ResidualUnit(dim, d, res_kernel, causal) for d in DILATIONS)
        self.down_conv = _Strided(CausalConv1d(dim, 2 * dim, kernel_size, stride=stride, causal=causal), True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.convs:
            x = unit(x)
        return self.down_conv(x)


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int, kernel_size: int, res_kernel: int, causal: bool) -> None:
        super().__init__()
        self.up_conv = _Strided(
            CausalConvTranspose1d(dim, dim // 2, kernel_size, stride, causal=causal), False
        )
        self.convs = nn.ModuleList(ResidualUnit(dim // 2, d, res_kernel, causal) for d in DILATIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up_conv(x)
        for unit in self.convs:
            x = unit(x)
        return x


class PreProcessor(nn.Module):
    def __init__(self, dim: int, num_samples: int, kernel_size: int, causal: bool) -> None:
        super().__init__()
        self.conv = CausalConv1d(dim, dim, kernel_size, causal=causal)
        self.activation = nn.PReLU()
        self.num_samples = num_samples

    @property
    def resample_factor(self) -> int:
        """Input samples per output position (for ``zoo.nn.chunking.conv_context``)."""
        return self.num_samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(self.activation(self.conv(x)), self.num_samples)


class PostProcessor(nn.Module):
    def __init__(self, dim: int, num_samples: int, kernel_size: int, causal: bool) -> None:
        super().__init__()
        self.conv = CausalConv1d(dim, dim, kernel_size, causal=causal)
        self.activation = nn.PReLU()
        self.num_samples = num_samples

    @property
    def resample_factor(self) -> float:
        """Input positions per output sample (for ``zoo.nn.chunking.conv_context``)."""
        return 1 / self.num_samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.conv(x.repeat_interleave(self.num_samples, dim=-1)))


class SQCodec(AudioTokenizer):
    """Scalar-quantized autoencoder: ``[B, 1, T]`` -> ``latent_dim`` channels of 19-level scalars at ``sr / hop`` Hz.

    Args:
        sample_rate: native rate.
        latent_dim: latent channels (one scalar id per channel and frame).
        init_channel: width after the first conv; doubles at every stride.
        downsample_factors, downsample_kernel_sizes: encoder strides and their kernels (decoder mirrors them:
            ``upsample_factors``/``upsample_kernel_sizes`` default to the reversed lists).
        num_samples: extra average-pooling factor before the strided convs (1 = none).
        default_kernel_size: kernel of the in/out and pre/post-processing convs.
        delay_kernel_size: kernel of the decoder's first, non-causal conv.
        res_kernel_size: kernel of the residual units.
        causal: causal convolutions everywhere except the decoder's first conv.
        levels: quantization scale (values ``k / levels``, ``k = -levels..levels``).
        clamp_latents: clamp latents to ``[-1, 1]`` before rounding them for decoding (upstream does not).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        latent_dim: int = 136,
        init_channel: int = 64,
        downsample_factors: Sequence[int] = (3, 4, 4, 4, 5),
        downsample_kernel_sizes: Sequence[int] | None = None,
        upsample_factors: Sequence[int] | None = None,
        upsample_kernel_sizes: Sequence[int] | None = None,
        num_samples: int = 1,
        default_kernel_size: int = 7,
        delay_kernel_size: int = 5,
        res_kernel_size: int = 7,
        causal: bool = True,
        levels: int = 9,
        clamp_latents: bool = False,
    ) -> None:
        super().__init__()
        down = tuple(int(s) for s in downsample_factors)
        down_k = (
            tuple(downsample_kernel_sizes)
            if downsample_kernel_sizes is not None
            else tuple(2 * s for s in down)
        )
        up = tuple(upsample_factors) if upsample_factors is not None else down[::-1]
        up_k = tuple(upsample_kernel_sizes) if upsample_kernel_sizes is not None else tuple(2 * s for s in up)
        if len(down_k) != len(down) or len(up) != len(down) or len(up_k) != len(up):
            raise ValueError(
                "stride and kernel lists must have one entry per stage, encoder and decoder alike"
            )
        hop = num_samples
        for s in down:
            hop *= s
        up_hop = num_samples
        for s in up:
            up_hop *= s
        if hop != up_hop:
            raise ValueError(f"encoder hop {hop} != decoder hop {up_hop}")
        self.sample_rate = sample_rate
        self.channels = 1
        self.hop_length = hop
        self.latent_dim = latent_dim
        self.levels = levels
        self.clamp_latents = clamp_latents
        n = len(down)
        k = default_kernel_size
        encoder: list[nn.Module] = [CausalConv1d(1, init_channel, k, causal=causal)]
        if num_samples > 1:
            encoder.append(PreProcessor(init_channel, num_samples, k, causal))
        encoder += [
            EncoderBlock(init_channel * 2**i, s, ks, res_kernel_size, causal)
            for i, (s, ks) in enumerate(zip(down, down_k, strict=True))
        ]
        encoder.append(CausalConv1d(init_channel * 2**n, latent_dim, k, causal=causal))
        decoder: list[nn.Module] = [
            CausalConv1d(latent_dim, init_channel * 2**n, delay_kernel_size, causal=False)
        ]
        decoder += [
            DecoderBlock(init_channel * 2 ** (n - i), s, ks, res_kernel_size, causal)
            for i, (s, ks) in enumerate(zip(up, up_k, strict=True))
        ]
        if num_samples > 1:
            decoder.append(PostProcessor(init_channel, num_samples, k, causal))
        decoder.append(CausalConv1d(init_channel, 1, k, causal=causal))
        self.encoder = nn.ModuleList(encoder)
        self.decoder = nn.ModuleList(decoder)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (2 * self.levels + 1,) * self.latent_dim

    def last_layer(self) -> torch.Tensor:
        return self.decoder[-1].weight

    # ------------------------------------------------------------------ chunked inference
    @property
    def encoder_context(self) -> int:
        """Input samples each side that one latent frame may depend on (bounds the encoder's receptive field)."""
        return math.ceil(conv_context(self.encoder)) + self.hop_length

    @property
    def decoder_context(self) -> int:
        """Latent frames each side that one output sample may depend on."""
        return math.ceil(conv_context(self.decoder)) + 1

    def _run_encoder(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder[:-1]:
            x = layer(x)
        return torch.tanh(self.encoder[-1](x))

    def _run_decoder(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.decoder:
            x = layer(x)
        return x

    # ------------------------------------------------------------------ latents (ReasoningCodec's interface)
    def _encode_continuous(self, wav: torch.Tensor) -> torch.Tensor:
        """Whole clip while training (one graph); at inference ``chunk_seconds`` at a time with the receptive
        field's overlap, which gives the same latents with memory flat in the clip's length."""
        x = self.pad_to_hop(wav)
        if torch.is_grad_enabled():
            return self._run_encoder(x)
        return encode_in_chunks(
            self._run_encoder,
            x,
            hop=self.hop_length,
            chunk_frames=self.chunk_frames,
            context=self.encoder_context,
        )

    def encode_latents(self, wav: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
        """Audio ``[B, 1, T]`` -> latents ``[B, latent_dim, ceil(T / hop)]`` on the ``k / levels`` grid (or the
        tanh output before rounding, upstream's ``encode``, with ``quantize=False``). Differentiable (STE)."""
        self.check_audio(wav)
        z = self._encode_continuous(wav)
        return scalar_quantize(z, self.levels) if quantize else z

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, latent_dim, F]`` (any real values: rounded first, not clamped, as upstream's ``decode``;
        clamped to ``[-1, 1]`` first with ``clamp_latents``) -> audio ``[B, 1, F * hop]``."""
        if z.ndim != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents [B, {self.latent_dim}, F], got {tuple(z.shape)}")
        x = scalar_quantize(z.clamp(-1, 1) if self.clamp_latents else z, self.levels)
        if torch.is_grad_enabled():
            return self._run_decoder(x)
        return decode_in_chunks(
            self._run_decoder,
            x,
            hop=self.hop_length,
            chunk_frames=self.chunk_frames,
            context_frames=self.decoder_context,
        )

    def ids_from_latents(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.round(z.clamp(-1, 1) * self.levels) + self.levels).long()

    def latents_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids.float() - self.levels) / self.levels

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct ``x`` through the scalar quantizer (straight-through); the output has ``T`` samples.

        There is no quantizer loss: recipes add waveform/mel losses by name. ``stats`` reports how saturated
        the tanh is and how many of the 19 levels the batch uses.
        """
        z = self.encode_latents(x, quantize=False)
        q = scalar_quantize(z, self.levels)
        recon = self.decode_latents(q)[..., : x.shape[-1]]
        ids = self.ids_from_latents(q.detach())
        stats = {
            "sq/saturated": (z.detach().abs() > (self.levels - 0.5) / self.levels).float().mean(),
            "sq/levels_used": torch.tensor(float(ids.unique().numel()), device=x.device),
        }
        return TokenizerOutput(recon=recon, ids=ids, latents=q, stats=stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Tokens:
        """Audio ``[B, 1, T]`` -> ids ``[B, latent_dim, ceil(T / hop)]`` in ``[0, 2 levels]`` plus the latents."""
        z = self.encode_latents(x)
        return self.make_tokens(
            ids=self.ids_from_latents(z),
            latents=z,
            grid=(z.shape[-1],),
            codebook_sizes=self.codebook_sizes,
            meta={"num_samples": int(x.shape[-1]), "sample_rate": self.sample_rate, "levels": self.levels},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Ids (or, for continuous tokens, the latents) -> audio, trimmed to the encoded clip's length."""
        if tokens.ids is None and tokens.latents is not None:
            z = tokens.latents.to(self.device, self.last_layer().dtype)
        else:
            z = self.latents_from_ids(self.decodable_ids(tokens, 1)).to(self.last_layer().dtype)
        return self.trim(self.decode_latents(z), tokens)


# ---------------------------------------------------------------------------------------------- converter
def _upstream_state(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    state = state_dict.get("codec_model", state_dict)
    return {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}


def convert_sqcodec(
    state_dict: Mapping[str, torch.Tensor], model: SQCodec | None = None
) -> dict[str, torch.Tensor]:
    """Map upstream ``sqcodec.pth`` (``{"codec_model": ScalarModel.state_dict()}`` or the inner dict) onto `SQCodec`.

    Module paths are the same (``encoder.{i}``, ``convs.{j}.conv1``, ``down_conv.layer``, ``up_conv.layer``...);
    weight norm (``weight_g``/``weight_v``) is folded into ``weight``, and the extra ``.layer`` of upstream's
    plain ``Conv1d`` wrapper does not exist upstream either, so nothing else is renamed.
    """
    rest, pairs = split_weight_norm(_upstream_state(state_dict))
    return {**rest, **{f"{stem}.weight": fold_weight_norm(g, v) for stem, (g, v) in pairs.items()}}


def infer_sqcodec_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """`SQCodec` constructor arguments read off an upstream checkpoint's shapes.

    Strides are not stored; they are taken as half the strided kernels (true of every published SQ-codec
    config). ``sample_rate`` and ``causal`` cannot be read and keep their defaults.
    """
    state = convert_sqcodec(state_dict)
    first = state["encoder.0.weight"]
    blocks = sorted(
        {int(m[1]) for k in state if (m := re.match(r"encoder\.(\d+)\.down_conv\.layer\.weight", k))}
    )
    down_k = [state[f"encoder.{i}.down_conv.layer.weight"].shape[-1] for i in blocks]
    up_blocks = sorted(
        {int(m[1]) for k in state if (m := re.match(r"decoder\.(\d+)\.up_conv\.layer\.weight", k))}
    )
    up_k = [state[f"decoder.{i}.up_conv.layer.weight"].shape[-1] for i in up_blocks]
    last_enc = max(int(k.split(".")[1]) for k in state if k.startswith("encoder."))
    return {
        "latent_dim": int(state[f"encoder.{last_enc}.weight"].shape[0]),
        "init_channel": int(first.shape[0]),
        "default_kernel_size": int(first.shape[-1]),
        "downsample_factors": [k // 2 for k in down_k],
        "downsample_kernel_sizes": down_k,
        "upsample_factors": [k // 2 for k in up_k],
        "upsample_kernel_sizes": up_k,
        # The pre-pooling conv sits at encoder.1 when present; its pooling factor is not stored: 2 upstream.
        "num_samples": 2 if "encoder.1.conv.weight" in state else 1,
        "delay_kernel_size": int(state["decoder.0.weight"].shape[-1]),
        "res_kernel_size": int(state[f"encoder.{blocks[0]}.convs.0.conv1.weight"].shape[-1]),
    }


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "latent_dim": 16,
    "init_channel": 8,
    "downsample_factors": (2, 4, 4),
    "num_samples": 2,
    "res_kernel_size": 5,
}


@register_model(modality="audio", family="sqcodec")
def sqcodec(**kwargs: Any) -> SQCodec:
    """SQ-Codec as used by ReasoningCodec: 24 kHz, hop 960 (25 Hz), 136 channels of 19-level scalars."""
    return build(SQCodec, "sqcodec", _PAPER, kwargs)


@register_model(modality="audio", family="sqcodec", size="tiny")
def sqcodec_tiny(**kwargs: Any) -> SQCodec:
    """A small SQ-Codec for CPU tests: 24 kHz, hop 64 (375 Hz), 16 channels, widths 8-64."""
    return build(SQCodec, "sqcodec_tiny", _TINY, kwargs)


register_pretrained(
    "sqcodec.uniaudio2",
    PretrainedCfg(
        hf_hub_id="Dongchao/UniAudio2_ckpt",
        filename="sqcodec.pth",
        converter="convert_sqcodec",
        checkpoint_key="codec_model",
        license="mit",  # the UniAudio2 readme says MIT (its pyproject: "to be specified")
        paper="arXiv:2602.04683",
        upstream="https://github.com/yangdongchao/UniAudio2 @ dea57db (tools/tokenizer/ReasoningCodec_film/models/scalar24k.py)",
        description=(
            "SQ-Codec (24 kHz, 25 Hz, 136 channels) shipped with ReasoningCodec. The file's layout "
            "({'codec_model': ScalarModel.state_dict()}, read by upstream's ScalarAE.resume_model) and the "
            "architecture config (sqcodec_config.yaml) are unverified here."
        ),
    ),
)
