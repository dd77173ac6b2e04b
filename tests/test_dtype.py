"""Models loaded in bf16 or fp16 (``zoo.load(..., dtype=...)``) take ``prepare``'s float32 output as it is:
``encode`` and ``decode`` cast floating inputs (and continuous latents) to the weights' dtype."""

from __future__ import annotations

import copy

import pytest
import torch

import zoo
from zoo.quantizers import ResidualVQ

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
    # these compute a step in float32 inside (quantizer projections and search, STFT) and cast back
    "retok_tiny",
    "cat_tiny",
    "biocodec_tiny",
    "tfm_tokenizer_tiny",
]


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


def test_float32_models_are_untouched() -> None:
    model = zoo.create("vq16_tiny").eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)  # not cast: float32 weights leave inputs alone
    with pytest.raises(RuntimeError):
        model.encode(x)


def half_and_float32_twin(
    module: torch.nn.Module, dtype: torch.dtype
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``module`` in ``dtype``, and a float32 copy holding exactly the same (rounded) weights."""
    half = module.to(dtype)
    twin = copy.deepcopy(half).float()
    return half, twin


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_quantizers_search_in_float32(dtype: torch.dtype) -> None:
    """Projections, normalisation and the nearest-code search of a bf16/fp16 quantizer run in float32 on
    its upcast weights, so it picks exactly the codes its float32 twin picks (half-precision distances
    would flip near-ties); its float32 output is cast to the decoder's dtype by the model."""
    torch.manual_seed(0)
    quantizer = ResidualVQ(12, 3, 64, codebook_dim=4, l2_norm=True, l2_norm_output=False).eval()
    half, twin = half_and_float32_twin(quantizer, dtype)
    z = torch.randn(2, 12, 40)
    with torch.no_grad():
        got, want = half(z), twin(z)
    assert torch.equal(got.ids, want.ids)
    assert got.quantized.dtype == torch.float32 and torch.equal(got.quantized, want.quantized)
    assert half.lookup(got.ids).dtype == dtype  # decoding stays in the model's dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_biocodec_searches_in_float32(dtype: torch.dtype) -> None:
    """BioCodec's own residual search (upstream's cosine ranking) upcasts a half model's codes too."""
    torch.manual_seed(0)
    half, twin = half_and_float32_twin(zoo.create("biocodec_tiny").eval(), dtype)
    z = torch.randn(3, half.quantizer.dim, 25)
    assert torch.equal(half.residual_search(z), twin.residual_search(z))


@pytest.mark.parametrize("arch", ["retok_tiny", "cat_tiny", "biocodec_tiny", "tfm_tokenizer_tiny"])
def test_half_precision_ids_decode_like_float32(arch: str) -> None:
    """Decoding fp32 ids in bf16 gives the float32 decode up to bf16 rounding, not something else
    (TFM's decode is compared before Griffin-Lim, whose phase retrieval amplifies any difference)."""
    torch.manual_seed(0)
    half, twin = half_and_float32_twin(zoo.create(arch).eval(), torch.bfloat16)
    torch.manual_seed(1)
    with torch.inference_mode():
        tokens = twin.encode(example(twin))
        if arch == "tfm_tokenizer_tiny":
            ids = tokens.ids.reshape(-1, tokens.grid[-1])
            got, want = half.decode_windows_spectrogram(ids), twin.decode_windows_spectrogram(ids)
        else:
            got, want = half.decode(tokens), twin.decode(tokens)
    assert float((got.float() - want).norm() / want.norm()) < 0.05


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_eeg_models_normalise_the_float32_recording(dtype: torch.dtype) -> None:
    """EEG ``encode`` normalises the float32 recording and only its windows meet the half weights: a
    70 mV DC offset (DC-coupled amplifiers) would overflow fp16 and leave bf16 no bits for the signal."""
    torch.manual_seed(0)
    model = zoo.create("biocodec_tiny").eval().to(dtype)
    signal = torch.randn(1, 2, 2 * model.window_samples) * 20
    with torch.inference_mode():
        offset_ids = model.encode(signal + 70_000.0).ids
        decoded = model.decode(model.encode(signal + 70_000.0))
        plain_ids = model.encode(signal).ids
    assert float((offset_ids == plain_ids).float().mean()) > 0.95
    assert bool(torch.isfinite(decoded).all()) and abs(float(decoded.mean()) - 70_000.0) < 100.0
