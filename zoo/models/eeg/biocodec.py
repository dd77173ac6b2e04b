"""BioCodec: a causal EnCodec-style codec that tokenizes every EEG channel on its own, 6 ids per frame.

Paper: "Neural Codecs as Biosignal Tokenizers", Avramidis et al., arXiv:2510.09095. Upstream:
klean2050/BioCodec-release @ 575bf6e (MIT licence; the paper cites usc-sail/BioCodec), ``biocodec/model.py``
(``BioCodecModel._get_optimized_model``), ``modules/{seanet,conv}.py``, ``quantization/*``,
``configs/eeg_config.yaml``, ``objective.py``, ``trainer_eeg.py`` and ``datasets/{ch2file,h5_dataset_eeg}.py``.

Structure: single-channel 5 s windows at 250 Hz -> causal SEANet encoder (32 filters, kernel 3, ratios
(3, 2, 2), two residual blocks per stage with identity skips, 2-layer skip-LSTM, weight norm, ELU) ->
128-d frames at 250 / 12 = 20.8 Hz -> residual VQ of 6 stages x 256 codes, each projecting 128 -> 16 (with
bias) and searching by cosine similarity -> the mirrored decoder (transposed convs, trimmed causally).
Training: ``0.2 * Huber + 1.0 * multi-scale STFT`` (``zoo.losses.EEGReconstructionLoss``, the ``eeg``
loss of ``TokenizerModule``) plus the commitment loss; no GAN.

Input handling, as upstream's pretraining data: ``datasets/ch2file.py`` subtracts each channel's median
over the whole (250 Hz) recording and divides by ``scipy.stats.iqr + 1e-6``, in float32, then keeps whole
5 s windows; ``datasets/h5_dataset_eeg.py`` clips them to +-10 and resamples with
``torchaudio.functional.resample`` (``normalisation="median_iqr"``, ``clip=10``; the model itself runs
with ``normalize=False``). No filter is applied. ``prepare`` resamples with the same torchaudio sinc
filter; ``encode`` normalises over whatever recording it is given (bit-identical to ``ch2file.py``) and
stores the per-channel median and IQR in ``Tokens.side``, so ``decode`` returns the input's units.
``encode(x, drop_partial=True)`` keeps whole windows only, as upstream; by default the remainder is
zero-padded into one more window. ``benchmarks/upstream_parity.py biocodec`` checks the whole path
against upstream's code on real recordings.

Differences from upstream:
- the code search follows upstream's modified EnCodec codebook (cosine similarity, unit-norm codes), but
  the EMA averages the unit-normalised encoder outputs and the codes are not renormalised after each
  update (upstream averages raw outputs, then renormalises); k-means initialisation and dead-code
  restarts likewise work on normalised vectors. With converted weights, inference is identical.
- the commitment loss is averaged over the 6 stages as upstream (``torch.mean`` of the per-stage
  losses); upstream's trainer back-propagates it twice (``retain_graph``), which is the same as a weight
  of 0.5 instead of 0.25; the default keeps the paper's 0.25.
- the tiny size sets ``sphere_commitment`` (commitment on the unit-normalised projection): upstream's
  raw-projection commitment lets the projections' norm run away at the learning rates of short CPU runs.
- ``encode`` windows a whole recording (any length, optional overlap, the remainder zero-padded unless
  ``drop_partial``) and overlap-adds the decoded windows with linear cross-fades; upstream tokenizes
  pre-cut 5 s windows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn.audio import SEANetDecoder, SEANetEncoder
from ...quantizers import ResidualVQ, project_float32
from ...tokenizer import EEGTokenizer, TokenizerOutput
from .._weight_norm import fold_weight_norm, split_weight_norm

__all__: list[str] = ["BioCodec", "convert_biocodec"]


class BioCodec(EEGTokenizer):
    """Per-channel EEG codec: windows ``[N, 1, 1250]`` at 250 Hz -> ids ``[N, 6, 105]`` over 256 codes.

    ``encode``/``decode`` work on recordings ``[B, C, T]`` (see :class:`~zoo.tokenizer.EEGTokenizer`);
    ``forward`` trains on normalised single-channel windows ``[B, 1, L]``.

    Args:
        sample_rate: native rate; ``prepare`` resamples recordings to it.
        window_samples: samples per window (5 s at 250 Hz).
        ratios: SEANet ratios in decoder order; their product is the hop (12 -> 20.8 frames/s).
        n_filters: width of the first stage (doubling per downsampling).
        n_residual_layers: residual blocks per stage (dilations 1, 2, ...).
        kernel_size: kernel of the first, last and residual convs.
        compress: channel reduction inside residual branches (1: none).
        lstm_layers: depth of the skip-LSTMs after the encoder and before the decoder (0: none).
        dimension: frame dimension between encoder, quantizer and decoder.
        num_quantizers, codebook_size: residual stages and codes per stage.
        codebook_dim: code dimension each stage projects into (upstream: ``dimension // 8``).
        commitment_weight: weight of each stage's commitment MSE; the stages' losses are averaged.
        ema_decay, kmeans_iters, restart_threshold: EMA codebook decay, Lloyd steps of the first-batch
            k-means, and the EMA hit count under which a code is moved onto an encoder output.
        sphere_commitment: measure the commitment loss (and pass the straight-through gradient) on the
            unit-normalised projection instead of the raw one. Upstream (False) compares raw projections
            with unit-norm codes, so nothing bounds the projections' norm but the commitment loss; at the
            high learning rates of short runs it grows without bound. Ids and decodes are unaffected.
        causal: left-only padding and right trimming, as upstream.
        weight_norm: train with weight normalisation (upstream's ``parametrizations.weight``).
        normalisation, clip: per-channel normalisation of recordings and the bound applied after it.
    """

    def __init__(
        self,
        *,
        sample_rate: float = 250.0,
        window_samples: int = 1250,
        ratios: tuple[int, ...] = (3, 2, 2),
        n_filters: int = 32,
        n_residual_layers: int = 2,
        kernel_size: int = 3,
        compress: int = 1,
        lstm_layers: int = 2,
        dimension: int = 128,
        num_quantizers: int = 6,
        codebook_size: int = 256,
        codebook_dim: int = 16,
        commitment_weight: float = 0.25,
        ema_decay: float = 0.99,
        kmeans_iters: int = 50,
        restart_threshold: float = 2.0,
        sphere_commitment: bool = False,
        causal: bool = True,
        weight_norm: bool = True,
        normalisation: str = "median_iqr",
        clip: float | None = 10.0,
    ) -> None:
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.window_samples = window_samples
        self.normalisation = normalisation
        self.clip = clip
        seanet: dict[str, Any] = {
            "channels": 1,
            "dimension": dimension,
            "n_filters": n_filters,
            "ratios": tuple(ratios),
            "n_residual_layers": n_residual_layers,
            "kernel_size": kernel_size,
            "last_kernel_size": kernel_size,
            "residual_kernel_size": kernel_size,
            "compress": compress,
            "lstm_layers": lstm_layers,
            "causal": causal,
            "true_skip": True,
            "activation": "ELU",
            "weight_norm": weight_norm,
        }
        self.encoder = SEANetEncoder(**seanet)
        self.hop_length = self.encoder.hop_length
        self.quantizer = ResidualVQ(
            dimension,
            num_quantizers,
            codebook_size,
            detach_residual=True,
            codebook_dim=codebook_dim,
            l2_norm=True,
            l2_norm_output=sphere_commitment,
            commitment_weight=commitment_weight,
            ema_decay=ema_decay,
            kmeans_init=True,
            kmeans_iters=kmeans_iters,
            restart_threshold=restart_threshold,
        )
        self.decoder = SEANetDecoder(**seanet)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.quantizer.codebook_sizes

    def last_layer(self) -> torch.Tensor:
        conv = self.decoder.model[-1].conv
        return conv.parametrizations.weight.original1 if hasattr(conv, "parametrizations") else conv.weight

    # ------------------------------------------------------------------ windows
    def check_windows(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != 1 or x.shape[-1] == 0:
            raise ValueError(
                f"expected single-channel windows [B, 1, L] (normalised, e.g. from EEGDataModule with "
                f"per_channel=True), got shape {tuple(x.shape)}; encode() takes recordings [B, C, T]"
            )
        if not torch.isfinite(x).all():
            raise ValueError("EEG windows contain NaN or infinite values")

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct normalised windows ``x [B, 1, L]`` through the quantizer; ``recon`` has ``L`` samples."""
        self.check_windows(x)
        q = self.quantizer(self.encoder(x))
        recon = self.decoder(q.quantized)[..., : x.shape[-1]]
        losses = {k: v / self.quantizer.num_quantizers for k, v in q.losses.items()}
        return TokenizerOutput(recon=recon, ids=q.ids, losses=losses, stats=q.stats)

    def encode_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised windows ``[N, 1, window_samples]`` -> ids ``[N, num_quantizers, frames]``."""
        return self.residual_search(self.encoder(x))

    @torch.no_grad()
    def residual_search(self, z: torch.Tensor) -> torch.Tensor:
        """Ids ``[N, num_quantizers, frames]`` of encoder frames ``z [N, dimension, frames]``, searched as
        upstream's codebooks search (``core_vq.EuclideanCodebook.quantize``): the largest float32 cosine
        similarity between the normalised projection and the normalised codes. The quantizer's own search
        minimises ``|c|^2 - 2 x.c``, the same ranking in exact arithmetic, but its rounding can order a
        near-tie (about one id in a million) the other way. A bf16 or fp16 model searches in float32 too, on
        its projections and codes upcast."""
        residual = z.float()
        ids = []
        for layer in self.quantizer.layers:
            # [N, frames, codebook_dim]
            projected = project_float32(layer.project_in, residual.transpose(1, 2))
            rows = F.normalize(projected.reshape(-1, projected.shape[-1]), p=2, dim=1)
            similarity = rows @ F.normalize(layer.codebook.float(), p=2, dim=1).t()
            index = similarity.max(dim=-1).indices.view(projected.shape[:-1])
            code_vectors = F.embedding(index, layer.output_codes(torch.float32))
            residual = residual - project_float32(layer.project_out, code_vectors).transpose(1, 2)
            ids.append(index)
        return torch.stack(ids, 1)

    def decode_windows(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[N, num_quantizers, frames]`` -> normalised windows ``[N, 1, window_samples]``."""
        z = self.quantizer.lookup(ids).to(self.last_layer().dtype)
        return self.decoder(z)[..., : self.window_samples]


# ---------------------------------------------------------------------------------------------- converter
_CODEBOOK = {
    "inited": "initted",
    "cluster_size": "cluster_size",
    "embed": "codebook",
    "embed_avg": "embed_sum",
}


def convert_biocodec(
    state_dict: Mapping[str, torch.Tensor], model: BioCodec | None = None
) -> dict[str, torch.Tensor]:
    """Map an upstream ``model_state_dict`` (``biocodec_ckpt.pt``) onto `BioCodec`.

    Strips ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes, collapses EnCodec's
    ``conv.conv``/``convtr.convtr`` nesting and renames the quantizer's ``vq.layers.{i}._codebook`` buffers.
    Weight norm stays a gain/direction pair when ``model`` trains with it (the default), and is folded into
    plain weights otherwise; old-style ``weight_g``/``weight_v`` pairs are accepted too. Nothing is dropped,
    so strict loading reports anything unexpected.
    """
    keep_weight_norm = model is None or any(".parametrizations.weight." in k for k in model.state_dict())
    state = {
        k.replace("_orig_mod.", "")
        .removeprefix("module.")
        .replace(".conv.conv.", ".conv.")
        .replace(".convtr.convtr.", ".convtr."): v
        for k, v in state_dict.items()
    }
    rest, pairs = split_weight_norm(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in rest.items():
        match = re.fullmatch(r"quantizer\.vq\.layers\.(\d+)\.(.+)", key)
        if match:
            stage, rest_key = match.groups()
            if rest_key.startswith("_codebook."):
                name = _CODEBOOK.get(rest_key.removeprefix("_codebook."), rest_key)
                value = value.reshape(()).bool() if name == "initted" else value
                rest_key = name
            out[f"quantizer.layers.{stage}.{rest_key}"] = value
            continue
        out[key] = value
    for stem, (g, v) in pairs.items():
        if keep_weight_norm:
            out[f"{stem}.parametrizations.weight.original0"] = g
            out[f"{stem}.parametrizations.weight.original1"] = v
        else:
            out[f"{stem}.weight"] = fold_weight_norm(g, v)
    return out


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "n_filters": 8,
    "n_residual_layers": 1,
    "lstm_layers": 0,
    "dimension": 32,
    "num_quantizers": 2,
    "codebook_size": 64,
    "codebook_dim": 4,
    "kmeans_iters": 10,
    "restart_threshold": 0.5,
    "sphere_commitment": True,
}


@register_model(modality="eeg", family="biocodec")
def biocodec(**kwargs: Any) -> BioCodec:
    """BioCodec at the paper size: 250 Hz, 5 s windows, 20.8 frames/s per channel x 6 codebooks of 256."""
    return build(BioCodec, "biocodec", _PAPER, kwargs)


@register_model(modality="eeg", family="biocodec", size="tiny")
def biocodec_tiny(**kwargs: Any) -> BioCodec:
    """A tiny BioCodec for CPU tests: the paper's rates (hop 12, 105 frames per window), 2 x 64 codes."""
    return build(BioCodec, "biocodec_tiny", _TINY, kwargs)


register_pretrained(
    "biocodec.tueg",
    PretrainedCfg(
        hf_hub_id=None,  # type: ignore[arg-type]  # committed to the GitHub repo only: no Hub repo exists
        filename="biocodec_ckpt.pt",
        converter="convert_biocodec",
        checkpoint_key="model_state_dict",
        license="mit",
        paper="arXiv:2510.09095",
        upstream="https://github.com/klean2050/BioCodec-release @ 575bf6e (biocodec_ckpt.pt in the repo root)",
        description=(
            "BioCodec pretrained on TUEG (single-channel 5 s EEG windows, median/IQR-normalised, clipped at "
            "+-10). Kept in the GitHub repo, not on the Hub: download biocodec_ckpt.pt by hand, then "
            "zoo.load_upstream('biocodec.tueg', path).save_pretrained(dir) and zoo.load(dir). The file holds "
            "optimizer and scheduler states too, all plain tensors and numbers, so weights_only loading reads it."
        ),
    ),
)
