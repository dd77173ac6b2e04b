"""KL-16: MAR's continuous KL-regularised autoencoder (16 latent channels, 16x downsampling).

Paper: "Autoregressive Image Generation without Vector Quantization", Li et al. 2024, arXiv:2406.11838.
Upstream: LTH14/mar @ fe470ac, ``models/vae.py`` (``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))``,
adopted from LDM's KL-VAE; MIT licence). MAR, xAR, Hi-MAR and TokenBridge all run on this VAE's latents,
multiplied by the scale factor 0.2325 so that they have roughly unit variance. Paper configuration: a
256x256 image becomes a 16x16 grid of 16-channel continuous latents; 66,456,019 parameters.

Layout (as upstream): encoder with attention after every residual block of its lowest-resolution stage
and in its middle block; decoder with attention only in its middle block and one more residual block per
stage; 1x1 ``quant_conv`` on the 32 posterior moments (mean and log-variance), 1x1 ``post_quant_conv``.

Differences from upstream, none of which change outputs:
- q/k/v of each attention block are one fused 1x1 conv (the converter concatenates them);
- the posterior is `GaussianBottleneck` (same clamp of the log-variance to ``[-30, 20]``, same KL);
- images enter and leave in ``[0, 1]`` (the network still works in ``[-1, 1]``), and ``encode``
  returns latents already multiplied by ``scale_factor`` (``decode`` divides by it), which is what the
  generators consume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...nn import ConvDecoder2d, ConvEncoder2d
from ...quantizers import GaussianBottleneck
from ...tokenizer import ImageTokenizer, TokenizerOutput
from ...tokens import Tokens
from .vq16 import convert_llamagen

__all__: list[str] = ["KL16", "convert_mar"]


class KL16(ImageTokenizer):
    """LDM/MAR KL-VAE: CNN encoder/decoder around a diagonal-Gaussian posterior; continuous latents.

    Args:
        resolution: native image size (any multiple of the downsampling factor works).
        channels: base width of the encoder/decoder.
        channel_mult: per-stage width multipliers; ``len - 1`` stride-2 stages give the downsampling.
        num_res_blocks: residual blocks per encoder stage (the decoder uses one more, as upstream).
        latent_channels: channels of the latent (upstream ``embed_dim``); the encoder emits twice as
            many (mean and log-variance, upstream ``double_z``).
        scale_factor: multiplier applied to latents by ``encode`` (and undone by ``decode``) so that
            generators see roughly unit-variance inputs; 0.2325 for MAR's KL-16.
        kl_weight: weight of the KL term towards ``N(0, I)`` in ``forward`` (1e-6, as LDM).
        dropout: dropout inside residual blocks.
    """

    # MAR's main_cache.py (the latents its generators train on) uses ADM's centre crop;
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
        latent_channels: int = 16,
        scale_factor: float = 0.2325,
        kl_weight: float = 1e-6,
        dropout: float = 0.0,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        channel_mult = tuple(channel_mult)
        self.resolution = resolution
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.scale_factor = scale_factor
        self.downsample = 2 ** (len(channel_mult) - 1)
        blocks = {
            "channels": channels,
            "channel_mult": channel_mult,
            "dropout": dropout,
            "norm_groups": norm_groups,
        }
        # Upstream places encoder attention at resolution 16 of a 256 px input, i.e. its last stage;
        # tying it to the last stage keeps the tiny size structurally the same model.
        self.encoder = ConvEncoder2d(
            in_channels=in_channels,
            num_res_blocks=num_res_blocks,
            out_channels=2 * latent_channels,
            attention_stages=(len(channel_mult) - 1,),
            **blocks,
        )
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.quantizer = GaussianBottleneck(latent_channels, kl_weight=kl_weight)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.decoder = ConvDecoder2d(
            in_channels=latent_channels,
            num_res_blocks=num_res_blocks + 1,
            out_channels=in_channels,
            attention_stages=(),
            **blocks,
        )

    def token_layout(self) -> dict[str, Any]:
        """The base layout, with the latent width and scale instead of a (meaningless) bit count."""
        layout = super().token_layout()
        del layout["bits_per_token"]
        layout["latent_channels"] = self.latent_channels
        layout["scale_factor"] = self.scale_factor
        return layout

    # ------------------------------------------------------------------ pieces
    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x * 2 - 1))

    def _reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents ``[B, C, h, w]`` -> images in ``[0, 1]``."""
        return (self.decoder(self.post_quant_conv(z)) + 1) / 2

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct ``x`` ([B, 3, H, W] in [0, 1]) from a posterior sample (training) or its mean (eval).

        ``latents`` are scaled by ``scale_factor``, as ``encode`` returns them; in training ``losses``
        holds ``vq/kl`` (already weighted by ``kl_weight``).
        """
        self.check_images(x)
        q = self.quantizer(self._moments(x))
        recon = self._reconstruct(q.quantized.to(self.post_quant_conv.weight.dtype))
        return TokenizerOutput(
            recon=recon, latents=q.quantized * self.scale_factor, losses=q.losses, stats=q.stats
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor, sample: bool = False, posterior: bool = False) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> scaled latents ``[B, 16, H/16, W/16]``.

        ``sample=False`` returns the posterior mean (deterministic, what reconstruction uses);
        ``sample=True`` draws from the posterior, as MAR's training does (``posterior.sample() * 0.2325``).
        ``posterior=True`` also returns the posterior's scaled standard deviation as
        ``side["latent_std"]``, so a token cache can store the moments once and draw a fresh sample
        ``latents + latent_std * N(0, I)`` every epoch, as MAR's cached training does.
        """
        self.check_images(x)
        moments = self._moments(x)
        z = self.quantizer(moments, sample=sample).quantized * self.scale_factor
        side = {}
        if posterior:
            logvar = self.quantizer.split(moments)[1]
            side["latent_std"] = torch.exp(0.5 * logvar) * self.scale_factor
        return self.make_tokens(
            latents=z,
            grid=tuple(z.shape[2:]),
            codebook_sizes=(),
            side=side,
            meta={"image_size": list(x.shape[-2:]), "scale_factor": self.scale_factor},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Scaled latents -> images ``[B, 3, 16h, 16w]`` in ``[0, 1]`` (unclamped, as the network outputs them)."""
        z = tokens.latents
        if z is None or z.ndim != 4 or z.shape[1] != self.latent_channels:
            shape = None if z is None else tuple(z.shape)
            raise ValueError(
                f"KL16 decodes continuous latents [B, {self.latent_channels}, h, w]; got latents of shape {shape}"
            )
        z = z.to(device=self.device, dtype=self.post_quant_conv.weight.dtype)
        return self._reconstruct(z / self.scale_factor)


# ---------------------------------------------------------------------------------------------- converter
def _mar_to_llamagen(key: str, num_levels: int) -> str:
    """Rename one LDM-layout key to LlamaGen's layout, which `convert_llamagen` then maps onto ours.

    The two share every block (q/k/v + proj_out attention, nin_shortcut, down/upsample.conv) and differ
    only in container names and in the decoder's stage order: LDM indexes ``decoder.up`` by resolution
    level (0 = full resolution), LlamaGen by execution order (0 = lowest resolution).
    """
    parts = key.split(".")
    if len(parts) > 3 and parts[0] == "encoder" and parts[1] == "down":
        parts[1] = "conv_blocks"
        parts[3] = {"block": "res"}.get(parts[3], parts[3])
    elif len(parts) > 3 and parts[0] == "decoder" and parts[1] == "up":
        parts[1] = "conv_blocks"
        parts[2] = str(num_levels - 1 - int(parts[2]))
        parts[3] = {"block": "res"}.get(parts[3], parts[3])
    elif len(parts) > 2 and parts[0] in ("encoder", "decoder") and parts[1] == "mid":
        parts[2] = {"block_1": "0", "attn_1": "1", "block_2": "2"}.get(parts[2], parts[2])
    return ".".join(parts)


def convert_mar(state_dict: Mapping[str, torch.Tensor], model: KL16 | None = None) -> dict[str, torch.Tensor]:
    """Map MAR's ``AutoencoderKL`` state dict (``kl16.ckpt["model"]``) onto `KL16`.

    Keys are renamed to LlamaGen's VQGAN layout and passed through `convert_llamagen` (which fuses q/k/v
    into one conv and renames ``nin_shortcut``/``proj_out``/resamplers), so both converters share one
    set of rules. Training-only keys (``loss.*``: LPIPS and discriminator) are dropped; any other
    unknown key is kept, so strict loading reports it.
    """
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    levels = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("decoder.up.")), default=0)
    renamed = {_mar_to_llamagen(k, levels): v for k, v in state.items() if not k.startswith("loss.")}
    return convert_llamagen(renamed)


# ---------------------------------------------------------------------------------------------- registry
_PAPER: dict[str, Any] = {}
_TINY: dict[str, Any] = {
    "resolution": 32,
    "channels": 32,
    "channel_mult": (1, 1, 2),
    "num_res_blocks": 1,
    "latent_channels": 4,
    "norm_groups": 8,
}


@register_model(modality="image", family="kl16")
def kl16(**kwargs: Any) -> KL16:
    """MAR's KL-16 VAE at the paper size: 256 px -> 16x16x16 continuous latents (66.5M params)."""
    return build(KL16, "kl16", _PAPER, kwargs)


@register_model(modality="image", family="kl16", size="tiny")
def kl16_tiny(**kwargs: Any) -> KL16:
    """A 3-stage KL-16 for CPU tests: 32 px -> 8x8x4 continuous latents (4x downsampling)."""
    return build(KL16, "kl16_tiny", _TINY, kwargs)


register_pretrained(
    "kl16.mar_in1k",
    PretrainedCfg(
        hf_hub_id="jadechoghari/mar",
        filename="kl16.ckpt",
        converter="convert_mar",
        checkpoint_key="model",
        license="mit",
        paper="arXiv:2406.11838",
        upstream="https://github.com/LTH14/mar @ fe470ac24afbee924668d8c5c83e9fec60af3a73",
        description=(
            "MAR's KL-16 VAE trained on ImageNet-1k at 256 px (rFID 0.53 per MAR issue #3). Upstream "
            "distributes kl16.ckpt via Dropbox (util/download.py); this entry points at the community "
            "mirror jadechoghari/mar linked from MAR's README, whose file name was not verified here."
        ),
        metrics={"rFID (ImageNet val, 256px)": 0.53},
    ),
)
