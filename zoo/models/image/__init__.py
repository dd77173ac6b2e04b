"""Image tokenizers."""

from . import kl16, restok, retok, tokenbridge, vq16  # noqa: F401
