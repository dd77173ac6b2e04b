"""Generators: autoregressive models of a tokenizer's tokens."""

from . import nar, xar  # noqa: F401
