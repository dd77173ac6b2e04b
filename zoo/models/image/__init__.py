"""Image tokenizers."""

from . import vq16  # noqa: F401
