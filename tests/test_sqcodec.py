"""SQ-Codec: sizes and rates, scalar ids and latents, real-speech round trips, batching, gradients, training,
save/load, Hub and the upstream converter."""

from __future__ import annotations

import pytest
import torch
from sqcodec_layout import sqcodec_shapes, upstream_parameter_count
from tokenizer_checks import (
    assert_batch_equals_single_items,
    assert_every_parameter_has_a_gradient,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)

import zoo
from zoo.errors import CheckpointError
from zoo.hub import load_weights
from zoo.losses import MultiResolutionMelLoss
from zoo.models.audio.sqcodec import SQCodec, convert_sqcodec, infer_sqcodec_config

# Upstream ScalarModel at the assumed paper config (see sqcodec.py: the real sqcodec_config.yaml is unverified),
# counted from the layout in sqcodec_layout.py: weight_g and weight_v both, the shared encoder PReLU once.
UPSTREAM_PARAMS = 168_231_351
TINY_UPSTREAM = {
    "latent_dim": 16,
    "init_channel": 8,
    "downsample_factors": (2, 4, 4),
    "num_samples": 2,
    "res_kernel_size": 5,
}


@pytest.fixture
def tiny() -> SQCodec:
    return zoo.create("sqcodec_tiny").eval()


def test_paper_size_rates_and_upstream_parameter_count() -> None:
    with torch.device("meta"):
        model = zoo.create("sqcodec")
    assert model.sample_rate == 24000 and model.hop_length == 960 and model.tokens_per_second == 25
    assert model.latent_dim == 136 and model.codebook_sizes == (19,) * 136
    shapes = sqcodec_shapes()
    upstream = upstream_parameter_count(shapes)
    assert upstream == UPSTREAM_PARAMS
    # Folding weight norm drops one gain per output (input, for transposed convs) channel; the 5 encoder
    # strided convs get their own PReLU slope instead of upstream's one shared slope.
    gains = sum(s[0] for k, s in shapes.items() if k.endswith("weight_g"))
    assert model.num_parameters() == upstream - gains + 4
    assert abs(model.num_parameters() / upstream - 1) < 0.02


def test_latent_interface_for_reasoningcodec(tiny) -> None:
    x = torch.randn(2, 1, 1000) * 0.1
    z = tiny.encode_latents(x)
    assert z.shape == (2, tiny.latent_dim, -(-1000 // tiny.hop_length))
    assert torch.equal(torch.round(z * 9) / 9, z) and z.abs().max() <= 1
    raw = tiny.encode_latents(x, quantize=False)
    assert torch.allclose(torch.round(raw * 9) / 9, z)
    wav = tiny.decode_latents(z)
    assert wav.shape == (2, 1, z.shape[-1] * tiny.hop_length)
    # The decoder rounds first (as upstream): nearby off-grid latents decode identically.
    assert torch.equal(tiny.decode_latents(z + 0.02), wav)
    with pytest.raises(ValueError, match="expected latents"):
        tiny.decode_latents(torch.zeros(1, 3, 4))


def test_real_speech_round_trip_at_any_rate_and_length(tiny, speech) -> None:
    for wav, rate in speech.values():
        x = tiny.prepare((wav, rate))
        assert x.shape == (1, 1, round(wav.shape[-1] * 24000 / rate))
        tokens = tiny.encode(x)
        frames = -(-x.shape[-1] // tiny.hop_length)
        assert tokens.ids.shape == (1, tiny.latent_dim, frames) and tokens.latents.shape == tokens.ids.shape
        assert tokens.ids.min() >= 0 and tokens.ids.max() < 19
        assert torch.equal((tokens.ids - 9) / 9, tokens.latents)
        out = tiny.decode(tokens)
        assert out.shape == x.shape and torch.isfinite(out).all()
        continuous = zoo.Tokens(latents=tokens.latents, grid=tokens.grid, meta=tokens.meta)
        torch.testing.assert_close(tiny.decode(continuous), out)
    for length in (1, 63, 65, 1000):
        x = torch.randn(1, 1, length) * 0.1
        assert tiny.decode(tiny.encode(x)).shape == x.shape


def test_batch_equals_single_items(tiny, speech) -> None:
    x = tiny.prepare(speech["16k"])[..., :9600]
    assert_batch_equals_single_items(tiny, torch.cat([x, x.flip(-1), 0.5 * x]))


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match=r"expected audio \[B, 1, T\]"):
        tiny.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 1, 64), float("nan")))
    tokens = tiny.encode(torch.zeros(1, 1, 64))
    tokens.ids[0, 0, 0] = 19
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)
    with pytest.raises(ValueError, match="hop"):
        SQCodec(downsample_factors=(2, 2), upsample_factors=(2, 4))


def test_every_parameter_gets_a_gradient(speech) -> None:
    model = zoo.create("sqcodec_tiny").train()
    x = model.prepare(speech["16k"])[..., :4800]
    out = model(x.repeat(2, 1, 1))
    assert out.recon.shape == (2, 1, 4800) and out.losses == {}
    assert set(out.stats) == {"sq/saturated", "sq/levels_used"}
    (out.recon - x).abs().mean().backward()
    assert_every_parameter_has_a_gradient(model)


def test_training_steps_reduce_the_loss(speech, single_thread) -> None:
    model = zoo.create("sqcodec_tiny").train()
    x = model.prepare(speech["8k"])[..., 4800 : 4800 + 4 * 6016].reshape(4, 1, 6016)
    mel = MultiResolutionMelLoss(sample_rate=24000, window_lengths=(256, 1024), n_mels=(40, 80))
    assert not model.training_output(x, 0).losses  # mel alone: the scalar quantizer has no losses
    assert_training_reduces_loss(model, x, steps=40, lr=3e-3, ratio=0.85, reconstruction=mel, grad_clip=1.0)


def test_save_load_and_hub_round_trip(tmp_path, tiny, hub) -> None:
    assert_round_trips(tmp_path, tiny, torch.randn(2, 1, 2000) * 0.1, repo_id="zoo-tests/sqcodec-tiny")


def test_converter_folds_weight_norm_and_loads_strictly() -> None:
    shapes = sqcodec_shapes(**TINY_UPSTREAM)
    upstream = random_state_dict(shapes)
    shared = upstream["encoder.2.down_conv.activation.weight"]
    for key in [k for k in upstream if k.endswith("down_conv.activation.weight")]:
        upstream[key] = shared  # one module-level PReLU upstream
    model = zoo.create("sqcodec_tiny")
    load_weights(model, convert_sqcodec({"codec_model": upstream}, model), "tiny upstream")
    g, v = upstream["decoder.1.up_conv.layer.weight_g"], upstream["decoder.1.up_conv.layer.weight_v"]
    weight = model.decoder[1].up_conv.layer.weight  # transposed conv: the norm is per input channel
    torch.testing.assert_close(weight, g * v / v.flatten(1).norm(dim=1)[:, None, None])
    torch.testing.assert_close(model.encoder[4].down_conv.activation.weight, shared)
    # The shapes alone rebuild the configuration.
    config = infer_sqcodec_config(upstream)
    assert config["downsample_factors"] == [2, 4, 4] and config["num_samples"] == 2
    assert config["latent_dim"] == 16 and config["res_kernel_size"] == 5
    load_weights(SQCodec(**config), convert_sqcodec(upstream), "inferred config")
    upstream["decoder.9.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys: decoder.9.weight"):
        load_weights(model, convert_sqcodec(upstream), "upstream")
    del upstream["encoder.0.weight_v"]
    with pytest.raises(KeyError, match="weight_v"):
        convert_sqcodec(upstream)


def test_paper_layout_converts_onto_the_paper_model() -> None:
    shapes = sqcodec_shapes()
    with torch.device("meta"):
        model = zoo.create("sqcodec")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    gains = {k.removesuffix("_g") for k in shapes if k.endswith("weight_g")}
    expected = {k: s for k, s in shapes.items() if not k.endswith(("weight_g", "weight_v"))}
    expected.update({k: shapes[f"{k}_v"] for k in gains})
    assert ours == expected


def test_decoding_rounds_without_clamping_as_upstream(tiny) -> None:
    """Upstream's ``ScalarModel.decode`` rounds ``9 z`` and never clamps: a generated latent of 1.5 decodes as
    14 / 9, not as 1. ``clamp_latents=True`` keeps the old guard."""
    z = torch.linspace(-1.6, 1.6, 5 * tiny.latent_dim).reshape(1, tiny.latent_dim, 5)

    def reference(model: SQCodec, latents: torch.Tensor) -> torch.Tensor:  # decoder on rounded latents
        x = torch.round(latents * 9) / 9
        for layer in model.decoder:
            x = layer(x)
        return x

    with torch.no_grad():
        torch.testing.assert_close(tiny.decode_latents(z), reference(tiny, z), rtol=0, atol=0)
        assert not torch.allclose(tiny.decode_latents(z), reference(tiny, z.clamp(-1, 1)))
        clamped = zoo.create("sqcodec_tiny", clamp_latents=True).eval()
        clamped.load_state_dict(tiny.state_dict())
        torch.testing.assert_close(clamped.decode_latents(z), reference(tiny, z.clamp(-1, 1)), rtol=0, atol=0)
    # ids stay inside the 19-value vocabulary whatever the latents
    ids = tiny.ids_from_latents(z)
    assert int(ids.min()) == 0 and int(ids.max()) == 18
