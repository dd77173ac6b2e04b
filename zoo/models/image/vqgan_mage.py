"""MAGE's VQGAN: MaskGIT's image tokenizer, the frozen base that KARL distils into 1D tokens.

Paper: "MAGE: MAsked Generative Encoder to Unify Representation Learning and Image Synthesis", Li et al.
2023, arXiv:2211.09117 (tokenizer from MaskGIT, Chang et al. 2022, arXiv:2202.04200). Upstream:
LTH14/mage @ 1becb14 (``taming/models/vqgan.py``, ``config/vqgan.yaml``), a PyTorch port of MaskGIT's
JAX VQGAN whose converted weights ship as ``vqgan_jax_strongaug.ckpt``; KARL (ShivamDuggal4/karl)
builds the same model under ``base_tokenizer.vqgan``. Paper configuration: 256 px -> 16x16 ids over
1,024 codes of dimension 256; 54,515,587 parameters.

Structure (``zoo.nn`` conv blocks in ``style="maskgit"``): bias-free residual blocks without any
attention, average-pool downsampling, a 1x1 encoder output straight into the 256-d code space (no
quant convs), two residual blocks per decoder stage, nearest + conv upsampling. The quantizer is a
plain squared-l2 nearest code with a straight-through gradient; upstream's ("legacy") loss weights
the codebook term by 0.25 and the commitment term by 1.

Images enter in ``[0, 1]`` as upstream feeds them (no ``[-1, 1]`` shift) and the decoder output is not
clamped. ``prepare`` resizes as KARL's demo and ``evaluate.py`` do before this VQGAN (torchvision's
``Resize(256, BICUBIC)`` + ``CenterCrop(256)``, bit-identical on 8-bit files); ``resize="adm"`` or
``"bicubic"`` give the other crops. For KARL, `features` gives the continuous encoder output before
quantization and `decode_codes` decodes any code-space map (KARL feeds probability-weighted soft codes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn import ConvDecoder2d, ConvEncoder2d
from ...quantizers import VectorQuantizer
from ...tokenizer import ImageTokenizer, TokenizerOutput
from ...tokens import Tokens
from .kl16 import convert_mar

__all__ = ["VQGANMage", "convert_mage"]


class VQGANMage(ImageTokenizer):
    """MaskGIT/MAGE VQGAN: bias-free residual CNN without attention, plain l2 VQ, inputs in [0, 1].

    Args:
        resolution: native image size (any multiple of the downsampling factor works).
        channels, channel_mult, num_res_blocks: encoder/decoder widths and depth (the decoder mirrors).
        codebook_size, codebook_dim: ``K`` codes of dimension ``D`` (the encoder's output width).
        commitment_weight, codebook_weight: quantizer losses (upstream's legacy placement: 1 and 0.25).
        kmeans_init, restart_threshold: codebook helpers for training from scratch (not upstream; on for
            the tiny size, where random codes collapse).
    """

    # the transform KARL's demo and evaluate.py read this VQGAN through (MAGE itself tokenizes only inside
    # training, after random crops): torchvision Resize(S, BICUBIC) + CenterCrop(S) on the PIL image
    resize = "torchvision"

    def __init__(
        self,
        *,
        resolution: int = 256,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        codebook_size: int = 1024,
        codebook_dim: int = 256,
        commitment_weight: float = 1.0,
        codebook_weight: float = 0.25,
        dropout: float = 0.0,
        norm_groups: int = 32,
        kmeans_init: bool = False,
        restart_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        channel_mult = tuple(channel_mult)
        self.resolution = resolution
        self.in_channels = in_channels
        self.downsample = 2 ** (len(channel_mult) - 1)
        blocks = {
            "channels": channels,
            "channel_mult": channel_mult,
            "num_res_blocks": num_res_blocks,
            "attention_stages": (),
            "dropout": dropout,
            "norm_groups": norm_groups,
            "style": "maskgit",
        }
        self.encoder = ConvEncoder2d(in_channels=in_channels, out_channels=codebook_dim, **blocks)
        self.quantizer = VectorQuantizer(
            codebook_dim,
            codebook_size,
            commitment_weight=commitment_weight,
            codebook_weight=codebook_weight,
            kmeans_init=kmeans_init,
            restart_threshold=restart_threshold,
        )
        self.decoder = ConvDecoder2d(in_channels=codebook_dim, out_channels=in_channels, **blocks)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantizer.codebook_size,)

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    # ------------------------------------------------------------------ pieces
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output before quantization ``[B, D, H/16, W/16]`` (what KARL reads)."""
        return self.encoder(x)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Any map in code space ``[B, D, h, w]`` (looked-up or soft codes) -> images, unclamped."""
        return self.decoder(codes.to(self.decoder.conv_in.weight.dtype))

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct ``x`` ([B, 3, H, W] in [0, 1]) through the quantizer, with its losses."""
        self.check_images(x)
        q = self.quantizer(self.features(x))
        return TokenizerOutput(
            recon=self.decode_codes(q.quantized), ids=q.ids, losses=q.losses, stats=q.stats
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ids ``[B, H/16, W/16]``."""
        self.check_images(x)
        ids = self.quantizer.encode(self.features(x))
        return self.make_tokens(
            ids=ids,
            grid=tuple(ids.shape[1:]),
            codebook_sizes=self.codebook_sizes,
            meta={"image_size": list(x.shape[-2:])},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Ids -> images ``[B, 3, 16h, 16w]``, nominally in ``[0, 1]`` (unclamped, as upstream)."""
        return self.decode_codes(self.quantizer.lookup(self.decodable_ids(tokens, 2)))


# ---------------------------------------------------------------------------------------------- converter
def convert_mage(
    state_dict: Mapping[str, torch.Tensor], model: VQGANMage | None = None
) -> dict[str, torch.Tensor]:
    """Map MAGE's ``VQModel`` state dict (``vqgan_jax_strongaug.ckpt``, or its ``state_dict`` entry) onto
    `VQGANMage`. KARL checkpoints hold the same keys under ``base_tokenizer.vqgan.`` (fine-tuned in KARL's
    second stage); pass their ``ema`` entry and those keys are taken. The layout is LDM's (``down.{i}.block``,
    ``up.{level}``, ``mid.block_1``), so `convert_mar`'s renaming applies unchanged; anything else is kept,
    so strict loading names it."""
    prefix = "base_tokenizer.vqgan."
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return convert_mar(state)


# ---------------------------------------------------------------------------------------------- registry
_TINY: dict[str, Any] = {
    "resolution": 32,
    "channels": 32,
    "channel_mult": (1, 1, 2),
    "num_res_blocks": 1,
    "codebook_size": 256,
    "codebook_dim": 32,
    "norm_groups": 8,
    "kmeans_init": True,
    "restart_threshold": 0.1,
}


@register_model(modality="image", family="vqgan_mage")
def vqgan_mage(**kwargs: Any) -> VQGANMage:
    """MAGE's VQGAN at the paper size: 256 px -> 16x16 ids over 1,024 codes of dim 256 (54.5M params)."""
    return build(VQGANMage, "vqgan_mage", {}, kwargs)


@register_model(modality="image", family="vqgan_mage", size="tiny")
def vqgan_mage_tiny(**kwargs: Any) -> VQGANMage:
    """A 3-stage MAGE VQGAN for CPU tests: 32 px -> 8x8 ids over 256 codes (4x downsampling)."""
    return build(VQGANMage, "vqgan_mage_tiny", _TINY, kwargs)


register_pretrained(
    "vqgan_mage.in1k",
    PretrainedCfg(
        hf_hub_id="",
        filename="vqgan_jax_strongaug.ckpt",
        converter="convert_mage",
        checkpoint_key=("state_dict", None),
        license="mit",
        paper="arXiv:2211.09117",
        upstream="https://github.com/LTH14/mage @ 1becb14",
        description=(
            "MaskGIT's ImageNet VQGAN as MAGE and KARL use it; distributed on Google Drive only "
            "(id 13S_unB87n6KKuuMdyMnyExW0G1kplTbP)"
        ),
    ),
)
