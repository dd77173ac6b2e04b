"""WavTokenizer: one 4096-code stream for 24 kHz audio at 40 or 75 tokens per second.

Paper: "WavTokenizer: an Efficient Acoustic Discrete Codec Tokenizer for Audio Language Modeling",
Ji et al., ICLR 2025, arXiv:2408.16532. Upstream: jishengpeng/WavTokenizer (MIT licence), configs
``wavtokenizer_smalldata_frame{40,75}_3s_nq1_code4096_dim512_kmeans200_attn.yaml``.

Structure: EnCodec's SEANet encoder (with a 2-layer skip-LSTM) -> one EMA vector quantizer with 4096
codes of dimension 512 (k-means initialisation, dead-code restarts) -> Vocos ConvNeXt backbone with an
attention stack in front -> inverse-STFT head with n_fft = 4 * hop.

Differences from upstream, none of which change inference outputs:
- weight normalisation of the encoder convs is folded into plain weights (upstream trains with it);
- the EnCodec SEANet *decoder* that upstream instantiates but never calls is not built;
- the iSTFT window is computed on the fly instead of being stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.audio import ISTFTHead, SEANetEncoder, VocosBackbone
from ...nn.chunking import decode_in_windows
from ...quantizers import VectorQuantizer
from ...tokenizer import AudioTokenizer, TokenizerOutput
from ...tokens import Tokens
from .._weight_norm import fold_weight_norm, split_weight_norm

__all__: list[str] = ["WavTokenizer", "convert_wavtokenizer"]


class WavTokenizer(AudioTokenizer):
    """Single-codebook acoustic codec: ``[B, 1, T]`` at 24 kHz -> ids ``[B, ceil(T / hop)]``.

    Inputs of any length are encoded as upstream does (no zero-padding to a whole hop: the encoder's
    convs reflect-pad inside, see ``encode``); ``decode`` trims to the encoded clip's length.

    Args:
        sample_rate: native rate; ``prepare`` resamples everything else to it.
        ratios: SEANet downsampling ratios (decoder order); their product is the hop: ``(8, 5, 4, 2)``
            gives 320 (75 tokens/s), ``(6, 5, 5, 4)`` gives 600 (40 tokens/s).
        n_filters, lstm_layers: SEANet width and its final skip-LSTM depth.
        latent_dim: encoder output and code dimension (512; no projection around the quantizer).
        codebook_size: number of codes.
        commitment_weight: weight of the commitment MSE; the paper's 1000 is applied here, so recipes
            add the quantizer losses unweighted.
        kmeans_iters: Lloyd steps of the first-batch k-means initialisation (upstream: 200).
        restart_threshold: EMA hit count below which a code is moved onto an encoder output (EnCodec: 2).
        dim, intermediate_dim, num_layers: Vocos backbone width, MLP width and ConvNeXt depth.
        adanorm_num_embeddings: condition ids of the adaptive LayerNorms (upstream keeps 4, uses id 0).
        attention: build the attention stack before the ConvNeXt blocks.
        norm_groups: GroupNorm groups in that stack.
        dropout: dropout in that stack's ResNet blocks.
        decode_window: seconds of audio decoded per call; longer token sequences are decoded in windows
            that overlap by ``decode_overlap`` seconds, cross-faded. The backbone's attention and GroupNorm
            see the whole sequence they are given, so this is what keeps memory (and the attention's
            quadratic time) bounded on long clips; clips up to one window decode exactly as upstream, and
            ``None`` decodes any length in one call as upstream does.
        decode_overlap: seconds shared by neighbouring decode windows.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        ratios: tuple[int, ...] = (8, 5, 4, 2),
        n_filters: int = 32,
        lstm_layers: int = 2,
        latent_dim: int = 512,
        codebook_size: int = 4096,
        commitment_weight: float = 1000.0,
        ema_decay: float = 0.99,
        kmeans_iters: int = 200,
        restart_threshold: float = 2.0,
        dim: int = 768,
        intermediate_dim: int = 2304,
        num_layers: int = 12,
        adanorm_num_embeddings: int | None = 4,
        attention: bool = True,
        norm_groups: int = 32,
        dropout: float = 0.1,
        decode_window: float | None = 30.0,
        decode_overlap: float = 1.0,
    ) -> None:
        super().__init__()
        if decode_window is not None and not 0 <= decode_overlap < decode_window:
            raise ValueError(
                f"decode_overlap must lie in [0, decode_window), got {decode_overlap} and {decode_window}"
            )
        self.sample_rate = sample_rate
        self.decode_window = decode_window
        self.decode_overlap = decode_overlap
        self.channels = 1
        self.encoder = SEANetEncoder(
            channels=1,
            dimension=latent_dim,
            n_filters=n_filters,
            ratios=tuple(ratios),
            lstm_layers=lstm_layers,
        )
        self.hop_length = self.encoder.hop_length
        self.quantizer = VectorQuantizer(
            latent_dim,
            codebook_size,
            commitment_weight=commitment_weight,
            ema_decay=ema_decay,
            kmeans_init=True,
            kmeans_iters=kmeans_iters,
            restart_threshold=restart_threshold,
        )
        self.backbone = VocosBackbone(
            latent_dim,
            dim,
            intermediate_dim,
            num_layers,
            adanorm_num_embeddings=adanorm_num_embeddings,
            attention=attention,
            dropout=dropout,
            norm_groups=norm_groups,
        )
        self.head = ISTFTHead(dim, 4 * self.hop_length, self.hop_length)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantizer.codebook_size,)

    def last_layer(self) -> torch.Tensor:
        return self.head.out.weight

    # ------------------------------------------------------------------ pieces
    def _reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(codes))[:, None]

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct ``x`` ([B, 1, T] at 24 kHz) through the quantizer; the output has ``T`` samples."""
        self.check_audio(x)
        q = self.quantizer(self.encoder(x))
        recon = self._reconstruct(q.quantized)[..., : x.shape[-1]]
        return TokenizerOutput(recon=recon, ids=q.ids, losses=q.losses, stats=q.stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Tokens:
        """Audio ``[B, 1, T]`` at ``sample_rate`` -> ids ``[B, ceil(T / hop)]``.

        ``T`` need not be a whole number of hops: as upstream's ``encode_infer``, each SEANet conv
        reflect-pads its own input (plus the few samples its stride needs), so a clip's last frames are
        upstream's. Zero-padding the clip to a hop first, as the zoo did, changed the last 4-5 frames.
        The convolutions run ``chunk_seconds`` at a time with their receptive field's overlap (the same
        ids as one call, memory flat in the clip's length).
        """
        self.check_audio(x)
        ids = self.quantizer.encode(self.encoder(x, chunk_frames=self.chunk_frames))
        return self.make_tokens(
            ids=ids,
            grid=tuple(ids.shape[1:]),
            codebook_sizes=self.codebook_sizes,
            meta={"num_samples": int(x.shape[-1]), "sample_rate": self.sample_rate},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Ids -> audio ``[B, 1, T]``: the encoded clip's length when ``tokens`` records it, else ``frames * hop``.

        Sequences longer than ``decode_window`` seconds are decoded in cross-faded windows (see the class)."""
        ids = self.decodable_ids(tokens, 1)
        codes = self.quantizer.lookup(ids).to(self.head.out.weight.dtype)
        if self.decode_window is None:
            return self.trim(self._reconstruct(codes), tokens)
        rate = self.sample_rate / self.hop_length
        wav = decode_in_windows(
            self._reconstruct,
            codes,
            hop=self.hop_length,
            window_frames=max(1, round(self.decode_window * rate)),
            overlap_frames=round(self.decode_overlap * rate),
        )
        return self.trim(wav, tokens)


# ---------------------------------------------------------------------------------------------- converter
_KEEP = (
    "feature_extractor.encodec.encoder.",
    "feature_extractor.encodec.quantizer.",
    "backbone.",
    "head.out.",
)
_CODEBOOK = {
    "inited": "initted",
    "cluster_size": "cluster_size",
    "embed": "codebook",
    "embed_avg": "embed_sum",
}


def convert_wavtokenizer(
    state_dict: Mapping[str, torch.Tensor], model: WavTokenizer | None = None
) -> dict[str, torch.Tensor]:
    """Map an upstream Lightning checkpoint's ``state_dict`` onto `WavTokenizer`.

    Kept: the SEANet encoder (weight norm folded), the first quantizer layer's codebook buffers, the
    backbone and the head's linear layer. Dropped: the never-used SEANet decoder, the discriminators,
    loss modules and the stored iSTFT window. Keys are otherwise renamed one to one, so strict loading
    reports anything unexpected.
    """
    state = {k.removeprefix("state_dict.").removeprefix("module."): v for k, v in state_dict.items()}
    rest, pairs = split_weight_norm({k: v for k, v in state.items() if k.startswith(_KEEP)})
    folded = {f"{stem}.weight": fold_weight_norm(g, v) for stem, (g, v) in pairs.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in {**rest, **folded}.items():
        if key.startswith("feature_extractor.encodec.quantizer."):
            match = re.fullmatch(
                r"feature_extractor\.encodec\.quantizer\.vq\.layers\.0\._codebook\.(\w+)", key
            )
            if match is None or match[1] not in _CODEBOOK:
                out[key] = value  # another quantizer layer: left for strict loading to report
                continue
            name = _CODEBOOK[match[1]]
            out[f"quantizer.{name}"] = value.reshape(()).bool() if name == "initted" else value
            continue
        if key.startswith("feature_extractor.encodec.encoder."):
            key = "encoder." + key.removeprefix("feature_extractor.encodec.encoder.").replace(
                ".conv.conv.", ".conv."
            )
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- registry
_PAPER_75: dict[str, Any] = {"ratios": (8, 5, 4, 2)}
_PAPER_40: dict[str, Any] = {"ratios": (6, 5, 5, 4)}
_TINY: dict[str, Any] = {
    "ratios": (4, 4, 2),
    "n_filters": 8,
    "lstm_layers": 1,
    "latent_dim": 32,
    "codebook_size": 64,
    "commitment_weight": 1.0,
    "kmeans_iters": 10,
    "restart_threshold": 0.1,
    "dim": 64,
    "intermediate_dim": 128,
    "num_layers": 2,
    "norm_groups": 8,
    "dropout": 0.0,
    "decode_window": 2.0,
    "decode_overlap": 0.1,
}


@register_model(modality="audio", family="wavtokenizer")
def wavtokenizer_75(**kwargs: Any) -> WavTokenizer:
    """WavTokenizer-small at 75 tokens/s: 24 kHz, hop 320, one codebook of 4096 (900 bits/s)."""
    return build(WavTokenizer, "wavtokenizer_75", _PAPER_75, kwargs)


@register_model(modality="audio", family="wavtokenizer")
def wavtokenizer_40(**kwargs: Any) -> WavTokenizer:
    """WavTokenizer-small at 40 tokens/s: 24 kHz, hop 600, one codebook of 4096 (480 bits/s)."""
    return build(WavTokenizer, "wavtokenizer_40", _PAPER_40, kwargs)


@register_model(modality="audio", family="wavtokenizer", size="tiny")
def wavtokenizer_tiny(**kwargs: Any) -> WavTokenizer:
    """A small WavTokenizer for CPU tests: 24 kHz, hop 32 (750 tokens/s) over 64 codes of dimension 32."""
    return build(WavTokenizer, "wavtokenizer_tiny", _TINY, kwargs)


_UPSTREAM = "https://github.com/jishengpeng/WavTokenizer @ 5cf440d"
for _name, _file, _rate, _what in (
    ("wavtokenizer_75.small_libritts", "WavTokenizer_small_320_24k_4096.ckpt", 75, "LibriTTS"),
    ("wavtokenizer_40.small_libritts", "WavTokenizer_small_600_24k_4096.ckpt", 40, "LibriTTS"),
):
    register_pretrained(
        _name,
        PretrainedCfg(
            hf_hub_id="novateur/WavTokenizer",
            filename=_file,
            converter="convert_wavtokenizer",
            checkpoint_key="state_dict",
            license="mit",
            paper="arXiv:2408.16532",
            upstream=_UPSTREAM,
            description=f"WavTokenizer-small at {_rate} tokens/s trained on {_what} (Lightning checkpoint).",
            metrics={"UTMOS (LibriTTS test-clean)": 4.05 if _rate == 75 else 3.60},
        ),
    )
