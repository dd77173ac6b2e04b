"""TokenBridge's tokenizer against YuqingWang1029/TokenBridge @ 3ede281: MAR's KL-16 VAE + 6-bit
post-training quantization of each latent channel.

Upstream's official tokenization is ``reconstruction.py`` (``process_classes``): ``ImageFolder``'s PIL
reader (``convert("RGB")``), ``CenterCropTransform(256)`` (ADM's centre crop: PIL box halving while the
short side is at least twice 256, PIL bicubic, centre square), ``ToTensor`` and ``Normalize(0.5, 0.5)``;
then ``AutoencoderKL.encode`` -> ``posterior.sample()`` -> ``* 0.2325`` -> ``post_training_quantize(
bits=6, range 5)`` for the ids, and ``vae.decode(dequant / 0.2325)`` for the image. The VAE is
``models/vae.py::AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))``, its checkpoint ``{"model": sd}``.

Upstream quantizes a posterior *sample*; the zoo's ``encode`` quantizes the posterior mean unless
``sample=True`` (a deliberate difference, so that an image always gives the same tokens).
``--option sample=1`` runs the zoo with ``sample=True`` and the same seeded draw as upstream's, which
shows the two pipelines equal; without it upstream still samples and the ids differ where the draw
moves a value across a level boundary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .common import Adapter, Output, randomize, state_dict_of, through_converter

TAG = "tokenbridge.mar_in1k"
SCALE = 0.2325  # MAR's latent scale, used by reconstruction.py
BITS, VALUE_RANGE = 6, 5.0  # reconstruction.py's defaults (--bits 6 --range 5.0)


class TokenBridgeAdapter(Adapter):
    model = "tokenbridge"
    tag = TAG
    card = "tokenbridge"
    modality = "image"
    upstream_files = ("models/vae.py", "reconstruction.py")
    # reconstruction.py imports torch_fidelity at top level for its FID/IS evaluation only
    stubs = ("torch_fidelity",)
    description = (
        "KL-16 + 6-bit PTQ, reconstruction.py's pipeline (--option sample=1: zoo samples as upstream)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sample = self.options.get("sample", "0") not in ("0", "false", "")
        self.reconstruction: Any = None

    def build(self) -> tuple[Any, Any]:
        with self.imports():
            import reconstruction
            from models.vae import AutoencoderKL
        self.reconstruction = reconstruction
        torch.manual_seed(self.seed)
        vae = AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4), ckpt_path=None).eval()
        randomize(vae, self.seed)
        zoo_model = through_converter(self.tag, {"model": state_dict_of(vae)})
        return vae, zoo_model

    def _draw_seed(self) -> None:
        # both sides draw the posterior noise from the same seeded default generator
        torch.manual_seed(self.seed + 1)

    def run_upstream(self, vae: Any, path: Path) -> Output:
        from PIL import Image
        from torchvision import transforms

        transform = transforms.Compose(
            [
                self.reconstruction.CenterCropTransform(256),
                transforms.ToTensor(),
                transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
            ]
        )
        images = transform(Image.open(path).convert("RGB"))[None]
        posterior = vae.encode(images)
        self._draw_seed()
        latents_norm = posterior.sample().mul(SCALE)
        ids, dequant = self.reconstruction.post_training_quantize(
            latents_norm, BITS, -VALUE_RANGE, VALUE_RANGE
        )
        recon = vae.decode(dequant.div(SCALE))
        return Output(ids=ids, latent=dequant, decoded=(recon + 1) / 2)

    def run_zoo(self, model: Any, path: Path) -> Output:
        from zoo.io import read_media

        x = model.prepare(read_media(path, modality="image"), path=path)
        self._draw_seed()
        tokens = model.encode(x, sample=self.sample)
        return Output(ids=tokens.ids, latent=model.dequantize(tokens), decoded=model.decode(tokens))


ADAPTERS = {"tokenbridge": TokenBridgeAdapter}
