"""A CSV logger that keeps a run's earlier rows when the run is resumed.

Lightning's CSV writer deletes ``metrics.csv`` whenever its folder is not empty, so ``zoo train ...
--ckpt_path last`` would silently lose the history of the run it continues. This writer appends instead,
starting from the columns the file already has.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's writer, minus the deletion: rows already in ``metrics.csv`` stay, new ones follow."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(set(self.metrics_keys) | set(header))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resumed run (see the module docstring)."""

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
