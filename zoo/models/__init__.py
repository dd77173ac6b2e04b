"""Importing this package registers every model."""

from . import audio, eeg, image  # noqa: F401
