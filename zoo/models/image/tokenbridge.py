"""TokenBridge's tokenizer: MAR's KL-16 latents quantized per channel after training.

Paper: "Bridging Continuous and Discrete Tokens for Autoregressive Visual Generation", Wang et al. 2025,
arXiv:2503.16430. Upstream: YuqingWang1029/TokenBridge @ 3ede281 (MIT), ``models/tokenbridge.py``
and ``reconstruction.py``.

No discrete tokenizer is trained: the frozen continuous KL-16 VAE (`KL16`, 66,456,019 parameters)
encodes an image into scaled latents, and every scalar channel value is quantized on its own at
Gaussian-quantile levels (`GaussianQuantileQuantizer`: the range [-5, 5] onto [-3, 3] standard
units, the nearest of ``2**bits`` truncated-normal bin means). At 256 px and 6 bits an image is
16 x 16 positions x 16 ids over 64 levels; decoding dequantizes and runs the KL-16 decoder. The
token layout records the channel order TokenBridge's autoregressive head uses
(``[8, 1, 10, 9, 6, 12, 4, 0, 3, 11, 7, 14, 2, 15, 13, 5]``); ids are stored in the VAE's own order.

With the same latents the ids equal upstream's bit for bit (its float32 level table and mapping).
``prepare`` reads a photo as ``reconstruction.py`` does (ADM's centre crop at 256 px, bit-identical on
8-bit files), so real files give upstream's tokens too.
Upstream tokenizes a posterior *sample*; ``encode`` uses the posterior mean by default so that the
same image always gives the same tokens, and ``encode(x, sample=True)`` draws as upstream does.

Beyond upstream, :meth:`fit_levels` (``zoo fit-levels``) sets each channel's range from data, which
matters for a VAE whose latents are not scaled like MAR's (the tiny sizes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...quantizers import GaussianQuantileQuantizer
from ...tokenizer import TokenizerOutput
from ...tokens import Tokens
from .kl16 import _TINY as _KL16_TINY
from .kl16 import KL16, convert_mar

__all__ = ["CHANNEL_ORDER", "TokenBridge", "convert_tokenbridge"]

# The order in which TokenBridge's channel-wise AR head predicts the 16 channels of one position.
CHANNEL_ORDER = (8, 1, 10, 9, 6, 12, 4, 0, 3, 11, 7, 14, 2, 15, 13, 5)


class TokenBridge(KL16):
    """KL-16 VAE + per-channel post-training quantization: one id per latent channel and position.

    Args:
        bits: bits per channel id (``2**bits`` levels; 6 in the paper).
        std_range: standard units the quantized range spans on each side (3).
        value_range: the fixed range ``[-value_range, value_range]`` of scaled latents (5) until
            :meth:`fit_levels` replaces it per channel.
        channel_order: the AR head's channel order; default upstream's for 16 channels, else identity.
        Other arguments are `KL16`'s.
    """

    # reconstruction.py (TokenBridge's tokenization) and main_cache.py read images with ADM's centre crop
    # (PIL box halving, PIL bicubic, centre square); prepare(resize="bicubic") gives the float resize.
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
        bits: int = 6,
        std_range: float = 3.0,
        value_range: float = 5.0,
        channel_order: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(
            resolution=resolution,
            in_channels=in_channels,
            channels=channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            latent_channels=latent_channels,
            scale_factor=scale_factor,
            kl_weight=kl_weight,
            dropout=dropout,
            norm_groups=norm_groups,
        )
        if channel_order is None:
            channel_order = CHANNEL_ORDER if latent_channels == 16 else tuple(range(latent_channels))
        if sorted(channel_order) != list(range(latent_channels)):
            raise ValueError(f"channel_order must permute 0..{latent_channels - 1}, got {channel_order}")
        self.channel_order = tuple(int(c) for c in channel_order)
        self.ptq = GaussianQuantileQuantizer(
            latent_channels, bits, std_range=std_range, value_range=value_range
        )

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.ptq.codebook_sizes

    def token_layout(self) -> dict[str, Any]:
        layout = super(KL16, self).token_layout()
        layout.update(
            latent_channels=self.latent_channels,
            levels_per_channel=self.ptq.codebook_size,
            channel_order=list(self.channel_order),
            scale_factor=self.scale_factor,
        )
        return layout

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """The VAE's training forward (it is trained continuous, as upstream), plus the ids its
        latents would get, for codebook-usage statistics."""
        out = super().forward(x)
        with torch.no_grad():
            q = self.ptq(out.latents.detach())
        out.ids = q.ids
        out.stats.update({f"ptq/{k}": v for k, v in q.stats.items()})
        return out

    @torch.no_grad()
    def encode(self, x: torch.Tensor, sample: bool = False) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ids ``[B, 16, H/16, W/16]`` over ``2**bits`` levels each.

        ``sample=True`` quantizes a posterior sample, as upstream; the default quantizes the mean.
        """
        latents = super().encode(x, sample=sample).latents
        ids = self.ptq(latents).ids
        return self.make_tokens(
            ids=ids,
            grid=tuple(ids.shape[2:]),
            codebook_sizes=self.codebook_sizes,
            meta={"image_size": list(x.shape[-2:]), "channel_order": list(self.channel_order)},
        )

    def dequantize(self, tokens: Tokens) -> torch.Tensor:
        """Scaled latents ``[B, C, h, w]`` that the ids stand for (what TokenBridge's generator sees)."""
        return self.ptq.lookup(self.decodable_ids(tokens, 2))

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Ids -> images ``[B, 3, 16h, 16w]`` in ``[0, 1]`` through the dequantized latents (continuous
        latents, as `KL16` encodes them, decode directly, to compare with the quantized path)."""
        if tokens.ids is None and tokens.latents is not None:
            return super().decode(tokens)
        z = self.dequantize(tokens).to(self.post_quant_conv.weight.dtype)
        return self._reconstruct(z / self.scale_factor)

    @torch.no_grad()
    def fit_levels(self, images: Iterable[torch.Tensor], *, sample: bool = False) -> TokenBridge:
        """Set each channel's quantization range to its mean +- ``std_range`` standard deviations over
        the scaled latents of ``images`` (batches ``[B, 3, H, W]`` in ``[0, 1]``), streaming; sums are
        all-reduced across data-parallel ranks."""
        was_training = self.training
        self.eval()
        try:
            latents = (KL16.encode(self, batch.to(self.device), sample=sample).latents for batch in images)
            self.ptq.fit(latents)
        finally:
            self.train(was_training)
        return self


# ---------------------------------------------------------------------------------------------- converter
def convert_tokenbridge(
    state_dict: Mapping[str, torch.Tensor], model: TokenBridge | None = None
) -> dict[str, torch.Tensor]:
    """MAR's KL-16 ``AutoencoderKL`` state dict (the ``vae/kl16.ckpt`` TokenBridge ships, ``["model"]``)
    -> `TokenBridge`: the VAE through `convert_mar`, plus the quantizer's fixed ranges (upstream has no
    fitted statistics: every channel uses ``[-value_range, value_range]``)."""
    state = convert_mar(state_dict)
    ptq = (
        model.ptq
        if model is not None
        else GaussianQuantileQuantizer(state["post_quant_conv.weight"].shape[0])
    )
    state.setdefault("ptq.low", ptq.low.detach().clone())
    state.setdefault("ptq.high", ptq.high.detach().clone())
    return state


# ---------------------------------------------------------------------------------------------- registry
_TINY: dict[str, Any] = {**_KL16_TINY, "bits": 4}


@register_model(modality="image", family="tokenbridge")
def tokenbridge(**kwargs: Any) -> TokenBridge:
    """TokenBridge at the paper size: MAR's KL-16 + 6-bit per-channel PTQ, 256 px -> 16x16x16 ids over 64."""
    return build(TokenBridge, "tokenbridge", {}, kwargs)


@register_model(modality="image", family="tokenbridge", size="tiny")
def tokenbridge_tiny(**kwargs: Any) -> TokenBridge:
    """kl16_tiny + 4-bit PTQ for CPU tests: 32 px -> 8x8 positions x 4 ids over 16 levels."""
    return build(TokenBridge, "tokenbridge_tiny", _TINY, kwargs)


register_pretrained(
    "tokenbridge.mar_in1k",
    PretrainedCfg(
        hf_hub_id="Epiphqny/TokenBridge",
        filename="vae/kl16.ckpt",
        converter="convert_tokenbridge",
        checkpoint_key="model",
        license="mit",
        paper="arXiv:2503.16430",
        upstream="https://github.com/YuqingWang1029/TokenBridge @ 3ede281",
        description=(
            "MAR's ImageNet KL-16 VAE as TokenBridge ships it (pretrained_models/vae/kl16.ckpt; the file "
            "path inside the Hub repo was not verified here) with upstream's fixed 6-bit quantization."
        ),
        metrics={"rFID (ImageNet val, 256px, 6-bit PTQ)": 0.53},
    ),
)
