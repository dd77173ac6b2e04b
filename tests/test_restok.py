"""ResTok: paper size, levels and masks, round trips on photos, gradients, training, semantic teacher, Hub, converter.

The upstream layout (``tests/restok_layout.py``) follows Kwai-Kolors/ResTok @ e0059cb with the
``configs/training/ResTok/restok_l_128.yaml`` config: 1,149 state-dict entries and 661,791,947 parameters
without the frozen DINOv3 teacher. That count was obtained by building upstream's ``ResTok`` class on
the meta device (with small stand-ins for ``omegaconf``/``accelerate``, ``use_vf`` off, and the three
teacher-only tensors ``vf_proj``, ``vf_proj_dec``, ``decoder.feat_mask_token`` added from their
definitions), and the layout below reproduces that state dict key for key and shape for shape. The converted
model was also checked once, outside this suite, against upstream's code with random weights at the
"small" ViT size: identical ids, pre-quantization codes within 1.1e-6 and pixels within 1.1e-4 (fp32),
for the full sequence and for a 16-token prefix.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from restok_layout import restok_shapes
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
from zoo.models.image.restok import convert_restok, latent_levels, level_causal_mask, pool_levels
from zoo.tokens import Tokens

UPSTREAM_PARAMS = 661_791_947
# A small CNN + ViT variant of the paper architecture (shapes only differ in widths and depths).
SMALL = {"width": 64, "depth": 4, "heads": 4, "cnn_channels": 32, "norm_groups": 8, "teacher_dim": 32}
SMALL_UPSTREAM = {"width": 64, "depth": 4, "heads": 4, "ch": 32, "vf_dim": 32}

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors; see conftest


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    return zoo.create("restok_tiny").eval()


@pytest.fixture
def teacher_file(tmp_path) -> str:
    """A tiny random frozen ViT standing in for DINO (same output interface: class token + patches)."""
    import timm
    from safetensors.torch import save_file

    teacher = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=4, depth=1
    )
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    return str(path)


# ---------------------------------------------------------------------------------------------- paper size
def test_paper_size_matches_upstream_on_meta() -> None:
    with torch.device("meta"):
        model = zoo.create("restok")
    assert model.num_parameters() == UPSTREAM_PARAMS  # within 2% required; it is exact
    assert model.levels == [1, 1, 2, 4, 8, 16, 32, 64] and model.nested_lengths == [4, 8, 16, 32, 64, 128]
    assert model.nested_probs == pytest.approx([w / 155 for w in (1, 2, 4, 8, 16, 124)])
    assert model.encoder.merge_after == [5, 11, 17]
    layout = model.token_layout()
    assert (
        layout["tokens_per_item"] == 128
        and layout["codebook_sizes"] == [8192]
        and layout["bits_per_token"] == 13
    )
    assert "restok" in zoo.list_models() and "restok_tiny" in zoo.list_models()
    assert "restok.l_128_in1k" in zoo.list_models(pretrained=True)


def test_converter_maps_the_paper_size_layout_key_for_key() -> None:
    shapes = restok_shapes()
    assert len(shapes) == 1149 and sum(math.prod(s) for s in shapes.values()) == UPSTREAM_PARAMS
    upstream = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    upstream["foundation_model.model.cls_token"] = torch.empty(1, 1, 1024, device="meta")  # frozen teacher
    with torch.device("meta"):
        model = zoo.create("restok")
    converted = convert_restok({f"_orig_mod.{k}": v for k, v in upstream.items()}, model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected


# ---------------------------------------------------------------------------------------------- structure
def test_levels_pooling_and_level_causal_mask() -> None:
    assert latent_levels(16) == [1, 1, 2, 4, 8] and sum(latent_levels(128)) == 128
    with pytest.raises(ValueError, match="power-of-two"):
        latent_levels(96)
    grid = torch.randn(2, 3, 4, 4)
    plain = pool_levels(grid, [1, 1, 2, 4, 8, 16], residual=False)
    torch.testing.assert_close(plain[:, 0], grid.mean((2, 3)))
    resid = pool_levels(grid, [1, 1, 2, 4, 8, 16], residual=True)
    torch.testing.assert_close(resid[:, 1], torch.zeros(2, 3), atol=1e-6, rtol=0)  # nothing left at 1x1
    # upsampled levels of a residual pyramid ending at full resolution add back up to the grid
    total, start = torch.zeros_like(grid), 0
    for n in [1, 1, 2, 4, 8, 16]:
        h, w = (1, 1) if n == 1 else {2: (1, 2), 4: (2, 2), 8: (2, 4), 16: (4, 4)}[n]
        level = resid[:, start : start + n].transpose(1, 2).reshape(2, 3, h, w)
        total += F.interpolate(level, size=(4, 4), mode="nearest")
        start += n
    torch.testing.assert_close(total, grid, atol=1e-5, rtol=1e-5)
    mask = level_causal_mask([2, 1, 3])
    assert mask[0, :2].all() and not mask[0, 2:].any() and mask[3].all() and not mask[2, 3:].any()


def test_coarse_latent_levels_ignore_finer_ones(tiny, photos) -> None:
    """Level-causal attention: changing the finest latent level's input leaves every coarser level unchanged."""
    noise = torch.randn(4, 8, 64)

    def perturb_finest_level(_module: torch.nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
        return torch.cat([out[:, :-8], out[:, -8:] + 5.0 * noise], dim=1)

    with torch.no_grad():
        ref = tiny._encode(photos)[0]
        handle = tiny.encoder.ln_pre.register_forward_hook(perturb_finest_level)
        try:
            changed = tiny._encode(photos)[0]
        finally:
            handle.remove()
    torch.testing.assert_close(changed[..., :8], ref[..., :8])
    assert not torch.allclose(changed[..., 8:], ref[..., 8:])


# ---------------------------------------------------------------------------------------------- API
def test_encode_decode_round_trip_on_photos(tiny, photos) -> None:
    tokens = tiny.encode(photos)
    assert tokens.ids.shape == (4, 16) and tokens.grid == (16,) and tokens.codebook_sizes == (256,)
    assert tokens.meta["levels"] == [1, 1, 2, 4, 8] and sum(tokens.meta["levels"]) == tokens.ids.shape[1]
    assert tokens.ids.min() >= 0 and tokens.ids.max() < 256
    out = tiny.decode(tokens)
    assert out.shape == photos.shape and torch.isfinite(out).all()
    with torch.no_grad():
        fwd = tiny(photos)
    assert torch.equal(fwd.ids, tokens.ids)
    torch.testing.assert_close(out, fwd.recon, atol=1e-5, rtol=1e-5)
    # a coarse prefix decodes like the model's own nested-dropout path
    prefix = Tokens(ids=tokens.ids[:, :4], grid=(4,), codebook_sizes=(256,))
    with torch.no_grad():
        torch.testing.assert_close(
            tiny.decode(prefix), tiny(photos, num_tokens=4).recon, atol=1e-5, rtol=1e-5
        )
    padded = tokens.ids.clone()
    padded[:, 4:] = -1
    torch.testing.assert_close(
        tiny.decode(Tokens(ids=padded, grid=(16,), codebook_sizes=(256,))), tiny.decode(prefix)
    )


def test_batch_equals_single_items(tiny, photos) -> None:
    assert_batch_equals_single_items(tiny, photos)


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match="must be 32x32"):
        tiny.encode(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="multiple of the downsampling factor 4"):
        tiny.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 3, 32, 32), float("nan")))
    tokens = tiny.encode(torch.rand(1, 3, 32, 32))
    tokens.ids[0, 0] = 999
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)


# ---------------------------------------------------------------------------------------------- training
def test_every_parameter_gets_a_gradient_with_a_teacher(photos, teacher_file) -> None:
    # drop_prob 1: every sample drops a tail, so the latent mask token is used too
    model = zoo.create("restok_tiny", teacher_dim=192, teacher_weights=teacher_file, drop_prob=1.0).train()
    out = model.training_output(photos, 0)
    assert (
        set(out.losses) == {"vq/codebook", "vq/commit", "semantic/align"} and out.losses["semantic/align"] > 0
    )
    assert out.stats["kept_tokens"] < 16
    loss = F.mse_loss(out.recon, photos) + sum(out.losses.values())
    loss.backward()
    assert_every_parameter_has_a_gradient(model)
    assert all(p.requires_grad for p in model.parameters())
    # the frozen teacher is neither trained nor saved
    assert not any("teacher" in k for k in model.state_dict())
    assert all(not p.requires_grad for p in model._teacher[0].parameters())


def test_training_without_teacher_weights_is_logged_and_possible(photos, caplog) -> None:
    model = zoo.create("restok_tiny", teacher_dim=192).train()
    assert not model.aligning and not model.vf_proj.weight.requires_grad
    with caplog.at_level(logging.WARNING, logger="zoo.models.image.restok"):
        out = model(photos)
        model(photos)
    assert sum("without semantic alignment" in r.message for r in caplog.records) == 1
    assert "semantic/align" not in out.losses and not model._teacher
    (F.mse_loss(out.recon, photos) + sum(out.losses.values())).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"


# ---------------------------------------------------------------------------------------------- save / Hub
# ---------------------------------------------------------------------------------------------- converter
def test_converter_loads_a_small_upstream_state_dict_strictly() -> None:
    upstream = random_state_dict(restok_shapes(**SMALL_UPSTREAM))
    upstream["module.foundation_model.model.norm.weight"] = torch.ones(8)
    model = zoo.create("restok", **SMALL)
    load_weights(model, convert_restok(upstream, model), "small upstream")
    torch.testing.assert_close(
        model.encoder.quant_proj[3].weight, upstream["encoder.conv_out.3.weight"][..., 0, 0]
    )
    torch.testing.assert_close(model.vf_proj_dec.weight, upstream["vf_proj_dec.weight"].flatten(1))
    torch.testing.assert_close(model.quantizer.codebook, upstream["quantize.embedding.weight"])
    ids = torch.tensor([[5, 100]])
    expected = F.normalize(upstream["quantize.embedding.weight"][ids[0]], dim=-1).T[None]
    torch.testing.assert_close(model.quantizer.lookup(ids), expected)
    # without a teacher the alignment-only tensors are dropped
    bare = zoo.create("restok", **{**SMALL, "teacher_dim": 0})
    load_weights(bare, convert_restok(upstream, bare), "small upstream, no teacher")


def test_converter_loads_an_inference_config_checkpoint_without_teacher_tensors(tmp_path) -> None:
    """Upstream's ``configs/infer`` turns feature supervision off, so its checkpoints lack the three
    teacher-only tensors: the converter makes the model ``teacher_dim=0`` instead of refusing the file."""
    upstream = random_state_dict(restok_shapes(**SMALL_UPSTREAM))
    for key in ("vf_proj.weight", "vf_proj_dec.weight", "decoder.feat_mask_token"):
        del upstream[key]
    model = zoo.create("restok", **SMALL)
    assert model.vf_proj is not None
    load_weights(model, convert_restok({f"_orig_mod.{k}": v for k, v in upstream.items()}, model), "infer")
    assert model.vf_proj is None and model.vf_proj_dec is None and model.decoder.feat_mask_token is None
    assert model.config["teacher_dim"] == 0 and not model.aligning
    model.save_pretrained(tmp_path / "saved")  # the saved config rebuilds the same (teacher-free) model
    assert zoo.load(tmp_path / "saved").vf_proj is None
    # only a checkpoint lacking all three is an inference one; one missing tensor is still reported
    partial = random_state_dict(restok_shapes(**SMALL_UPSTREAM))
    del partial["vf_proj.weight"]
    model = zoo.create("restok", **SMALL)
    with pytest.raises(CheckpointError, match=r"missing keys: vf_proj\.weight"):
        load_weights(model, convert_restok(partial, model), "partial")


def test_converter_reports_a_foreign_layout() -> None:
    upstream = random_state_dict(restok_shapes(**SMALL_UPSTREAM))
    upstream["encoder.extra.weight"] = torch.zeros(1)
    del upstream["decoder.ffn.bias"]
    model = zoo.create("restok", **SMALL)
    with pytest.raises(
        CheckpointError, match=r"missing keys: decoder\.ffn\.bias.*unexpected keys: encoder\.extra"
    ):
        load_weights(model, convert_restok(upstream, model), "foreign")


def test_training_steps_reduce_the_loss(photos) -> None:
    model = zoo.create("restok_tiny")
    assert_training_reduces_loss(model, photos, steps=20, lr=2e-3, ratio=0.6, reconstruction=F.mse_loss)


def test_save_load_tokens_and_hub_round_trip(tmp_path, hub, tiny, photos) -> None:
    assert_round_trips(tmp_path, tiny, photos, repo_id="tester/restok-tiny")
    assert Tokens.load(tmp_path / "t.safetensors").meta["levels"] == [1, 1, 2, 4, 8]
    assert "levels" in hub.files("tester/restok-tiny")["README.md"].decode()
