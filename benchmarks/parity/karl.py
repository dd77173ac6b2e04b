"""KARL (VQGAN variant, quantized latents) against ShivamDuggal4/karl @ 5c1a569, at the paper size
(``karl_small``: 1024 wide, 8 + 8 layers, on MAGE's VQGAN; 271 M parameters).

Upstream's official inference is ``kolmogorov_tokenizer_demo.ipynb`` (``evaluate.py`` reads images the same
way): ``Image.open(path).convert("RGB")``, torchvision ``Resize(256, BICUBIC, antialias=True)``,
``CenterCrop(256)``, ``ToTensor`` (no normalisation); the model from ``kolmogorov_tokenizers.karl_small(
base_tokenizer_args={"id": "vqgan"}, quantize_latent=True)``, its checkpoint's ``"ema"`` weights, and
``encode(image, input_token_budget=[256], desired_reconstruction_quality=0.05)``. That entry point returns
only the reconstructions, so the adapter reads the latent ids and halting probabilities with forward hooks
on upstream's ``quantize`` and ``halting_mlp`` (tokens with probability > 0.75 are dropped, as upstream's
forward does) and compares the kept ids, in order, with the zoo's.

Adjustments to run upstream's code here, none of which changes its forward pass:
- the model is built without ``train_stage="full_finetuning"``: that stage only adds the training GAN and
  LPIPS losses, whose VGG weights torchvision would download;
- the VQGAN is built without its checkpoint file (``pretrained_ckpt_path=None``): the random weights of the
  whole model, VQGAN included, go through the zoo's converter;
- upstream's presets read their yaml files by relative path, so they are imported and built with the
  checkout as the working directory, and KARL's vendored taming (``base_tokenizers/taming``) is importable
  as ``taming``, as its own imports expect;
- upstream calls ``tensor.get_device()`` to place new tensors, which is -1 on a CPU; while upstream runs,
  ``get_device`` returns the tensor's device instead (the same placement on a GPU).
Upstream needs ``omegaconf`` (``pip install --target DIR omegaconf`` and ``PYTHONPATH=DIR``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .common import Adapter, Output, randomize, state_dict_of, through_converter

TAG = "karl.in1k"
BUDGET, TARGET_ERROR, HALT = 256, 0.05, 0.75  # the demo's budget and error; forward's halting threshold


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _cpu_get_device() -> Iterator[None]:
    """``Tensor.get_device()`` -> the tensor's device while upstream runs (it is -1 on a CPU, which
    ``.to()``/``device=`` reject)."""
    original = torch.Tensor.get_device
    torch.Tensor.get_device = lambda self: self.device  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.get_device = original  # type: ignore[method-assign]


class KARLAdapter(Adapter):
    model = "karl"
    tag = TAG
    card = "karl"
    modality = "image"
    upstream_files = (
        "kolmogorov_tokenizers/__init__.py",
        "kolmogorov_tokenizers/karl_vqgan.py",
        "modules/latent_distillation_modules.py",
        "modules/vector_quantizer.py",
        "modules/base_tokenizers.py",
        "base_tokenizers/taming/models/vqgan.py",
    )
    description = "karl_small on MAGE's VQGAN, the demo's transform and encode(budget 256, error 0.05)"

    def build(self) -> tuple[Any, Any]:
        taming_root = str(self.upstream.resolve() / "base_tokenizers")
        sys.path.insert(0, taming_root)
        try:
            with self.imports(), _cwd(self.upstream):
                import kolmogorov_tokenizers

                torch.manual_seed(self.seed)
                model = kolmogorov_tokenizers.karl_small(
                    base_tokenizer_args={
                        "id": "vqgan",
                        "is_requires_grad": False,
                        "pretrained_ckpt_path": None,
                    },
                    quantize_latent=True,
                )
        finally:
            self.log.scan()
        model.eval()
        randomize(model, self.seed)
        gen = torch.Generator().manual_seed(self.seed + 1)
        with torch.no_grad():
            # upstream's inits make the codebooks nearly degenerate (U(+-1/K)) and every halting probability
            # about 0.5: spread them so that ids vary and some tokens halt
            for table in (
                model.base_tokenizer.vqgan.quantize.embedding.weight,
                model.quantize.embedding.weight,
            ):
                table.copy_(torch.randn(table.shape, generator=gen) * table.shape[1] ** -0.5)
            head = model.halting_mlp[2]
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.2)
            head.bias.fill_(0.6)
            model.rec_loss_embeddings.add_(torch.randn(model.rec_loss_embeddings.shape, generator=gen))
        zoo_model = through_converter(self.tag, {"ema": state_dict_of(model)})
        return model, zoo_model

    def run_upstream(self, model: Any, path: Path) -> Output:
        from PIL import Image
        from torchvision import transforms

        transform = transforms.Compose(
            [
                transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
                transforms.CenterCrop(256),
                transforms.ToTensor(),
            ]
        )
        image = transform(Image.open(path).convert("RGB"))[None]
        seen: dict[str, torch.Tensor] = {}
        hooks = [
            model.quantize.register_forward_hook(
                lambda _m, _i, out: seen.__setitem__("ids", out[1]["min_encoding_indices"])
            ),
            model.halting_mlp.register_forward_hook(lambda _m, _i, out: seen.__setitem__("halt", out)),
        ]
        try:
            with _cpu_get_device(), contextlib.redirect_stdout(io.StringIO()):
                _, reconstructions, _ = model.encode(
                    image, input_token_budget=[BUDGET], desired_reconstruction_quality=TARGET_ERROR
                )
        finally:
            for hook in hooks:
                hook.remove()
        halted = torch.sigmoid(seen["halt"])[0, :, 0] > HALT
        kept = seen["ids"][0][~halted]
        return Output(ids=kept, decoded=reconstructions[0])

    def run_zoo(self, model: Any, path: Path) -> Output:
        from zoo.io import read_media

        x = model.prepare(read_media(path, modality="image"), path=path)
        tokens = model.encode(x, target_error=TARGET_ERROR)
        return Output(ids=tokens.ids[0, : int(tokens.lengths[0])], decoded=model.decode(tokens))


ADAPTERS = {"karl": KARLAdapter}
