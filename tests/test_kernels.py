"""Triton kernels checked against the PyTorch references and fp64 oracles: under the CPU interpreter
(``TRITON_INTERPRET=1``), or compiled on CUDA tensors with ``ZOO_KERNEL_DEVICE=cuda`` (the GPU check).

Nearest-code ids can legitimately flip on near-ties between the two implementations, so the search is
judged by distances: the chosen code must be as close as the true best one up to rounding, and ids are
compared only where the best code wins by a clear margin.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
import zoo.kernels as zk
from zoo.kernels import reference

dispatch_nearest_code = zk.nearest_code
dispatch_code_stats = zk.code_stats

DEVICE = os.environ.get("ZOO_KERNEL_DEVICE", "cpu")
pytestmark = [
    pytest.mark.kernels,
    pytest.mark.skipif(not zk.HAS_TRITON, reason="triton is not installed"),
    pytest.mark.skipif(
        DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
        reason="needs TRITON_INTERPRET=1 before triton is imported (or ZOO_KERNEL_DEVICE=cuda)",
    ),
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="ZOO_KERNEL_DEVICE=cuda needs a GPU"
    ),
]


@pytest.fixture(autouse=True)
def _kernel_device():
    """Every tensor a test makes lives on the kernel device (CPU for the interpreter, else CUDA)."""
    previous = torch.get_default_device()
    torch.set_default_device(DEVICE)
    yield
    torch.set_default_device(previous)


if zk.HAS_TRITON:
    import triton
    import triton.language as tl
    from zoo.kernels.code_stats_kernel import code_stats_triton
    from zoo.kernels.nearest_code_kernel import SearchConfig, _dot_mode, nearest_code_triton, search_config
    from zoo.kernels.scalar_kernel import _round_half_even, _tanh, fsq_quantize_triton, lfq_quantize_triton

    @triton.jit
    def _elementwise_probe(src_ptr, rounded_ptr, tanh_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.arange(0, BLOCK)
        mask = offsets < n
        values = tl.load(src_ptr + offsets, mask=mask, other=0.0)
        tl.store(rounded_ptr + offsets, _round_half_even(values), mask=mask)
        tl.store(tanh_ptr + offsets, _tanh(values), mask=mask)


F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
NUM_ROWS, NUM_CODES = 77, 130  # neither is a multiple of any block size


def _exact_distances(x: torch.Tensor, codebook: torch.Tensor, metric: str) -> torch.Tensor:
    """The full ``[N, K]`` distance matrix in fp64, written independently of either implementation."""
    xs, cs = x.double(), codebook.double()
    if metric == "l2":
        return (xs[:, None, :] - cs[None, :, :]).pow(2).sum(-1)
    return 2 - 2 * F.normalize(xs, dim=-1) @ F.normalize(cs, dim=-1).t()


def _tolerance(x: torch.Tensor, codebook: torch.Tensor, metric: str) -> float:
    """fp32 rounding of a length-D dot product, scaled to the size of the distances involved."""
    if metric == "cosine":
        return 1e-5
    scale = x.float().pow(2).sum(1).max() + codebook.float().pow(2).sum(1).max()
    return float(2e-6 * x.shape[1] * scale) + 1e-6


def _check_search(
    x: torch.Tensor, codebook: torch.Tensor, metric: str, ids: torch.Tensor, dists: torch.Tensor | None
) -> None:
    """Triton output against the fp64 oracle and the PyTorch reference."""
    exact = _exact_distances(x, codebook, metric)
    tol = _tolerance(x, codebook, metric)
    assert ids.dtype == torch.int64 and ids.shape == (x.shape[0],)
    assert bool(((ids >= 0) & (ids < codebook.shape[0])).all())
    best_two = exact.topk(2, dim=1, largest=False).values
    chosen = exact.gather(1, ids[:, None])[:, 0]
    assert bool((chosen <= best_two[:, 0] + tol).all()), "a row picked a code that is not the nearest"

    ref_ids, ref_dists = reference.nearest_code_torch(x, codebook, metric=metric, return_distances=True)
    clear = best_two[:, 1] - best_two[:, 0] > 10 * tol
    assert clear.float().mean() > 0.8, "too few clear winners: the id comparison would mean little"
    assert torch.equal(ids[clear], ref_ids[clear])
    if dists is not None:
        assert dists.dtype == torch.float32 and dists.shape == (x.shape[0],)
        torch.testing.assert_close(dists.double(), chosen, atol=tol, rtol=0)
        torch.testing.assert_close(dists, ref_dists, atol=tol, rtol=0)


DTYPE_PAIRS = [(F32, F32), (F16, F16), (BF16, BF16), (F32, BF16), (F16, BF16)]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("x_dtype,code_dtype", DTYPE_PAIRS, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("dim", [8, 24, 64])
def test_nearest_code_matches_reference(
    metric: str, x_dtype: torch.dtype, code_dtype: torch.dtype, dim: int
) -> None:
    gen = torch.Generator(DEVICE).manual_seed(dim)
    x = torch.randn(NUM_ROWS, dim, generator=gen).to(x_dtype)
    codebook = (0.8 * torch.randn(NUM_CODES, dim, generator=gen)).to(code_dtype)

    ids, dists = nearest_code_triton(x, codebook, metric=metric, return_distances=True)
    _check_search(x, codebook, metric, ids, dists)
    ids_only, no_dists = nearest_code_triton(x, codebook, metric=metric)
    assert no_dists is None
    assert torch.equal(ids_only, ids)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize(
    "config",
    [SearchConfig(16, 16, 16, 1), SearchConfig(32, 64, 16, 4)] if zk.HAS_TRITON else [],
    ids=["tiny-tiles", "split-dim"],
)
def test_nearest_code_tilings_agree(metric: str, config: SearchConfig) -> None:
    """Small tiles force several feature tiles per dot (the non-resident path) and partial tiles."""
    gen = torch.Generator(DEVICE).manual_seed(1)
    x = torch.randn(NUM_ROWS, 40, generator=gen)
    codebook = torch.randn(NUM_CODES, 40, generator=gen).to(BF16)
    ids, dists = nearest_code_triton(x, codebook, metric=metric, return_distances=True, config=config)
    _check_search(x, codebook, metric, ids, dists)
    default_ids, default_dists = nearest_code_triton(x, codebook, metric=metric, return_distances=True)
    assert torch.equal(ids, default_ids)
    torch.testing.assert_close(dists, default_dists, atol=1e-4, rtol=0)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_nearest_code_duplicate_codes_tie_to_lowest_index(metric: str) -> None:
    """Code j and j + 40 are identical; j + 40 shares j's 64-code tile for j < 24, else lies in the next.

    Small integers keep every dot product exact whatever the summation order (numpy's BLAS behind the
    interpreter's ``tl.dot`` rounds column by column differently), so the duplicates tie bit for bit.
    """
    gen = torch.Generator(DEVICE).manual_seed(2)
    unique = torch.randint(-4, 5, (40, 16), generator=gen).float()
    codebook = torch.cat([unique, unique])
    x = torch.cat([torch.randint(-4, 5, (30, 16), generator=gen).float(), unique[::3]])
    ids, dists = nearest_code_triton(x, codebook, metric=metric, return_distances=True)
    assert bool((ids < 40).all()), "a tie went to the higher index"
    exact = _exact_distances(x, codebook, metric)
    assert bool((exact.gather(1, ids[:, None])[:, 0] <= exact.min(1).values + 1e-5).all())
    if metric == "l2":  # exact in both implementations, so ties between distinct codes agree too
        assert torch.equal(ids, reference.nearest_code_torch(x, codebook)[0])
    assert torch.equal(ids[30:], torch.arange(0, 40, 3))
    assert bool((dists[30:] <= 1e-5).all())


def test_nearest_code_cosine_zero_rows_and_codes() -> None:
    """Zero vectors normalise to zero (F.normalize's eps): every code is at distance 2, index 0 wins."""
    gen = torch.Generator(DEVICE).manual_seed(3)
    x = torch.randn(20, 24, generator=gen)
    x[[0, 7, 19]] = 0
    codebook = torch.randn(NUM_CODES, 24, generator=gen)
    codebook[[5, 90]] = 0
    ids, dists = nearest_code_triton(x, codebook, metric="cosine", return_distances=True)
    ref_ids, ref_dists = reference.nearest_code_torch(x, codebook, metric="cosine", return_distances=True)
    assert torch.equal(ids[[0, 7, 19]], torch.zeros(3, dtype=torch.int64))
    assert torch.equal(dists[[0, 7, 19]], torch.full((3,), 2.0))
    assert torch.equal(ids, ref_ids)
    torch.testing.assert_close(dists, ref_dists, atol=1e-5, rtol=0)


def test_nearest_code_validates_and_handles_empty_input() -> None:
    codebook = torch.randn(10, 8)
    ids, dists = nearest_code_triton(torch.empty(0, 8), codebook, return_distances=True)
    assert ids.shape == (0,) and ids.dtype == torch.int64 and dists is not None and dists.shape == (0,)
    with pytest.raises(ValueError, match="metric"):
        nearest_code_triton(torch.randn(4, 8), codebook, metric="dot")
    with pytest.raises(ValueError, match="expected x"):
        nearest_code_triton(torch.randn(4, 9), codebook)


def test_nearest_code_accepts_non_contiguous_inputs() -> None:
    gen = torch.Generator(DEVICE).manual_seed(4)
    x = torch.randn(24, NUM_ROWS, generator=gen).t()
    codebook = torch.randn(NUM_CODES, 48, generator=gen)[:, ::2]
    ids, dists = nearest_code_triton(x, codebook, return_distances=True)
    _check_search(x, codebook, "l2", ids, dists)


def test_search_config_tiles_fit_tl_dot() -> None:
    for dim in (1, 8, 24, 40, 64, 300):
        cfg = search_config(65536, 16384, dim)
        for block in (cfg.block_n, cfg.block_k, cfg.block_d):
            assert block >= 16 and block & (block - 1) == 0
    assert search_config(100, 130, 8).block_d == 16
    assert search_config(100, 130, 40).block_d == 64


def test_dot_mode_picks_exact_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter always takes fp32/ieee; on a GPU only exact shortcuts are taken unless asked."""
    assert _dot_mode(BF16, BF16, allow_tf32=True) == (False, "ieee")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert _dot_mode(F16, F16, allow_tf32=False) == (True, "ieee")
    assert _dot_mode(BF16, BF16, allow_tf32=False) == (True, "ieee")
    assert _dot_mode(F16, BF16, allow_tf32=False) == (False, "tf32")  # both fit tf32 exactly
    assert _dot_mode(F32, F32, allow_tf32=False) == (False, "ieee")
    assert _dot_mode(F32, BF16, allow_tf32=False) == (False, "ieee")
    assert _dot_mode(F32, F32, allow_tf32=True) == (False, "tf32")


@pytest.mark.parametrize("dtype", [F32, BF16])
@pytest.mark.parametrize("dim", [24, 136])  # 136 takes two feature tiles of 128
def test_code_stats_matches_reference(dtype: torch.dtype, dim: int) -> None:
    num_codes = 20
    gen = torch.Generator(DEVICE).manual_seed(dim)
    x = torch.randn(150, dim, generator=gen).to(dtype)
    ids = torch.randint(-1, num_codes - 5, (150,), generator=gen)  # codes 15..19 are never hit
    ids[:3] = -1
    counts, sums = code_stats_triton(x, ids, num_codes)
    ref_counts, ref_sums = reference.code_stats_torch(x, ids, num_codes)
    assert counts.dtype == sums.dtype == torch.float32 and sums.shape == (num_codes, dim)
    assert torch.equal(counts, ref_counts)
    assert counts.sum().item() == (ids >= 0).sum().item()
    assert torch.equal(counts[-5:], torch.zeros(5))
    assert torch.equal(sums[-5:], torch.zeros(5, dim))
    torch.testing.assert_close(sums, ref_sums, atol=1e-5, rtol=1e-6)


def test_code_stats_int32_ids_and_all_skipped() -> None:
    x = torch.randn(10, 8)
    counts, sums = code_stats_triton(x, torch.full((10,), -1, dtype=torch.int32), 4)
    assert torch.equal(counts, torch.zeros(4)) and torch.equal(sums, torch.zeros(4, 8))
    ids = torch.tensor([0, 1, 1, 3, 3, 3, 0, 2, 2, 1], dtype=torch.int32)
    counts, sums = code_stats_triton(x, ids, 4)
    ref_counts, ref_sums = reference.code_stats_torch(x, ids.long(), 4)
    assert torch.equal(counts, ref_counts)
    torch.testing.assert_close(sums, ref_sums)


def test_round_half_even_and_tanh_helpers() -> None:
    values = torch.tensor(
        [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, -0.49999997, 2.5000002, 1.0, -0.0, 0.7, -4.2]
    )
    rounded, tanh = torch.empty_like(values), torch.empty_like(values)
    _elementwise_probe[(1,)](values, rounded, tanh, values.numel(), BLOCK=16)
    assert torch.equal(rounded, torch.round(values))
    probe = torch.linspace(-12, 12, 997)
    rounded, tanh = torch.empty_like(probe), torch.empty_like(probe)
    _elementwise_probe[(1,)](probe, rounded, tanh, probe.numel(), BLOCK=1024)
    torch.testing.assert_close(tanh, torch.tanh(probe), atol=3e-7, rtol=0)


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [4, 4, 3], [2, 7]])
@pytest.mark.parametrize("dtype", [F32, BF16])
def test_fsq_matches_reference(levels: list[int], dtype: torch.dtype) -> None:
    gen = torch.Generator(DEVICE).manual_seed(len(levels))
    z = (2 * torch.randn(600, len(levels), generator=gen)).to(dtype)
    z[:4] = torch.tensor([0.0, 30.0, -30.0, 1e-3]).to(dtype)[:, None]  # centre and saturation
    codes, ids = fsq_quantize_triton(z, levels)
    ref_codes, ref_ids = reference.fsq_quantize_torch(z, levels)

    # tanh may differ by an ulp: rows whose bounded value sits on a rounding boundary may differ.
    bounded = reference.fsq_bound(z, reference.fsq_constants(levels))
    near_boundary = ((bounded - bounded.floor() - 0.5).abs() < 1e-5).any(dim=1)
    comparable = ~near_boundary
    assert comparable.float().mean() > 0.99
    assert torch.equal(codes[comparable], ref_codes[comparable])
    assert torch.equal(ids[comparable], ref_ids[comparable])

    assert codes.dtype == torch.float32 and ids.dtype == torch.int64
    assert bool(((ids >= 0) & (ids < torch.tensor(levels).prod())).all())
    assert torch.equal(reference.fsq_ids_to_codes(ids, levels), codes)
    assert len(ids.unique()) > 10


def test_fsq_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="expected z"):
        fsq_quantize_triton(torch.randn(4, 3), [8, 5])


@pytest.mark.parametrize("dim", [1, 6, 18, 62])
@pytest.mark.parametrize("dtype", [F32, F16, BF16])
def test_lfq_matches_reference_exactly(dim: int, dtype: torch.dtype) -> None:
    gen = torch.Generator(DEVICE).manual_seed(dim)
    z = torch.randn(100, dim, generator=gen).to(dtype)
    z[0], z[1] = 0.0, -0.0  # zero is not positive
    z[2] = 1.0  # the id with every bit set
    for scale in (1.0, zk.spherical_scale(dim)):
        codes, ids = lfq_quantize_triton(z, scale)
        ref_codes, ref_ids = reference.lfq_quantize_torch(z, scale)
        assert torch.equal(codes, ref_codes)
        assert torch.equal(ids, ref_ids)
        assert torch.equal(reference.lfq_ids_to_codes(ids, dim, scale), codes)
    assert ids[0] == 0 and ids[1] == 0 and ids[2] == 2**dim - 1


def test_lfq_rejects_too_many_dims() -> None:
    with pytest.raises(ValueError, match="62"):
        lfq_quantize_triton(torch.randn(2, 63))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_dispatcher_triton_equals_torch(metric: str) -> None:
    gen = torch.Generator(DEVICE).manual_seed(5)
    x = torch.randn(NUM_ROWS, 24, generator=gen)
    codebook = torch.randn(NUM_CODES, 24, generator=gen)
    search = dispatch_nearest_code
    tri_ids, tri_dists = search(x, codebook, metric=metric, return_distances=True, backend="triton")
    _, ref_dists = search(x, codebook, metric=metric, return_distances=True, backend="torch")
    _check_search(x, codebook, metric, tri_ids, tri_dists)
    torch.testing.assert_close(tri_dists, ref_dists, atol=_tolerance(x, codebook, metric), rtol=0)

    ids = tri_ids.clone()
    ids[::5] = -1
    for got, want in zip(
        dispatch_code_stats(x, ids, NUM_CODES, backend="triton"),
        dispatch_code_stats(x, ids, NUM_CODES, backend="torch"),
    ):
        torch.testing.assert_close(got, want)
    lfq = zk.lfq_quantize(x, backend="triton"), zk.lfq_quantize(x, backend="torch")
    assert all(torch.equal(got, want) for got, want in zip(*lfq))
    z = x[:, :3]
    fsq_codes, fsq_ids = zk.fsq_quantize(z, [4, 4, 3], backend="triton")
    assert torch.equal(reference.fsq_ids_to_codes(fsq_ids, [4, 4, 3]), fsq_codes)


def test_dispatcher_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.zeros(2, 2)
    monkeypatch.delenv("ZOO_KERNELS", raising=False)
    assert not zk.use_triton(cpu)  # auto: PyTorch for CPU tensors even under the interpreter
    assert zk.use_triton(cpu, "triton")
    monkeypatch.setenv("ZOO_KERNELS", "triton")
    assert zk.use_triton(cpu)
    monkeypatch.setenv("ZOO_KERNELS", "torch")
    assert not zk.use_triton(cpu)

    monkeypatch.setenv("ZOO_KERNELS", "cuda")
    with pytest.raises(ValueError, match="backend"):
        zk.use_triton(cpu)
    monkeypatch.delenv("ZOO_KERNELS")
    with pytest.raises(ValueError, match="backend"):
        dispatch_nearest_code(cpu, cpu, backend="fast")

    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        dispatch_nearest_code(cpu, cpu, backend="triton")
    assert not zk.use_triton(cpu)


def test_dispatcher_names_survive_the_first_triton_call() -> None:
    """Kernel modules are named apart from the dispatcher functions, which must stay callable."""
    x = torch.randn(8, 16)
    ids, _ = dispatch_nearest_code(x, x, backend="triton")
    dispatch_code_stats(x, ids, 8, backend="triton")
    assert callable(zk.nearest_code) and callable(zk.code_stats)
