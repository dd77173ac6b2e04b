"""Quantizer state under data parallelism: two CPU processes (gloo) must end bit-for-bit in step.

Each rank sees different data, including batches of different sizes and batches with no valid
positions at all; every collective must still line up (a mismatch hangs, caught by the timeout), and
the EMA/k-means/restart state must equal one process that saw all the data.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from zoo.quantizers import ResidualVQ, VectorQuantizer

WORLD = 2
STEPS = 5


def make_quantizers() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "ema": VectorQuantizer(8, 16, ema_decay=0.8, kmeans_init=True, kmeans_iters=5, restart_threshold=1.0),
        "learned": VectorQuantizer(8, 16, l2_norm=True, kmeans_init=True, restart_threshold=0.5),
        "rvq": ResidualVQ(
            8, 3, 16, quantizer_dropout=0.5, ema_decay=0.9, kmeans_init=True, restart_threshold=0.5
        ),
    }


def rank_batches(step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-rank ``(z, mask)`` for one step: uneven batch sizes, and an empty rank on steps 1 and 3."""
    g = torch.Generator().manual_seed(100 + step)
    parts = []
    for rank, size in enumerate((2, 3)):
        z = torch.randn(size, 8, 12, generator=g) * (1 + rank)
        mask = torch.rand(size, 12, generator=g) > 0.2
        if (step, rank) in {(1, 1), (3, 0)}:
            mask[:] = False
        parts.append((z, mask))
    return parts


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        quantizers = make_quantizers()
        torch.manual_seed(1000 + rank)  # ranks draw different quantizer-dropout prefixes
        for step in range(STEPS):
            z, mask = rank_batches(step)[rank]
            for quantizer in quantizers.values():
                quantizer(z, mask=mask)
        state = {name: q.state_dict() for name, q in quantizers.items()}
        torch.save(state, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_states(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(
        _worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=180)
    while not context.join(timeout=5):
        if datetime.datetime.now() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two ranks did not finish: a collective call is probably unmatched")
    return [torch.load(tmp / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


def test_every_rank_holds_identical_quantizer_state(rank_states: list[dict]) -> None:
    first, second = rank_states
    for name, state in first.items():
        for key, value in state.items():
            assert torch.equal(value, second[name][key]), f"{name}.{key} differs between ranks"


@pytest.mark.parametrize("name", ["ema", "learned"])
def test_data_parallel_state_equals_one_process_on_all_data(rank_states: list[dict], name: str) -> None:
    single = make_quantizers()[name]
    for step in range(STEPS):
        parts = rank_batches(step)
        single(torch.cat([z for z, _ in parts]), mask=torch.cat([m for _, m in parts]))
    for key, value in single.state_dict().items():
        torch.testing.assert_close(rank_states[0][name][key], value, rtol=1e-5, atol=1e-5, msg=key)
    assert bool(single.initted)
