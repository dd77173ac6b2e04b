"""The state-dict layout of SEED-2's tokenizer without its ViT, described from its structure (AILab-CVC/SEED
@ 93b3cf4): BLIP-2's text-free BERT Q-Former under ``Qformer.bert`` (``embeddings.position_ids`` buffer
and ``LayerNorm``; per layer ``attention.{self,output}``, ``intermediate_query``/``output_query`` and, in
every second layer, ``crossattention`` whose key/value read the 1408-d ViT), ``query_tokens``,
``ln_vision``, the VQ codebook ``quantize.embedding.weight``, the task MLPs ``{encode,decode}_task_layer.{0,2}``,
two stacks of timm ``Block`` (``blocks``/``blocks_image``) with ``pos_embed``/``pos_embed_image``, and
the decode head: the inference code's ``image_down.{0,2,4}`` + ``distill_image_proj [1024, 1024]``, or the
training code's 4-layer ``Reverse_Qformer`` (1 query, ``reverse_tokens``) + ``distill_image_proj [1024, 768]``.
"""

from __future__ import annotations


def _bert(prefix: str, layers: int, width: int, context: int, freq: int = 2) -> dict[str, tuple[int, ...]]:
    w = width
    shapes: dict[str, tuple[int, ...]] = {
        f"{prefix}.embeddings.position_ids": (1, 512),
        f"{prefix}.embeddings.LayerNorm.weight": (w,),
        f"{prefix}.embeddings.LayerNorm.bias": (w,),
    }
    for i in range(layers):
        p = f"{prefix}.encoder.layer.{i}"
        parts = ["attention"] + (["crossattention"] if i % freq == 0 else [])
        for part in parts:
            kv = context if part == "crossattention" else w
            for name, fan_in in (("query", w), ("key", kv), ("value", kv)):
                shapes[f"{p}.{part}.self.{name}.weight"] = (w, fan_in)
                shapes[f"{p}.{part}.self.{name}.bias"] = (w,)
            shapes[f"{p}.{part}.output.dense.weight"] = (w, w)
            shapes[f"{p}.{part}.output.dense.bias"] = (w,)
            shapes[f"{p}.{part}.output.LayerNorm.weight"] = (w,)
            shapes[f"{p}.{part}.output.LayerNorm.bias"] = (w,)
        shapes[f"{p}.intermediate_query.dense.weight"] = (4 * w, w)
        shapes[f"{p}.intermediate_query.dense.bias"] = (4 * w,)
        shapes[f"{p}.output_query.dense.weight"] = (w, 4 * w)
        shapes[f"{p}.output_query.dense.bias"] = (w,)
        shapes[f"{p}.output_query.LayerNorm.weight"] = (w,)
        shapes[f"{p}.output_query.LayerNorm.bias"] = (w,)
    return shapes


def _blocks(prefix: str, depth: int, w: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(depth):
        p = f"{prefix}.{i}"
        shapes |= {
            f"{p}.norm1.weight": (w,),
            f"{p}.norm1.bias": (w,),
            f"{p}.attn.qkv.weight": (3 * w, w),
            f"{p}.attn.qkv.bias": (3 * w,),
            f"{p}.attn.proj.weight": (w, w),
            f"{p}.attn.proj.bias": (w,),
            f"{p}.norm2.weight": (w,),
            f"{p}.norm2.bias": (w,),
            f"{p}.mlp.fc1.weight": (4 * w, w),
            f"{p}.mlp.fc1.bias": (4 * w,),
            f"{p}.mlp.fc2.weight": (w, 4 * w),
            f"{p}.mlp.fc2.bias": (w,),
        }
    return shapes


def seed_shapes(
    *,
    head: str = "mlp",
    width: int = 768,
    layers: int = 12,
    vision_width: int = 1408,
    queries: int = 32,
    codebook_size: int = 8192,
    code_dim: int = 32,
    depth: int = 4,
    down: tuple[int, ...] = (256, 128, 32),
    embed_dim: int = 1024,
    reverse_layers: int = 4,
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the non-ViT state dict; ``head`` is ``"mlp"`` (inference) or ``"reverse_qformer"``."""
    w = width
    shapes: dict[str, tuple[int, ...]] = {
        "query_tokens": (1, queries, w),
        "pos_embed": (1, queries, w),
        "pos_embed_image": (1, queries, w),
        "ln_vision.weight": (vision_width,),
        "ln_vision.bias": (vision_width,),
    }
    shapes |= _bert("Qformer.bert", layers, w, vision_width)
    shapes |= {
        "quantize.embedding.weight": (codebook_size, code_dim),
        "encode_task_layer.0.weight": (w, w),
        "encode_task_layer.0.bias": (w,),
        "encode_task_layer.2.weight": (code_dim, w),
        "encode_task_layer.2.bias": (code_dim,),
        "decode_task_layer.0.weight": (code_dim, code_dim),
        "decode_task_layer.0.bias": (code_dim,),
        "decode_task_layer.2.weight": (w, code_dim),
        "decode_task_layer.2.bias": (w,),
    }
    shapes |= _blocks("blocks", depth, w) | _blocks("blocks_image", depth, w)
    if head == "mlp":
        dims = (w, *down)
        for i in range(len(down)):
            shapes[f"image_down.{2 * i}.weight"] = (dims[i + 1], dims[i])
        shapes["distill_image_proj.weight"] = (embed_dim, queries * down[-1])
    else:
        shapes |= _bert("Reverse_Qformer.bert", reverse_layers, w, w)
        shapes["reverse_tokens"] = (1, 1, w)
        shapes["distill_image_proj.weight"] = (embed_dim, w)
    shapes["distill_image_proj.bias"] = (embed_dim,)
    return shapes
