"""CAT (MOSS-Audio-Tokenizer): a purely causal Transformer codec, 24 kHz -> 12.5 frames/s x 32 codebooks.

Paper: "MOSS-Audio-Tokenizer: Scaling Audio Tokenizers for Future Audio Foundation Models", Gong et al.,
arXiv:2602.10934 (CAT: Causal Audio Tokenizer with Transformer).
Upstream: OpenMOSS/MOSS-Audio-Tokenizer (Apache-2.0), inference-only Hugging Face remote code
(``modeling_moss_audio_tokenizer.py``, ``config.json``); weights ``OpenMOSS-Team/MOSS-Audio-Tokenizer``.

Structure: no convolutions and no spectral head. The waveform is cut into 240-sample frames (100 Hz),
then four causal RoPE Transformer stages run with a patch reshape (2 frames -> 1) between them
(100 -> 50 -> 25 -> 12.5 Hz; 240 * 2 * 2 * 2 = 1920 samples per token). Each stage is bias-free linear
in -> Transformer (pre-LN, LayerScale 0.01, GELU FFN) -> linear out, attending over a 10 s sliding
window. A residual quantizer of 32 stages maps the 768-d latent to 512-d, and each stage projects
to 8 dimensions, picks the nearest of 1,024 codes by cosine similarity (raw codes in the output, as
in DAC) and projects back. The decoder mirrors the encoder and emits 240-sample frames that are
flattened into the waveform. Quantizer dropout (a random prefix of stages per sample) trains every bit
rate at once: any prefix of the 32 codebooks decodes (125 bits/s per codebook, 4 kbit/s at 32).

Streaming: ``streaming_encoder()`` / ``streaming_decoder()`` (or ``encode_stream`` / ``decode_stream``)
process chunks of whole tokens (multiples of 1920 samples) with a ring KV cache per layer and give
the same ids, and samples to float tolerance, as offline ``encode`` / ``decode``.

Differences from upstream:
- weight normalisation of the quantizer's 1x1 convs is folded into plain weights (the converter does
  it; training here runs without it);
- the per-layer KV cache keeps ``context - 1`` past steps besides the current chunk, so streaming
  equals offline exactly; upstream's ring of ``context`` slots makes the first queries of a chunk
  lose their oldest keys once the 10 s window is full (offline outputs are identical).
  ``upstream_cache=True`` on the streaming methods uses upstream's ring (:class:`UpstreamRingKVCache`);
- a last partial token is quantized from its audio; upstream masks it out of its quantizer and emits
  filler ids there (:meth:`CAT.filler_ids`), which ``encode(x, upstream_last_frame=True)`` reproduces;
- the semantic-alignment LLM loss used in training upstream is not part of the model;
- rotary angles are computed in float64 (upstream: float32), which changes outputs only at float noise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.streaming import Patchify, ProjectedTransformer, RingKVCache, StreamingState, Unpatchify
from ...quantizers import QuantizerOutput, ResidualVQ
from ...tokenizer import AudioTokenizer, TokenizerOutput
from ...tokens import Tokens
from .._weight_norm import fold_weight_norm, split_weight_norm

__all__: list[str] = [
    "CAT",
    "CATQuantizer",
    "CATStreamingDecoder",
    "CATStreamingEncoder",
    "UpstreamRingKVCache",
    "convert_cat",
]


def _channel_dims(ints: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in ints)


def _conv1x1(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` in fp32 whatever the module's dtype."""
    if isinstance(conv, nn.Identity):
        return x.float()
    return nn.functional.conv1d(x.float(), conv.weight.float(), conv.bias.float())


class CATQuantizer(nn.Module):
    """1x1 conv into ``rvq_dim`` -> residual factorised cosine VQ -> 1x1 conv back (upstream's ``rlfq``)."""

    def __init__(
        self,
        dim: int,
        rvq_dim: int,
        num_quantizers: int,
        codebook_size: int,
        codebook_dim: int,
        *,
        quantizer_dropout: float,
        commitment_weight: float,
        codebook_weight: float,
    ) -> None:
        super().__init__()
        # Identities where the widths match, as upstream (its checkpoints then hold no such keys).
        self.input_proj: nn.Module = nn.Conv1d(dim, rvq_dim, 1) if dim != rvq_dim else nn.Identity()
        self.rvq = ResidualVQ(
            rvq_dim,
            num_quantizers,
            codebook_size,
            quantizer_dropout=quantizer_dropout,
            codebook_dim=codebook_dim,
            l2_norm=True,
            l2_norm_output=False,
            commitment_weight=commitment_weight,
            codebook_weight=codebook_weight,
        )
        self.output_proj: nn.Module = nn.Conv1d(rvq_dim, dim, 1) if dim != rvq_dim else nn.Identity()

    def forward(self, z: torch.Tensor, n_quantizers: int | None = None) -> QuantizerOutput:
        """Quantize latents ``[B, dim, T]`` with the first ``n_quantizers`` stages (in fp32, as upstream)."""
        with torch.autocast(z.device.type, enabled=False):
            out = self.rvq(_conv1x1(self.input_proj, z), n_quantizers=n_quantizers)
            out.quantized = _conv1x1(self.output_proj, out.quantized)
        return out

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, dim, T]`` for ids ``[B, k, T]`` of the first ``k`` stages."""
        with torch.autocast(ids.device.type, enabled=False):
            return _conv1x1(self.output_proj, self.rvq.lookup(ids))


class CAT(AudioTokenizer):
    """Causal Transformer codec: ``[B, 1, T]`` at 24 kHz -> ids ``[B, K, ceil(T / 1920)]``, ``K <= 32``.

    Args:
        sample_rate: native rate; ``prepare`` resamples everything else to it.
        patch_size: samples per frame of the first stage (and of the decoder's output frames).
        patches: patch factor between consecutive stages (one fewer than stages).
        dims, depths, heads, ffn_dims: per encoder stage: Transformer width, layers, heads, FFN width
            (the decoder mirrors them in reverse).
        out_dims: per encoder stage: output width (the last is the latent width fed to the quantizer).
        context_seconds: sliding attention window; each stage attends over
            ``int(frame_rate * context_seconds)`` frames of its own rate.
        layer_scale: initial LayerScale gain; max_period: RoPE base.
        rvq_dim, num_quantizers, codebook_size, codebook_dim: residual quantizer shape.
        quantizer_dropout: probability that a training sample keeps only a random prefix of stages.
        commitment_weight, codebook_weight: weights of the quantizer's own losses (added unweighted by recipes).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        patch_size: int = 240,
        patches: tuple[int, ...] = (2, 2, 2),
        dims: tuple[int, ...] = (768, 768, 768, 1280),
        depths: tuple[int, ...] = (12, 12, 12, 32),
        heads: tuple[int, ...] = (12, 12, 12, 20),
        ffn_dims: tuple[int, ...] = (3072, 3072, 3072, 5120),
        out_dims: tuple[int, ...] = (384, 384, 640, 768),
        context_seconds: float = 10.0,
        layer_scale: float = 0.01,
        max_period: float = 10000.0,
        rvq_dim: int = 512,
        num_quantizers: int = 32,
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        quantizer_dropout: float = 1.0,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
    ) -> None:
        super().__init__()
        dims, depths, heads = _channel_dims(dims), _channel_dims(depths), _channel_dims(heads)
        ffn_dims, out_dims, patches = _channel_dims(ffn_dims), _channel_dims(out_dims), _channel_dims(patches)
        stages = len(dims)
        if (
            not (len(depths) == len(heads) == len(ffn_dims) == len(out_dims) == stages)
            or len(patches) != stages - 1
        ):
            raise ValueError(
                "dims, depths, heads, ffn_dims and out_dims need one entry per stage, patches one fewer"
            )
        self.sample_rate = sample_rate
        self.channels = 1
        self.hop_length = patch_size * math.prod(patches)
        self.context_seconds = context_seconds
        common = {"causal": True, "layer_scale": layer_scale, "max_period": max_period}

        # Module lists mirror upstream's indices: patch reshapes are parameter-free entries between stages.
        self.encoder = nn.ModuleList([Patchify(patch_size)])
        frame_rate, in_dim, self.encoder_contexts = sample_rate / patch_size, patch_size, []
        for i in range(stages):
            context = int(frame_rate * context_seconds)
            self.encoder_contexts.append(context)
            self.encoder.append(
                ProjectedTransformer(
                    in_dim, out_dims[i], dims[i], heads[i], depths[i], ffn_dims[i], context=context, **common
                )
            )
            if i < stages - 1:
                self.encoder.append(Patchify(patches[i]))
                in_dim, frame_rate = out_dims[i] * patches[i], frame_rate / patches[i]
        self.decoder = nn.ModuleList()
        self.decoder_contexts = []
        factors = (patch_size, *patches)
        for i in reversed(range(stages)):
            context = int(frame_rate * context_seconds)
            self.decoder_contexts.append(context)
            encoder_stage = self.encoder[2 * i + 1]
            self.decoder.append(
                ProjectedTransformer(
                    out_dims[i],
                    encoder_stage.input_dim,
                    dims[i],
                    heads[i],
                    depths[i],
                    ffn_dims[i],
                    context=context,
                    **common,
                )
            )
            self.decoder.append(Unpatchify(factors[i]))
            frame_rate *= factors[i]
        self.quantizer = CATQuantizer(
            out_dims[-1],
            rvq_dim,
            num_quantizers,
            codebook_size,
            codebook_dim,
            quantizer_dropout=quantizer_dropout,
            commitment_weight=commitment_weight,
            codebook_weight=codebook_weight,
        )
        self.num_quantizers = num_quantizers

    # ------------------------------------------------------------------ token spec
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.quantizer.rvq.codebook_sizes

    def bits_per_second_at(self, n_quantizers: int) -> float:
        """Bit rate of the first ``n_quantizers`` codebooks (125 bits/s each at the paper size)."""
        self._check_n_quantizers(n_quantizers)
        return self.tokens_per_second * sum(math.log2(c) for c in self.codebook_sizes[:n_quantizers])

    @property
    def dtype(self) -> torch.dtype:
        return self.quantizer.rvq.layers[0].codebook.dtype

    def last_layer(self) -> torch.Tensor:
        return self.decoder[-2].output_proj.weight

    def _check_n_quantizers(self, n: int | None) -> int:
        n = self.num_quantizers if n is None else int(n)
        if not 1 <= n <= self.num_quantizers:
            raise ValueError(f"n_quantizers must lie in [1, {self.num_quantizers}], got {n}")
        return n

    # ------------------------------------------------------------------ pieces
    def new_encoder_states(self, upstream_cache: bool = False) -> dict[int, StreamingState]:
        """Fresh streaming states of the encoder's stages (``upstream_cache``: see :class:`UpstreamRingKVCache`)."""
        return {
            i: _new_state(m, upstream_cache)
            for i, m in enumerate(self.encoder)
            if isinstance(m, ProjectedTransformer)
        }

    def new_decoder_states(self, upstream_cache: bool = False) -> dict[int, StreamingState]:
        """Fresh streaming states of the decoder's stages (``upstream_cache``: see :class:`UpstreamRingKVCache`)."""
        return {
            i: _new_state(m, upstream_cache)
            for i, m in enumerate(self.decoder)
            if isinstance(m, ProjectedTransformer)
        }

    def encode_latents(
        self, x: torch.Tensor, states: dict[int, StreamingState] | None = None
    ) -> torch.Tensor:
        """Whole-token audio ``[B, 1, n * hop]`` -> pre-quantizer latents ``[B, out_dims[-1], n]``."""
        h = x.to(self.dtype)
        for i, module in enumerate(self.encoder):
            h = module(h, states[i]) if states is not None and i in states else module(h)
        return h

    def decode_latents(
        self, z: torch.Tensor, states: dict[int, StreamingState] | None = None
    ) -> torch.Tensor:
        """Quantized latents ``[B, out_dims[-1], n]`` -> audio ``[B, 1, n * hop]``."""
        h = z.to(self.dtype)
        for i, module in enumerate(self.decoder):
            h = module(h, states[i]) if states is not None and i in states else module(h)
        return h

    def ids_of(self, tokens: Tokens) -> torch.Tensor:
        """``tokens.ids`` as ``[B, k, T]`` after checking they are a prefix of this model's codebooks."""
        k = tokens.num_codebooks
        if (
            tokens.ids is None
            or not 1 <= k <= self.num_quantizers
            or tokens.codebook_sizes != self.codebook_sizes[:k]
            or len(tokens.grid) != 1
        ):
            raise ValueError(
                f"CAT decodes 1-D grids of ids from a prefix of its {self.num_quantizers} codebooks of "
                f"{self.codebook_sizes[0]}; got grid {tokens.grid} with codebooks {tokens.codebook_sizes}"
            )
        ids = self.check_id_range(tokens.ids.to(self.device))
        return ids.unsqueeze(1) if k == 1 else ids

    def _tokens(self, ids: torch.Tensor, num_samples: int) -> Tokens:
        k = ids.shape[1]
        return self.make_tokens(
            ids=ids[:, 0] if k == 1 else ids,
            grid=(ids.shape[-1],),
            codebook_sizes=self.codebook_sizes[:k],
            meta={"num_samples": int(num_samples), "sample_rate": self.sample_rate},
        )

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor, n_quantizers: int | None = None) -> TokenizerOutput:
        """Reconstruct ``x`` ([B, 1, T] at 24 kHz); in training each sample keeps a random prefix of
        the codebooks with probability ``quantizer_dropout`` (its dropped ids are -1)."""
        self.check_audio(x)
        q = self.quantizer(self.encode_latents(self.pad_to_hop(x)), self._check_n_quantizers(n_quantizers))
        recon = self.decode_latents(q.quantized)[..., : x.shape[-1]]
        return TokenizerOutput(recon=recon, ids=q.ids, losses=q.losses, stats=q.stats)

    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, n_quantizers: int | None = None, *, upstream_last_frame: bool = False
    ) -> Tokens:
        """Audio ``[B, 1, T]`` -> ids ``[B, K, ceil(T / hop)]`` of the first ``K = n_quantizers``
        codebooks (all 32 by default; ``[B, T']`` for one). The end is zero-padded to a whole token;
        attention is causal, so an item's ids do not depend on what follows it (or on batch padding).

        A last partial token (``T`` not a multiple of the hop) is quantized from its encoding, so its
        ids carry the clip's last samples. Upstream's ``encode`` counts only whole tokens as valid and
        masks the partial one out of its quantizer, which then emits :meth:`filler_ids` there, the same
        for every clip; ``upstream_last_frame=True`` does that too, for ids identical to upstream's.

        Clips longer than ``chunk_seconds`` run through the streaming encoder chunk by chunk, which gives
        the same ids (its KV cache holds exactly what each query sees) with memory flat in the clip's length.
        """
        self.check_audio(x)
        n = self._check_n_quantizers(n_quantizers)
        chunk = self.chunk_frames * self.hop_length
        if x.shape[-1] > chunk:
            stream = self.streaming_encoder(n)
            starts = range(0, x.shape[-1], chunk)
            ids = torch.cat(
                [stream.push(x[..., s : s + chunk], final=s + chunk >= x.shape[-1]) for s in starts], dim=-1
            )
        else:
            ids = self.quantizer(self.encode_latents(self.pad_to_hop(x)), n).ids
        whole = x.shape[-1] // self.hop_length
        if upstream_last_frame and whole < ids.shape[-1]:
            ids = ids.clone()
            ids[..., whole:] = self.filler_ids(n).view(1, n, 1)
        return self._tokens(ids, x.shape[-1])

    @torch.no_grad()
    def filler_ids(self, n_quantizers: int | None = None) -> torch.Tensor:
        """Ids ``[K]`` upstream emits for a frame its quantizer masks as padding: there every stage
        quantizes a zero residual, i.e. picks the code nearest to its input projection's bias."""
        n = self._check_n_quantizers(n_quantizers)
        rvq = self.quantizer.rvq
        zero = torch.zeros(1, rvq.dim, 1, device=self.device)
        with torch.autocast(zero.device.type, enabled=False):
            return torch.stack([layer(zero).ids.reshape(()) for layer in rvq.layers[:n]])

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Ids of any prefix of the codebooks -> audio ``[B, 1, T]`` (the encoded length when recorded).

        More than ``chunk_seconds`` of tokens are decoded by the streaming decoder, chunk by chunk (the same
        samples to float tolerance, memory flat in the length)."""
        ids = self.ids_of(tokens)
        if ids.shape[-1] > self.chunk_frames:
            return self.decode_stream(tokens, self.chunk_frames)
        return self.trim(self.decode_latents(self.quantizer.lookup(ids)), tokens)

    # ------------------------------------------------------------------ streaming
    def streaming_encoder(
        self, n_quantizers: int | None = None, *, upstream_cache: bool = False
    ) -> CATStreamingEncoder:
        """A stateful encoder for successive chunks of one stream (see :class:`CATStreamingEncoder`).

        ``upstream_cache=True`` keeps upstream's KV ring instead of the exact one (see
        :class:`UpstreamRingKVCache`): ids then equal upstream's chunked ``encode(chunk_duration=...)``,
        which differ from offline ones once the 10 s window is full.
        """
        return CATStreamingEncoder(self, n_quantizers, upstream_cache=upstream_cache)

    def streaming_decoder(self, *, upstream_cache: bool = False) -> CATStreamingDecoder:
        """A stateful decoder for successive chunks of ids (see :class:`CATStreamingDecoder`;
        ``upstream_cache`` as for :meth:`streaming_encoder`)."""
        return CATStreamingDecoder(self, upstream_cache=upstream_cache)

    @torch.no_grad()
    def encode_stream(
        self,
        x: torch.Tensor,
        chunk_samples: int,
        n_quantizers: int | None = None,
        *,
        upstream_cache: bool = False,
        upstream_last_frame: bool = False,
    ) -> Tokens:
        """``encode(x)`` computed chunk by chunk (``chunk_samples`` a multiple of the hop); the same ids.

        For upstream's ``encode(x, chunk_duration=chunk_samples / 24000)`` exactly, set both flags:
        ``upstream_cache`` (see :meth:`streaming_encoder`) and ``upstream_last_frame``, with which a
        last partial token is dropped when the clip spans several chunks (upstream keeps only whole
        tokens of its last chunk) and gets :meth:`filler_ids` when it fits in one (upstream then runs
        its offline ``encode``).
        """
        stream = self.streaming_encoder(n_quantizers, upstream_cache=upstream_cache)
        starts = range(0, x.shape[-1], self._check_chunk(chunk_samples))
        pieces = [
            stream.push(x[..., s : s + chunk_samples], final=s + chunk_samples >= x.shape[-1]) for s in starts
        ]
        ids = torch.cat(pieces, dim=-1)
        whole = x.shape[-1] // self.hop_length
        if upstream_last_frame and whole < ids.shape[-1]:
            if x.shape[-1] > chunk_samples:
                ids = ids[..., :whole]
            else:
                ids = ids.clone()
                ids[..., whole:] = self.filler_ids(ids.shape[1]).view(1, -1, 1)
        return self._tokens(ids, x.shape[-1])

    @torch.no_grad()
    def decode_stream(
        self, tokens: Tokens, chunk_frames: int, *, upstream_cache: bool = False
    ) -> torch.Tensor:
        """``decode(tokens)`` computed ``chunk_frames`` tokens at a time; the same samples to float tolerance
        (``upstream_cache=True``: upstream's chunked ``decode(chunk_duration=...)``, see :meth:`streaming_encoder`)."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        ids = self.ids_of(tokens)
        stream = self.streaming_decoder(upstream_cache=upstream_cache)
        pieces = [stream.push(ids[..., s : s + chunk_frames]) for s in range(0, ids.shape[-1], chunk_frames)]
        return self.trim(torch.cat(pieces, dim=-1), tokens)

    def _check_chunk(self, chunk_samples: int) -> int:
        if chunk_samples < 1 or chunk_samples % self.hop_length:
            raise ValueError(
                f"chunk_samples must be a positive multiple of the hop {self.hop_length}, got {chunk_samples}"
            )
        return chunk_samples


class CATStreamingEncoder:
    """Encodes one stream chunk by chunk; ``push`` returns the ids of the chunk's tokens ``[B, K, n]``.

    Every chunk but the last must hold whole tokens (a multiple of ``hop_length`` samples); the last one
    (``final=True``) may be any length and is zero-padded like offline ``encode`` pads the clip.
    """

    def __init__(self, model: CAT, n_quantizers: int | None = None, *, upstream_cache: bool = False) -> None:
        self.model = model
        self.n_quantizers = model._check_n_quantizers(n_quantizers)
        self.states = model.new_encoder_states(upstream_cache)
        self.num_samples = 0
        self.closed = False

    @torch.no_grad()
    def push(self, chunk: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        if self.closed:
            raise RuntimeError("this stream was finished by a final chunk; start a new streaming_encoder()")
        self.model.check_audio(chunk)
        if chunk.shape[-1] % self.model.hop_length and not final:
            raise ValueError(
                f"a chunk of {chunk.shape[-1]} samples is not a whole number of {self.model.hop_length}-sample "
                "tokens; only the final chunk (final=True) may be shorter"
            )
        self.num_samples += chunk.shape[-1]
        self.closed = final
        latents = self.model.encode_latents(self.model.pad_to_hop(chunk), self.states)
        return self.model.quantizer(latents, self.n_quantizers).ids


class CATStreamingDecoder:
    """Decodes one stream of ids ``[B, k, n]`` chunk by chunk into audio ``[B, 1, n * hop]``."""

    def __init__(self, model: CAT, *, upstream_cache: bool = False) -> None:
        self.model = model
        self.states = model.new_decoder_states(upstream_cache)

    @torch.no_grad()
    def push(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 3 or not 1 <= ids.shape[1] <= self.model.num_quantizers:
            raise ValueError(f"expected ids [B, k <= {self.model.num_quantizers}, n], got {tuple(ids.shape)}")
        ids = self.model.check_id_range(ids.to(self.model.device))
        return self.model.decode_latents(self.model.quantizer.lookup(ids), self.states)


class UpstreamRingKVCache(RingKVCache):
    """Upstream's streaming KV cache: a ring of exactly ``context`` slots that a chunk writes before it reads.

    A chunk's queries then see only the last ``context`` positions up to the chunk's *end*, so once the
    window is full the first queries of each chunk have lost their oldest keys, and chunked outputs
    drift from offline ones. The zoo's default cache keeps ``context - 1`` past positions besides the
    chunk, which is exactly what each query may see, so its streaming equals offline; this class exists
    to reproduce upstream's chunked ``encode``/``decode(chunk_duration=...)``. Chunks may not exceed the
    window (upstream refuses ``chunk_duration`` above it too).
    """

    def extend(
        self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.capacity is None or keys.shape[2] > self.capacity:
            raise ValueError(
                f"upstream's ring holds {self.capacity} steps; a chunk of {keys.shape[2]} steps does not fit"
            )
        super().extend(keys, values, positions)
        assert self.keys is not None and self.values is not None and self.positions is not None
        return self.keys, self.values, self.positions


def _new_state(module: ProjectedTransformer, upstream_cache: bool) -> StreamingState:
    state = module.new_state()
    if upstream_cache:
        state.caches = [UpstreamRingKVCache(layer.self_attn.context) for layer in module.transformer.layers]
    return state


# ---------------------------------------------------------------------------------------------- converter
_MOSHI_ATTN = {
    "in_proj_weight": "in_projs.0.weight",
    "in_proj.weight": "in_projs.0.weight",
    "out_proj.weight": "out_projs.0.weight",
}
_STAGE = re.compile(r"quantizer\.quantizers\.(\d+)\.(in_proj|out_proj|codebook)\.(weight|bias)")


def convert_cat(state_dict: Mapping[str, torch.Tensor], model: CAT | None = None) -> dict[str, torch.Tensor]:
    """Map MOSS-Audio-Tokenizer's ``state_dict`` (both shards merged) onto `CAT`.

    Encoder and decoder keys are already ours. Weight norm (``parametrizations.weight.original0/1``, or
    the older ``weight_g/weight_v``) is folded into plain weights; moshi-style fused attention names
    (``self_attn.in_proj_weight``) are accepted as upstream's load hook accepts them; the quantizer's
    stages move under ``quantizer.rvq.layers.{k}`` with their 1x1 convs as linear maps.
    """
    rest, pairs = split_weight_norm({k.removeprefix("module."): v for k, v in state_dict.items()})
    folded = {f"{stem}.weight": fold_weight_norm(g, v) for stem, (g, v) in pairs.items()}
    for key, value in rest.items():
        attn = re.fullmatch(r"(.+\.self_attn)\.(in_proj_weight|in_proj\.weight|out_proj\.weight)", key)
        folded[f"{attn[1]}.{_MOSHI_ATTN[attn[2]]}" if attn else key] = value
    out: dict[str, torch.Tensor] = {}
    for key, value in folded.items():
        stage = _STAGE.fullmatch(key)
        if stage is None:
            out[key] = value
            continue
        k, part, kind = stage.groups()
        if part == "codebook":
            out[f"quantizer.rvq.layers.{k}.codebook"] = value
        else:
            name = "project_in" if part == "in_proj" else "project_out"
            out[f"quantizer.rvq.layers.{k}.{name}.{kind}"] = value.squeeze(-1) if kind == "weight" else value
    return out


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "patch_size": 60,
    "patches": (2, 2),
    "dims": (32, 32, 48),
    "depths": (1, 1, 2),
    "heads": (2, 2, 4),
    "ffn_dims": (64, 64, 96),
    "out_dims": (16, 24, 32),
    "context_seconds": 0.1,
    "rvq_dim": 24,
    "num_quantizers": 4,
    "codebook_size": 64,
    "codebook_dim": 8,
}


@register_model(modality="audio", family="cat")
def cat(**kwargs: Any) -> CAT:
    """CAT / MOSS-Audio-Tokenizer at the paper size: 24 kHz, 12.5 tokens/s, 32 codebooks of 1024 (4 kbit/s)."""
    return build(CAT, "cat", _PAPER, kwargs)


@register_model(modality="audio", family="cat", size="tiny")
def cat_tiny(**kwargs: Any) -> CAT:
    """A small CAT for CPU tests: 24 kHz, hop 240 (100 tokens/s), 3 stages, 4 codebooks of 64, 0.1 s window."""
    return build(CAT, "cat_tiny", _TINY, kwargs)


register_pretrained(
    "cat.moss",
    PretrainedCfg(
        hf_hub_id="OpenMOSS-Team/MOSS-Audio-Tokenizer",
        filename="model.safetensors.index.json",
        converter="convert_cat",
        license="apache-2.0",
        paper="arXiv:2602.10934",
        upstream="https://github.com/OpenMOSS/MOSS-Audio-Tokenizer @ 56df9ee",
        description="MOSS-Audio-Tokenizer (1.6B, 3M hours of speech, sound and music; two F32 safetensors shards).",
        metrics={
            "PESQ-WB (LibriSpeech test-clean, 32 codebooks)": 3.69,
            "PESQ-WB (LibriSpeech test-clean, 16 codebooks)": 3.41,
            "STOI (LibriSpeech test-clean, 16 codebooks)": 0.96,
        },
    ),
)
