"""Importing this package registers every model."""

from . import audio, eeg, generators, image  # noqa: F401
