"""Models loaded in bf16 or fp16 (``zoo.load(..., dtype=...)``) take ``prepare``'s float32 output as it is:
``encode`` and ``decode`` cast floating inputs (and continuous latents) to the weights' dtype."""

from __future__ import annotations

import pytest
import torch

import zoo

TINY = [
    "vq16_tiny",
    "kl16_tiny",
    "tokenbridge_tiny",
    "vqgan_mage_tiny",
    "karl_tiny",
    "restok_tiny",
    "seed_tiny",
    "wavtokenizer_tiny",
    "sqcodec_tiny",
    "reasoningcodec_tiny",
]
# still computing part of their graph in float32 internally: issue 17 keeps them open
INTERNAL_FLOAT32 = ["retok_tiny", "cat_tiny", "biocodec_tiny", "tfm_tokenizer_tiny"]


def example(model: zoo.Tokenizer) -> torch.Tensor:
    if model.modality == "image":
        return torch.rand(1, model.in_channels, model.resolution, model.resolution)
    if model.modality == "audio":
        return torch.randn(1, model.channels, int(model.sample_rate * 0.25)) * 0.1
    return torch.randn(1, 2, model.window_samples) * 20


def round_trip(arch: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = zoo.create(arch).eval().to(dtype)
    x = example(model)  # float32, as prepare returns it
    with torch.inference_mode():
        tokens = model.encode(x)
        y = model.decode(tokens)
    assert y.shape[0] == 1 and bool(torch.isfinite(y.float()).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("arch", TINY)
def test_half_precision_models_take_float32_inputs(arch: str, dtype: torch.dtype) -> None:
    round_trip(arch, dtype)


@pytest.mark.xfail(strict=True, raises=RuntimeError, reason="a float32 step inside the model (issue 17)")
@pytest.mark.parametrize("arch", INTERNAL_FLOAT32)
def test_models_with_an_internal_float32_step_are_known(arch: str) -> None:
    round_trip(arch, torch.bfloat16)


def test_float32_models_are_untouched() -> None:
    model = zoo.create("vq16_tiny").eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)  # not cast: float32 weights leave inputs alone
    with pytest.raises(RuntimeError):
        model.encode(x)
