"""zoo: faithful multimodal tokenizers and the generators that model their tokens.

tok = zoo.load("vq16")            # pretrained, from the Hugging Face Hub
tokens = tok.encode(images)       # Tokens: ids and/or latents with their layout
images = tok.decode(tokens)
"""

__version__ = "0.1.0"

from typing import Any

from ._factory import create, info
from ._registry import (
    PretrainedCfg,
    get_pretrained_cfg,
    is_model,
    list_models,
    register_model,
    register_pretrained,
)
from .hub import load, load_upstream, push_to_hub, save_pretrained
from .tokenizer import ImageTokenizer, Tokenizer, TokenizerOutput
from .tokens import Tokens


def bench(model: Any, data: str | None = None, **options: Any) -> Any:
    """``zoo bench`` in Python: measure a tokenizer against classic codecs (see `zoo.benchmarking.bench`).
    Imported on first use, so ``import zoo`` does not load the metrics libraries."""
    from .benchmarking import bench as run

    return run(model, data, **options)


__all__ = [
    "ImageTokenizer",
    "PretrainedCfg",
    "Tokenizer",
    "TokenizerOutput",
    "Tokens",
    "__version__",
    "bench",
    "create",
    "get_pretrained_cfg",
    "info",
    "is_model",
    "list_models",
    "load",
    "load_upstream",
    "push_to_hub",
    "register_model",
    "register_pretrained",
    "save_pretrained",
]
