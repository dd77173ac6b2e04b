"""Generators: autoregressive models of a tokenizer's tokens."""

from . import hivg_lm, nar, xar  # noqa: F401
