"""Image tokenizers."""

from . import kl16, restok, retok, tokenbridge, vq16, vqgan_mage  # noqa: F401
