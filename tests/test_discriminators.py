"""Discriminators: the shared output contract, gradients to the input, and parameter counts equal to
upstream's at the default configurations.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from zoo.nn import (
    CombinedDiscriminator,
    DiscriminatorOutput,
    MultiBandResolutionDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleSTFTDiscriminator,
    PatchDiscriminator,
)

pytestmark = pytest.mark.usefixtures("single_thread")


IMAGE_SHAPE = (2, 3, 32, 32)
AUDIO_SHAPE = (2, 1, 1000)

# name: (tiny discriminator, input shape, logits shape of each sub-discriminator)
TINY: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], list[tuple[int, ...]]]] = {
    "patch_batch": (lambda: PatchDiscriminator(channels=8), IMAGE_SHAPE, [(2, 1, 2, 2)]),
    "patch_group": (lambda: PatchDiscriminator(channels=8, norm="group"), IMAGE_SHAPE, [(2, 1, 2, 2)]),
    "patch_none": (lambda: PatchDiscriminator(channels=8, norm="none"), IMAGE_SHAPE, [(2, 1, 2, 2)]),
    "mpd": (
        lambda: MultiPeriodDiscriminator((2, 3), channels=(4, 8, 8), num_embeddings=4),
        AUDIO_SHAPE,
        [(2, 1, 56, 2), (2, 1, 38, 3)],  # 1000 / p rows, strided by 3 twice, then stride 1
    ),
    "mrd": (
        lambda: MultiResolutionDiscriminator(((128, 32, 128), (256, 64, 256)), channels=8, num_embeddings=4),
        AUDIO_SHAPE,
        [(2, 1, 3, 4), (2, 1, 5, 2)],  # [B, 1, F / 2^5, frames / 2^3]
    ),
    "band_mrd": (
        lambda: MultiBandResolutionDiscriminator((256,), channels=8, num_embeddings=4),
        AUDIO_SHAPE,
        [(2, 1, 16, 18)],  # 16 frames; bands of 12, 20, 32, 32, 33 bins -> 2 + 3 + 4 + 4 + 5
    ),
    "ms_stft": (
        lambda: MultiScaleSTFTDiscriminator((256, 128), (64, 32), (256, 128), filters=8),
        AUDIO_SHAPE,
        [(2, 1, 12, 17), (2, 1, 28, 9)],  # [B, 1, uncentred frames, bins / 2^3]
    ),
}


def _run(name: str, x: torch.Tensor) -> tuple[nn.Module, DiscriminatorOutput]:
    make, _, _ = TINY[name]
    discriminator = make()
    condition = torch.tensor([1, 3]) if name in ("mpd", "mrd", "band_mrd") else None
    output = discriminator(x) if condition is None else discriminator(x, condition)
    return discriminator, output


@pytest.mark.parametrize("name", list(TINY))
def test_output_contract_shapes_and_gradients(name: str) -> None:
    _, shape, logits_shapes = TINY[name]
    x = torch.randn(shape, requires_grad=True)
    discriminator, output = _run(name, x)

    assert isinstance(output, DiscriminatorOutput)
    assert [tuple(t.shape) for t in output.logits] == logits_shapes
    assert len(output.features) == len(output.logits)
    for features in output.features:
        assert features and all(f.shape[0] == shape[0] and torch.isfinite(f).all() for f in features)

    sum(t.mean() for t in output.logits).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    without_grad = [n for n, p in discriminator.named_parameters() if p.grad is None]
    assert without_grad == []


def test_features_match_between_real_and_fake_batches() -> None:
    """Feature matching pairs real and fake activations layer by layer, so their shapes must agree."""
    discriminator = MultiPeriodDiscriminator((2, 3), channels=(4, 8))
    real, fake = discriminator(torch.randn(AUDIO_SHAPE)), discriminator(torch.randn(AUDIO_SHAPE))
    for real_layers, fake_layers in zip(real.features, fake.features, strict=True):
        assert [r.shape for r in real_layers] == [f.shape for f in fake_layers]


def test_projection_conditioning_starts_neutral_and_then_depends_on_the_id() -> None:
    discriminator = MultiPeriodDiscriminator((2,), channels=(4, 8), num_embeddings=4)
    x = torch.randn(AUDIO_SHAPE)
    unconditioned = discriminator(x).logits[0]
    torch.testing.assert_close(discriminator(x, torch.tensor([0, 3])).logits[0], unconditioned)

    nn.init.normal_(discriminator.discriminators[0].head.embedding.weight)
    first, last = discriminator(x, torch.tensor(0)).logits[0], discriminator(x, torch.tensor(3)).logits[0]
    assert not torch.allclose(first, last)


def test_dc_removal_and_peak_normalisation_make_the_band_mrd_level_invariant() -> None:
    discriminator = MultiBandResolutionDiscriminator((128,), channels=4)
    x = torch.randn(AUDIO_SHAPE)
    torch.testing.assert_close(discriminator(3 * x + 0.5).logits[0], discriminator(x).logits[0])


def test_merge_concatenates_sub_discriminators() -> None:
    x = torch.randn(AUDIO_SHAPE)
    periods = MultiPeriodDiscriminator((2, 3), channels=(4, 8))(x)
    bands = MultiBandResolutionDiscriminator((128,), channels=4)(x)
    merged = DiscriminatorOutput.merge(periods, bands)
    assert merged.logits == [*periods.logits, *bands.logits]
    assert len(merged.features) == 3


def test_combined_members_keep_their_own_gan_losses() -> None:
    """WavTokenizer's set: its MPD and MRD under hinge losses, DAC's band MRD under least squares; the
    trainer's default fills members without a name, and mixed losses average per sub-discriminator."""
    from zoo.losses import gan_loss
    from zoo.losses.gan import mixed_discriminator_loss, mixed_generator_loss

    x, y = torch.randn(AUDIO_SHAPE), torch.randn(AUDIO_SHAPE)
    combined = CombinedDiscriminator(
        [
            MultiPeriodDiscriminator((2, 3), channels=(4, 8)),
            MultiBandResolutionDiscriminator((128,), channels=4),
        ],
        gan_losses=[None, "least_squares"],
    )
    real, fake = combined(x), combined(y)
    assert real.loss_names() == [None, None, "least_squares"]
    names = [n or "hinge" for n in fake.loss_names()]
    expected_g = (
        gan_loss("hinge").generator(fake.logits[:2]) * 2
        + gan_loss("least_squares").generator(fake.logits[2:])
    ) / 3
    torch.testing.assert_close(mixed_generator_loss(fake.logits, names), expected_g)
    d_hinge = gan_loss("hinge").discriminator(real.logits[:2], fake.logits[:2])
    d_ls = gan_loss("least_squares").discriminator(real.logits[2:], fake.logits[2:])
    torch.testing.assert_close(
        mixed_discriminator_loss(real.logits, fake.logits, names), (2 * d_hinge + d_ls) / 3
    )
    # one loss for all: the same numbers as the plain loss
    torch.testing.assert_close(
        mixed_generator_loss(fake.logits, ["hinge"] * 3), gan_loss("hinge").generator(fake.logits)
    )
    with pytest.raises(ValueError, match="unknown GAN loss"):
        CombinedDiscriminator([MultiPeriodDiscriminator((2,), channels=(4,))], gan_losses=["wasserstein"])
    with pytest.raises(ValueError, match="1 GAN losses named for 2"):
        CombinedDiscriminator([combined, combined], gan_losses=["hinge"])


def test_unknown_patch_norm_is_rejected() -> None:
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(norm="instance")


# Parameter counts measured by instantiating the upstream classes (CPU, torch 2.14):
UPSTREAM_PARAMETERS = {
    # FoundationVision/LlamaGen @ ce98ec4, PatchGANDiscriminator(input_nc=3, ndf=64, n_layers=3)
    # (tokenizer/tokenizer_image/discriminator.py; the same as discriminator_patchgan.NLayerDiscriminator)
    "llamagen_patchgan": (PatchDiscriminator, {}, 2_765_633),
    # gemelo-ai/vocos @ c859e3b, MultiPeriodDiscriminator(); equals the five MPDs of DAC @ c7cfc5d
    "vocos_mpd": (MultiPeriodDiscriminator, {}, 41_105_770),
    # WavTokenizer: Vocos's MPD conditioned on 4 bandwidth ids
    "wavtokenizer_mpd": (MultiPeriodDiscriminator, {"num_embeddings": 4}, 41_126_250),
    # gemelo-ai/vocos @ 41c7da6 (0.0.x), MultiResolutionDiscriminator(); WavTokenizer with 4 ids
    "vocos_0_0_mrd": (MultiResolutionDiscriminator, {}, 600_198),
    "wavtokenizer_mrd": (MultiResolutionDiscriminator, {"num_embeddings": 4}, 600_966),
    # gemelo-ai/vocos @ c859e3b, MultiResolutionDiscriminator(); equals the three MRDs of DAC @ c7cfc5d
    "dac_mrd": (MultiBandResolutionDiscriminator, {}, 1_413_990),
    # facebookresearch/audiocraft @ 896ec7c, MultiScaleSTFTDiscriminator(**msstftd) of
    # config/solver/compression/default.yaml (five scales), and with the class's default three scales
    "encodec_ms_stft": (MultiScaleSTFTDiscriminator, {}, 472_330),
    "encodec_ms_stft_3_scales": (
        MultiScaleSTFTDiscriminator,
        {"n_ffts": (1024, 2048, 512), "hop_lengths": (256, 512, 128), "win_lengths": (1024, 2048, 512)},
        283_398,
    ),
}


@pytest.mark.parametrize("name", list(UPSTREAM_PARAMETERS))
def test_parameter_count_equals_upstream(name: str) -> None:
    cls, kwargs, expected = UPSTREAM_PARAMETERS[name]
    with torch.device("meta"):
        discriminator = cls(**kwargs)
    assert sum(p.numel() for p in discriminator.parameters()) == expected
