"""VQ-16 (LlamaGen): shapes, round trips, batching, gradients, training, and the upstream converter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from llamagen_layout import llamagen_vq_shapes
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
from zoo.models.image.vq16 import convert_llamagen

# The tiny size with upstream's quantizer (no k-means flag or usage buffer), matching the layout below.
UPSTREAM_QUANTIZER = {"kmeans_init": False, "restart_threshold": 0.0}
TINY_UPSTREAM = {"ch": 32, "ch_mult": (1, 1, 2), "num_res_blocks": 1, "z_channels": 32, "codebook_size": 256}


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    return zoo.create("vq16_tiny").eval()


def test_encode_decode_shapes(tiny, photos) -> None:
    tokens = tiny.encode(photos)
    assert tokens.ids.shape == (4, 8, 8) and tokens.grid == (8, 8) and tokens.codebook_sizes == (256,)
    assert tokens.ids.min() >= 0 and tokens.ids.max() < 256
    out = tiny.decode(tokens)
    assert out.shape == photos.shape and torch.isfinite(out).all()
    # any multiple of the downsampling factor works
    assert tiny.encode(torch.rand(1, 3, 48, 64)).grid == (12, 16)


def test_decode_of_encode_matches_forward_in_eval(tiny, photos) -> None:
    with torch.no_grad():
        out = tiny(photos)
    tokens = tiny.encode(photos)
    assert torch.equal(out.ids, tokens.ids)
    torch.testing.assert_close(tiny.decode(tokens), out.recon, atol=1e-5, rtol=1e-5)


def test_batch_equals_single_items(tiny, photos) -> None:
    assert_batch_equals_single_items(tiny, photos)


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match="multiple of the downsampling factor 4"):
        tiny.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\]"):
        tiny.encode(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 3, 32, 32), float("nan")))
    tokens = tiny.encode(torch.rand(1, 3, 32, 32))
    tokens.ids[0, 0, 0] = 999
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)


def test_every_parameter_gets_a_gradient(photos) -> None:
    model = zoo.create("vq16_tiny").train()
    out = model(photos)
    loss = F.l1_loss(out.recon, photos) + sum(out.losses.values())
    loss.backward()
    assert_every_parameter_has_a_gradient(model)
    assert set(out.losses) == {"vq/codebook", "vq/commit"}
    assert 0 < out.stats["usage"] <= 1


def test_training_steps_reduce_the_loss(photos) -> None:
    assert_training_reduces_loss(zoo.create("vq16_tiny"), photos, lr=5e-4, ratio=0.6)


def test_save_load_round_trip(tmp_path, tiny, photos) -> None:
    assert_round_trips(tmp_path, tiny, photos)


def test_converter_loads_paper_size_upstream_state_dict_strictly() -> None:
    shapes = llamagen_vq_shapes()
    assert len(shapes) == 344  # as enumerated from LlamaGen's VQ_16
    model = zoo.create("vq16")
    converted = convert_llamagen(random_state_dict(shapes), model)
    load_weights(model, converted, "upstream VQ_16")
    total_upstream_params = sum(
        torch.Size(s).numel() for k, s in shapes.items() if k != "quantize.codebook_used"
    )
    assert model.num_parameters() == total_upstream_params


def _reference_attention(
    sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, groups: int
) -> torch.Tensor:
    """Separate q/k/v 1x1 convs, as LlamaGen's attention block computes them."""
    h = F.group_norm(x, groups, sd[f"{prefix}.norm.weight"], sd[f"{prefix}.norm.bias"], eps=1e-6)
    q, k, v = (F.conv2d(h, sd[f"{prefix}.{n}.weight"], sd[f"{prefix}.{n}.bias"]) for n in "qkv")
    b, c, hh, ww = q.shape
    w = torch.softmax(q.reshape(b, c, -1).transpose(1, 2) @ k.reshape(b, c, -1) * c**-0.5, dim=2)
    out = (v.reshape(b, c, -1) @ w.transpose(1, 2)).reshape(b, c, hh, ww)
    return x + F.conv2d(out, sd[f"{prefix}.proj_out.weight"], sd[f"{prefix}.proj_out.bias"])


def test_converted_attention_matches_separate_qkv() -> None:
    upstream = random_state_dict(llamagen_vq_shapes(**TINY_UPSTREAM))
    model = zoo.create("vq16_tiny", **UPSTREAM_QUANTIZER).eval()
    load_weights(model, convert_llamagen(upstream, model), "tiny upstream")
    x = torch.randn(2, 64, 8, 8)
    expected = _reference_attention(upstream, "encoder.mid.1", x, groups=8)
    torch.testing.assert_close(model.encoder.mid.attn(x), expected, atol=1e-5, rtol=1e-5)


def test_converter_codebook_and_lookup_follow_upstream_normalisation() -> None:
    upstream = random_state_dict(llamagen_vq_shapes(**TINY_UPSTREAM))
    model = zoo.create("vq16_tiny", **UPSTREAM_QUANTIZER).eval()
    load_weights(model, convert_llamagen(upstream, model), "tiny upstream")
    ids = torch.tensor([[3, 200]])
    expected = F.normalize(upstream["quantize.embedding.weight"][ids[0]], dim=-1).T[None]
    torch.testing.assert_close(model.quantizer.lookup(ids), expected)


def test_converter_reports_a_foreign_layout() -> None:
    upstream = random_state_dict(llamagen_vq_shapes(**TINY_UPSTREAM))
    upstream["encoder.extra.weight"] = torch.zeros(1)
    del upstream["decoder.conv_out.bias"]
    model = zoo.create("vq16_tiny", **UPSTREAM_QUANTIZER)
    with pytest.raises(
        CheckpointError, match="missing keys: decoder.conv_out.bias.*unexpected keys: encoder.extra.weight"
    ):
        load_weights(model, convert_llamagen(upstream, model), "upstream")
    del upstream["encoder.mid.1.k.weight"]
    with pytest.raises(KeyError, match="lacks"):
        convert_llamagen(upstream, model)


def test_tag_prefers_the_ema_weights_as_llamagen_reconstruction_does(tmp_path) -> None:
    """LlamaGen's reconstruction scripts load ``"ema"`` when the file has it, else ``"model"``."""
    _, cfg = zoo.get_pretrained_cfg("vq16.llamagen_in1k")
    assert cfg.checkpoint_key == ("ema", "model")
    raw = random_state_dict(llamagen_vq_shapes(**TINY_UPSTREAM))
    ema = {k: v + 1 for k, v in raw.items()}
    both, only_model = tmp_path / "both.pt", tmp_path / "model.pt"
    torch.save({"model": raw, "ema": ema, "optimizer": {}}, both)
    torch.save({"model": raw}, only_model)
    kwargs = {"arch": "vq16_tiny", **UPSTREAM_QUANTIZER}
    loaded = zoo.load_upstream("vq16.llamagen_in1k", both, **kwargs)
    torch.testing.assert_close(loaded.quantizer.codebook, ema["quantize.embedding.weight"])
    fallback = zoo.load_upstream("vq16.llamagen_in1k", only_model, **kwargs)
    torch.testing.assert_close(fallback.quantizer.codebook, raw["quantize.embedding.weight"])
