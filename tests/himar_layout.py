"""The state-dict layout of upstream Hi-MAR (key names and shapes), described from its structure.

Source: HiDream-ai/himar, ``models/himar.py`` (``HiMAR`` with timm ``Attention``/``Mlp`` blocks carrying
``adaLN_scale``/``adaLN_shift [2, 1, 1, 4d]``, per-phase ``*_task_emb`` and ``*_blocks_ada``),
``models/diffloss.py`` (``diffloss.net``: ``SimpleMLPAdaLN``; ``cond_diffloss.net``: the DiT) and
``models/models.py`` (DiT with ``x_embedder``/``c_embedder`` patch-1 convs, fixed ``pos_embed`` and
``c_pos_embed``, no label embedder, ``learn_sigma=False``). Sequence tables: ``mask_token`` holds
``2 (P + N)`` rows, the encoder/decoder position tables ``2 (P + N) + 2 buffer``.

Used to test the converter without the real ``checkpoint-last.pth``.
"""

from __future__ import annotations


def himar_shapes(
    *,
    dim: int = 768,
    encoder_depth: int = 12,
    decoder_depth: int = 12,
    channels: int = 16,
    grid: int = 16,
    pivot_grid: int = 8,
    buffer: int = 64,
    num_classes: int = 1000,
    head_depth: int = 6,
    head_width: int = 1024,
    dit_depth: int = 6,
    dit_width: int = 512,
    dit_mlp_ratio: int = 4,
    mlp_ratio: int = 4,
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, out: int, inp: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, inp), (out,)

    def norm(name: str, width: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (width,), (width,)

    seq = grid * grid + pivot_grid * pivot_grid
    shapes["class_emb.weight"] = (num_classes, dim)
    shapes["fake_latent"] = (1, dim)
    linear("z_proj", dim, channels)
    norm("z_proj_ln", dim)
    linear("cond_z_proj", dim, dim)
    shapes["cond_tokens"] = (1, pivot_grid * pivot_grid, channels)
    linear("cond_proj", dim, channels)
    shapes["mask_token"] = (1, 2 * seq, dim)
    for part, depth in (("encoder", encoder_depth), ("decoder", decoder_depth)):
        shapes[f"{part}_pos_embed_learned"] = (1, 2 * seq + 2 * buffer, dim)
        for i in range(depth):
            block = f"{part}_blocks.{i}"
            norm(f"{block}.norm1", dim)
            linear(f"{block}.attn.qkv", 3 * dim, dim)
            linear(f"{block}.attn.proj", dim, dim)
            norm(f"{block}.norm2", dim)
            linear(f"{block}.mlp.fc1", mlp_ratio * dim, dim)
            linear(f"{block}.mlp.fc2", dim, mlp_ratio * dim)
            shapes[f"{block}.adaLN_scale"] = (2, 1, 1, 4 * dim)
            shapes[f"{block}.adaLN_shift"] = (2, 1, 1, 4 * dim)
        shapes[f"{part}_task_emb.weight"] = (2, dim)
        linear(f"{part}_blocks_ada.1", 4 * dim, dim)
        norm(f"{part}_norm", dim)
    linear("decoder_embed", dim, dim)
    shapes["diffusion_pos_embed_learned"] = (1, seq, dim)

    mlp = "diffloss.net"
    linear(f"{mlp}.time_embed.mlp.0", head_width, 256)
    linear(f"{mlp}.time_embed.mlp.2", head_width, head_width)
    linear(f"{mlp}.cond_embed", head_width, dim)
    linear(f"{mlp}.input_proj", head_width, channels)
    for j in range(head_depth):
        block = f"{mlp}.res_blocks.{j}"
        norm(f"{block}.in_ln", head_width)
        linear(f"{block}.mlp.0", head_width, head_width)
        linear(f"{block}.mlp.2", head_width, head_width)
        linear(f"{block}.adaLN_modulation.1", 3 * head_width, head_width)
    linear(f"{mlp}.final_layer.linear", 2 * channels, head_width)
    linear(f"{mlp}.final_layer.adaLN_modulation.1", 2 * head_width, head_width)

    dit, w = "cond_diffloss.net", dit_width
    shapes[f"{dit}.x_embedder.proj.weight"], shapes[f"{dit}.x_embedder.proj.bias"] = (w, channels, 1, 1), (w,)
    shapes[f"{dit}.c_embedder.proj.weight"], shapes[f"{dit}.c_embedder.proj.bias"] = (w, dim, 1, 1), (w,)
    linear(f"{dit}.t_embedder.mlp.0", w, 256)
    linear(f"{dit}.t_embedder.mlp.2", w, w)
    shapes[f"{dit}.pos_embed"] = (1, grid * grid, w)
    shapes[f"{dit}.c_pos_embed"] = (1, grid * grid, w)
    for j in range(dit_depth):
        block = f"{dit}.blocks.{j}"
        linear(f"{block}.attn.qkv", 3 * w, w)
        linear(f"{block}.attn.proj", w, w)
        linear(f"{block}.mlp.fc1", dit_mlp_ratio * w, w)
        linear(f"{block}.mlp.fc2", w, dit_mlp_ratio * w)
        linear(f"{block}.adaLN_modulation.1", 6 * w, w)
    linear(f"{dit}.final_layer.linear", channels, w)
    linear(f"{dit}.final_layer.adaLN_modulation.1", 2 * w, w)
    return shapes


# The tiny zoo configuration (himar_tiny) in upstream's terms.
TINY = {
    "dim": 64,
    "encoder_depth": 2,
    "decoder_depth": 2,
    "channels": 4,
    "grid": 8,
    "pivot_grid": 4,
    "buffer": 4,
    "num_classes": 10,
    "head_depth": 2,
    "head_width": 64,
    "dit_depth": 2,
    "dit_width": 64,
}
