"""MAGE's VQGAN (KARL's base): layout and parameter count, converter against a reference forward, API."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mage_layout import mage_vqgan_shapes
from tokenizer_checks import assert_batch_equals_single_items, assert_every_parameter_has_a_gradient

import zoo
from zoo.hub import load_weights
from zoo.models.image.vqgan_mage import convert_mage

TINY_UPSTREAM = {"ch": 32, "ch_mult": (1, 1, 2), "num_res_blocks": 1, "embed_dim": 32, "n_embed": 256}


def test_paper_size_equals_upstreams_layout_on_meta() -> None:
    shapes = mage_vqgan_shapes()
    assert sum(math.prod(s) for s in shapes.values()) == 54_515_587
    with torch.device("meta"):
        model = zoo.create("vqgan_mage")
        assert model.num_parameters() == 54_515_587
        state = convert_mage({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert model.token_layout()["grid"] == [16, 16] and model.codebook_sizes == (1024,)


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, levels: int, blocks: int) -> torch.Tensor:
    """MaskGIT's encoder, written out from the upstream layout: bias-free blocks whose width-changing
    ones return ``h + W h`` (dropping their input), average pooling, no attention, 1x1 output conv."""

    def gn(name: str, h: torch.Tensor) -> torch.Tensor:
        return F.silu(F.group_norm(h, min(32, h.shape[1]), sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-6))

    def res(name: str, h: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(gn(f"{name}.norm1", h), sd[f"{name}.conv1.weight"], padding=1)
        out = F.conv2d(gn(f"{name}.norm2", out), sd[f"{name}.conv2.weight"], padding=1)
        if f"{name}.nin_shortcut.weight" in sd:
            return out + F.conv2d(out, sd[f"{name}.nin_shortcut.weight"])
        return h + out

    h = F.conv2d(x, sd["encoder.conv_in.weight"], padding=1)
    for i in range(levels):
        for j in range(blocks):
            h = res(f"encoder.down.{i}.block.{j}", h)
        if i != levels - 1:
            h = F.avg_pool2d(h, 2, 2)
    h = res("encoder.mid.block_2", res("encoder.mid.block_1", h))
    return F.conv2d(gn("encoder.norm_out", h), sd["encoder.conv_out.weight"], sd["encoder.conv_out.bias"])


def test_converter_and_forward_match_the_upstream_layout(photos) -> None:
    torch.manual_seed(0)
    shapes = mage_vqgan_shapes(**TINY_UPSTREAM)
    upstream = {k: torch.randn(s) * (0.3 if len(s) == 1 else 0.05) for k, s in shapes.items()}
    model = zoo.create("vqgan_mage_tiny", norm_groups=32, kmeans_init=False, restart_threshold=0.0).eval()
    load_weights(model, convert_mage(upstream), "upstream")
    features = reference_forward(upstream, photos, levels=3, blocks=1)
    torch.testing.assert_close(model.features(photos), features, atol=1e-5, rtol=1e-4)
    codebook = upstream["quantize.embedding.weight"]
    flat = features.permute(0, 2, 3, 1).reshape(-1, 32)
    ids = torch.cdist(flat, codebook).argmin(-1).view(4, 8, 8)
    assert torch.equal(model.encode(photos).ids, ids)
    # KARL checkpoints hold the same model under base_tokenizer.vqgan.
    karl = {f"base_tokenizer.vqgan.{k}": v for k, v in upstream.items()} | {"latent_tokens": torch.zeros(3)}
    assert set(convert_mage(karl)) == set(convert_mage(upstream))


def test_encode_decode_and_soft_codes(photos) -> None:
    model = zoo.create("vqgan_mage_tiny").eval()
    tokens = model.encode(photos)
    assert tokens.ids.shape == (4, 8, 8) and tokens.codebook_sizes == (256,)
    out = model.decode(tokens)
    assert out.shape == photos.shape and torch.isfinite(out).all()
    codes = model.quantizer.lookup(tokens.ids)
    torch.testing.assert_close(model.decode_codes(codes), out)
    assert model.features(photos).shape == (4, 32, 8, 8)
    assert_batch_equals_single_items(model, photos)
    with pytest.raises(ValueError, match="multiple of the downsampling factor"):
        model.encode(torch.rand(1, 3, 30, 32))


def test_training_forward_and_gradients(photos) -> None:
    model = zoo.create("vqgan_mage_tiny").train()
    out = model(photos)
    (F.l1_loss(out.recon, photos) + sum(out.losses.values())).backward()
    assert_every_parameter_has_a_gradient(model)
    assert set(out.losses) == {"vq/codebook", "vq/commit"}


def test_hub_round_trip(hub, photos) -> None:
    torch.manual_seed(0)
    model = zoo.create("vqgan_mage_tiny").eval()
    model(photos)  # k-means init on real features
    model.eval().push_to_hub("tester/vqgan-mage-tiny")
    again = zoo.load("tester/vqgan-mage-tiny")
    assert torch.equal(again.encode(photos).ids, model.encode(photos).ids)
