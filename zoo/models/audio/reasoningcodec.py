"""ReasoningCodec: two token streams for 24 kHz audio, 5 Hz "reasoning" tokens and 12.5 Hz reconstruction tokens.

Paper: "UniAudio 2.0" (Yang et al., arXiv:2602.04683). Upstream: yangdongchao/UniAudio2 (MIT),
``tools/tokenizer/ReasoningCodec_film/`` (``reason_tokenizer.py``, ``models/AudioDiffusion1D.py``,
``models/semantic_decoder.py``, ``modules/transformer.py``, ``models/model_config.json``).

Structure (frame rates at 24 kHz):

- Frozen teachers (kept outside the module tree, see `zoo.nn.teachers`): Whisper encoder (50 Hz), WavLM mean of
  layers 6-9 (50 Hz, "phone"), music SSL layers 4 ("acoustic") and 11 ("semantic") at 25 Hz.
- Reasoning stream (``audio_thinking``): Whisper conv k2 s2 -> 25 Hz, concatenated with the semantic SSL
  features, linear to ``dim``; a learned query token is inserted after every 5 frames; non-causal
  "power-normalised" Transformer blocks (no LayerNorms, weight-normalised linears, qk LayerNorm, rotary
  positions on half of each head, layer scale, sigmoid-GLU MLP); the query positions (5 Hz) are quantized by a
  residual VQ (8 x 4096, code dim 64 behind one shared projection, EMA 0.9, rotation trick, dead-code
  threshold 0.1).
- Reconstruction stream at 12.5 Hz, 8 codes per frame ``[phone, semantic, acoustic x 6]``: WavLM conv k4 s4,
  semantic SSL conv k2 s2, and [acoustic SSL conv k2 s2 | Whisper conv k4 s4], each projected to ``dim``,
  FiLM-modulated by the quantized reasoning feature (``reason_adaptor``, nearest x2.5 upsampling,
  ``gamma = 1 + 0.1 tanh``, beta) and quantized (VQ 1 x 8192, VQ 1 x 8192, RVQ 6 x 8192; code dim 32).
- Semantic decoders (training only): conv decoders reconstruct the semantic SSL features (25 Hz) from the
  semantic codes and the WavLM features (50 Hz) from the phone codes (L2 loss).
- Decoder: the three quantized embeddings (plus the upsampled reasoning embedding when reasoning tokens are
  given) are summed, projected (``cond_feature_emb``) and repeated x2 to 25 Hz; conditional flow matching
  (`zoo.nn.flow_matching`) with a DiT estimator (`zoo.nn.dit`) generates SQ-Codec latents, which the
  SQ-Codec decoder turns into audio. Frames past the end of the input get ``zero_cond_embedding1``.

Entry point (``encode``), as upstream's official ``ReasoningTokenizer.tokenize`` (``reason_tokenizer.py``,
``audio2token``): the clip is repeated (doubled until it holds 30 s + 240 samples), cut into windows of 30 s + 240
samples, each window is encoded on its own (windows in batches of 6, as upstream), and the tokens of the windows,
concatenated, are cut back to the clip's length. Whisper sees exactly 30 s per window, as it was trained, and
because attention is global every token depends on what else is in its window: short clips encode as a 30 s
loop of themselves. ``encode_repeat=False`` gives upstream's other entry point, ``encode_segment``: the clip is
zero-padded to a multiple of 9,600 samples (``wave_pad``, 0.4 s) and encoded in one pass (cheaper, and what
``training_output`` always does; tokens differ from ``tokenize``'s). The tiny size defaults to that, as it is
trained on padded clips.

Differences from upstream:
- FiLM's 20 % conditioning dropout is applied in training only; upstream also applies it while encoding
  (``fetch_codes_batch``), which makes its tokens random. Here encoding is deterministic.
- The decoder is trained with the reasoning embedding dropped per item with the same probability, and
  with classifier-free-guidance dropout of the whole condition (10 %), so that ``decode`` works with or
  without reasoning tokens and CFG has an unconditional model; upstream's training code for this is not
  released.
- Decoding draws the starting noise from a generator seeded per item (``decode_seed``), so ``decode`` is a
  deterministic function of the tokens and a batch decodes exactly as its items would alone.
- The optional LLM text-alignment loss (upstream: Llama-3.2-3B + LoRA on [BOS, query embeddings, text]) is
  a pluggable module (`attach_text_lm`), not built in. Without it the reasoning branch learns only through the
  FiLM path and the decoder condition (the tiny recipe does this); the paper trains it with text first.
- Tokens: the reconstruction stream is the primary id grid; the reasoning ids travel as
  ``Tokens.side["reasoning"]`` with their codebooks and rate in ``meta``. Token counts are trimmed to
  ``ceil(T / hop)`` of the unpadded input (upstream keeps ``int(T / hop) + 1``: one more frame, past the end of
  the clip, when ``T`` is a whole number of hops).
- The SQ-Codec can come from a local file (``sqcodec_pretrained="path/to/sqcodec.pth"``, upstream's layout, or a
  zoo name or folder); only when none is given does ``load_upstream`` fetch ``sqcodec.pth``
  from the Hub.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..._factory import build, create
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.dit import DiT1d
from ...nn.flow_matching import ConditionalFlowMatching
from ...nn.teachers import (
    FrozenTeacher,
    MelConvTeacher,
    MusicSSLTeacher,
    TeacherSet,
    WavLMTeacher,
    WhisperEncoderTeacher,
)
from ...quantizers import QuantizerOutput, ResidualVQ
from ...tokenizer import AudioTokenizer, TokenizerOutput
from ...tokens import Tokens

__all__: list[str] = [
    "ProjectedResidualVQ",
    "QueryTransformerBlock",
    "ReasoningCodec",
    "convert_reasoningcodec",
]

STREAMS = ("reasoning", "reconstruction")
STAGES = ("joint", "reasoning", "reconstruction", "decoder")
# Teacher roles and where each comes from.
ROLES = ("whisper", "phone", "acoustic", "semantic")


# ---------------------------------------------------------------------------------------------- quantizer
class ProjectedResidualVQ(ResidualVQ):
    """Residual VQ in a low-dimensional code space behind one shared projection pair.

    vector-quantize-pytorch's ``ResidualVQ(dim, codebook_dim=d)`` projects once to ``d``, runs every residual
    stage there and projects the sum back; `ResidualVQ` with ``codebook_dim`` would give each stage its own
    projection instead, so this wraps it to match upstream's structure (and its checkpoint keys).
    """

    def __init__(
        self, dim: int, num_quantizers: int, codebook_size: int, *, codebook_dim: int, **vq_kwargs: Any
    ):
        super().__init__(codebook_dim, num_quantizers, codebook_size, **vq_kwargs)
        self.input_dim = dim
        self.project_in = nn.Linear(dim, codebook_dim)
        self.project_out = nn.Linear(codebook_dim, dim)

    def forward(
        self, z: torch.Tensor, mask: torch.Tensor | None = None, n_quantizers: int | None = None
    ) -> QuantizerOutput:
        if z.ndim != 3 or z.shape[1] != self.input_dim:
            raise ValueError(f"expected [B, {self.input_dim}, T], got shape {tuple(z.shape)}")
        out = super().forward(self.project_in(z.transpose(1, 2)).transpose(1, 2), mask, n_quantizers)
        out.quantized = self.project_out(out.quantized.transpose(1, 2).to(z.dtype)).transpose(1, 2)
        return out

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return self.project_out(super().lookup(ids).transpose(1, 2)).transpose(1, 2)


# ---------------------------------------------------------------------------------------------- query transformer
def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


class _QueryAttention(nn.Module):
    """Non-causal self-attention; weight-normalised fused qkv and output (no biases), per-head qk LayerNorm,
    rotary positions on the first ``rotary_dim`` channels of each head in the split-halves layout."""

    def __init__(self, dim: int, head_dim: int) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"width {dim} is not a multiple of head_dim {head_dim}")
        self.heads, self.head_dim = dim // head_dim, head_dim
        self.rotary_dim = min(max(head_dim // 2, 32), head_dim)
        self.to_qkv = weight_norm(nn.Linear(dim, 3 * dim, bias=False))
        self.to_out = weight_norm(nn.Linear(dim, dim, bias=False))
        self.q_norm = nn.LayerNorm(head_dim)
        self.k_norm = nn.LayerNorm(head_dim)

    def _rope(self, x: torch.Tensor) -> torch.Tensor:
        n, d = x.shape[-2], self.rotary_dim
        inv_freq = 1.0 / 10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
        freqs = torch.arange(n, device=x.device, dtype=torch.float32)[:, None] * inv_freq
        freqs = torch.cat([freqs, freqs], dim=-1)
        rotated, rest = x[..., :d].float(), x[..., d:]
        rotated = rotated * freqs.cos() + _rotate_half(rotated) * freqs.sin()
        return torch.cat([rotated.to(x.dtype), rest], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self._rope(self.q_norm(q)), self._rope(self.k_norm(k))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class _LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-2) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _SigmoidGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = weight_norm(nn.Linear(dim, 2 * hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * torch.sigmoid(gate)


class _GLUFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.ff = nn.Sequential(
            _SigmoidGLU(dim, mult * dim), nn.Identity(), weight_norm(nn.Linear(mult * dim, dim))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class QueryTransformerBlock(nn.Module):
    """Upstream's "power-normalised" block: ``x += ls1 * attn(x); x += ls2 * glu_mlp(x)``, no LayerNorms.

    The normalisation lives in the weights (weight norm on every linear) and in the qk LayerNorm; layer scale
    starts at 0.01. Parameter names follow upstream (``self_attn.to_qkv``, ``ff.ff.0.proj``, ...).
    """

    def __init__(self, dim: int, head_dim: int = 128, mlp_mult: int = 4) -> None:
        super().__init__()
        self.self_attn = _QueryAttention(dim, head_dim)
        self.self_attn_scale = _LayerScale(dim)
        self.ff = _GLUFeedForward(dim, mlp_mult)
        self.ff_scale = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn_scale(self.self_attn(x))
        return x + self.ff_scale(self.ff(x))


class AudioThinking(nn.Module):
    """The reasoning branch: merge Whisper and semantic features, add query tokens, Transformer, RVQ."""

    def __init__(
        self,
        dim: int,
        whisper_dim: int,
        semantic_dim: int,
        *,
        interval: int,
        depth: int,
        head_dim: int,
        num_quantizers: int,
        codebook_size: int,
        codebook_dim: int,
        ema_decay: float,
        dead_threshold: float,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.cls_token = nn.Parameter(torch.randn(1, dim))
        self.encoder_transformers = nn.Sequential(
            *(QueryTransformerBlock(dim, head_dim) for _ in range(depth))
        )
        self.semantic_merge_proj = nn.Linear(whisper_dim + semantic_dim, dim)
        self.reasoning_vq = ProjectedResidualVQ(
            dim,
            num_quantizers,
            codebook_size,
            codebook_dim=codebook_dim,
            ema_decay=ema_decay,
            commitment_weight=1.0,
            restart_threshold=dead_threshold,
            rotation_trick=True,
        )
        self.down_sampling_layer_whisper = nn.Conv1d(whisper_dim, whisper_dim, 2, stride=2)

    def queries(self, whisper: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """Whisper ``[B, Cw, 2F]`` (50 Hz) and semantic ``[B, Cs, F]`` (25 Hz) -> query outputs ``[B, dim, F / interval]``."""
        w = self.down_sampling_layer_whisper(whisper)
        frames = min(w.shape[-1], semantic.shape[-1])
        h = self.semantic_merge_proj(torch.cat([w[..., :frames], semantic[..., :frames]], 1).transpose(1, 2))
        b, n, d = h.shape
        if n % self.interval:
            raise ValueError(f"{n} frames are not a multiple of the query interval {self.interval}")
        groups = n // self.interval
        slots = self.cls_token.to(h.dtype).expand(b, groups, 1, d)
        h = torch.cat([h.view(b, groups, self.interval, d), slots], dim=2).reshape(b, -1, d)
        h = self.encoder_transformers(h)
        return h[:, self.interval :: self.interval + 1].transpose(1, 2)


# ---------------------------------------------------------------------------------------------- semantic decoder
class _Conv(nn.Module):
    """Conv1d with "same" padding, wrapped as upstream (``.conv``)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=(kernel - 1) // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _ResidualUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _Conv(channels, channels, 3, bias=False)
        self.conv2 = nn.Conv1d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.elu(self.conv1(F.elu(x))))


class _Upsample(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose1d(
            cin, cout, 2 * stride, stride, padding=(stride + 1) // 2, output_padding=stride % 2
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x)


class _DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = _Conv(cin, cout, 3) if stride == 1 else _Upsample(cin, cout, stride)
        self.res_units = nn.ModuleList(_ResidualUnit(cout) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        for unit in self.res_units:
            x = unit(x)
        return x


class FeatureDecoder(nn.Module):
    """Codes -> teacher features: conv, upsampling blocks of two ELU residual units, conv (upstream ``Decoder``)."""

    def __init__(self, code_dim: int, out_channels: int, channels: int, strides: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = _Conv(code_dim, channels, 3, bias=False)
        self.conv_blocks = nn.ModuleList(_DecoderBlock(channels, channels, s) for s in strides)
        self.conv2 = _Conv(channels, out_channels, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for block in self.conv_blocks:
            x = block(x)
        return self.conv2(x)


# ---------------------------------------------------------------------------------------------- teachers
def tiny_teachers(
    sample_rate: int, whisper_dim: int, phone_dim: int, ssl_dim: int, seed: int = 0
) -> dict[str, FrozenTeacher]:
    """Fixed log-mel + random-conv stand-ins for Whisper (50 Hz), WavLM (50 Hz) and the music SSL model (25 Hz)."""
    whisper = MelConvTeacher(
        sample_rate=sample_rate, frame_rate=50, dim=whisper_dim, roles=("whisper",), seed=seed
    )
    phone = MelConvTeacher(
        sample_rate=sample_rate, frame_rate=50, dim=phone_dim, roles=("phone",), seed=seed + 1
    )
    ssl = MelConvTeacher(
        sample_rate=sample_rate,
        frame_rate=25,
        dim=ssl_dim,
        roles=("acoustic", "semantic"),
        layers=(0, 1),
        seed=seed + 2,
    )
    return {"whisper": whisper, "phone": phone, "ssl": ssl}


# ---------------------------------------------------------------------------------------------- model
class ReasoningCodec(AudioTokenizer):
    """Two-stream 24 kHz codec: 5 Hz reasoning ids and 12.5 Hz reconstruction ids, decoded by flow matching.

    ``[B, 1, T]`` -> reasoning ids ``[B, 8, T/4800]`` and reconstruction ids ``[B, 8, T/1920]``; audio is decoded
    from the reconstruction ids, with or without the reasoning ids.

    Args:
        sample_rate: native rate (24 kHz).
        dim: width of both branches and of the decoder condition (768).
        whisper_dim, phone_dim, ssl_dim: teacher widths (Whisper-medium 1024, WavLM 768, music SSL 1024).
        teachers: ``"pretrained"`` (Whisper / WavLM from local ``transformers`` folders, music SSL from a
            TorchScript file: ``whisper_path``, ``wavlm_path``, ``music_ssl_path``) or ``"tiny"`` (fixed seeded
            log-mel + conv extractors built in place). Teachers are never part of the saved weights.
        query_interval, query_depth, query_head_dim: one query after every ``query_interval`` 25 Hz frames,
            Transformer depth and head width of the reasoning branch.
        reasoning_quantizers, reasoning_codebook_size, reasoning_codebook_dim, reasoning_dead_threshold:
            the reasoning RVQ (8 x 4096, dim 64, dead-code threshold 0.1).
        acoustic_quantizers, codebook_size, codebook_dim, dead_threshold: the reconstruction VQs (phone and
            semantic one code each, acoustic ``acoustic_quantizers``; 8192 codes of dim 32; threshold 2).
        ema_decay: EMA decay of every codebook (0.9).
        film_scale: ``gamma = 1 + film_scale * tanh(.)``.
        cond_dropout: training probability, per item, of dropping the FiLM conditioning (gamma 1, beta 0) and,
            independently, the reasoning embedding in the decoder condition.
        cfg_dropout: training probability of zeroing the whole decoder condition (for classifier-free guidance).
        dit_width, dit_depth, dit_heads: the flow-matching DiT (1536, 32, 24).
        sqcodec, sqcodec_args: registry name and overrides of the SQ-Codec whose latents the decoder generates.
        sqcodec_pretrained: weights for it: a local upstream ``sqcodec.pth`` file or anything ``zoo.load``
            takes (``"sqcodec.uniaudio2"`` downloads upstream's file); read when the model
            is built (a saved codec carries them in its own weights, and its config forgets the path). What is
            loaded here is also what ``load_upstream`` uses: it downloads ``sqcodec.pth`` only without it.
        train_sqcodec: train the SQ-Codec jointly (tiny) instead of keeping it frozen (paper: ``sqcodec.pth``).
        stage: which parts train (upstream's stages): ``"joint"`` everything; ``"reasoning"`` (A) the reasoning
            branch only; ``"reconstruction"`` (B) all but the reasoning branch; ``"decoder"`` (C) the decoder
            condition and the flow-matching DiT only. Frozen parts stay in eval mode.
        feature_weight: weight of the L2 teacher-feature reconstruction losses.
        prompt_prob: training probability that an item gets an in-context latent prefix (up to 25 %).
        decode_steps, cfg_scale, decode_window, decode_seed: Euler steps, guidance scale, frames per decoding
            window (30 s = 750 latent frames, 25 % overlap) and the seed of the starting noise.
        encode_repeat: encode as upstream's official ``tokenize`` (repeat the clip into windows of
            ``encode_window + encode_overhang`` samples, 30 s + 240, encoded ``encode_batch`` windows at a time);
            ``False``: zero-pad to a multiple of 9,600 samples and encode once (upstream's ``encode_segment``).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        dim: int = 768,
        whisper_dim: int = 1024,
        phone_dim: int = 768,
        ssl_dim: int = 1024,
        teachers: str = "pretrained",
        whisper_path: str | None = None,
        wavlm_path: str | None = None,
        music_ssl_path: str | None = None,
        teacher_seed: int = 0,
        query_interval: int = 5,
        query_depth: int = 5,
        query_head_dim: int = 128,
        reasoning_quantizers: int = 8,
        reasoning_codebook_size: int = 4096,
        reasoning_codebook_dim: int = 64,
        reasoning_dead_threshold: float = 0.1,
        acoustic_quantizers: int = 6,
        codebook_size: int = 8192,
        codebook_dim: int = 32,
        dead_threshold: float = 2.0,
        ema_decay: float = 0.9,
        film_scale: float = 0.1,
        cond_dropout: float = 0.2,
        cfg_dropout: float = 0.1,
        dit_width: int = 1536,
        dit_depth: int = 32,
        dit_heads: int = 24,
        sqcodec: str = "sqcodec",
        sqcodec_args: dict[str, Any] | None = None,
        sqcodec_pretrained: str | None = None,
        train_sqcodec: bool = False,
        stage: str = "reconstruction",
        feature_weight: float = 1.0,
        prompt_prob: float = 0.5,
        decode_steps: int = 10,
        cfg_scale: float = 1.5,
        decode_window: int = 750,
        decode_seed: int = 0,
        encode_repeat: bool = True,
        encode_window: int = 720000,
        encode_overhang: int = 240,
        encode_batch: int = 6,
    ) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if teachers not in ("pretrained", "tiny"):
            raise ValueError(f"teachers must be 'pretrained' or 'tiny', got {teachers!r}")
        self.sample_rate = sample_rate
        self.channels = 1
        self.hop_length = sample_rate * 2 // 25  # 12.5 Hz reconstruction frames
        self.reasoning_hop = self.hop_length * query_interval // 2  # 5 Hz with the default interval
        self.latent_hop = self.hop_length // 2  # 25 Hz decoder / SQ-Codec frames
        # Upstream's ``wave_pad``: 9,600 samples = 5 reconstruction frames = 2 reasoning frames.
        self.pad_multiple = math.lcm(self.hop_length, self.reasoning_hop)
        if encode_repeat and encode_window % self.pad_multiple:
            raise ValueError(
                f"encode_window must be a multiple of {self.pad_multiple} samples, got {encode_window}"
            )
        self.encode_repeat, self.encode_window = encode_repeat, encode_window
        self.encode_overhang, self.encode_batch = encode_overhang, encode_batch
        self.film_scale, self.cond_dropout, self.feature_weight = film_scale, cond_dropout, feature_weight
        self.prompt_prob = prompt_prob
        self.decode_steps, self.cfg_scale = decode_steps, cfg_scale
        self.decode_window, self.decode_seed = decode_window, decode_seed
        self.stage, self.train_sqcodec = stage, train_sqcodec
        self.teacher_kind = teachers

        self.audio_thinking = AudioThinking(
            dim,
            whisper_dim,
            ssl_dim,
            interval=query_interval,
            depth=query_depth,
            head_dim=query_head_dim,
            num_quantizers=reasoning_quantizers,
            codebook_size=reasoning_codebook_size,
            codebook_dim=reasoning_codebook_dim,
            ema_decay=ema_decay,
            dead_threshold=reasoning_dead_threshold,
        )
        # Reconstruction branch (names as upstream).
        self.d_conv_whisper = nn.Conv1d(whisper_dim, whisper_dim, 4, stride=4)
        self.d_conv_wavlm = nn.Conv1d(phone_dim, phone_dim, 4, stride=4)
        self.d_conv_embedding_semantic = nn.Conv1d(ssl_dim, ssl_dim, 2, stride=2)
        self.d_conv_embedding_acoustic = nn.Conv1d(ssl_dim, ssl_dim, 2, stride=2)
        self.structure_semantic_decoder = FeatureDecoder(dim, ssl_dim, ssl_dim, (1, 2))
        self.pronunciation_decoder = FeatureDecoder(dim, phone_dim, phone_dim, (2, 2))
        vq = {"codebook_dim": codebook_dim, "ema_decay": ema_decay, "commitment_weight": 1.0}
        self.vq_acoustic = ProjectedResidualVQ(
            dim, acoustic_quantizers, codebook_size, restart_threshold=dead_threshold, **vq
        )
        self.vq_structure_semantic = ProjectedResidualVQ(
            dim, 1, codebook_size, restart_threshold=dead_threshold, **vq
        )
        self.vq_pronunciation_semantic = ProjectedResidualVQ(
            dim, 1, codebook_size, restart_threshold=dead_threshold, **vq
        )
        self.cond_fusion_layer_semantic = nn.Linear(ssl_dim, dim)
        self.cond_fusion_layer_acoustic = nn.Linear(ssl_dim + whisper_dim, dim)
        self.cond_fusion_layer_phone = nn.Linear(phone_dim, dim)
        self.time_film_phone = nn.Linear(dim, 2 * dim)
        self.time_film_semantic = nn.Linear(dim, 2 * dim)
        self.time_film_acoustic = nn.Linear(dim, 2 * dim)
        self.reason_adaptor = nn.Linear(dim, dim)
        self.cond_feature_emb = nn.Linear(dim, dim)
        self.zero_cond_embedding1 = nn.Parameter(torch.randn(dim))
        # Decoder: SQ-Codec latents by conditional flow matching.
        self.sqcodec = create(sqcodec, **(sqcodec_args or {}))
        if self.sqcodec.sample_rate != sample_rate or self.sqcodec.hop_length != self.latent_hop:
            raise ValueError(
                f"{sqcodec} runs at {self.sqcodec.sample_rate} Hz with hop {self.sqcodec.hop_length}; the decoder "
                f"needs {sample_rate} Hz latents every {self.latent_hop} samples"
            )
        latent_dim = self.sqcodec.latent_dim
        estimator = DiT1d(2 * latent_dim + dim, latent_dim, width=dit_width, depth=dit_depth, heads=dit_heads)
        self.cfm_wrapper = ConditionalFlowMatching(estimator, latent_dim, dim, cond_drop_prob=cfg_dropout)

        # True once the SQ-Codec holds real weights (so the converter need not fetch sqcodec.pth).
        self.sqcodec_loaded = False
        if sqcodec_pretrained is not None:
            self.sqcodec.load_state_dict(_local_sqcodec_state(sqcodec_pretrained, self.sqcodec))
            self.sqcodec_loaded = True
            # The weights now live in this model's state dict: a saved model must not need the file again.
            self.update_config(sqcodec_pretrained=None)

        self._teachers = TeacherSet()
        self._text_lm: Callable[..., torch.Tensor] | None = None
        self._teacher_paths: dict[str, str] | None = None
        if teachers == "tiny":
            with torch.device("cpu"):  # real even under a meta-device context (``zoo.info``); moved on use
                fixed = tiny_teachers(sample_rate, whisper_dim, phone_dim, ssl_dim, teacher_seed)
            self.attach_teachers(**fixed)
        elif any(p is not None for p in (whisper_path, wavlm_path, music_ssl_path)):
            if None in (whisper_path, wavlm_path, music_ssl_path):
                raise ValueError("pass all of whisper_path, wavlm_path and music_ssl_path (local files)")
            # Loaded on first use: a saved model then loads (and decodes) where the teachers are absent.
            self._teacher_paths = {"whisper": whisper_path, "phone": wavlm_path, "ssl": music_ssl_path}
        self.dims = {"whisper": whisper_dim, "phone": phone_dim, "acoustic": ssl_dim, "semantic": ssl_dim}
        self.set_stage(stage)

    # ------------------------------------------------------------------ token spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """The reconstruction stream (the primary id grid): ``[phone, semantic, acoustic x N]``."""
        return (
            self.vq_pronunciation_semantic.codebook_sizes
            + self.vq_structure_semantic.codebook_sizes
            + self.vq_acoustic.codebook_sizes
        )

    @property
    def reasoning_codebook_sizes(self) -> tuple[int, ...]:
        return self.audio_thinking.reasoning_vq.codebook_sizes

    @property
    def reasoning_tokens_per_second(self) -> float:
        return self.sample_rate / self.reasoning_hop

    @property
    def reasoning_bits_per_second(self) -> float:
        return self.reasoning_tokens_per_second * sum(math.log2(c) for c in self.reasoning_codebook_sizes)

    def token_layout(self) -> dict[str, Any]:
        layout = super().token_layout()
        layout["streams"] = {
            "reconstruction": {
                "frame_rate": self.tokens_per_second,
                "codebook_sizes": list(self.codebook_sizes),
                "tokens_per_second": self.tokens_per_second * self.num_codebooks,
                "bits_per_second": self.bits_per_second,
            },
            "reasoning": {
                "frame_rate": self.reasoning_tokens_per_second,
                "codebook_sizes": list(self.reasoning_codebook_sizes),
                "tokens_per_second": self.reasoning_tokens_per_second * len(self.reasoning_codebook_sizes),
                "bits_per_second": self.reasoning_bits_per_second,
            },
        }
        return layout

    # ------------------------------------------------------------------ teachers, text LM, stages
    def attach_teachers(self, **teachers: FrozenTeacher) -> None:
        """Set frozen teachers by name (``whisper``, ``phone``, ``ssl``); together they must serve the roles
        ``whisper``, ``phone``, ``acoustic`` and ``semantic``. They stay outside ``state_dict``."""
        for name, teacher in teachers.items():
            if not isinstance(teacher, FrozenTeacher):
                raise TypeError(f"teacher {name!r} is a {type(teacher).__name__}, not a FrozenTeacher")
            self._teachers[name] = teacher.freeze()

    @property
    def teachers(self) -> dict[str, FrozenTeacher]:
        self._load_teachers()
        return dict(self._teachers)

    def _load_teachers(self) -> None:
        if self._teachers or self._teacher_paths is None:
            return
        paths = self._teacher_paths
        self.attach_teachers(
            whisper=WhisperEncoderTeacher(paths["whisper"]),
            phone=WavLMTeacher(paths["phone"]),
            ssl=MusicSSLTeacher(paths["ssl"], dim=self.dims["semantic"]),
        )

    def attach_text_lm(self, text_lm: Callable[[torch.Tensor, Sequence[str]], torch.Tensor] | None) -> None:
        """Plug the text-alignment language model: ``text_lm(reasoning [B, N, dim], texts) -> loss`` (e.g. an LLM
        fed ``[BOS, projected query embeddings, text]`` with cross-entropy on the text). It is kept outside the
        module tree; its own parameters (a projection, LoRA adapters) are the caller's to optimise."""
        self._text_lm = text_lm

    def _stage_modules(self, stage: str) -> list[nn.Module]:
        """Modules frozen in ``stage``."""
        reasoning = [self.audio_thinking]
        encoders = [
            self.d_conv_whisper,
            self.d_conv_wavlm,
            self.d_conv_embedding_semantic,
            self.d_conv_embedding_acoustic,
            self.structure_semantic_decoder,
            self.pronunciation_decoder,
            self.vq_acoustic,
            self.vq_structure_semantic,
            self.vq_pronunciation_semantic,
            self.cond_fusion_layer_semantic,
            self.cond_fusion_layer_acoustic,
            self.cond_fusion_layer_phone,
        ]
        if stage == "joint":
            return []
        if stage == "reconstruction":
            return reasoning
        if stage == "decoder":
            return reasoning + encoders
        return [m for m in self.children() if m is not self.audio_thinking]  # "reasoning"

    def set_stage(self, stage: str) -> None:
        """Freeze the parts ``stage`` does not train (``requires_grad`` off, kept in eval mode)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.stage = stage
        self.requires_grad_(True)
        frozen = self._stage_modules(stage)
        if not self.train_sqcodec or stage == "reasoning":
            frozen.append(self.sqcodec)
        self._frozen = frozen
        for module in frozen:
            module.requires_grad_(False)
        if stage == "reasoning":
            self.zero_cond_embedding1.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> ReasoningCodec:
        super().train(mode)
        for module in getattr(self, "_frozen", ()):
            module.eval()  # frozen codebooks must not move by EMA
        return self

    # ------------------------------------------------------------------ encoder
    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, -x.shape[-1] % self.pad_multiple))

    def teacher_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frozen teacher features of padded audio ``[B, 1, T]``: ``{role: [B, C, F]}`` at 50/50/25/25 Hz."""
        self._load_teachers()
        if not self._teachers:
            raise RuntimeError(
                f"{type(self).__name__} needs its frozen teachers to encode: pass whisper_path, wavlm_path and "
                "music_ssl_path (local files; nothing is downloaded) or call attach_teachers()"
            )
        features: dict[str, torch.Tensor] = {}
        for teacher in self._teachers.values():
            teacher.to(x.device)
            features.update(teacher(x, self.sample_rate))
        missing = set(ROLES) - set(features)
        if missing:
            raise RuntimeError(f"no teacher serves {sorted(missing)}")
        frames = {"whisper": 4, "phone": 4, "acoustic": 2, "semantic": 2}
        out = {}
        for role, per_token in frames.items():
            # Upstream cuts every feature to whole reconstruction frames (a 30 s + 240 window: 375 frames).
            n = x.shape[-1] // self.hop_length * per_token
            value = features[role]
            if value.shape[1] != self.dims[role] or value.shape[-1] < n:
                raise RuntimeError(
                    f"teacher feature {role!r} has shape {tuple(value.shape)}; expected [B, {self.dims[role]}, {n}]"
                )
            out[role] = value[..., :n].to(self.cond_feature_emb.weight.dtype)
        return out

    def _film(self, cond: torch.Tensor, features: torch.Tensor, layer: nn.Linear, keep: torch.Tensor | None):
        """``gamma * features + beta`` on ``[B, T, C]``; ``keep [B]`` False drops the conditioning of an item."""
        delta, beta = layer(cond).chunk(2, dim=-1)
        gamma = 1.0 + self.film_scale * torch.tanh(delta)
        if keep is not None:
            k = keep.to(features.dtype)[:, None, None]
            gamma, beta = gamma * k + (1 - k), beta * k
        return gamma * features + beta

    def _upsample_reasoning(self, reasoning: torch.Tensor, frames: int) -> torch.Tensor:
        """``reason_adaptor`` then nearest x2.5 upsampling of ``[B, dim, F5]`` to ``[B, frames, dim]``."""
        adapted = self.reason_adaptor(reasoning.transpose(1, 2))
        ratio = self.reasoning_hop / self.hop_length
        index = (torch.arange(frames, device=adapted.device) / ratio).floor().long()
        return adapted[:, index.clamp_max(adapted.shape[1] - 1)]

    def _encode(self, x: torch.Tensor, *, keep: torch.Tensor | None = None) -> dict[str, Any]:
        """Both streams of padded audio, with everything training needs."""
        feats = self.teacher_features(x)
        reasoning_in = self.audio_thinking.queries(feats["whisper"], feats["semantic"])
        reasoning = self.audio_thinking.reasoning_vq(reasoning_in)
        frames = x.shape[-1] // self.hop_length
        cond = self._upsample_reasoning(reasoning.quantized, frames)

        def branch(h: torch.Tensor, film: nn.Linear, vq: ProjectedResidualVQ) -> QuantizerOutput:
            return vq(self._film(cond, h, film, keep).transpose(1, 2))

        phone = self.cond_fusion_layer_phone(self.d_conv_wavlm(feats["phone"]).transpose(1, 2))
        semantic = self.cond_fusion_layer_semantic(
            self.d_conv_embedding_semantic(feats["semantic"]).transpose(1, 2)
        )
        acoustic = torch.cat(
            [self.d_conv_embedding_acoustic(feats["acoustic"]), self.d_conv_whisper(feats["whisper"])], 1
        )
        acoustic = self.cond_fusion_layer_acoustic(acoustic.transpose(1, 2))
        return {
            "features": feats,
            "reasoning": reasoning,
            "phone": branch(phone, self.time_film_phone, self.vq_pronunciation_semantic),
            "semantic": branch(semantic, self.time_film_semantic, self.vq_structure_semantic),
            "acoustic": branch(acoustic, self.time_film_acoustic, self.vq_acoustic),
        }

    @staticmethod
    def _rec_ids(enc: Mapping[str, QuantizerOutput]) -> torch.Tensor:
        return torch.cat([enc["phone"].ids, enc["semantic"].ids, enc["acoustic"].ids], dim=1)

    def repeat_windows(self, x: torch.Tensor) -> torch.Tensor:
        """One clip ``[1, 1, T]`` -> upstream ``audio2token``'s windows ``[N, 1, encode_window + encode_overhang]``.

        The clip is doubled until it fills one window, ``N = len // encode_window + 1`` windows are cut from it
        doubled once more, so a short clip becomes a loop of itself and a long one wraps round to its start.
        """
        size = self.encode_window + self.encode_overhang
        looped = x
        while looped.shape[-1] < size:
            looped = torch.cat([looped, looped], dim=-1)
        count = looped.shape[-1] // self.encode_window + 1
        looped = torch.cat([looped, looped], dim=-1)[..., : count * size]
        return looped.reshape(count, 1, size)

    def _encode_ids(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reasoning and reconstruction ids ``[B, 8, F5]``, ``[B, 8, F]`` of raw audio by the configured entry point."""
        if not self.encode_repeat:
            enc = self._encode(self._pad(x))
            return enc["reasoning"].ids, self._rec_ids(enc)
        reasoning, reconstruction = [], []
        for item in x:  # upstream tokenizes one clip at a time
            windows = self.repeat_windows(item[None])
            parts = [
                self._encode(windows[i : i + self.encode_batch])
                for i in range(0, len(windows), self.encode_batch)
            ]
            # windows follow each other in time: [N, 8, F] -> [1, 8, N * F]
            for out, key in ((reasoning, "reasoning"), (reconstruction, None)):
                ids = torch.cat([p["reasoning"].ids if key else self._rec_ids(p) for p in parts])
                out.append(ids.permute(1, 0, 2).reshape(1, ids.shape[1], -1))
        return torch.cat(reasoning), torch.cat(reconstruction)

    # ------------------------------------------------------------------ decoder
    def _condition(
        self, rec_sum: torch.Tensor, reasoning: torch.Tensor | None, valid_frames: int | None
    ) -> torch.Tensor:
        """Quantized reconstruction sum ``[B, dim, F]`` (+ reasoning ``[B, dim, F5]``) -> 25 Hz condition ``[B, dim, 2F]``."""
        h = rec_sum.transpose(1, 2)
        if reasoning is not None:
            h = h + self._upsample_reasoning(reasoning, h.shape[1])
        h = self.cond_feature_emb(h).repeat_interleave(2, dim=1)
        if valid_frames is not None and valid_frames < h.shape[1]:
            real = (torch.arange(h.shape[1], device=h.device) < valid_frames)[None, :, None]
            h = torch.where(real, h, self.zero_cond_embedding1.to(h.dtype))
        return h.transpose(1, 2)

    def _valid_latents(self, num_samples: int | None) -> int | None:
        return None if num_samples is None else math.ceil(num_samples / self.latent_hop)

    def _sample_latents(self, cond: torch.Tensor) -> torch.Tensor:
        """Euler sampling with per-item seeded noise (windowed past ``decode_window`` frames)."""
        b, _, n = cond.shape
        shape = (1, self.cfm_wrapper.latent_dim, n)
        kwargs = {"steps": self.decode_steps, "cfg_scale": self.cfg_scale}
        if n <= self.decode_window:
            noise = torch.cat(
                [
                    torch.randn(
                        shape, generator=torch.Generator(cond.device).manual_seed(self.decode_seed)
                    ).to(cond.device, cond.dtype)
                    for _ in range(b)
                ]
            )
            return self.cfm_wrapper.sample(cond, noise=noise, **kwargs)
        return torch.cat(
            [
                self.cfm_wrapper.sample_long(
                    cond[i : i + 1],
                    self.decode_window,
                    generator=torch.Generator(cond.device).manual_seed(self.decode_seed),
                    **kwargs,
                )
                for i in range(b)
            ]
        )

    def decode_ids(
        self, rec_ids: torch.Tensor, reasoning_ids: torch.Tensor | None = None, num_samples: int | None = None
    ) -> torch.Tensor:
        """Reconstruction ids ``[B, 8, F]`` (and optionally reasoning ids ``[B, 8, F5]``) -> audio ``[B, 1, F * hop]``."""
        n_phone = self.vq_pronunciation_semantic.num_quantizers
        n_sem = self.vq_structure_semantic.num_quantizers
        rec_sum = (
            self.vq_pronunciation_semantic.lookup(rec_ids[:, :n_phone])
            + self.vq_structure_semantic.lookup(rec_ids[:, n_phone : n_phone + n_sem])
            + self.vq_acoustic.lookup(rec_ids[:, n_phone + n_sem :])
        )
        reasoning = None if reasoning_ids is None else self.audio_thinking.reasoning_vq.lookup(reasoning_ids)
        cond = self._condition(rec_sum, reasoning, self._valid_latents(num_samples))
        latents = self._sample_latents(cond)
        return self.sqcodec.decode_latents(latents)

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def encode(self, x: torch.Tensor, streams: Sequence[str] = STREAMS) -> Tokens:
        """Audio ``[B, 1, T]`` -> `Tokens`. With the reconstruction stream, ``ids`` are its ``[B, 8, ceil(T/1920)]``
        codes and the reasoning codes ``[B, 8, ceil(T/4800)]`` (when asked for) ride in ``side["reasoning"]``;
        asked for alone, the reasoning codes are the ids."""
        streams = tuple(streams)
        if not streams or set(streams) - set(STREAMS):
            raise ValueError(f"streams must be a non-empty subset of {STREAMS}, got {streams}")
        self.check_audio(x)
        all_reasoning, all_rec = self._encode_ids(x)
        t = x.shape[-1]
        reasoning_ids = all_reasoning[..., : math.ceil(t / self.reasoning_hop)]
        meta: dict[str, Any] = {"num_samples": int(t), "sample_rate": self.sample_rate}
        reasoning_meta = {
            "reasoning_codebook_sizes": list(self.reasoning_codebook_sizes),
            "reasoning_frame_rate": self.reasoning_tokens_per_second,
        }
        if "reconstruction" not in streams:
            return self.make_tokens(
                ids=reasoning_ids,
                grid=tuple(reasoning_ids.shape[2:]),
                codebook_sizes=self.reasoning_codebook_sizes,
                meta={**meta, "stream": "reasoning", "frame_rate": self.reasoning_tokens_per_second},
            )
        rec_ids = all_rec[..., : math.ceil(t / self.hop_length)]
        side = {"reasoning": reasoning_ids} if "reasoning" in streams else {}
        meta.update({"stream": "reconstruction", "frame_rate": self.tokens_per_second})
        if side:
            meta.update(reasoning_meta)
        return self.make_tokens(
            ids=rec_ids,
            grid=tuple(rec_ids.shape[2:]),
            codebook_sizes=self.codebook_sizes,
            meta=meta,
            side=side,
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Reconstruction tokens (with or without ``side["reasoning"]``) -> audio ``[B, 1, T]``."""
        if tokens.meta.get("stream") == "reasoning":
            raise ValueError(
                "reasoning tokens alone cannot be decoded to audio; encode with the reconstruction stream "
                "(streams=('reasoning', 'reconstruction') or ('reconstruction',))"
            )
        rec_ids = self.decodable_ids(tokens, 1)
        reasoning_ids = tokens.side.get("reasoning")
        if reasoning_ids is not None:
            reasoning_ids = reasoning_ids.to(self.device).long()
            sizes = self.reasoning_codebook_sizes
            if reasoning_ids.ndim != 3 or reasoning_ids.shape[:2] != (len(tokens), len(sizes)):
                raise ValueError(
                    f"reasoning ids must be [B, {len(sizes)}, F], got {tuple(reasoning_ids.shape)}"
                )
            if bool(((reasoning_ids < 0) | (reasoning_ids >= sizes[0])).any()):
                raise ValueError("reasoning ids outside the codebook")
        num_samples = tokens.meta.get("num_samples")
        wav = self.decode_ids(rec_ids, reasoning_ids, None if num_samples is None else int(num_samples))
        return self.trim(wav, tokens)

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        return self.training_output(x, 0)

    def training_output(
        self, x: torch.Tensor, step: int, texts: Sequence[str] | None = None
    ) -> TokenizerOutput:
        """Losses of the current ``stage`` (all keyed as the trainer logs them):

        ``vq/<stream>/commit`` (every quantizer), ``rec/feature_semantic`` and ``rec/feature_phone`` (L2 of the
        semantic decoders against the teachers), ``rec/cfm`` (flow matching on SQ-Codec latents), ``sq/...`` (the
        SQ-Codec's own losses when it trains jointly) and ``align/text`` (when a text LM is attached and ``texts``
        given). ``recon`` is the SQ-Codec's reconstruction of ``x`` in training (what the recipe's mel loss trains
        when the SQ-Codec trains jointly), and the full token round trip in eval mode.
        """
        self.check_audio(x)
        t = x.shape[-1]
        padded = self._pad(x)
        b = x.shape[0]
        training = self.training
        keep_film = keep_reason = None
        if training and self.cond_dropout > 0:
            keep_film = torch.rand(b, device=x.device) >= self.cond_dropout
            keep_reason = torch.rand(b, device=x.device) >= self.cond_dropout
        enc = self._encode(padded, keep=keep_film)
        losses: dict[str, torch.Tensor] = {}
        stats: dict[str, torch.Tensor] = {}
        for name in ("reasoning", "phone", "semantic", "acoustic"):
            out: QuantizerOutput = enc[name]
            for key, value in out.losses.items():
                if self.stage == "reasoning" and name != "reasoning":
                    continue
                if name == "reasoning" and self.stage in ("reconstruction", "decoder"):
                    continue
                losses[f"vq/{name}/{key.removeprefix('vq/')}"] = value
            stats[f"{name}/usage"] = out.stats["usage"]
            stats[f"{name}/perplexity"] = out.stats["perplexity"]
        if self._text_lm is not None and texts is not None:
            losses["align/text"] = self._text_lm(enc["reasoning"].quantized.transpose(1, 2), list(texts))
        if self.stage != "reasoning":
            if self.stage != "decoder":
                feats = enc["features"]
                semantic = self.structure_semantic_decoder(enc["semantic"].quantized)
                phone = self.pronunciation_decoder(enc["phone"].quantized)
                losses["rec/feature_semantic"] = self.feature_weight * F.mse_loss(semantic, feats["semantic"])
                losses["rec/feature_phone"] = self.feature_weight * F.mse_loss(phone, feats["phone"])
            rec_sum = enc["phone"].quantized + enc["semantic"].quantized + enc["acoustic"].quantized
            reasoning = enc["reasoning"].quantized
            if keep_reason is not None:
                reasoning = reasoning * keep_reason.to(reasoning.dtype)[:, None, None]
            valid = self._valid_latents(t)
            cond = self._condition(rec_sum, reasoning, valid)
            if self.train_sqcodec and training:
                sq_out = self.sqcodec(padded)
                recon = sq_out.recon[..., :t]
                losses.update({f"sq/{k.split('/', 1)[-1]}": v for k, v in sq_out.losses.items()})
                stats.update(sq_out.stats)
                target = sq_out.latents.detach()
            else:
                with torch.no_grad():
                    target = self.sqcodec.encode_latents(padded)
                    recon = self.sqcodec.decode_latents(target)[..., :t] if training else None
            target = target[..., : cond.shape[-1]]
            weights = (torch.arange(cond.shape[-1], device=x.device) < valid).float().expand(b, -1)
            prompt = None
            if training and self.prompt_prob > 0:
                longest = max(int(0.25 * valid), 0)
                lengths = torch.randint(0, longest + 1, (b,), device=x.device)
                prompt = torch.where(torch.rand(b, device=x.device) < self.prompt_prob, lengths, 0)
            losses["rec/cfm"] = self.cfm_wrapper.loss(target, cond, prompt_len=prompt, frame_weights=weights)
        else:
            recon = None
        if recon is None:
            with torch.no_grad():
                recon = self.decode_ids(self._rec_ids(enc), enc["reasoning"].ids, t)[..., :t]
        return TokenizerOutput(
            recon=recon,
            ids=self._rec_ids(enc)[..., : math.ceil(t / self.hop_length)],
            losses=losses,
            stats=stats,
        )


# ---------------------------------------------------------------------------------------------- converter
# Upstream parts that are not the codec's own weights: the frozen teachers (loaded from their own folders),
# torchaudio's resampler kernel, rotary frequency tables and DiT position tables (computed here).
_DROP_PREFIXES = ("whisper_encoder.", "wavlm_encoder.", "pretrained_model.", "wavlm_transfer.")
_DROP_SUFFIXES = (".rope.inv_freq", "cfm_wrapper.estimator.pos_embed.pe", "._codebook.initted")
_CODEBOOK = re.compile(r"(.+\.layers\.\d+)\._codebook\.(embed|embed_avg|cluster_size)$")
_CODEBOOK_NAMES = {"embed": "codebook", "embed_avg": "embed_sum", "cluster_size": "cluster_size"}
UPSTREAM_REPO = "Dongchao/UniAudio2_ckpt"


def split_teacher_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The teachers stored inside an upstream checkpoint, by teacher: ``whisper`` (a ``WhisperEncoder``
    state dict), ``wavlm`` (``WavLMModel``) and ``music_ssl`` (upstream's BEST-RQ wrapper, ``model.*``)."""
    groups = {"whisper": "whisper_encoder.", "wavlm": "wavlm_encoder.", "music_ssl": "pretrained_model."}
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in groups}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        for name, prefix in groups.items():
            if key.startswith(prefix):
                out[name][key.removeprefix(prefix)] = value
    return out


def convert_reasoningcodec(
    state_dict: Mapping[str, torch.Tensor],
    model: ReasoningCodec | None = None,
    *,
    sqcodec_state_dict: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Map upstream's ``{'model': state_dict}`` (``AudioDiffusion1D``) onto `ReasoningCodec`.

    ``module.`` prefixes are stripped; the teachers, the resampler and the fixed position/rotary tables are
    dropped (`split_teacher_weights` returns the teachers); vector-quantize-pytorch codebooks
    (``layers.{i}._codebook.{embed, embed_avg, cluster_size}`` with a leading axis of 1) become
    ``layers.{i}.{codebook, embed_sum, cluster_size}``; every other key keeps its name. The SQ-Codec is not in
    upstream's checkpoint (it ships as ``sqcodec.pth``): its weights come from ``sqcodec_state_dict`` (zoo
    layout, with or without the ``sqcodec.`` prefix), else from ``model`` when it was built with a local
    SQ-Codec (``sqcodec_pretrained``: nothing is downloaded), else they are downloaded from the same Hub repo
    and converted by the SQ-Codec's own converter (an error names the file when that is impossible).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(_DROP_PREFIXES) or key.endswith(_DROP_SUFFIXES):
            continue
        match = _CODEBOOK.fullmatch(key)
        if match is not None:
            if value.shape[0] != 1:
                raise ValueError(f"{key}: multi-head codebooks ({value.shape[0]} heads) are not supported")
            out[f"{match[1]}.{_CODEBOOK_NAMES[match[2]]}"] = value[0]
            continue
        out[key] = value
    if not any(k.startswith("sqcodec.") for k in out):
        sq = sqcodec_state_dict
        if sq is None and model is not None:
            sq = model.sqcodec.state_dict() if model.sqcodec_loaded else _download_sqcodec(model)
        for key, value in (sq or {}).items():
            out[key if key.startswith("sqcodec.") else f"sqcodec.{key}"] = value
    return out


def _download_sqcodec(model: ReasoningCodec) -> dict[str, torch.Tensor]:
    """``sqcodec.pth`` from the upstream Hub repo, converted to the zoo's SQ-Codec layout."""
    import importlib

    from ..._registry import get_pretrained_cfg
    from ...hub import download, read_state_dict

    _, cfg = get_pretrained_cfg("sqcodec.uniaudio2")
    try:
        fetched = download(cfg.hf_hub_id, cfg.filename, revision=cfg.revision)
    except Exception as exc:  # offline, no access, hub errors: all mean the same to the user
        raise FileNotFoundError(
            f"ReasoningCodec's decoder needs the SQ-Codec weights {cfg.filename} (Hub repo {cfg.hf_hub_id}), "
            f"which could not be fetched ({type(exc).__name__}: {exc}). Download {cfg.filename} and pass "
            f"sqcodec_pretrained='path/to/{cfg.filename}' (or a zoo SQ-Codec name or folder)."
        ) from exc
    module = importlib.import_module(type(model.sqcodec).__module__)
    converter = getattr(module, str(cfg.converter))
    return converter(read_state_dict(fetched.path, cfg.checkpoint_key), model.sqcodec)


def _local_sqcodec_state(source: Any, target: nn.Module) -> dict[str, torch.Tensor]:
    """SQ-Codec weights in the zoo layout from an upstream ``sqcodec.pth`` file (``{"codec_model": ...}``,
    converted by `convert_sqcodec`), a model instance, or anything ``zoo.load`` takes."""
    from pathlib import Path

    if isinstance(source, nn.Module):
        return source.state_dict()
    path = Path(os.fspath(source))
    if path.is_file():
        import importlib

        from ...hub import read_state_dict

        module = importlib.import_module(type(target).__module__)
        return module.convert_sqcodec(read_state_dict(path, ("codec_model", None)), target)
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin", ".safetensors"):
        raise FileNotFoundError(f"SQ-Codec weights {path}: no such file")
    from ...hub import load

    return load(source).state_dict()


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_PAPER_1024: dict[str, Any] = {"codebook_size": 1024}
_TINY: dict[str, Any] = {
    "dim": 32,
    "whisper_dim": 24,
    "phone_dim": 16,
    "ssl_dim": 24,
    "teachers": "tiny",
    "query_depth": 1,
    "query_head_dim": 16,
    "reasoning_quantizers": 2,
    "reasoning_codebook_size": 64,
    "reasoning_codebook_dim": 8,
    "reasoning_dead_threshold": 0.05,
    "acoustic_quantizers": 2,
    "codebook_size": 64,
    "codebook_dim": 8,
    "dead_threshold": 0.05,
    "dit_width": 64,
    "dit_depth": 2,
    "dit_heads": 4,
    "sqcodec": "sqcodec_tiny",
    # The tiny SQ-Codec's strides changed to give 25 Hz latents (hop 960 = 2 x 4 x 4 x 5 x 6).
    "sqcodec_args": {"downsample_factors": [4, 4, 5, 6], "init_channel": 4},
    "train_sqcodec": True,
    "stage": "joint",
    "decode_steps": 4,
    "encode_repeat": False,  # trained on zero-padded clips (see training_output)
}


@register_model(modality="audio", family="reasoningcodec")
def reasoningcodec(**kwargs: Any) -> ReasoningCodec:
    """ReasoningCodec (UniAudio 2.0): reasoning 5 Hz x 8 x 4096 (480 bits/s) + reconstruction 12.5 Hz x 8 x 8192
    (1300 bits/s) for 24 kHz audio; frozen Whisper / WavLM / music-SSL teachers from local files."""
    return build(ReasoningCodec, "reasoningcodec", _PAPER, kwargs)


@register_model(modality="audio", family="reasoningcodec")
def reasoningcodec_1024(**kwargs: Any) -> ReasoningCodec:
    """ReasoningCodec with 1024-code reconstruction codebooks (12.5 Hz x 8 x 1024, 1000 bits/s), upstream's
    variant for comparisons with other codecs."""
    return build(ReasoningCodec, "reasoningcodec_1024", _PAPER_1024, kwargs)


@register_model(modality="audio", family="reasoningcodec", size="tiny")
def reasoningcodec_tiny(**kwargs: Any) -> ReasoningCodec:
    """A small ReasoningCodec for CPU tests: same rates (5 Hz x 2 x 64 reasoning, 12.5 Hz x 4 x 64 reconstruction),
    fixed log-mel teachers, a 2-layer DiT and a jointly trained tiny SQ-Codec."""
    return build(ReasoningCodec, "reasoningcodec_tiny", _TINY, kwargs)


_UPSTREAM = "https://github.com/yangdongchao/UniAudio2 @ dea57db (tools/tokenizer/ReasoningCodec_film)"
for _name, _file, _what in (
    ("reasoningcodec.uniaudio2", "ReasoningCodec.checkpoint", "8192-code reconstruction codebooks"),
    ("reasoningcodec_1024.uniaudio2", "ReasoningCodec_1024.checkpoint", "1024-code reconstruction codebooks"),
):
    register_pretrained(
        _name,
        PretrainedCfg(
            hf_hub_id=UPSTREAM_REPO,
            filename=_file,
            converter="convert_reasoningcodec",
            checkpoint_key="model",
            license="mit",
            paper="arXiv:2602.04683",
            upstream=_UPSTREAM,
            description=(
                f"UniAudio 2.0 ReasoningCodec ({_what}); the SQ-Codec comes from sqcodec.pth in the same repo (or "
                "a local copy: sqcodec_pretrained='sqcodec.pth') and the teachers (whisper-medium/, wavlm/, "
                "music_ssl.pt) must be passed as local paths to encode. Encodes as upstream's tokenize() "
                "(30 s windows of the looped clip)."
            ),
        ),
    )
