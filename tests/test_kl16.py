"""KL-16 (MAR's KL-VAE): size, latents, posterior sampling, batching, gradients, training, Hub, converter.

The upstream layout (``tests/mar_layout.py``) follows LTH14/mar @ fe470ac, ``models/vae.py``,
``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))``: 312 state-dict entries, 66,456,019 parameters
(counted by building that class). The converted model was also checked once, outside this suite, to
reproduce upstream's posterior mean and decoder output on random weights (max abs error ~1e-7).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mar_layout import mar_kl_shapes
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
from zoo.models.image.kl16 import convert_mar
from zoo.tokens import Tokens

UPSTREAM_PARAMS = 66_456_019
TINY_UPSTREAM = {"ch": 32, "ch_mult": (1, 1, 2), "num_res_blocks": 1, "embed_dim": 4}


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    return zoo.create("kl16_tiny").eval()


def test_paper_size_and_latent_shape_on_meta() -> None:
    with torch.device("meta"):
        model = zoo.create("kl16")
    assert model.num_parameters() == UPSTREAM_PARAMS
    assert model.scale_factor == 0.2325 and not model.discrete and model.codebook_sizes == ()
    moments = model._moments(torch.empty(2, 3, 256, 256, device="meta"))
    assert moments.shape == (2, 32, 16, 16)  # mean and log-variance of 16 channels
    layout = model.token_layout()
    assert layout["grid"] == [16, 16] and layout["latent_channels"] == 16 and layout["tokens_per_item"] == 256
    assert "kl16" in zoo.list_models() and "kl16_tiny" in zoo.list_models()
    assert "kl16.mar_in1k" in zoo.list_models(pretrained=True)


def test_converter_loads_paper_size_upstream_state_dict_strictly() -> None:
    shapes = mar_kl_shapes()
    assert len(shapes) == 312 and sum(math.prod(s) for s in shapes.values()) == UPSTREAM_PARAMS
    upstream = {k: torch.zeros(s) for k, s in shapes.items()}
    upstream["loss.logvar"] = torch.zeros(())  # training-only keys are dropped
    model = zoo.create("kl16")
    load_weights(model, convert_mar({f"module.{k}": v for k, v in upstream.items()}, model), "upstream")


def test_converter_maps_stages_attention_and_order() -> None:
    upstream = random_state_dict(mar_kl_shapes(**TINY_UPSTREAM))
    model = zoo.create("kl16_tiny").eval()
    load_weights(model, convert_mar(upstream, model), "tiny upstream")
    # LDM indexes decoder.up by resolution level; ours run from the lowest resolution upwards
    assert torch.equal(
        model.decoder.stages[0].res[0].conv1.weight, upstream["decoder.up.2.block.0.conv1.weight"]
    )
    assert torch.equal(model.decoder.stages[2].res[1].norm1.bias, upstream["decoder.up.0.block.1.norm1.bias"])
    assert torch.equal(
        model.encoder.stages[1].resample.conv.weight, upstream["encoder.down.1.downsample.conv.weight"]
    )
    assert torch.equal(
        model.encoder.stages[2].res[0].skip.weight, upstream["encoder.down.2.block.0.nin_shortcut.weight"]
    )
    qkv = torch.cat([upstream[f"encoder.down.2.attn.0.{n}.weight"] for n in "qkv"])
    assert torch.equal(model.encoder.stages[2].attn[0].qkv.weight, qkv)
    assert torch.equal(model.decoder.mid.attn.proj.bias, upstream["decoder.mid.attn_1.proj_out.bias"])
    assert all(len(stage.attn) == 0 for stage in model.decoder.stages)  # decoder attention: mid only


def test_converter_reports_a_foreign_layout() -> None:
    upstream = random_state_dict(mar_kl_shapes(**TINY_UPSTREAM))
    upstream["encoder.extra.weight"] = torch.zeros(1)
    del upstream["post_quant_conv.bias"]
    model = zoo.create("kl16_tiny")
    with pytest.raises(
        CheckpointError, match="missing keys: post_quant_conv.bias.*unexpected keys: encoder.extra"
    ):
        load_weights(model, convert_mar(upstream, model), "upstream")


def test_encode_decode_on_photos(tiny, photos) -> None:
    tokens = tiny.encode(photos)
    assert tokens.ids is None and tokens.latents.shape == (4, 4, 8, 8) and tokens.grid == (8, 8)
    assert tokens.codebook_sizes == () and tokens.meta["scale_factor"] == 0.2325
    out = tiny.decode(tokens)
    assert out.shape == photos.shape and torch.isfinite(out).all()
    with torch.no_grad():
        fwd = tiny(photos)
    torch.testing.assert_close(fwd.latents, tokens.latents)
    torch.testing.assert_close(fwd.recon, out, atol=1e-5, rtol=1e-5)
    assert fwd.losses == {}  # the KL term is a training loss
    assert tiny.encode(torch.rand(1, 3, 48, 64)).grid == (12, 16)


def test_latents_are_scaled_posterior_mean_or_sample(tiny, photos) -> None:
    mean = tiny.encode(photos)
    assert torch.equal(tiny.encode(photos).latents, mean.latents)  # the mean is deterministic
    with torch.no_grad():
        moments = tiny._moments(photos)
    torch.testing.assert_close(mean.latents, moments[:, :4] * 0.2325)
    std = torch.exp(0.5 * moments[:, 4:].clamp(-30, 20))
    a, b = tiny.encode(photos, sample=True).latents, tiny.encode(photos, sample=True).latents
    assert not torch.equal(a, b)
    noise = (a - mean.latents) / 0.2325 / std
    assert abs(noise.mean().item()) < 0.15 and abs(noise.std().item() - 1) < 0.1
    # decode divides the scale back out
    torch.testing.assert_close(tiny.decode(mean), tiny._reconstruct(moments[:, :4]), atol=1e-5, rtol=1e-5)


def test_batch_equals_single_items(tiny, photos) -> None:
    assert_batch_equals_single_items(tiny, photos)


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match="multiple of the downsampling factor 4"):
        tiny.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="continuous latents"):
        tiny.decode(Tokens(latents=torch.zeros(1, 16, 8, 8), grid=(8, 8)))
    with pytest.raises(ValueError, match="continuous latents"):
        tiny.decode(Tokens(ids=torch.zeros(1, 8, 8, dtype=torch.long), grid=(8, 8), codebook_sizes=(16,)))


def test_every_parameter_gets_a_gradient(photos) -> None:
    model = zoo.create("kl16_tiny").train()
    out = model(photos)
    assert set(out.losses) == {"vq/kl"} and out.losses["vq/kl"] > 0
    loss = F.l1_loss(out.recon, photos) + sum(out.losses.values())
    loss.backward()
    assert_every_parameter_has_a_gradient(model)
    assert model.last_layer() is model.decoder.conv_out.weight


def test_training_steps_reduce_the_loss(photos) -> None:
    assert_training_reduces_loss(zoo.create("kl16_tiny"), photos)


def test_save_load_tokens_and_hub_round_trip(tmp_path, hub, tiny, photos) -> None:
    assert_round_trips(tmp_path, tiny, photos, repo_id="tester/kl16-tiny")
    assert "latent channels" in hub.files("tester/kl16-tiny")["README.md"].decode()
