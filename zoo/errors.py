"""Exceptions raised by zoo, each naming the file or object at fault and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class ZooError(Exception):
    """Base class for every error zoo raises on purpose."""


class MediaError(ZooError, ValueError):
    """A media file (image, audio, EEG, SVG) could not be read or written."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class UnknownModelError(ZooError, KeyError):
    """A registry name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CheckpointError(ZooError, ValueError):
    """A checkpoint or config that is corrupt, truncated, or does not match the architecture."""


class HubError(ZooError, OSError):
    """A Hub repository, revision or file that cannot be resolved."""


class MissingPartError(ZooError, RuntimeError):
    """A part a model needs but does not save is absent: a frozen vision tower or teacher, or a decoder
    whose weights the user supplies (the message says how to supply it)."""
