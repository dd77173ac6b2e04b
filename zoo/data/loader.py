"""A DataLoader whose position survives a checkpoint, so a resumed run sees the same batches.

Lightning saves and restores any train dataloader that has ``state_dict``/``load_state_dict``. This
one draws its order from a :class:`SeededSampler` (same permutation on every rank, one slice per
rank) and after a restore skips the batches the interrupted run already consumed, by index,
without loading them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset

from ._common import SeededSampler


class ResumableDataLoader(DataLoader):
    """A shuffling DataLoader with ``state_dict`` (epoch, batches consumed) for exact resumption.

    Use it for training data only; Lightning's automatic distributed sampler must be off
    (``Trainer(use_distributed_sampler=False)``, the zoo CLI's default) because the sampler splits
    the data across ranks itself.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        sampler: SeededSampler | None = None,
        **kwargs: Any,
    ) -> None:
        """``sampler`` defaults to plain indices (``with_seeds=False``) for datasets that take ints."""
        self.resumable_sampler = sampler or SeededSampler(len(dataset), seed, shuffle, with_seeds=False)
        super().__init__(dataset, batch_size=batch_size, sampler=self.resumable_sampler, **kwargs)
        self.epoch = self.resumable_sampler.epoch
        self.batches_consumed = 0
        self._resuming = False

    def __iter__(self) -> Iterator[Any]:
        # A new pass starts at its first batch, unless a checkpoint was just restored mid-epoch
        # (Lightning may abandon a pass after len(self) batches without exhausting it).
        if not self._resuming:
            self.batches_consumed = 0
        self._resuming = False
        self.epoch = self.resumable_sampler.epoch  # the sampler advances its own when the pass starts
        self.resumable_sampler.skip = self.batches_consumed * self.batch_size
        for batch in super().__iter__():
            self.batches_consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_consumed": self.batches_consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = self.resumable_sampler.epoch = int(state["epoch"])
        self.batches_consumed = int(state["batches_consumed"])
        self._resuming = True
