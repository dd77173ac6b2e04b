"""The contract each modality's benchmark implements, and the timing and memory probes they share.

A `Suite` loads a dataset's items, measures a tokenizer on them (rate, reconstruction metrics, codebook use,
speed) and measures classic codecs on the same items at operating points that bracket the tokenizer's rate.
``zoo.benchmarking.bench`` picks the suite by the model's modality and assembles the `BenchReport`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..tokenizer import Tokenizer
from .report import Metric, Row

__all__ = ["Items", "PeakMemory", "Suite", "Timer", "shared_data"]


def shared_data() -> Path | None:
    """The benchmark data bundle: ``$ZOO_SHARED_DATA``, else ``../shared/data`` beside a checkout; ``None``
    when neither exists (an installed zoo has no data: the user passes a path)."""
    import os

    env = os.environ.get("ZOO_SHARED_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return beside if beside.is_dir() else None


@dataclass
class Items:
    """A benchmark's items and where they came from (for the report's title and the card)."""

    items: list[Any]
    data: str
    split: str
    notes: list[str] = field(default_factory=list)


class Timer:
    """Accumulates wall seconds of the timed blocks (synchronising CUDA so GPU work is counted)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def __call__(self, device: torch.device | str | None = None) -> Iterator[None]:
        cuda = torch.device(device).type == "cuda" if device is not None else False
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start


class PeakMemory:
    """Peak memory of a block: GPU bytes allocated by torch on CUDA; on the CPU the process's resident
    high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) minus what was resident before,
    where Linux offers it (``None`` elsewhere)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.peak_bytes: int | None = None

    @staticmethod
    def _status(field_name: str) -> int | None:
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith(field_name + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    @contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            yield
            peak = torch.cuda.max_memory_allocated(self.device) - before
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                resettable = True
            except OSError:
                resettable = False
            before = self._status("VmRSS")
            yield
            high = self._status("VmHWM")
            peak = high - before if resettable and before is not None and high is not None else None
        if peak is not None:
            self.peak_bytes = max(self.peak_bytes or 0, peak)


class Suite:
    """One modality's benchmark. Subclasses set the class attributes and implement the three methods."""

    modality: str = ""
    rate_unit: str = ""
    metrics: ClassVar[list[Metric]] = []
    default_limit: int = 100

    def load_items(self, data: str | None, limit: int | None) -> Items:
        """The items to measure: ``data`` is a path (file or folder) or ``None`` for the suite's default."""
        raise NotImplementedError

    def measure_learned(
        self, model: Tokenizer, items: Items, *, device: torch.device, name: str, kind: str = "learned"
    ) -> Row:
        """Encode and decode every item: rate, metrics, codebook use (``extra``) and speed."""
        raise NotImplementedError

    def classic_rows(self, items: Items, rates: list[float]) -> tuple[list[Row], list[str]]:
        """Classic codecs on the same items at settings bracketing ``rates``; with the reasons for any
        codec that could not be run (a missing tool or package)."""
        raise NotImplementedError

    def samples(
        self, model: Tokenizer, items: Items, classic: list[Row], path: Path, *, device: torch.device
    ) -> Path | None:
        """A PNG showing a few originals, the tokenizer's reconstructions and a classic codec's at a matched
        rate, or ``None`` where the modality has no picture."""
        return None


def batched(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def per_item(function: Callable[..., float], pairs: list[tuple[Any, Any]]) -> float:
    """The mean of ``function`` over (reference, estimate) pairs."""
    values = [float(function(a, b)) for a, b in pairs]
    return sum(values) / len(values)
