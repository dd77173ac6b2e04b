"""Importing this package registers every model."""

from . import image  # noqa: F401
