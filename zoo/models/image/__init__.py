"""Image tokenizers."""

from . import karl, kl16, restok, retok, seed, tokenbridge, vq16, vqgan_mage  # noqa: F401
