"""Hi-MAR: sizes, mask schedule, phase-aware modulation, diffusion heads, converter, sampling, training
on a real pivot cache, save/load and `zoo sample`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from himar_layout import TINY, himar_shapes
from test_generator_training import LabelledPhotos, _cache

import zoo
from zoo.cli import main as zoo_main
from zoo.data.token_cache import TokenCache, build_token_cache, make_views
from zoo.errors import MediaError
from zoo.hub import load_weights
from zoo.models.generators.himar import (
    GaussianDiffusion,
    PhaseBlock,
    convert_himar,
    mar_reveal_counts,
    respaced_timesteps,
    sincos_2d,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def himar() -> zoo.Generator:
    torch.manual_seed(0)
    model = zoo.create("himar_tiny")
    with torch.no_grad():  # upstream zero-initialises the heads' outputs; make every path matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_paper_sizes_have_upstream_parameter_counts() -> None:
    with torch.device("meta"):
        models = {name: zoo.create(name) for name in ("himar_b", "himar_l", "himar_h")}
    counts = {name: m.num_parameters() for name, m in models.items()}
    # Every parameter, the DiT head's two fixed position tables included (upstream's model size).
    assert counts == {"himar_b": 244_730_160, "himar_l": 529_490_480, "himar_h": 1_090_965_808}
    trainable = sum(p.numel() for p in models["himar_b"].parameters() if p.requires_grad)
    assert trainable == 244_730_160 - 2 * 256 * 512
    shapes = {k: tuple(v.shape) for k, v in models["himar_b"].state_dict().items()}
    assert shapes == himar_shapes()
    tokens = zoo.info("himar_b")["tokens"]
    assert tokens["grid"] == [16, 16] and tokens["pivot_grid"] == [8, 8] and tokens["latent_channels"] == 16
    assert tokens["forward_passes"] == 32 + 4 and tokens["pivot_steps"] == 32


@pytest.mark.parametrize(("total", "steps"), [(64, 32), (256, 4), (256, 12), (16, 8), (5, 5), (256, 64)])
def test_mask_schedule_reveals_every_token_exactly_once(total: int, steps: int) -> None:
    counts = mar_reveal_counts(total, steps)
    assert len(counts) == steps and sum(counts) == total and min(counts) >= 1
    # MAR's cosine: after step s, floor(total cos(pi/2 (s+1)/S)) stay masked (clipped to reveal >= 1)
    masked = total - counts[0]
    assert masked == max(1, min(total - 1, math.floor(total * math.cos(math.pi / 2 / steps)))) or steps == 1


def test_sampling_reveals_each_token_once_in_its_order(himar) -> None:
    """Each MAR step writes exactly the tokens it reveals: the number written per step follows the schedule."""
    written: list[int] = []
    original = himar.decode_phase

    def spy(phase: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        written.append((phase, int(mask[0].sum())))
        return original(phase, x, mask)

    himar.decode_phase = spy
    himar.sample([1], steps=4, pivot_steps=8, dit_steps=2, head_steps=2, seed=0)
    masked_p = [m for phase, m in written if phase == 0]
    masked_m = [m for phase, m in written if phase == 1]
    assert [a - b for a, b in zip(masked_p, masked_p[1:] + [64], strict=True)] == mar_reveal_counts(16, 8)
    assert [a - b for a, b in zip(masked_m, masked_m[1:] + [0], strict=True)] == mar_reveal_counts(64, 4)


def test_pivot_step_pairs_noise_rows_with_revealed_tokens_in_raster_order(himar) -> None:
    """Upstream's pivot step gathers the revealed tokens' features (and so their noise rows) in raster
    order (``nonzero``), not generation order: the zoo pairs them the same way, so a seeded zoo sample
    equals upstream's under the same draws (benchmarks/parity/himar.py)."""
    masks, feats, conds = [], [], []
    decode, head = himar.decode_phase, himar.diffloss.net.forward

    def spy_decode(phase: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = decode(phase, x, mask)
        if phase == 0:
            masks.append(mask[0, :16].bool())
            feats.append(out[0, :16])
        return out

    def spy_head(x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if len(conds) < len(masks):  # the first head call of each pivot step
            conds.append(z)
        return head(x, t, z)

    himar.decode_phase = spy_decode
    himar.diffloss.net.forward = spy_head
    himar.sample([3], pivot_cfg=1.0, cfg=1.0, steps=2, pivot_steps=5, dit_steps=2, head_steps=2, seed=1)
    shuffled = 0
    for step, (mask, feat, z) in enumerate(zip(masks, feats, conds, strict=True)):
        nxt = masks[step + 1] if step + 1 < len(masks) else torch.zeros_like(mask)
        revealed = (mask & ~nxt).nonzero().flatten()  # ascending positions
        assert torch.equal(z, feat[revealed])
        shuffled += len(revealed) > 1
    assert shuffled  # some step reveals several tokens, so the order is exercised


def test_phase_index_selects_its_modulation_slice() -> None:
    torch.manual_seed(0)
    block = PhaseBlock(8, 2)
    # at init both phases are the identity modulation: no scale, unit gates
    scale1, _, _, gate2 = block.modulation(torch.randn(1, 1, 32), 1)
    assert torch.equal(scale1, torch.zeros_like(scale1)) and torch.equal(gate2, torch.ones_like(gate2))
    with torch.no_grad():
        block.adaLN_scale.copy_(torch.randn_like(block.adaLN_scale))
        block.adaLN_shift.copy_(torch.randn_like(block.adaLN_shift))
    c = torch.randn(1, 1, 32)
    for phase in (0, 1):
        expected = (c * block.adaLN_scale[phase] + block.adaLN_shift[phase]).chunk(4, dim=-1)
        for got, want in zip(block.modulation(c, phase), expected, strict=True):
            assert torch.equal(got, want)
    x = torch.randn(2, 5, 8)
    assert not torch.allclose(block(x, c, 0), block(x, c, 1))
    with torch.no_grad():  # phase 1 follows only its own slice
        block.adaLN_shift[0].add_(1.0)
    before = block(x, c, 1)
    assert torch.equal(before, block(x, c, 1))


def test_diffusion_respacing_and_fixed_positions() -> None:
    # ADM's space_timesteps("100") of 1000 steps: strided by 999/99 with Python rounding
    kept = respaced_timesteps(1000, 100)
    assert len(kept) == 100 and kept[:3] == [0, 10, 20] and kept[-1] == 999
    assert respaced_timesteps(1000, 1000) == list(range(1000))
    d = GaussianDiffusion(count=250, learn_sigma=False)
    assert d.num_steps == 250 and float(d.alpha_bar[0]) > 0.999 and float(d.alpha_bar[-1]) < 1e-4
    pos = sincos_2d(8, 4)  # MAE: first half the column, second the row; each [sin | cos]
    assert pos.shape == (16, 8)
    assert torch.allclose(pos[1, :2], torch.tensor([math.sin(1.0), math.sin(1e-2)]))
    assert torch.allclose(pos[4, 4:6], torch.tensor([math.sin(1.0), math.sin(1e-2)]))


def test_diffusion_heads_shapes_and_losses(himar) -> None:
    z = torch.randn(6, 64)
    out = himar.diffloss.net(torch.randn(6, 4), torch.randint(0, 1000, (6,)), z)
    assert out.shape == (6, 8)  # eps and the learned variance
    zmap = torch.randn(2, 64, 8, 8)
    assert himar.cond_diffloss.net(torch.randn(2, 4, 8, 8), torch.tensor([1, 999]), zmap).shape == (
        2,
        4,
        8,
        8,
    )
    # the learned-variance loss is the eps MSE plus a non-negative VLB term
    x0, t = torch.randn(6, 4), torch.randint(1, 1000, (6,))
    noise = torch.randn(6, 4)
    full = himar.mlp_diffusion.training_loss(lambda a, s: himar.diffloss.net(a, s, z), x0, t, noise=noise)
    eps = himar.diffloss.net(himar.mlp_diffusion.q_sample(x0, t, noise), t, z)[:, :4]
    assert torch.all(full >= (noise - eps).pow(2).mean(1) - 1e-6)


def test_sampling_is_deterministic_under_a_seed(himar) -> None:
    kwargs = {"cfg": 2.0, "pivot_cfg": 1.5, "steps": 3, "pivot_steps": 4, "dit_steps": 4, "head_steps": 4}
    a, pivots = himar.sample([1, 2], seed=3, return_pivots=True, **kwargs)
    assert a.latents.shape == (2, 4, 8, 8) and pivots.shape == (2, 4, 4, 4)
    assert torch.isfinite(a.latents).all() and a.meta["dit_steps"] == 4
    assert torch.equal(a.latents, himar.sample([1, 2], seed=3, **kwargs).latents)
    assert not torch.equal(a.latents, himar.sample([1, 2], seed=4, **kwargs).latents)
    no_pivots = himar.sample([1, 2], seed=3, use_pivots=False, **kwargs)
    assert not torch.equal(a.latents, no_pivots.latents) and no_pivots.meta["use_pivots"] is False
    kl = zoo.create("kl16_tiny").eval()
    himar.check_tokenizer(kl)
    assert kl.decode(a).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="do not apply"):
        himar.sample([1], top_k=5)


def test_training_needs_pivots_and_reaches_every_parameter(himar) -> None:
    himar.train()
    batch = {
        "latents": torch.randn(3, 4, 8, 8),
        "pivot": torch.randn(3, 4, 4, 4),
        "labels": torch.tensor([0, 1, 9]),
    }
    out = himar.training_loss(batch)
    out.loss.backward()
    assert [n for n, p in himar.named_parameters() if p.requires_grad and p.grad is None] == []
    assert set(out.stats) == {"pivot_loss", "main_loss"}
    with pytest.raises(KeyError, match="pivot"):
        himar.training_loss({"latents": batch["latents"], "labels": batch["labels"]})
    with pytest.raises(ValueError, match=r"\[B, 4, 4, 4\]"):
        himar.training_loss({**batch, "pivot": torch.randn(3, 4, 8, 8)})


def test_pivot_dropout_warms_up_over_steps() -> None:
    model = zoo.create("himar_tiny", pivot_drop_rate=0.5, pivot_warmup_steps=10)
    assert model.pivot_keep_probability() == 0.0
    model.steps_seen = 5
    assert model.pivot_keep_probability() == 0.25
    model.steps_seen = 50
    assert model.pivot_keep_probability() == 0.5


def test_converter_loads_the_upstream_layout_strictly() -> None:
    torch.manual_seed(0)
    upstream = {f"module.{k}": torch.randn(s) for k, s in himar_shapes(**TINY).items()}
    model = zoo.create("himar_tiny")
    load_weights(model, convert_himar(upstream), "upstream")
    state = model.state_dict()
    assert all(torch.equal(state[k.removeprefix("module.")], v) for k, v in upstream.items())
    broken = dict(upstream)
    broken.pop("module.cond_diffloss.net.final_layer.linear.bias")
    with pytest.raises(Exception, match="final_layer.linear.bias"):
        load_weights(zoo.create("himar_tiny"), convert_himar(broken), "upstream")


def test_trains_on_a_real_pivot_cache_then_saves_loads_and_zoo_samples(
    photos: torch.Tensor, tmp_path: Path
) -> None:
    """kl16_tiny over real photos with pivots; a few steps lower both phase losses (on fixed noise and
    masks); the model saves, loads and samples through `zoo sample` with the cache's tokenizer."""
    dataset = LabelledPhotos(photos)
    cache = _cache("kl16_tiny", dataset, tmp_path, views="flip", pivot=True)
    data = TokenCache(cache)
    assert data.index["pivot"] is True
    item = data[0]
    assert item["latents"].shape == (4, 8, 8) and item["pivot"].shape == (4, 4, 4)
    # the pivot moments are the same tokenizer on each view bicubic-downsampled 2x (main_cache.py)
    kl = zoo.load(tmp_path / "kl16_tiny").eval()
    views = make_views(dataset[3].float(), "flip", 32)
    small = F.interpolate(views, size=(16, 16), mode="bicubic")
    with torch.no_grad():
        expected = kl.encode(small).latents
    for v in range(2):
        got = TokenCache(cache, view=v, sample_posterior=False)[3]["pivot"]
        torch.testing.assert_close(got, expected[v], atol=1e-5, rtol=1e-5)
    with pytest.raises(MediaError, match="pivot"):  # a rerun without pivots may not reuse these shards
        build_token_cache(kl, dataset, cache, views="flip", progress=False)
    batch = {k: torch.stack([data[i][k] for i in range(len(data))]) for k in ("latents", "pivot", "labels")}
    torch.manual_seed(0)
    model = zoo.create("himar_tiny", tokenizer=str(tmp_path / "kl16_tiny"))

    def losses() -> tuple[float, float]:
        with torch.random.fork_rng():
            torch.manual_seed(123)
            out = model.training_loss(batch)
        return float(out.stats["pivot_loss"]), float(out.stats["main_loss"])

    model.train()
    before = losses()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(40):
        out = model.training_loss(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    after = losses()
    assert after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1], (before, after)
    model.eval()
    saved = model.save_pretrained(tmp_path / "export")
    loaded = zoo.load(saved)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert loaded.tokenizer_name == str(tmp_path / "kl16_tiny")
    out_dir = tmp_path / "samples"
    code = zoo_main(
        [
            "sample",
            str(saved),
            "--labels",
            "0,1",
            "--n",
            "1",
            "--cfg",
            "1.5",
            "--steps",
            "2",
            "-o",
            str(out_dir),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out_dir.glob("class*.png")) == ["class0000_000.png", "class0001_000.png"]
    tokens = zoo.Tokens.load(out_dir / "samples.tokens.safetensors")
    assert tokens.latents.shape == (2, 4, 8, 8) and torch.isfinite(tokens.latents).all()
