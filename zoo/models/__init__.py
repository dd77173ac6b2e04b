"""Importing this package registers every model."""

from . import audio, eeg, generators, image, svg  # noqa: F401
