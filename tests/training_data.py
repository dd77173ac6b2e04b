"""A tiny in-memory image DataModule for training tests (importable by subprocesses too)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.data import ResumableDataLoader


class RandomImages(L.LightningDataModule):
    """Smooth random 32x32 images, fixed by ``seed``, with a resumable shuffled train loader."""

    def __init__(self, num_images: int = 48, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(num_images, 3, 8, 8, generator=g)
        self.images = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        return ResumableDataLoader(TensorDataset(self.images), batch_size=self.batch_size, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.images[:16]), batch_size=self.batch_size)


class SaveRankState(L.Callback):
    """Writes each rank's tokenizer state at the end of training, to compare ranks after DDP."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.detach().cpu() for k, v in pl_module.tokenizer.state_dict().items()}
        torch.save(state, f"{self.out_dir}/rank{trainer.global_rank}.pt")
