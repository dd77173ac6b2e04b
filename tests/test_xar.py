"""xAR: entity layouts, block-causal mask, cached sampling against a clean full forward, converter, sizes."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.hub import load_weights
from zoo.models.generators.xar import EntityLayout, block_causal_mask, convert_xar


@pytest.fixture
def xar() -> zoo.Tokenizer:
    torch.manual_seed(0)
    model = zoo.create("xar_tiny")
    with torch.no_grad():  # upstream's init zeroes nothing, but make every path matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_paper_sizes_have_upstream_parameter_counts() -> None:
    with torch.device("meta"):
        counts = {name: zoo.create(name).num_parameters() for name in ("xar_b", "xar_l", "xar_h")}
    assert counts == {"xar_b": 172_638_224, "xar_l": 608_397_968, "xar_h": 1_186_024_096}
    tokens = zoo.info("xar_b")["tokens"]
    assert tokens["entities"] == 4 and tokens["tokens_per_entity"] == [64] * 4
    assert tokens["forward_passes"] == 160 and tokens["latent_channels"] == 16


def test_mask_is_block_lower_triangular() -> None:
    sizes = [4, 4, 4, 4]
    mask = block_causal_mask(sizes)
    for q in range(16):
        for k in range(16):
            assert bool(mask[q, k]) == (k // 4 <= q // 4)
    assert torch.equal(
        block_causal_mask([1, 4, 16])[:5, :5], torch.tensor([[1, 0, 0, 0, 0]] + [[1] * 5] * 4).bool()
    )


@pytest.mark.parametrize("cell", [1, 2, 4, 8])
def test_cell_layouts_round_trip_in_upstream_order(cell: int) -> None:
    layout = EntityLayout(8, "cell", cell)
    x = torch.randn(2, 3, 8, 8)
    seq = layout.to_sequence(x)
    assert seq.shape == (2, 64, 3) and len(layout) == (8 // cell) ** 2
    assert torch.equal(layout.from_sequence(seq), x)
    # Cells in raster order, tokens row-major inside each: cell 1 starts at column `cell` of row 0.
    if cell < 8:
        assert torch.equal(seq[:, cell * cell], x[:, :, 0, cell])
        assert (layout.rows[cell * cell], layout.cols[cell * cell]) == (0, cell)
    with pytest.raises(ValueError, match="does not divide"):
        EntityLayout(8, "cell", 3)


def test_scale_layout() -> None:
    layout = EntityLayout(8, "scale", scales=(1, 2, 4, 8))
    x = torch.randn(2, 3, 8, 8)
    seq = layout.to_sequence(x)
    assert seq.shape == (2, 1 + 4 + 16 + 64, 3)
    torch.testing.assert_close(seq[:, 0], x.mean((2, 3)))
    assert torch.equal(layout.from_sequence(seq), x)
    assert float(layout.rows[0]) == 3.5  # the 1x1 scale sits at the grid's centre
    with pytest.raises(ValueError, match="end at 8"):
        EntityLayout(8, "scale", scales=(1, 2, 4))


def test_cached_sampling_velocities_equal_a_clean_full_forward(xar) -> None:
    """Every velocity of cached incremental sampling equals a full-sequence forward whose context
    (the finished entities) is clean (t = 0), under the block-causal mask."""
    labels = torch.tensor([3, 5])
    records = []
    tokens = xar.sample(labels, cfg=2.0, steps=3, seed=0, callback=lambda *r: records.append(r))
    assert len(records) == 4 * 3 == xar.forward_passes(3)
    finished = xar.layout.to_sequence(tokens.latents).repeat(2, 1, 1)
    both = torch.cat([labels, torch.full_like(labels, xar.num_classes)])
    for entity, _, x_t, t_cur, velocity in records:
        start, end = 16 * entity, 16 * (entity + 1)
        seq = torch.cat([finished[:, :start], x_t], dim=1)
        t = torch.cat([torch.zeros(4, start), torch.full((4, 16), t_cur)], dim=1)
        full = xar.velocity(seq, both, t, span=slice(0, end), mask=xar.mask[:end, :end])
        torch.testing.assert_close(velocity.float(), full[:, start:], atol=1e-5, rtol=1e-5)


def test_samples_are_reproducible_and_decodable_latents(xar) -> None:
    a = xar.sample([1, 2, 3], cfg=1.5, steps=4, seed=3)
    assert a.latents.shape == (3, 4, 8, 8) and a.ids is None and torch.isfinite(a.latents).all()
    assert torch.equal(a.latents, xar.sample([1, 2, 3], cfg=1.5, steps=4, seed=3).latents)
    assert not torch.equal(a.latents, xar.sample([1, 2, 3], cfg=1.5, steps=4, seed=4).latents)
    kl = zoo.create("kl16_tiny").eval()
    xar.check_tokenizer(kl)
    assert kl.decode(a).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="do not apply"):
        xar.sample([1], top_k=5)
    with pytest.raises(ValueError, match="cannot model"):
        xar.check_tokenizer(zoo.create("vq16_tiny"))


def test_patch_and_scale_entities_sample_and_train() -> None:
    for kwargs in ({"cell": 2}, {"entity": "scale", "scales": (2, 4, 8)}):
        torch.manual_seed(0)
        model = zoo.create("xar_tiny", **kwargs)
        out = model.training_loss({"latents": torch.randn(2, 4, 8, 8), "labels": torch.tensor([0, 1])})
        out.loss.backward()
        assert torch.isfinite(out.loss)
        tokens = model.eval().sample([0, 1], steps=2, seed=0)
        assert tokens.latents.shape == (2, 4, 8, 8)


def test_noisy_context_training_loss_and_gradients(xar) -> None:
    xar.train()
    batch = {"latents": torch.randn(4, 4, 8, 8), "labels": torch.tensor([0, 1, 2, 9])}
    out = xar.training_loss(batch)
    out.loss.backward()
    missing = [n for n, p in xar.named_parameters() if p.grad is None]
    assert missing == []
    # The trivial predictor 0 scores E|noise - x|^2 = 1 + E x^2 = 2 here; a random net is no better.
    assert float(out.loss.detach()) > 0.5
    with pytest.raises(ValueError, match=r"\[B, 4, 8, 8\]"):
        xar.training_loss({"latents": torch.randn(1, 16, 8, 8), "labels": torch.tensor([0])})


def test_converter_drops_upstream_buffers_and_loads_strictly(xar) -> None:
    upstream = {f"module.{k}": v.clone() for k, v in xar.state_dict().items()}
    upstream["module.mask"] = torch.zeros(1, 1, 64, 64)
    for i in range(2):
        for name in ("freqs", "freqs_cos", "freqs_sin"):
            upstream[f"module.encoder_blocks.{i}.attn.rope.{name}"] = torch.zeros(3)
    fresh = zoo.create("xar_tiny")
    load_weights(fresh, convert_xar(upstream), "upstream")
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), xar.state_dict().values(), strict=True)
    )
    keys = set(zoo.create("xar_tiny").state_dict())
    assert {
        "time_embed.mlp.0.weight",
        "encoder_blocks.0.mlp.fc1_g.weight",
        "encoder_blocks.0.ada_lin.1.weight",
        "decoder_pos_embed_learned",
        "z_proj_ln.weight",
        "pred.bias",
    } <= keys


def test_log_prob_is_not_defined(xar) -> None:
    with pytest.raises(NotImplementedError, match="likelihood"):
        xar.log_prob(None, [0])


def test_adaln_condition_is_computed_once_per_entity(xar) -> None:
    """Upstream runs AdaLN's linear once per (batch row, entity); so does the zoo (a third of a block's
    work less than once per token, and the same matrix shapes as upstream, hence bit-identical samples).
    Times that differ inside an entity fall back to one condition per token."""
    seen = []
    hook = xar.encoder_blocks[0].ada_lin.register_forward_hook(lambda _m, i, _o: seen.append(i[0].shape))
    labels, x = torch.tensor([1, 4]), torch.randn(2, 64, 4)
    t = torch.rand(2, 4)[:, xar.entity]
    with torch.no_grad():
        grouped = xar.velocity(x, labels, t, mask=xar.mask)
        t_per_token = t.clone()
        t_per_token[:, 1] += 0.3  # one token of entity 0 at another time
        xar.velocity(x, labels, t_per_token, mask=xar.mask)
        # the per-token path on per-entity times gives the same velocities
        condition = xar.class_emb(labels)[:, None] + xar.time_embed(t.reshape(-1)).view(*t.shape, -1)
        h = xar.z_proj_ln(xar.z_proj(x) + xar.encoder_pos_embed_learned)
        for block in xar.encoder_blocks:
            h = block(h, condition, xar.rope, xar.mask)
        h = xar.decoder_embed(xar.encoder_norm(h)) + xar.decoder_pos_embed_learned
        for block in xar.decoder_blocks:
            h = block(h, condition, xar.rope, xar.mask)
        per_token = xar.pred(xar.decoder_norm(h))
    hook.remove()
    assert seen[:2] == [torch.Size([2, 4, 64]), torch.Size([2, 64, 64])]
    torch.testing.assert_close(grouped, per_token, atol=1e-5, rtol=1e-5)
