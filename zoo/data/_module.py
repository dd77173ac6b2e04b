"""Loader logic shared by every DataModule here, so train order and workers behave alike in all modalities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from zoo.data._common import SeededSampler, Subsample, check_fraction
from zoo.data.loader import ResumableDataLoader


class ZooDataModule(L.LightningDataModule):
    """Base class: subclasses build (train, val) datasets in `_build`; this class makes the loaders.

    Train batches come in an order drawn from (seed, epoch) with per-item augmentation seeds
    (see `SeededSampler`), so a resumed run and any number of workers see the same batches.
    Validation is never shuffled. An empty validation set gives `[]`, which Lightning reads as
    "no validation".
    """

    collate_fn: Callable[[list[Any]], Any] = staticmethod(default_collate)

    def __init__(
        self, batch_size: int, num_workers: int, val_fraction: float, seed: int, limit: int | None
    ) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
        if limit is not None and int(limit) < 1:
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.val_fraction = check_fraction(val_fraction)
        self.seed = int(seed)
        self.limit = None if limit is None else int(limit)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None

    def _build(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build both datasets (once); cheap, as every dataset decodes its items lazily."""
        if self.train_dataset is not None:
            return
        train, val = self._build()
        if self.limit is not None:
            train, val = Subsample(train, self.limit), Subsample(val, self.limit)
        if len(train) == 0:  # type: ignore[arg-type]
            raise ValueError(f"{type(self).__name__}: the training split is empty")
        self.train_dataset, self.val_dataset = train, val

    def _loader_options(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "collate_fn": type(self).collate_fn,
            "pin_memory": torch.cuda.is_available(),
        }

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        assert self.train_dataset is not None
        sampler = SeededSampler(len(self.train_dataset), self.seed)  # type: ignore[arg-type]
        return ResumableDataLoader(self.train_dataset, sampler=sampler, **self._loader_options())

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        assert self.val_dataset is not None
        if len(self.val_dataset) == 0:  # type: ignore[arg-type]
            return []
        return DataLoader(self.val_dataset, **self._loader_options())
