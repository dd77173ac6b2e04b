"""Behaviour of every quantizer: the shared contract, then each one's losses, updates and maths."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from zoo.kernels import fsq_constants

from zoo.quantizers import (
    FiniteScalarQuantizer,
    GaussianBottleneck,
    GaussianQuantileQuantizer,
    IdentityBottleneck,
    LookupFreeQuantizer,
    ResidualVQ,
    VectorQuantizer,
    gaussian_quantile_levels,
    kmeans,
    rotate_onto,
    tokenbridge_levels,
)
from zoo.quantizers.base import to_rows

DISCRETE = {
    "vq": lambda: VectorQuantizer(16, 64),
    "vq_cosine_factorised": lambda: VectorQuantizer(16, 64, codebook_dim=4, l2_norm=True),
    "vq_ema_kmeans_restart": lambda: VectorQuantizer(
        16, 64, ema_decay=0.9, kmeans_init=True, restart_threshold=0.5
    ),
    "vq_rotation_entropy": lambda: VectorQuantizer(16, 64, rotation_trick=True, entropy_weight=0.1),
    "rvq": lambda: ResidualVQ(16, 3, 32, codebook_dim=8, quantizer_dropout=0.5, kmeans_init=True),
    "fsq": lambda: FiniteScalarQuantizer(16, [8, 5, 5, 5]),
    "lfq": lambda: LookupFreeQuantizer(16, 10),
    "bsq": lambda: LookupFreeQuantizer(16, 10, spherical=True),
    "ptq": lambda: GaussianQuantileQuantizer(16, bits=4),
}


def clustered(n: int, centers: torch.Tensor, noise: float = 0.01, seed: int = 0) -> torch.Tensor:
    """``n`` rows scattered tightly around random choices of ``centers``."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, centers.shape[0], (n,), generator=g)
    return centers[pick] + noise * torch.randn(n, centers.shape[1], generator=g)


def as_map(rows: torch.Tensor, b: int = 2) -> torch.Tensor:
    """Rows ``[b*h*w, D]`` as a channel-first map ``[b, D, h, w]`` with ``h = w``."""
    side = math.isqrt(rows.shape[0] // b)
    return rows.reshape(b, side, side, -1).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", list(DISCRETE))
def test_contract_shapes_gradients_and_lookup(name: str) -> None:
    torch.manual_seed(0)
    quantizer = DISCRETE[name]()
    z = torch.randn(2, 16, 4, 4, requires_grad=True)
    out = quantizer(z)
    assert out.quantized.shape == z.shape and out.quantized.dtype == torch.float32
    expected_ids = (2, 16, 4, 4) if name == "ptq" else (2, 3, 4, 4) if name == "rvq" else (2, 4, 4)
    assert out.ids.shape == expected_ids and out.ids.dtype == torch.int64
    assert set(out.stats) >= {"usage", "perplexity"} and all(torch.isfinite(v) for v in out.stats.values())
    (out.quantized.square().sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for pname, param in quantizer.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
    quantizer.eval()
    with torch.no_grad():
        frozen = quantizer(z)
        torch.testing.assert_close(quantizer.lookup(frozen.ids), frozen.quantized, rtol=1e-5, atol=1e-5)
        assert torch.equal(quantizer.encode(z), frozen.ids)
        assert frozen.losses == {}


@pytest.mark.parametrize("name", list(DISCRETE))
def test_batch_equals_single_items_in_eval(name: str) -> None:
    torch.manual_seed(1)
    quantizer = DISCRETE[name]().eval()
    z = torch.randn(3, 16, 2, 5)
    with torch.no_grad():
        batch = quantizer(z)
        for i in range(3):
            single = quantizer(z[i : i + 1])
            assert torch.equal(single.ids, batch.ids[i : i + 1])
            torch.testing.assert_close(single.quantized, batch.quantized[i : i + 1])


@pytest.mark.parametrize("name", list(DISCRETE))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_quantized_in_fp32(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    quantizer = DISCRETE[name]().eval()
    z = torch.randn(2, 16, 4, 4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = quantizer(z.to(dtype))
    reference = quantizer(z.to(dtype).float())
    assert low.quantized.dtype == torch.float32 and torch.isfinite(low.quantized).all()
    assert torch.equal(low.ids, reference.ids)


@pytest.mark.parametrize("name", ["vq_ema_kmeans_restart", "rvq", "ptq"])
def test_state_dict_round_trip_keeps_buffers(name: str) -> None:
    torch.manual_seed(3)
    trained = DISCRETE[name]()
    for _ in range(3):
        trained(torch.randn(4, 16, 4, 4))
    fresh = DISCRETE[name]()
    fresh.load_state_dict(trained.state_dict(), strict=True)
    z = torch.randn(2, 16, 4, 4)
    trained.eval(), fresh.eval()
    assert torch.equal(trained(z).ids, fresh(z).ids)


def test_encode_does_not_touch_state() -> None:
    quantizer = VectorQuantizer(16, 64, ema_decay=0.9, kmeans_init=True, restart_threshold=0.5)
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer.encode(torch.randn(2, 16, 4, 4))
    assert quantizer.training
    for key, value in quantizer.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_wrong_channels_and_masks_are_reported() -> None:
    with pytest.raises(ValueError, match=r"expected \[B, 16"):
        VectorQuantizer(16, 8)(torch.randn(2, 8, 4))
    with pytest.raises(ValueError, match="mask of shape"):
        VectorQuantizer(16, 8)(torch.randn(2, 16, 4), mask=torch.ones(3, 5, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------- VQ
def test_vq_straight_through_gradient_and_loss_values() -> None:
    torch.manual_seed(4)
    vq = VectorQuantizer(8, 32, commitment_weight=0.3, codebook_weight=0.7)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = vq(z)
    q = vq.lookup(out.ids)
    torch.testing.assert_close(out.quantized, q)
    mse = F.mse_loss(z, q).item()
    assert out.losses["vq/commit"].item() == pytest.approx(0.3 * mse, rel=1e-5)
    assert out.losses["vq/codebook"].item() == pytest.approx(0.7 * mse, rel=1e-5)
    out.quantized.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight through
    assert vq.codebook.grad is None or vq.codebook.grad.abs().sum() == 0
    vq.zero_grad()
    out = vq(z)
    out.losses["vq/codebook"].backward()
    hit = torch.unique(out.ids)
    assert (vq.codebook.grad[hit].abs().sum(1) > 0).all()
    missed = torch.ones(32, dtype=torch.bool)
    missed[hit] = False
    assert (vq.codebook.grad[missed] == 0).all()


def test_vq_ema_update_follows_the_smoothed_average() -> None:
    torch.manual_seed(5)
    vq = VectorQuantizer(4, 6, ema_decay=0.8, ema_epsilon=1e-5)
    assert "codebook" not in dict(vq.named_parameters())
    codebook0 = vq.codebook.clone()
    z = torch.randn(2, 4, 5)
    rows, _ = to_rows(z)
    ids = torch.cdist(rows, codebook0).argmin(1)
    out = vq(z)
    assert torch.equal(out.ids.reshape(-1), ids)
    counts = torch.bincount(ids, minlength=6).float()
    sums = torch.zeros(6, 4).index_add_(0, ids, rows)
    size = 0.8 * torch.ones(6) + 0.2 * counts
    embed_sum = 0.8 * codebook0 + 0.2 * sums
    total = size.sum()
    smoothed = (size + 1e-5) / (total + 6 * 1e-5) * total
    torch.testing.assert_close(vq.cluster_size, size)
    torch.testing.assert_close(vq.codebook, embed_sum / smoothed[:, None])
    assert "vq/codebook" not in out.losses


def test_vq_ema_codebook_converges_to_cluster_centres() -> None:
    torch.manual_seed(6)
    centers = torch.randn(4, 8) * 3
    vq = VectorQuantizer(8, 4, ema_decay=0.9, kmeans_init=True, kmeans_iters=0)
    for step in range(60):
        vq(as_map(clustered(128, centers, seed=step)))
    distance = torch.cdist(centers, vq.codebook).min(1).values
    assert distance.max() < 0.05


def test_kmeans_init_sets_codes_to_the_means_of_their_clusters() -> None:
    torch.manual_seed(7)
    centers = torch.randn(8, 6) * 4
    data = clustered(200, centers)
    vq = VectorQuantizer(6, 8, kmeans_init=True, kmeans_iters=30)
    assert not bool(vq.initted)
    vq.eval()
    vq(as_map(data))
    assert not bool(vq.initted)  # eval never initialises
    vq.train()
    out = vq(as_map(data))
    assert bool(vq.initted)
    codes = vq.codebook.detach()
    ids = torch.cdist(data, codes).argmin(1)
    for code in range(8):  # a fixed point of Lloyd's algorithm: every code is its cluster's mean
        torch.testing.assert_close(codes[code], data[ids == code].mean(0), rtol=0, atol=1e-4)
    assert out.stats["usage"] == 1.0
    assert F.mse_loss(data, codes[ids]) < 0.1 * data.var(0).mean()
    vq(as_map(clustered(200, centers * 2, seed=1)))
    assert torch.equal(vq.codebook.detach(), codes)  # only the first batch initialises


def test_kmeans_recovers_separated_clusters_and_sizes() -> None:
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    data = torch.cat([centers[i] + 0.1 * torch.randn(30 + 10 * i, 2) for i in range(3)])
    centroids, sizes = kmeans(data, 3, 10)
    order = torch.cdist(centers, centroids).argmin(1)
    torch.testing.assert_close(centroids[order], centers, atol=0.1, rtol=0)
    assert sizes[order].tolist() == [30.0, 40.0, 50.0]


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_dead_codes_are_restarted_onto_data(ema_decay: float | None) -> None:
    torch.manual_seed(8)
    centers = torch.randn(2, 4)
    vq = VectorQuantizer(4, 6, ema_decay=ema_decay, restart_threshold=1.0, usage_decay=0.5)
    with torch.no_grad():
        vq.codebook.copy_(torch.cat([centers, torch.full((4, 4), 50.0)]))
        if ema_decay is not None:
            vq.embed_sum.copy_(vq.codebook)
    for step in range(10):
        vq(as_map(clustered(32, centers, noise=0.5, seed=step)))
    far = vq.codebook[2:]
    assert far.abs().max() < 10, "the far codes were never restarted onto the data"
    assert (vq.cluster_size[2:] > 0).all()


def test_rotation_trick_keeps_the_value_and_rotates_the_gradient() -> None:
    torch.manual_seed(9)
    source = torch.randn(5, 8, requires_grad=True)
    target = torch.randn(5, 8)
    rotated = rotate_onto(source, target)
    torch.testing.assert_close(rotated, target, rtol=1e-5, atol=1e-5)
    upstream = torch.randn(5, 8)
    (grad,) = torch.autograd.grad((rotated * upstream).sum(), source)
    scale = target.norm(dim=1) / source.norm(dim=1)
    # A rotation preserves norms: |grad| = scale * |upstream| row by row, unlike straight-through.
    torch.testing.assert_close(grad.norm(dim=1), scale * upstream.norm(dim=1), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(grad, upstream)
    # The transposed rotation maps the code direction back onto the input direction.
    u, v = F.normalize(source.detach(), dim=1), F.normalize(target, dim=1)
    (back,) = torch.autograd.grad((rotate_onto(source, target) * v).sum(), source)
    torch.testing.assert_close(F.normalize(back, dim=1), u, rtol=1e-4, atol=1e-4)


def test_vq_with_rotation_trick_outputs_the_codes() -> None:
    torch.manual_seed(10)
    vq = VectorQuantizer(8, 16, l2_norm=True, rotation_trick=True)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = vq(z)
    torch.testing.assert_close(out.quantized, vq.lookup(out.ids), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(2, 3, 3))


def test_entropy_penalty_prefers_spread_assignments() -> None:
    vq = VectorQuantizer(2, 4, entropy_weight=1.0, entropy_temperature=0.01)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
    spread = vq.codebook.detach().repeat(4, 1)
    collapsed = vq.codebook.detach()[:1].repeat(16, 1)
    loss_spread = vq(as_map(spread, b=1)).losses["vq/entropy"]
    loss_collapsed = vq(as_map(collapsed, b=1)).losses["vq/entropy"]
    assert loss_spread.item() == pytest.approx(-math.log(4), abs=1e-3)
    assert loss_collapsed.item() == pytest.approx(0.0, abs=1e-3)


def test_mask_excludes_positions_from_losses_and_updates() -> None:
    torch.manual_seed(11)
    z = torch.randn(2, 8, 6)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, :4] = True
    garbage = z.clone()
    garbage[:, :, 4:] = 1e3
    a = VectorQuantizer(8, 16, ema_decay=0.9)
    b = VectorQuantizer(8, 16, ema_decay=0.9)
    b.load_state_dict(a.state_dict())
    out_a = a(garbage, mask=mask)
    out_b = b(z[:, :, :4].contiguous())
    torch.testing.assert_close(out_a.losses["vq/commit"], out_b.losses["vq/commit"])
    torch.testing.assert_close(a.codebook, b.codebook)
    torch.testing.assert_close(a.cluster_size, b.cluster_size)


def test_factorised_codes_live_in_the_low_dimension() -> None:
    vq = VectorQuantizer(32, 128, codebook_dim=8, l2_norm=True)
    assert vq.codebook.shape == (128, 8)
    out = vq(torch.randn(2, 32, 4))
    assert out.quantized.shape == (2, 32, 4)
    assert vq.lookup(out.ids).shape == (2, 32, 4)


# ---------------------------------------------------------------------------------------------- RVQ
def test_rvq_more_stages_reconstruct_better() -> None:
    torch.manual_seed(12)
    rvq = ResidualVQ(8, 4, 64, kmeans_init=True, kmeans_iters=10)
    z = torch.randn(4, 8, 8, 8)
    rvq(z)  # k-means initialises every stage on its residual
    rvq.eval()
    errors = [F.mse_loss(rvq(z, n_quantizers=n).quantized, z).item() for n in range(1, 5)]
    assert all(later < earlier for earlier, later in itertools.pairwise(errors)), errors
    assert rvq(z, n_quantizers=2).ids.shape == (4, 2, 8, 8)
    with pytest.raises(ValueError, match="n_quantizers"):
        rvq(z, n_quantizers=5)


def test_rvq_quantizer_dropout_keeps_random_prefixes() -> None:
    torch.manual_seed(13)
    rvq = ResidualVQ(8, 4, 16, quantizer_dropout=1.0)
    z = torch.randn(64, 8, 3)
    out = rvq(z)
    dropped = out.ids < 0
    kept_stages = (~dropped).all(-1).sum(1)
    # Each sample keeps a prefix: once a stage is dropped, all later stages are too.
    assert torch.equal(dropped.any(-1).int().cummax(1).values, dropped.any(-1).int())
    assert set(kept_stages.tolist()) == {1, 2, 3, 4}
    rvq.eval()
    assert (rvq(z).ids >= 0).all()  # no dropout at inference
    eval_out = rvq(z)
    torch.testing.assert_close(rvq.lookup(eval_out.ids), eval_out.quantized, rtol=1e-5, atol=1e-5)
    prefix = eval_out.ids.clone()
    prefix[:, 2:] = -1
    torch.testing.assert_close(rvq.lookup(prefix), rvq(z, n_quantizers=2).quantized, rtol=1e-5, atol=1e-5)


def test_rvq_codebook_sizes_and_losses_sum_over_stages() -> None:
    rvq = ResidualVQ(8, 3, [16, 32, 64])
    assert rvq.codebook_sizes == (16, 32, 64)
    out = rvq(torch.randn(2, 8, 5))
    stage_losses = [out.stats[f"q{i}/usage"] for i in range(3)]
    assert len(stage_losses) == 3 and out.losses["vq/commit"] > 0


# ---------------------------------------------------------------------------------------------- FSQ
def test_fsq_codes_ids_and_gradient() -> None:
    levels = [8, 5, 5, 5]
    fsq = FiniteScalarQuantizer(4, levels)
    assert fsq.codebook_size == 1000
    z = (torch.randn(3, 4, 7) * 3).requires_grad_()
    out = fsq(z)
    half = torch.tensor([4.0, 2.0, 2.0, 2.0]).view(1, 4, 1)
    steps = out.quantized * half
    torch.testing.assert_close(steps, steps.round())
    assert out.ids.min() >= 0 and out.ids.max() < 1000
    torch.testing.assert_close(fsq.lookup(out.ids), out.quantized)
    out.quantized.sum().backward()
    consts = fsq_constants(levels)
    shaped = {key: value.view(1, 4, 1) for key, value in consts.items() if key != "basis"}
    slope = shaped["half_l"] * (1 - torch.tanh(z.detach() + shaped["shift"]) ** 2) / shaped["half_width"]
    torch.testing.assert_close(z.grad, slope)  # straight through the rounding, not the tanh bound
    all_ids = torch.arange(1000)
    codes = fsq.lookup(all_ids.view(1, 1000)).squeeze(0)
    assert torch.unique(codes.t(), dim=0).shape[0] == 1000
    with pytest.raises(ValueError, match="level"):
        FiniteScalarQuantizer(4, [8, 1, 5, 5])


def test_fsq_huge_implicit_codebook_is_never_built() -> None:
    fsq = FiniteScalarQuantizer(16, [4] * 16)  # 2**32 codes
    out = fsq(torch.randn(2, 16, 8))
    assert fsq.codebook_size == 2**32 and out.ids.max() < 2**32
    assert 0 < out.stats["usage"] < 1e-6


# ---------------------------------------------------------------------------------------------- LFQ / BSQ
def test_lfq_ids_are_sign_bits() -> None:
    lfq = LookupFreeQuantizer(3)
    z = torch.tensor([[[1.0], [-2.0], [0.5]]])  # bits 1, 0, 1 -> 0b101
    out = lfq(z)
    assert out.ids.item() == 5
    torch.testing.assert_close(out.quantized, torch.tensor([[[1.0], [-1.0], [1.0]]]))


def test_bsq_codes_lie_on_the_unit_sphere() -> None:
    bsq = LookupFreeQuantizer(9, spherical=True)
    out = bsq(torch.randn(2, 9, 5))
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(2, 5))


@pytest.mark.parametrize("spherical", [False, True])
def test_lfq_factorised_entropy_matches_brute_force(spherical: bool) -> None:
    torch.manual_seed(14)
    d, temperature = 5, 0.5
    lfq = LookupFreeQuantizer(
        d, spherical=spherical, entropy_weight=1.0, diversity=1.0, entropy_temperature=temperature
    )
    z = torch.randn(1, d, 40)
    loss = lfq(z).losses["vq/entropy"]
    rows, _ = to_rows(z)
    u = F.normalize(rows, dim=-1) if spherical else rows
    scale = lfq.scale
    codebook = torch.tensor(list(itertools.product([-scale, scale], repeat=d)))
    probs = (-torch.cdist(u, codebook).pow(2) / temperature).softmax(-1)
    per_sample = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
    avg = probs.mean(0)
    joint = -(avg * avg.clamp_min(1e-30).log()).sum()
    factorised_codebook = per_sample.item() - loss.item()
    # Per-sample entropy is exact, so the codebook term is the sum of per-bit marginal entropies,
    # an upper bound on the joint batch entropy.
    assert factorised_codebook >= joint.item() - 1e-4
    bits = torch.stack([(codebook[:, i] > 0).float() for i in range(d)], 1)
    marginal = probs.mean(0) @ bits
    marginal_entropy = -(marginal * marginal.log() + (1 - marginal) * (1 - marginal).log()).sum()
    assert factorised_codebook == pytest.approx(marginal_entropy.item(), abs=1e-4)


def test_lfq_rejects_more_than_62_bits() -> None:
    with pytest.raises(ValueError, match="62"):
        LookupFreeQuantizer(64)


# ---------------------------------------------------------------------------------------------- PTQ
def test_gaussian_quantile_levels() -> None:
    levels, edges = gaussian_quantile_levels(1)
    expected = (1 - math.exp(-4.5)) / math.sqrt(2 * math.pi) / (0.5 - 0.5 * math.erfc(3 / math.sqrt(2)))
    torch.testing.assert_close(levels, torch.tensor([-expected, expected], dtype=torch.float64))
    levels, edges = gaussian_quantile_levels(6)
    assert levels.shape == (64,) and edges[0] == -3 and edges[-1] == 3
    assert (levels.diff() > 0).all() and ((levels > edges[:-1]) & (levels < edges[1:])).all()
    torch.testing.assert_close(levels, -levels.flip(0))


def test_ptq_defaults_match_the_fixed_range_mapping() -> None:
    torch.manual_seed(15)
    ptq = GaussianQuantileQuantizer(16)  # 6 bits, [-5, 5] onto [-3, 3]
    z = torch.randn(2, 16, 4, 4) * 2
    out = ptq(z)
    levels, _ = gaussian_quantile_levels(6)
    standard = (z / 5 * 3).clamp(-3, 3)
    ids = (standard.unsqueeze(-1) - levels.float()).abs().argmin(-1)
    assert torch.equal(out.ids, ids)
    torch.testing.assert_close(out.quantized, levels.float()[ids] * 5 / 3)
    torch.testing.assert_close(ptq.lookup(out.ids), out.quantized)
    assert ptq.codebook_sizes == (64,) * 16


def test_ptq_fit_sets_per_channel_statistics_and_lowers_error() -> None:
    torch.manual_seed(16)
    scales = torch.linspace(0.05, 2.0, 4).view(1, 4, 1)
    data = torch.randn(64, 4, 64) * scales + 1.0
    fixed = GaussianQuantileQuantizer(4, bits=4)
    fitted = GaussianQuantileQuantizer(4, bits=4).fit(data.split(16))
    torch.testing.assert_close(fitted.loc, torch.full((4,), 1.0), atol=0.25, rtol=0)
    torch.testing.assert_close(fitted.scale, scales.flatten(), rtol=0.05, atol=0)
    err_fixed = F.mse_loss(fixed(data).quantized, data)
    err_fitted = F.mse_loss(fitted(data).quantized, data)
    assert err_fitted < 0.5 * err_fixed


# ---------------------------------------------------------------------------------------------- continuous
def test_gaussian_bottleneck_kl_sampling_and_mean() -> None:
    torch.manual_seed(17)
    bottleneck = GaussianBottleneck(2, kl_weight=0.5)
    mean = torch.randn(3, 2, 4)
    logvar = torch.randn(3, 2, 4) * 0.3
    moments = torch.cat([mean, logvar], 1).requires_grad_()
    out = bottleneck(moments)
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum((1, 2)).mean()
    torch.testing.assert_close(out.losses["vq/kl"], 0.5 * kl)
    assert out.ids is None and not torch.allclose(out.quantized, mean)
    out.quantized.sum().backward()
    assert moments.grad[:, 2:].abs().sum() > 0  # the reparameterised sample reaches the log-variance
    bottleneck.eval()
    torch.testing.assert_close(bottleneck(moments).quantized, mean)
    with pytest.raises(ValueError, match="mean and log-variance"):
        bottleneck(torch.randn(3, 3, 4))
    with pytest.raises(TypeError, match="no codes"):
        bottleneck.lookup(torch.zeros(1, dtype=torch.long))


def test_identity_bottleneck_passes_latents() -> None:
    z = torch.randn(2, 4, 3)
    out = IdentityBottleneck(4)(z)
    assert out.quantized is z and out.ids is None and out.losses == {}


def test_ptq_picks_the_nearest_level_exactly_as_an_argmin_does() -> None:
    """Upstream takes ``argmin |u - level|`` (ties to the lower level); the memory-flat search must agree
    everywhere, also on values sitting exactly on a midpoint, and its table is TokenBridge's float32 one."""
    from zoo.quantizers.ptq import nearest_level

    ptq = GaussianQuantileQuantizer(4, bits=5)
    u = torch.cat([torch.randn(10_000) * 1.5, ptq.midpoints, ptq.levels, torch.tensor([-3.0, 3.0])])
    expected = (u[:, None] - ptq.levels).abs().argmin(-1)
    assert torch.equal(nearest_level(u, ptq.levels, ptq.midpoints), expected)
    exact, _ = gaussian_quantile_levels(6)
    assert (tokenbridge_levels(6).double() - exact).abs().max() < 1e-5
    # Upstream's mapping of [-5, 5] onto [-3, 3] and back.
    z = torch.tensor([[-7.0, -5.0, 0.3, 5.0]]).view(1, 4, 1)
    out = GaussianQuantileQuantizer(4)(z)
    levels = tokenbridge_levels(6)
    u = ((z + 5) / 10 * 6 - 3).clamp(-3, 3)
    ids = (u[..., None] - levels).abs().argmin(-1)
    assert torch.equal(out.ids, ids)
    torch.testing.assert_close(out.quantized, (levels[ids] + 3) / 6 * 10 - 5)
