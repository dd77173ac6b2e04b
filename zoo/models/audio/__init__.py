"""Audio tokenizers."""

from . import (
    cat,  # noqa: F401
    reasoningcodec,  # noqa: F401
    sqcodec,  # noqa: F401
    wavtokenizer,  # noqa: F401
)
