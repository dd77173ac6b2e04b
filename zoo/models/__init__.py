"""Importing this package registers every model."""

from . import audio, image  # noqa: F401
