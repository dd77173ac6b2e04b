"""TFM-Tokenizer's upstream state dicts (key -> shape), described from ``models/tfm_token.py`` of
Jathurshan0330/TFM-Tokenizer: ``TFM_VQVAE2_deep`` (the tokenizer; ``tfm_tokenizer_last.pth``) and
``TFM_TOKEN_Classifier`` (the encoder; ``tfm_encoder_mtp_last.pth`` / ``tfm_encoder_best_model.pth``),
with the layer layout of lucidrains' ``linear-attention-transformer`` 0.19.

Used to test the converters without the checkpoints, and to count upstream's parameters.
"""

from __future__ import annotations

# Buffers in the upstream state dicts (not parameters).
BUFFERS = ("quantizer.cluster_size", "quantizer.ema_w", "temporal_pos_embed.pe")


def _linear_attention_transformer(shapes: dict, prefix: str, dim: int, depth: int) -> None:
    for i in range(depth):
        layer = f"{prefix}.layers.layers.{i}"
        for name in ("to_q", "to_k", "to_v", "to_out"):
            shapes[f"{layer}.0.fn.{name}.weight"] = (dim, dim)
        shapes[f"{layer}.0.fn.to_out.bias"] = (dim,)
        shapes[f"{layer}.0.norm.weight"] = shapes[f"{layer}.0.norm.bias"] = (dim,)
        shapes[f"{layer}.1.fn.fn.w1.weight"] = (4 * dim, dim)
        shapes[f"{layer}.1.fn.fn.w1.bias"] = (4 * dim,)
        shapes[f"{layer}.1.fn.fn.w2.weight"] = (dim, 4 * dim)
        shapes[f"{layer}.1.fn.fn.w2.bias"] = (dim,)
        shapes[f"{layer}.1.norm.weight"] = shapes[f"{layer}.1.norm.bias"] = (dim,)


def _conv_stack(shapes: dict, prefix: str, channels: list[tuple[int, int, int]]) -> None:
    """Conv1d-GELU-GroupNorm triples at Sequential indices 0/2, 3/5, 6/8."""
    for j, (cin, cout, kernel) in enumerate(channels):
        shapes[f"{prefix}.{3 * j}.weight"] = (cout, cin, kernel)
        shapes[f"{prefix}.{3 * j}.bias"] = (cout,)
        shapes[f"{prefix}.{3 * j + 2}.weight"] = shapes[f"{prefix}.{3 * j + 2}.bias"] = (cout,)


def tfm_tokenizer_shapes(
    emb_size: int = 64,
    code_book_size: int = 8192,
    depths: tuple[int, int, int] = (2, 2, 8),
    n_freq: int = 100,
    n_freq_patch: int = 5,
    n_fft: int = 200,
) -> dict[str, tuple[int, ...]]:
    """``TFM_VQVAE2_deep`` (``get_tfm_tokenizer_2x2x8`` at the defaults)."""
    shapes: dict[str, tuple[int, ...]] = {}
    e = emb_size
    _conv_stack(shapes, "freq_patch_embedding", [(1, e, n_freq_patch), (e, e, 1), (e, e, 1)])
    _linear_attention_transformer(shapes, "trans_freq_encoder.transformer", e, depths[0])
    _conv_stack(shapes, "temporal_patch_embedding", [(1, e, n_fft), (e, e, 1), (e, e // 2, 1)])
    gate = e // (2 * (n_freq // (n_freq_patch * n_freq_patch)))
    for name in ("freq_patch_embedding_2_atten", "freq_patch_embedding_2"):
        shapes[f"{name}.0.weight"] = (gate, e, n_freq_patch)
        shapes[f"{name}.0.bias"] = (gate,)
    _linear_attention_transformer(shapes, "trans_temporal_encoder.transformer", e, depths[1])
    shapes["quantizer.embedding.weight"] = (code_book_size, e)
    shapes["quantizer.cluster_size"] = (code_book_size,)
    shapes["quantizer.ema_w"] = (code_book_size, e)
    _linear_attention_transformer(shapes, "trans_decoder.transformer", e, depths[2])
    shapes["decoder.0.weight"] = (e, e)
    shapes["decoder.0.bias"] = (e,)
    shapes["decoder.2.weight"] = (n_freq, e)
    shapes["decoder.2.bias"] = (n_freq,)
    return shapes


def tfm_classifier_shapes(
    emb_size: int = 64, code_book_size: int = 8192, depth: int = 4, n_classes: int = 6, max_len: int = 1000
) -> dict[str, tuple[int, ...]]:
    """``TFM_TOKEN_Classifier`` (``get_tfm_token_classifier_64x4``); MTP checkpoints have
    ``n_classes = code_book_size`` (the head predicts tokens)."""
    shapes: dict[str, tuple[int, ...]] = {
        "index": (16,),
        "cls_token": (1, 1, emb_size),
        "eeg_token_embedding.weight": (code_book_size + 1, emb_size),
        "channel_embed.weight": (16, emb_size),
        "temporal_pos_embed.pe": (1, max_len, emb_size),
    }
    _linear_attention_transformer(shapes, "LAT", emb_size, depth)
    shapes["classification_head.weight"] = (n_classes, emb_size)
    shapes["classification_head.bias"] = (n_classes,)
    return shapes


def parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    """Upstream's parameters: everything but buffers and the frozen channel ``index``."""
    total = 0
    for key, shape in shapes.items():
        if key in BUFFERS or key == "index":
            continue
        n = 1
        for s in shape:
            n *= s
        total += n
    return total
