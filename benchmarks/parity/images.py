"""Image tokenizers: VQ-16 (LlamaGen), KL-16 (MAR), ResTok and ReTok against their upstream checkouts.

Every upstream here tokenizes a photo the same way: PIL opens it and converts to RGB, ADM's centre crop
(``center_crop_arr``, imported from the checkout itself) brings it to 256 px, torchvision's ``ToTensor``
(and for the [-1, 1] models ``Normalize(0.5, 0.5)``) makes the tensor, and the model's own ``encode`` gives
the ids or the posterior. The zoo side reads the same file with ``zoo.io.read_image``, then
``prepare`` (whose default for these models is the same ADM crop), ``encode`` and ``decode``.

Upstream networks are built at the paper configuration from the checkout's own constructors/configs,
perturbed with seeded noise (``randomize``), saved in the layout of upstream's checkpoint files and
loaded into the zoo through the registered tag's converter.

Options: ``--option resize=bicubic`` runs the zoo side with its earlier one-step bicubic filter instead of
its default ADM crop (to measure what the crop changes); ``--option size=small`` builds ResTok with
upstream's "small" ViTs on both sides (ResTok-L is 662M parameters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .common import Adapter, Output, randomize, state_dict_of, through_converter

SIZE = 256


def _pil_rgb(path: Path) -> Any:
    """How every upstream dataset opens a file (torchvision's ``pil_loader``/``ImageFolder``)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def _zoo_tokens(model: Any, path: Path, resize: str | None, **encode: Any) -> tuple[torch.Tensor, Any]:
    """The zoo's documented path up to the tokens: ``zoo.io`` reader, ``prepare``, ``encode``.
    ``resize`` (``--option resize=bicubic``) overrides the model's default filter, to measure it."""
    from zoo.io import read_image

    x = model.prepare(read_image(path), path=path, resize=resize)
    return x, model.encode(x, **encode)


class _ImageAdapter(Adapter):
    modality = "image"

    def crop(self, path: Path) -> Any:
        """Upstream's ADM centre crop, imported from the checkout (``dataset/augmentation.py``)."""
        with self.imports():
            from dataset.augmentation import center_crop_arr
        return center_crop_arr(_pil_rgb(path), SIZE)

    def tensor(self, path: Path, *, signed: bool) -> torch.Tensor:
        """``ToTensor`` (+ ``Normalize([0.5]*3, [0.5]*3)`` for the models that read [-1, 1]), batch of one."""
        from torchvision import transforms

        steps = [transforms.ToTensor()]
        if signed:
            steps.append(transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]))
        return transforms.Compose(steps)(self.crop(path))[None]


# ---------------------------------------------------------------------------------------------- VQ-16
class VQ16Adapter(_ImageAdapter):
    """LlamaGen's ``tokenizer/tokenizer_image/vq_model.py`` ``VQ_16`` (codebook 16384 x 8), as
    ``autoregressive/train/extract_codes_c2i.py`` tokenizes (ADM crop, ToTensor, Normalize, ``encode``) and
    ``tokenizer/tokenizer_image/vq_demo.py`` decodes (``decode_code``); checkpoint saved as ``{"ema": ...,
    "model": ...}`` so the tag's ``("ema", "model")`` preference is exercised (the two differ)."""

    model = "vq16"
    tag = "vq16.llamagen_in1k"
    card = "vq16"
    upstream_files = ("tokenizer/tokenizer_image/vq_model.py", "dataset/augmentation.py")
    description = "LlamaGen VQ-16: ADM crop, ids + pre-quantization latents + decode"

    def build(self) -> tuple[Any, Any]:
        with self.imports():
            from tokenizer.tokenizer_image.vq_model import VQ_models
        torch.manual_seed(self.seed)
        up = VQ_models["VQ-16"](codebook_size=16384, codebook_embed_dim=8).eval()
        raw = state_dict_of(up)  # the non-EMA weights: must not be the ones loaded
        randomize(up, self.seed)
        zoo_model = through_converter(self.tag, {"model": raw, "ema": state_dict_of(up)})
        return up, zoo_model

    def run_upstream(self, up: Any, path: Path) -> Output:
        x = self.tensor(path, signed=True)
        latent, _, (_, _, indices) = up.encode(x)
        decoded = up.decode_code(indices, latent.shape)
        h = up.quant_conv(up.encoder(x))
        grid = latent.shape[-2:]
        return Output(ids=indices.reshape(1, *grid), latent=h, decoded=(decoded + 1) / 2)

    def run_zoo(self, model: Any, path: Path) -> Output:
        x, tokens = _zoo_tokens(model, path, self.options.get("resize"))
        return Output(ids=tokens.ids, latent=model._latents(x), decoded=model.decode(tokens))


# ---------------------------------------------------------------------------------------------- KL-16
class KL16Adapter(_ImageAdapter):
    """MAR's ``models/vae.py`` ``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))`` as ``main_cache.py``
    caches latents (``util/crop.py`` ADM crop, ToTensor, Normalize, ``encode`` -> posterior moments); the
    latent compared is ``[mean, std] * 0.2325`` (what MAR's training samples from), the decode is
    ``vae.decode(mean)``; checkpoint saved as ``kl16.ckpt``'s ``{"model": ...}``."""

    model = "kl16"
    tag = "kl16.mar_in1k"
    card = "kl16"
    upstream_files = ("models/vae.py", "util/crop.py")
    description = "MAR KL-16: ADM crop, posterior mean/std + decode"
    scale = 0.2325

    def crop(self, path: Path) -> Any:
        with self.imports():
            from util.crop import center_crop_arr
        return center_crop_arr(_pil_rgb(path), SIZE)

    def build(self) -> tuple[Any, Any]:
        with self.imports():
            from models.vae import AutoencoderKL
        torch.manual_seed(self.seed)
        up = randomize(AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4)).eval(), self.seed)
        return up, through_converter(self.tag, {"model": state_dict_of(up)})

    def run_upstream(self, up: Any, path: Path) -> Output:
        posterior = up.encode(self.tensor(path, signed=True))
        latent = torch.cat([posterior.mean, posterior.std]) * self.scale
        return Output(latent=latent, decoded=(up.decode(posterior.mean) + 1) / 2)

    def run_zoo(self, model: Any, path: Path) -> Output:
        _, tokens = _zoo_tokens(model, path, self.options.get("resize"), posterior=True)
        latent = torch.cat([tokens.latents, tokens.side["latent_std"]])
        return Output(latent=latent, decoded=model.decode(tokens))


# ---------------------------------------------------------------------------------------------- ResTok
class ResTokAdapter(_ImageAdapter):
    """ResTok's ``modeling/restok.py`` built from ``configs/infer/ResTok/llamagen_l_c2i_restok_l_128.yaml``
    (the inference config: no feature supervision, so its checkpoint lacks the three teacher tensors and
    the converter must load it as ``teacher_dim=0``), tokenized as ``autoregressive/train/extract_codes_c2i.py``
    does (ADM crop, ToTensor without normalisation, ``encode(x)[1]["min_encoding_indices"]``) and decoded with
    ``decode_tokens``; checkpoint saved as the plain state dict of ``model.safetensors``/``pytorch_model.bin``.

    ResTok-L is 662M parameters (2.6 GB per copy): the paper-size run peaks at 8.7 GB resident and takes
    40-85 s per file and side on two shared CPU threads. ``--option size=small`` builds upstream's "small"
    ViTs (width 512, 6 blocks; same code path) on both sides for machines with less memory.
    """

    model = "restok"
    tag = "restok.l_128_in1k"
    card = "restok"
    upstream_files = ("modeling/restok.py", "modeling/modules/blocks.py", "dataset/augmentation.py")
    # training-only: accelerate (the quantizer's clustering gather) and webdataset (dataset/__init__.py
    # imports its reader; the ADM crop used here does not)
    stubs = ("accelerate", "accelerate.utils", "accelerate.utils.operations", "webdataset")
    description = "ResTok-L 128 (inference config, fix 7): ADM crop, ids + decode"
    config = "configs/infer/ResTok/llamagen_l_c2i_restok_l_128.yaml"

    def build(self) -> tuple[Any, Any]:
        with self.imports():
            from modeling.restok import ResTok
            from omegaconf import OmegaConf
        config = OmegaConf.load(self.upstream / self.config)
        overrides: dict[str, Any] = {}
        if self.options.get("size", "paper") == "small":
            config.model.vq_model.vit_enc_model_size = "small"
            config.model.vq_model.vit_dec_model_size = "small"
            overrides = {"width": 512, "depth": 6, "heads": 8}
        torch.manual_seed(self.seed)
        up = randomize(ResTok(config).eval(), self.seed)
        # the live state dict (no copy): at the paper size every copy is 2.6 GB
        zoo_model = through_converter(self.tag, up.state_dict(), **overrides)
        if zoo_model.vf_proj is not None:
            raise AssertionError("the converter kept the teacher projections of an inference checkpoint")
        return up, zoo_model

    def run_upstream(self, up: Any, path: Path) -> Output:
        x = self.tensor(path, signed=False)
        ids = up.encode(x)[1]["min_encoding_indices"].reshape(1, -1)
        return Output(ids=ids, decoded=up.decode_tokens(ids))

    def run_zoo(self, model: Any, path: Path) -> Output:
        _, tokens = _zoo_tokens(model, path, self.options.get("resize"))
        return Output(ids=tokens.ids.reshape(1, -1), decoded=model.decode(tokens))


# ---------------------------------------------------------------------------------------------- ReTok
class ReTokAdapter(_ImageAdapter):
    """ReTok's ``tokenizer/tokenizer_image/vq/vq_vit_model.py`` ``VQVitModelPlus`` built by
    ``utils/model_init.py`` from ``configs/vq/VQ_SB256.yaml`` (S-B, 256 tokens), run as
    ``tokenizer/tokenizer_image/reconstruction_ddp.py`` does (ADM crop, ToTensor, Normalize,
    ``encode(x, num_en_q_level=None, causal_type=None)``, ``decode_code``); checkpoint saved as
    ``{"model": ..., "ema": ...}`` (its loader prefers ``"ema"``). Upstream's encode returns 480 ids (256
    tokens + 224 redundant padding tokens that only nested-dropout training uses); the first 256 are compared."""

    model = "retok"
    tag = "retok.sb256_e250"
    card = "retok"
    upstream_files = (
        "tokenizer/tokenizer_image/vq/vq_vit_model.py",
        "utils/model_init.py",
        "dataset/augmentation.py",
    )
    description = "ReTok S-B 256: ADM crop, ids + decode"
    config = "configs/vq/VQ_SB256.yaml"

    def build(self) -> tuple[Any, Any]:
        import yaml

        with self.imports():
            from utils.model_init import load_model_from_config
        config = yaml.safe_load((self.upstream / self.config).read_text())
        self.causal_type = config["model"]["causal_settings"]["causal_type"]
        torch.manual_seed(self.seed)
        up = load_model_from_config(config).eval()
        raw = state_dict_of(up)
        randomize(up, self.seed)
        return up, through_converter(self.tag, {"model": raw, "ema": state_dict_of(up)})

    def run_upstream(self, up: Any, path: Path) -> Output:
        x = self.tensor(path, signed=True)
        latent, _, (_, _, indices) = up.encode(x, num_en_q_level=None, causal_type=self.causal_type)
        decoded = up.decode_code(indices, latent.shape)
        # upstream emits the 256 tokens plus 224 redundant padding tokens (480 ids; extract_codes_c2i.py
        # saves all of them); its decoder and the generator's 256-token block read the first 256, which are
        # the tokens the zoo's encode returns
        real = indices.reshape(1, -1)[:, : up.num_latent_tokens]
        return Output(ids=real, decoded=(decoded + 1) / 2)

    def run_zoo(self, model: Any, path: Path) -> Output:
        _, tokens = _zoo_tokens(model, path, self.options.get("resize"))
        return Output(ids=tokens.ids.reshape(1, -1), decoded=model.decode(tokens))


ADAPTERS: dict[str, type[Adapter]] = {
    "vq16": VQ16Adapter,
    "kl16": KL16Adapter,
    "restok": ResTokAdapter,
    "retok": ReTokAdapter,
}
