"""MAGE's VQGAN (MaskGIT's ImageNet tokenizer) against LTH14/mage @ 1becb14, at the paper size (256 px,
16x16 ids over 1,024 codes of 256 dimensions; 54.5 M parameters).

Upstream builds it as ``taming.models.vqgan.VQModel`` from ``config/vqgan.yaml`` (``models_mage.py``) and
tokenizes with ``VQModel.encode`` (ids: the third entry of the quantizer's info tuple) and decodes with
``VQModel.decode`` of the quantized map. MAGE only tokenizes inside training, after random crops; the
pipeline that reads real files through this VQGAN is KARL's demo and ``evaluate.py`` (KARL uses it frozen
as its base): ``Image.open(path).convert("RGB")``, torchvision ``Resize(256, BICUBIC, antialias=True)``,
``CenterCrop(256)``, ``ToTensor`` (inputs in ``[0, 1]``, no normalisation). That is the zoo's default
(``resize="torchvision"``); the adapter runs it on upstream's side. ``--option resize=bicubic`` (or
``adm``) runs the zoo with another crop, to see what the filter changes.

Adjustments to run upstream's code here, none of which changes its forward pass: the yaml is read with
PyYAML instead of ``omegaconf`` (not needed otherwise), and the model is built without a checkpoint file:
its random weights go through the zoo's converter. Upstream's codebook init (``U(+-1/K)``) makes nearly
every feature pick the same few codes, so the codebook is redrawn with unit-scale rows for the comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .common import Adapter, Output, randomize, state_dict_of, through_converter

TAG = "vqgan_mage.in1k"
SIZE = 256


class VQGANMageAdapter(Adapter):
    model = "vqgan_mage"
    tag = TAG
    card = "vqgan_mage"
    modality = "image"
    upstream_files = (
        "config/vqgan.yaml",
        "taming/models/vqgan.py",
        "taming/modules/diffusionmodules/model.py",
        "taming/modules/vqvae/quantize.py",
    )
    description = "MaskGIT/MAGE VQGAN, KARL's demo transform (Resize 256 bicubic + CenterCrop), encode/decode"

    def build(self) -> tuple[Any, Any]:
        import yaml

        config = yaml.safe_load((self.upstream / "config" / "vqgan.yaml").read_text())["model"]["params"]
        with self.imports():
            from taming.models.vqgan import VQModel

        torch.manual_seed(self.seed)
        model = VQModel(
            ddconfig=config["ddconfig"], n_embed=config["n_embed"], embed_dim=config["embed_dim"]
        ).eval()
        randomize(model, self.seed)
        gen = torch.Generator().manual_seed(self.seed + 1)
        with torch.no_grad():
            table = model.quantize.embedding.weight
            table.copy_(torch.randn(table.shape, generator=gen) * table.shape[1] ** -0.5)
        # the released file is a bare state dict (``init_from_ckpt`` also unwraps "state_dict")
        zoo_model = through_converter(self.tag, {"state_dict": state_dict_of(model)})
        return model, zoo_model

    def run_upstream(self, model: Any, path: Path) -> Output:
        from PIL import Image
        from torchvision import transforms

        transform = transforms.Compose(
            [
                transforms.Resize(SIZE, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
                transforms.CenterCrop(SIZE),
                transforms.ToTensor(),
            ]
        )
        image = transform(Image.open(path).convert("RGB"))[None]
        features = model.encoder(image)
        quant, _, info = model.encode(image)
        grid = quant.shape[-2:]
        return Output(ids=info[2].reshape(1, *grid), latent=features, decoded=model.decode(quant)[0])

    def run_zoo(self, model: Any, path: Path) -> Output:
        from zoo.io import read_media

        x = model.prepare(read_media(path, modality="image"), path=path, resize=self.options.get("resize"))
        tokens = model.encode(x)
        return Output(ids=tokens.ids, latent=model.features(x), decoded=model.decode(tokens))


ADAPTERS = {"vqgan_mage": VQGANMageAdapter}
