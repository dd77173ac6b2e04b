"""Training losses: GAN objectives on hand-made logits, feature matching, VQGAN's adaptive weight, LeCam,
the perceptual loss (offline weights, random fallback, frozen network) and the spectral losses.
"""

from __future__ import annotations

import logging
import math
import socket

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from zoo.losses import (
    EEGReconstructionLoss,
    LeCamRegularizer,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    PerceptualLoss,
    adaptive_generator_weight,
    feature_matching_loss,
    gan_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
    non_saturating_discriminator_loss,
    non_saturating_generator_loss,
)
from zoo.losses.perceptual import PERCEPTUAL_HEAD_WEIGHTS_ENV, PERCEPTUAL_WEIGHTS_ENV

pytestmark = pytest.mark.usefixtures("single_thread")


REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])
TINY_BACKBONE = "test_resnet"  # timm's 0.4M-parameter test network


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


# --- GAN objectives --------------------------------------------------------------------------------------


def test_gan_losses_on_hand_made_logits() -> None:
    # hinge: relu(1 - real) = [0, .5, 2], relu(1 + fake) = [0, 1, 2.5]
    assert hinge_discriminator_loss(REAL, FAKE).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert hinge_generator_loss(FAKE).item() == pytest.approx(0.5 / 3)
    assert hinge_generator_loss(FAKE, clamp=True).item() == pytest.approx(4 / 3)  # relu(1 - fake) = [3, 1, 0]
    # least squares: (1 - real)^2 = [1, .25, 4], fake^2 = [4, 0, 2.25], (1 - fake)^2 = [9, 1, .25]
    assert least_squares_discriminator_loss(REAL, FAKE).item() == pytest.approx(5.25 / 3 + 6.25 / 3)
    assert least_squares_generator_loss(FAKE).item() == pytest.approx(10.25 / 3)
    # non-saturating: softplus(-real) + softplus(fake); generator softplus(-fake)
    expected_d = sum(_softplus(-r) for r in REAL.tolist()) / 3 + sum(_softplus(f) for f in FAKE.tolist()) / 3
    assert non_saturating_discriminator_loss(REAL, FAKE).item() == pytest.approx(expected_d)
    expected_g = sum(_softplus(-f) for f in FAKE.tolist()) / 3
    assert non_saturating_generator_loss(FAKE).item() == pytest.approx(expected_g)


def test_gan_losses_average_over_sub_discriminators_and_map_elements() -> None:
    real_maps = [REAL.view(1, 1, 3), torch.full((2, 1, 4, 4), 3.0)]
    fake_maps = [FAKE.view(1, 1, 3), torch.full((2, 1, 4, 4), -3.0)]
    assert hinge_discriminator_loss(real_maps, fake_maps).item() == pytest.approx((2.0 + 0.0) / 2)
    assert hinge_generator_loss(fake_maps).item() == pytest.approx((0.5 / 3 + 3.0) / 2)


def test_gan_loss_by_name() -> None:
    pair = gan_loss("least_squares")
    assert pair.generator is least_squares_generator_loss
    assert pair.discriminator is least_squares_discriminator_loss
    assert gan_loss("hinge_clamped").generator(FAKE).item() == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="hinge"):
        gan_loss("wasserstein")


def test_gan_losses_pass_gradients_to_logits() -> None:
    fake = FAKE.clone().requires_grad_()
    non_saturating_generator_loss(fake).backward()
    torch.testing.assert_close(fake.grad, -torch.sigmoid(-FAKE) / 3)


# --- feature matching, adaptive weight, LeCam --------------------------------------------------------------


def test_feature_matching_is_mean_l1_and_detaches_real_features() -> None:
    real = [[torch.zeros(2, 3), torch.ones(2, 5)], [torch.zeros(4)]]
    real = [[t.requires_grad_() for t in layers] for layers in real]
    fake = [[torch.full((2, 3), 2.0), torch.ones(2, 5)], [torch.full((4,), -1.0)]]
    fake = [[t.requires_grad_() for t in layers] for layers in fake]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(((2.0 + 0.0) / 2 + 1.0) / 2)
    loss.backward()
    assert all(t.grad is None for layers in real for t in layers)
    assert fake[0][0].grad is not None
    assert feature_matching_loss(real[0], real[0]).item() == 0.0  # a flat list of layers works too


def test_adaptive_generator_weight_matches_manual_gradient_ratio() -> None:
    decoder_out = nn.Conv2d(4, 3, 3, padding=1)
    discriminator = nn.Conv2d(3, 1, 3)
    image, target = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8)
    reconstruction = decoder_out(image)
    rec_loss = F.mse_loss(reconstruction, target)
    gan = hinge_generator_loss(discriminator(reconstruction))

    weight = adaptive_generator_weight(rec_loss, gan, decoder_out.weight)

    rec_grad = torch.autograd.grad(rec_loss, decoder_out.weight, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, decoder_out.weight, retain_graph=True)[0]
    assert weight.item() == pytest.approx((rec_grad.norm() / (gan_grad.norm() + 1e-4)).item(), rel=1e-5)
    assert not weight.requires_grad
    (rec_loss + weight * gan).backward()  # both graphs survive for the real backward pass
    assert adaptive_generator_weight(
        F.mse_loss(decoder_out(image), target), 1e-9 * decoder_out(image).mean(), decoder_out.weight, 10.0
    ).item() == pytest.approx(10.0)


def test_lecam_keeps_emas_and_penalises_drift() -> None:
    regularizer = LeCamRegularizer(decay=0.9)
    assert not regularizer.initialized
    first = regularizer(REAL, FAKE)  # the first update copies the means: ema_real 0.5, ema_fake -1/6
    assert regularizer.ema_real.item() == pytest.approx(0.5)
    assert regularizer.ema_fake.item() == pytest.approx(-1 / 6)
    expected = (
        F.relu(REAL + 1 / 6).square().mean() + F.relu(0.5 - FAKE).square().mean()
    )  # relu(real - ema_fake)^2 + relu(ema_real - fake)^2
    assert first.item() == pytest.approx(expected.item())

    regularizer(torch.full((3,), 1.5), torch.full((3,), 0.5))
    assert regularizer.ema_real.item() == pytest.approx(0.9 * 0.5 + 0.1 * 1.5)
    assert regularizer.ema_fake.item() == pytest.approx(0.9 * (-1 / 6) + 0.1 * 0.5)

    regularizer.eval()
    before = regularizer.ema_real.clone()
    regularizer(torch.full((3,), 9.0), FAKE)
    assert torch.equal(regularizer.ema_real, before)
    assert set(regularizer.state_dict()) == {"ema_real", "ema_fake", "initialized"}


# --- perceptual loss ---------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv(PERCEPTUAL_WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(PERCEPTUAL_HEAD_WEIGHTS_ENV, raising=False)


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)


def test_random_fallback_is_recorded_frozen_and_deterministic(
    no_network: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="zoo.losses.perceptual"):
        loss = PerceptualLoss()  # vgg16, LPIPS's taps
    assert loss.random_init and loss.source == "random-init vgg16 (no weights given)"
    assert len([r for r in caplog.records if "randomly initialised" in r.message]) == 1
    assert loss.layers == (0, 1, 2, 3, 4)
    assert loss.backbone.feature_info.channels()[:5] == [64, 128, 256, 512, 512]

    parent = nn.ModuleDict({"perceptual": loss, "decoder": nn.Conv2d(3, 3, 1)})
    parent.train()
    assert loss.training and not loss.backbone.training
    assert not any(p.requires_grad for p in loss.parameters())

    x, y = _images()
    x.requires_grad_()
    distance = loss(x, y)
    distance.backward()
    assert distance.item() > 0 and x.grad is not None and x.grad.abs().sum() > 0
    assert loss(y, y).item() == 0.0
    assert all(p.grad is None for p in loss.parameters())

    again = PerceptualLoss(TINY_BACKBONE)
    assert torch.equal(again(x, y), PerceptualLoss(TINY_BACKBONE)(x, y))  # seeded
    assert not torch.equal(again(x, y), PerceptualLoss(TINY_BACKBONE, seed=1)(x, y))

    # Checkpoints carry no frozen weights, and strict loading still works.
    assert list(parent.state_dict()) == ["decoder.weight", "decoder.bias"]
    parent.load_state_dict(parent.state_dict(), strict=True)


def test_weights_file_is_loaded_offline_and_changes_the_distance(
    no_network: None, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(1)
    trained = timm.create_model(TINY_BACKBONE, pretrained=False)
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    save_file(state, tmp_path / "backbone.safetensors")
    x, y = _images()

    loaded = PerceptualLoss(TINY_BACKBONE, weights=tmp_path / "backbone.safetensors")
    fallback = PerceptualLoss(TINY_BACKBONE)
    assert not loaded.random_init and str(tmp_path / "backbone.safetensors") in loaded.source
    torch.testing.assert_close(loaded.backbone.state_dict()["conv1.0.weight"], state["conv1.0.weight"])
    assert not torch.allclose(loaded(x, y), fallback(x, y))

    # The same weights from a wrapped torch checkpoint, through the environment variable.
    torch.save({"state_dict": state}, tmp_path / "backbone.pt")
    monkeypatch.setenv(PERCEPTUAL_WEIGHTS_ENV, str(tmp_path / "backbone.pt"))
    torch.testing.assert_close(PerceptualLoss(TINY_BACKBONE)(x, y), loaded(x, y))


def test_lpips_head_weights_scale_each_layer(no_network: None, tmp_path) -> None:
    baseline = PerceptualLoss(TINY_BACKBONE)
    channels = baseline.backbone.feature_info.channels()[:5]
    head = {f"lin{i}.model.1.weight": torch.full((1, c, 1, 1), 2.0) for i, c in enumerate(channels)}
    save_file(head, tmp_path / "lpips_head.safetensors")

    with_head = PerceptualLoss(TINY_BACKBONE, head_weights=tmp_path / "lpips_head.safetensors")
    assert "LPIPS head" in with_head.source
    x, y = _images()
    torch.testing.assert_close(with_head(x, y), 2 * baseline(x, y))


def test_weights_of_another_architecture_are_rejected(no_network: None, tmp_path) -> None:
    save_file({"conv.weight": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="does not hold the backbone"):
        PerceptualLoss(TINY_BACKBONE, weights=tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        PerceptualLoss(TINY_BACKBONE, weights=tmp_path / "missing.safetensors")


# --- audio and EEG -------------------------------------------------------------------------------------------


def _audio(shape: tuple[int, ...] = (2, 1, 2400)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


AUDIO_LOSSES = {
    "stft_default": lambda: MultiResolutionSTFTLoss(),
    "stft_small": lambda: MultiResolutionSTFTLoss((128, 64), (32, 16), (128, 64)),
    "mel_dac": lambda: MultiResolutionMelLoss(24_000),
    "mel_vocos": lambda: MultiResolutionMelLoss(
        24_000, (1024,), (100,), floor=1e-7, natural_log=True, mel_scale="htk", mel_norm=None
    ),
    "eeg_biocodec": lambda: EEGReconstructionLoss(),
    "eeg_l1": lambda: EEGReconstructionLoss((16, 32), time_loss="l1"),
}


@pytest.mark.parametrize("name", list(AUDIO_LOSSES))
def test_spectral_losses_vanish_on_identical_inputs_and_pass_gradients(name: str) -> None:
    loss = AUDIO_LOSSES[name]()
    prediction, target = _audio()
    assert loss(target, target).item() == 0.0
    prediction.requires_grad_()
    value = loss(prediction, target)
    value.backward()
    assert value.item() > 0 and torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0


def test_stft_and_mel_losses_ignore_a_common_gain() -> None:
    """Spectral convergence and log-spectra differences are relative, so a common gain cancels."""
    prediction, target = _audio()
    for loss in (MultiResolutionSTFTLoss((128, 64), (32, 16), (128, 64)), MultiResolutionMelLoss(24_000)):
        torch.testing.assert_close(
            loss(3 * prediction, 3 * target), loss(prediction, target), rtol=1e-4, atol=1e-6
        )


def test_natural_log_mel_loss_is_log10_times_ln10() -> None:
    prediction, target = _audio()
    kwargs = {"window_lengths": (256, 512), "n_mels": (40, 80)}
    log10 = MultiResolutionMelLoss(24_000, **kwargs)(prediction, target)
    natural = MultiResolutionMelLoss(24_000, natural_log=True, **kwargs)(prediction, target)
    torch.testing.assert_close(natural, log10 * math.log(10), rtol=1e-5, atol=1e-6)


def test_eeg_loss_time_term_and_phase_term() -> None:
    signal, other = _audio((3, 2, 500))
    parts = EEGReconstructionLoss().components(other, signal)
    torch.testing.assert_close(parts["time"], F.smooth_l1_loss(other, signal, beta=0.7))
    time_only = EEGReconstructionLoss(time_loss="l1", time_weight=1.0, spectral_weight=0.0)
    torch.testing.assert_close(time_only(other, signal), F.l1_loss(other, signal))

    # A sign flip keeps every magnitude and turns every phase by pi: only the phase features see it.
    magnitude_only = EEGReconstructionLoss(phase_weight=0.0).components(-signal, signal)["spectral"]
    with_phase = EEGReconstructionLoss().components(-signal, signal)["spectral"]
    assert magnitude_only.item() == pytest.approx(0.0, abs=1e-5)
    assert with_phase.item() > 0.1
