"""SVG tokenizers."""

from . import hivg  # noqa: F401
