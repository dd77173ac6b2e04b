"""Audio tokenizers."""

from . import wavtokenizer  # noqa: F401
