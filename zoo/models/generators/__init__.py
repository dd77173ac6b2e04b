"""Generators: autoregressive models of a tokenizer's tokens."""

from . import himar, hivg_lm, nar, restok_har, tokenbridge_gen, xar  # noqa: F401
