"""VQ-16: the LlamaGen image tokenizer (a VQGAN with 16x downsampling and l2-normalised codes).

Paper: "Autoregressive Model Beats Diffusion: Llama for Scalable Image Generation", Sun et al. 2024,
arXiv:2406.06525. Upstream: FoundationVision/LlamaGen @ ce98ec4, ``tokenizer/tokenizer_image/vq_model.py``
(MIT licence). Paper configuration: 256x256 images -> 16x16 = 256 ids over 16,384 codes of dimension
8 (14 bits per token), 71.9M parameters; rFID 2.19 on ImageNet val at 256px.

Differences from upstream, none of which change outputs:
- q/k/v of each attention block are one fused 1x1 conv (the converter concatenates them);
- the rolling ``codebook_used`` buffer is replaced by per-batch usage statistics, so it is not kept;
- images enter and leave in ``[0, 1]`` (the network still works in ``[-1, 1]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn import ConvDecoder2d, ConvEncoder2d
from ...quantizers import VectorQuantizer
from ...tokenizer import ImageTokenizer, TokenizerOutput
from ...tokens import Tokens

__all__: list[str] = ["VQ16", "convert_llamagen"]


class VQ16(ImageTokenizer):
    """LlamaGen-style VQGAN tokenizer: CNN encoder/decoder, 16x downsampling, l2-normalised VQ.

    Args:
        resolution: native image size (any multiple of the downsampling factor works).
        channels: base width of the encoder/decoder.
        channel_mult: per-stage width multipliers; ``len - 1`` stride-2 stages give the downsampling.
        num_res_blocks: residual blocks per encoder stage (the decoder uses one more, as upstream).
        z_channels: width of the feature map around the quantizer's 1x1 projections.
        codebook_size, codebook_dim: ``K`` codes of dimension ``D``.
        l2_norm: cosine VQ (unit-normalised codes and inputs).
        commitment_weight, entropy_weight: quantizer losses (upstream: 0.25 and 0).
        dropout: dropout inside residual blocks.
        kmeans_init: k-means initialisation of the codebook on the first batch (not upstream; on for
            the tiny size, where random codes collapse).
        restart_threshold: running hits per step below which a code is restarted on an encoder output
            (not upstream; 0 disables).
    """

    # LlamaGen's extract_codes_c2i.py, reconstruction_vq_ddp.py and vq_demo.py all use ADM's centre crop;
    # prepare(resize="bicubic") gives the zoo's earlier one-step float bicubic instead.
    resize = "adm"

    def __init__(
        self,
        *,
        resolution: int = 256,
        in_channels: int = 3,
        channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        codebook_size: int = 16384,
        codebook_dim: int = 8,
        l2_norm: bool = True,
        commitment_weight: float = 0.25,
        entropy_weight: float = 0.0,
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
            "dropout": dropout,
            "norm_groups": norm_groups,
        }
        self.encoder = ConvEncoder2d(
            in_channels=in_channels,
            num_res_blocks=num_res_blocks,
            out_channels=z_channels,
            attention_stages=(len(channel_mult) - 1,),
            **blocks,
        )
        self.quant_conv = nn.Conv2d(z_channels, codebook_dim, 1)
        self.quantizer = VectorQuantizer(
            codebook_dim,
            codebook_size,
            l2_norm=l2_norm,
            commitment_weight=commitment_weight,
            entropy_weight=entropy_weight,
            kmeans_init=kmeans_init,
            restart_threshold=restart_threshold,
        )
        self.post_quant_conv = nn.Conv2d(codebook_dim, z_channels, 1)
        self.decoder = ConvDecoder2d(
            in_channels=z_channels,
            num_res_blocks=num_res_blocks + 1,
            out_channels=in_channels,
            attention_stages=(0,),
            **blocks,
        )

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantizer.codebook_size,)

    # ------------------------------------------------------------------ pieces
    def _latents(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x * 2 - 1))

    def _reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        return (self.decoder(self.post_quant_conv(codes)) + 1) / 2

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct ``x`` ([B, 3, H, W] in [0, 1]) through the quantizer, with its losses."""
        self.check_images(x)
        q = self.quantizer(self._latents(x))
        return TokenizerOutput(
            recon=self._reconstruct(q.quantized), ids=q.ids, losses=q.losses, stats=q.stats
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ids ``[B, H/16, W/16]``."""
        self.check_images(x)
        ids = self.quantizer.encode(self._latents(x))
        return self.make_tokens(
            ids=ids,
            grid=tuple(ids.shape[1:]),
            codebook_sizes=self.codebook_sizes,
            meta={"image_size": list(x.shape[-2:])},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Ids -> images ``[B, 3, 16h, 16w]`` in ``[0, 1]`` (unclamped, as the network outputs them)."""
        ids = self.decodable_ids(tokens, 2)
        return self._reconstruct(self.quantizer.lookup(ids).to(self.post_quant_conv.weight.dtype))


# ---------------------------------------------------------------------------------------------- converter
def _rename_llamagen(key: str) -> str:
    parts = key.split(".")
    if parts[0] in ("encoder", "decoder") and parts[1] == "conv_blocks":
        parts[1] = "stages"
        if parts[3] in ("downsample", "upsample"):
            parts[3] = "resample"
    if parts[0] in ("encoder", "decoder") and parts[1] == "mid":
        parts[2] = {"0": "res1", "1": "attn", "2": "res2"}[parts[2]]
    key = ".".join(parts).replace(".nin_shortcut.", ".skip.").replace(".proj_out.", ".proj.")
    return key.replace("quantize.embedding.weight", "quantizer.codebook")


def convert_llamagen(
    state_dict: Mapping[str, torch.Tensor], model: VQ16 | None = None
) -> dict[str, torch.Tensor]:
    """Map a LlamaGen ``VQModel`` state dict (``checkpoint["ema"]``, else ``["model"]``) onto `VQ16`.

    Separate q/k/v 1x1 convs are concatenated into one ``qkv`` conv; the usage-tracking buffer
    ``quantize.codebook_used`` is dropped. Any other unknown key is kept, so strict loading reports it.
    """
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "quantize.codebook_used":
            continue
        parts = key.rsplit(".", 2)
        if len(parts) == 3 and parts[1] in ("q", "k", "v"):
            qkv.setdefault(f"{parts[0]}.qkv.{parts[2]}", {})[parts[1]] = value
            continue
        out[_rename_llamagen(key)] = value
    for key, pieces in qkv.items():
        if set(pieces) != {"q", "k", "v"}:
            raise KeyError(f"{key} lacks {sorted({'q', 'k', 'v'} - set(pieces))}")
        out[_rename_llamagen(key)] = torch.cat([pieces["q"], pieces["k"], pieces["v"]], dim=0)
    return out


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "resolution": 32,
    "channels": 32,
    "channel_mult": (1, 1, 2),
    "num_res_blocks": 1,
    "z_channels": 32,
    "codebook_size": 256,
    "codebook_dim": 8,
    "norm_groups": 8,
    "kmeans_init": True,
    "restart_threshold": 0.1,
}


@register_model(modality="image", family="vq16")
def vq16(**kwargs: Any) -> VQ16:
    """LlamaGen VQ-16 at the paper size: 256 px -> 16x16 ids, 16,384 codes of dim 8 (71.9M params)."""
    return build(VQ16, "vq16", _PAPER, kwargs)


@register_model(modality="image", family="vq16", size="tiny")
def vq16_tiny(**kwargs: Any) -> VQ16:
    """A 3-stage VQ-16 for CPU tests: 32 px -> 8x8 ids over 256 codes (4x downsampling)."""
    return build(VQ16, "vq16_tiny", _TINY, kwargs)


register_pretrained(
    "vq16.llamagen_in1k",
    PretrainedCfg(
        hf_hub_id="FoundationVision/LlamaGen",
        filename="vq_ds16_c2i.pt",
        converter="convert_llamagen",
        # LlamaGen's reconstruction scripts (reconstruction_vq_ddp.py, vq_demo.py) load "ema" when the
        # file has it and "model" otherwise; the released vq_ds16_c2i.pt holds "model" only.
        checkpoint_key=("ema", "model"),
        license="mit",
        paper="arXiv:2406.06525",
        upstream="https://github.com/FoundationVision/LlamaGen @ ce98ec41803a74a90ce68c40ababa9eaeffeb4ec",
        description="LlamaGen's class-conditional VQ-16 tokenizer trained on ImageNet-1k at 256 px.",
        metrics={"rFID (ImageNet val, 256px)": 2.19},
    ),
)
