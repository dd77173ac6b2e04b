"""ReTok: 1D prefix tokens, redundant padding, nested dropout, semantic teacher, training and the converter."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from retok_layout import retok_shapes
from tokenizer_checks import (
    assert_every_parameter_has_a_gradient,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)

import zoo
from zoo.errors import CheckpointError
from zoo.hub import load_weights
from zoo.models.image import retok as retok_module
from zoo.models.image.retok import convert_retok, multilevel_pool

# The tiny size with upstream's quantizer (no k-means flag), matching the synthetic layout below.
UPSTREAM_QUANTIZER = {"kmeans_init": False, "restart_threshold": 0.0}
TINY_UPSTREAM = {
    "ch": 16, "ch_mult": (1, 2, 2), "num_res_blocks": 1, "z_channels": 32, "encoder_width": 64,
    "encoder_layers": 2, "decoder_width": 64, "decoder_layers": 2, "num_tokens": 16, "min_tokens": 4,
    "grid": 8, "codebook_size": 256, "distill_dim": 64,
}  # fmt: skip
TEACHER = {"patch_size": 8, "embed_dim": 64, "depth": 1, "num_heads": 2}


@pytest.fixture(autouse=True, scope="module")
def _threads(single_thread) -> None:
    return None


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    return zoo.create("retok_tiny").eval()


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> str:
    """A tiny random ViT saved as a local file: the only way a teacher gets weights."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, **TEACHER)
    path = tmp_path_factory.mktemp("teacher") / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    return str(path)


def _with_teacher(path: str, **kw) -> zoo.Tokenizer:
    return zoo.create(
        "retok_tiny",
        teacher="vit_tiny_patch16_224",
        teacher_kwargs=TEACHER,
        teacher_weights=path,
        teacher_resolution=32,
        **kw,
    )


def test_paper_size_matches_upstream_on_meta() -> None:
    with torch.device("meta"):
        model = zoo.create("retok")
    # 232,686,347 = upstream VQVitModelPlus built from configs/vq/VQ_SB256.yaml (paper: "232M")
    assert model.num_parameters() == 232_686_347
    assert model.token_layout()["grid"] == [256] and model.extended_tokens == 480
    shapes = retok_shapes()
    assert len(shapes) == 648
    upstream = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    converted = convert_retok(upstream, model)
    own = model.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert sum(v.numel() for k, v in upstream.items() if k != "quantize.codebook_used") == 232_686_347


def test_multilevel_pool_levels() -> None:
    grid = torch.arange(64.0).reshape(1, 1, 8, 8)
    q = multilevel_pool(grid, 16)[0, :, 0]
    assert q.shape == (16,)
    assert q[0] == q[1] == grid.mean()
    torch.testing.assert_close(q[2:4], torch.stack([grid[..., :4].mean(), grid[..., 4:].mean()]))
    torch.testing.assert_close(q[4], grid[..., :4, :4].mean())  # level 2: 2x2 cells, row-major


def test_encode_decode_every_prefix_on_photos(tiny, photos) -> None:
    full = tiny.encode(photos)
    assert full.ids.shape == (4, 16) and full.grid == (16,) and full.codebook_sizes == (256,)
    assert full.lengths.tolist() == [16] * 4
    previous = None
    for n in range(4, 17):  # paper: 32..256 of 256, here 4..16 of 16
        tokens = tiny.encode(photos, num_tokens=n)
        assert torch.equal(tokens.ids, full.ids[:, :n]) and tokens.meta["num_tokens"] == n
        out = tiny.decode(tokens)
        assert out.shape == photos.shape and torch.isfinite(out).all()
        if previous is not None:
            assert not torch.equal(out, previous)  # each extra token changes the image
        previous = out
    for n in (3, 17):
        with pytest.raises(ValueError, match="prefixes of 4..16"):
            tiny.encode(photos, num_tokens=n)


def test_paper_prefix_lengths_are_accepted() -> None:
    with torch.device("meta"):
        model = zoo.create("retok")
    for n in (32, 64, 128, 256):
        assert model._check_length(n) == n
    with pytest.raises(ValueError, match="32..256"):
        model._check_length(16)


def test_decode_of_encode_matches_forward_in_eval(tiny, photos) -> None:
    with torch.no_grad():
        out = tiny(photos)
    tokens = tiny.encode(photos)
    assert torch.equal(out.ids, tokens.ids) and out.losses == {}
    torch.testing.assert_close(tiny.decode(tokens), out.recon, atol=1e-5, rtol=1e-5)


def test_per_item_lengths_equal_separate_prefixes(tiny, photos) -> None:
    tokens = tiny.encode(photos)
    lengths = torch.tensor([4, 7, 16, 10])
    tokens.lengths = lengths
    tokens.ids[0, 4:] = -1  # whatever lies past a prefix is ignored
    batch = tiny.decode(tokens)
    for i, n in enumerate(lengths.tolist()):
        single = tiny.decode(tiny.encode(photos[i : i + 1], num_tokens=n))
        torch.testing.assert_close(batch[i], single[0], atol=1e-5, rtol=1e-5)


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match="32x32 images only"):
        tiny.encode(torch.rand(1, 3, 48, 48))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 3, 32, 32), float("nan")))
    tokens = tiny.encode(torch.rand(1, 3, 32, 32))
    tokens.ids[0, 0] = 999
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)


def test_nested_dropout_keeps_prefixes_of_the_padded_sequence(photos) -> None:
    model = zoo.create("retok_tiny").train()
    kept = torch.cat([model._keep_lengths(256, torch.device("cpu")) for _ in range(4)])
    assert kept.min() == 4 and kept.max() == 28  # k ~ U[min_tokens, N + M], M = 12 padding copies
    out = model(photos)
    assert out.ids.shape == (4, 16) and 4 <= out.stats["tokens/kept"] <= 28
    assert set(out.losses) == {"vq/commit", "vq/codebook", "feature/rec"}
    assert "feature/rec" not in model.training_output(photos, step=10_000).losses  # past feature_steps


def test_every_parameter_gets_a_gradient_with_a_teacher(teacher_file, photos) -> None:
    model = _with_teacher(teacher_file).train()
    for _ in range(3):  # nested dropout is random: several draws reach the padding positions too
        out = model.training_output(photos, step=0)
        (F.l1_loss(out.recon, photos) + sum(out.losses.values())).backward()
    assert set(out.losses) == {"vq/commit", "vq/codebook", "feature/rec", "semantic/align"}
    assert_every_parameter_has_a_gradient(model)
    # the teacher is frozen and outside the state dict
    assert not any(k.startswith("_semantic") for k in model.state_dict())
    assert not any(p.requires_grad for p in model._teacher().parameters())


def test_semantic_weight_falls_toward_the_tail(teacher_file, photos) -> None:
    model = _with_teacher(teacher_file).train()
    inner = torch.randn(1, 64, 64).expand(4, -1, -1)
    x = photos[:1].expand(4, -1, -1, -1)
    losses = [model._alignment(model._teacher(), x, inner, torch.full((4,), k)).item() for k in (4, 16, 28)]
    assert losses[0] > losses[1] > losses[2] > 0
    torch.testing.assert_close(losses[2] / losses[0], 0.1, atol=1e-4, rtol=1e-4)  # semantic_tail_weight


def test_without_teacher_weights_alignment_is_off_and_warned_once(monkeypatch, caplog, photos) -> None:
    monkeypatch.setattr(retok_module, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger=retok_module.__name__):
        for _ in range(2):
            out = zoo.create("retok_tiny").train()(photos)
            assert "semantic/align" not in out.losses
    assert sum("semantic regularisation is disabled" in r.message for r in caplog.records) == 1


def test_converter_maps_tiny_upstream_layout_strictly(photos) -> None:
    upstream = random_state_dict(retok_shapes(**TINY_UPSTREAM))
    upstream = {f"module.{k}": v for k, v in upstream.items()}  # DDP-saved checkpoints load too
    model = zoo.create("retok_tiny", **UPSTREAM_QUANTIZER).eval()
    load_weights(model, convert_retok(upstream, model), "tiny upstream")
    up = {k.removeprefix("module."): v for k, v in upstream.items()}
    # 1x1 convs around the quantizer and at the encoder output become linears with the same maps
    x = torch.randn(2, 64, 1, 5)
    expected = F.conv2d(x, up["s2to1encoder.conv_out.weight"], up["s2to1encoder.conv_out.bias"])
    torch.testing.assert_close(
        model.query_encoder.out_proj(x[:, :, 0].transpose(1, 2)).transpose(1, 2), expected[:, :, 0]
    )
    ids = torch.tensor([[3, 200]])
    code = F.normalize(up["quantize.embedding.weight"][ids[0]], dim=-1)
    expected = F.conv2d(code.T[None, :, None], up["post_quant_conv.weight"], up["post_quant_conv.bias"])[
        :, :, 0
    ]
    torch.testing.assert_close(model.quantizer.lookup(ids), expected)
    torch.testing.assert_close(
        model.query_decoder.pad_token_pos, up["s1to2decoder.latent_token_positional_embedding_comp"][:, 0]
    )
    assert torch.isfinite(model.decode(model.encode(photos, num_tokens=5))).all()


def test_released_checkpoint_file_loads_preferring_ema(tmp_path, photos) -> None:
    shapes = retok_shapes(**TINY_UPSTREAM)
    ema, raw = random_state_dict(shapes), random_state_dict(shapes)
    raw = {k: v + 1 for k, v in raw.items()}
    torch.save({"model": raw, "ema": ema, "steps": 1}, tmp_path / "VQ_tiny.pt")
    model = zoo.load_upstream(
        "retok.sb256_e250", tmp_path / "VQ_tiny.pt", arch="retok_tiny", **UPSTREAM_QUANTIZER
    )
    assert not model.training
    torch.testing.assert_close(model.encoder.conv_in.weight, ema["encoder.conv_in.weight"])
    model.save_pretrained(tmp_path / "converted")
    assert torch.equal(zoo.load(tmp_path / "converted").encode(photos).ids, model.encode(photos).ids)


def test_converter_reports_a_foreign_layout() -> None:
    upstream = random_state_dict(retok_shapes(**TINY_UPSTREAM))
    upstream["encoder.extra.weight"] = torch.zeros(1)
    del upstream["decoder.adaptive.0.gamma.bias"]
    model = zoo.create("retok_tiny", **UPSTREAM_QUANTIZER)
    with pytest.raises(
        CheckpointError,
        match="missing keys: decoder.adaptive.0.gamma.bias.*unexpected keys: encoder.extra.weight",
    ):
        load_weights(model, convert_retok(upstream, model), "upstream")


def test_pretrained_tag_is_registered_honestly() -> None:
    from zoo._registry import get_pretrained_cfg

    _, cfg = get_pretrained_cfg("retok.sb256_e250")
    assert cfg.hf_hub_id is None and cfg.converter == "convert_retok" and cfg.filename == "VQ_SB256_e250.pt"
    assert "Google Drive" in cfg.description


def test_training_steps_reduce_the_loss(teacher_file, photos) -> None:
    assert_training_reduces_loss(_with_teacher(teacher_file), photos)


def test_save_load_and_hub_round_trip(tmp_path, hub, tiny, photos) -> None:
    prefix = lambda model, x: model.encode(x, num_tokens=8)
    assert_round_trips(tmp_path, tiny, photos, repo_id="tester/retok-tiny", encode=prefix)
