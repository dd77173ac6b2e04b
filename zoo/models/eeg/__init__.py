"""EEG tokenizers."""

from . import (
    biocodec,  # noqa: F401
    tfm_tokenizer,  # noqa: F401
)
from .tfm_encoder import TFMEncoder, convert_tfm_encoder  # noqa: F401
