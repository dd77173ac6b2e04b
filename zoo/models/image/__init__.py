"""Image tokenizers."""

from . import kl16, restok, retok, vq16  # noqa: F401
