"""Image tokenizers."""

from . import kl16, vq16  # noqa: F401
