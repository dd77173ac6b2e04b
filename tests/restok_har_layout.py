"""The state-dict layout of ResTok's HAR ``Transformer`` (``autoregressive/models/gpt_har.py``): key names
and shapes, described from its structure.

Used to test the converter without the real checkpoint: a random state dict in this layout must load
strictly into `zoo`'s HAR after conversion.
"""

from __future__ import annotations


def restok_har_shapes(
    *,
    dim: int = 1024,
    depth: int = 24,
    heads: int = 16,
    vocab_size: int = 8192,
    num_classes: int = 1000,
    special_tokens: int = 127,
    multiple_of: int = 256,
) -> dict[str, tuple[int, ...]]:
    """Upstream key -> shape; the class table has a null row (class dropout > 0 in every release)."""
    hidden = int(2 * 4 * dim / 3)
    hidden += -hidden % multiple_of
    shapes: dict[str, tuple[int, ...]] = {
        "cls_embedding.embedding_table.weight": (num_classes + 1, dim),
        "tok_embeddings.weight": (vocab_size, dim),
        "spe_tok_embeddings.special_embeddings.weight": (special_tokens, dim),
        "norm.weight": (dim,),
        "output.weight": (vocab_size, dim),
    }
    for i in range(depth):
        shapes[f"layers.{i}.attention.wqkv.weight"] = (3 * dim, dim)
        shapes[f"layers.{i}.attention.wo.weight"] = (dim, dim)
        shapes[f"layers.{i}.feed_forward.w1.weight"] = (hidden, dim)
        shapes[f"layers.{i}.feed_forward.w3.weight"] = (hidden, dim)
        shapes[f"layers.{i}.feed_forward.w2.weight"] = (dim, hidden)
        shapes[f"layers.{i}.attention_norm.weight"] = (dim,)
        shapes[f"layers.{i}.ffn_norm.weight"] = (dim,)
    return shapes
