"""The state-dict layout of upstream TokenBridge's generator (key names and shapes), described from its structure.

Source: YuqingWang1029/TokenBridge @ 3ede281, ``models/tokenbridge.py`` (class ``TokenBridge``):
MAR's encoder/decoder of timm ViT ``Block``s (fused qkv with bias, ``mlp.fc1``/``mlp.fc2``), a class
table plus ``fake_latent``, learned position tables over ``buffer + positions`` (``output_pos_embed``
over the positions only), then the channel head at the top level: ``condition_proj``,
``channel_embed``/``timesteps_embeddings`` ``[1, C, d]``, ``C - 1`` token tables, causal blocks with
per-head LayerNorm on q and k and ``adaLN_modulation.1`` (6d), ``channel_norm``, ``channel_final``
(weightless norm, ``adaLN_modulation.1`` of 2d) and ``C`` heads over the levels. Buffers:
``channel_mask`` ``[C, C]``, ``reconstruction_values`` ``[levels]``, ``boundaries`` ``[levels + 1]``.

Used to test the converter without the real checkpoint and to state upstream's parameter counts.
"""

from __future__ import annotations

BUFFERS = ("channel_mask", "reconstruction_values", "boundaries")


def tokenbridge_gen_shapes(
    *,
    dim: int = 1024,
    encoder_depth: int = 16,
    decoder_depth: int = 16,
    channel_dim: int = 1024,
    channel_depth: int = 4,
    channels: int = 16,
    levels: int = 64,
    grid: int = 16,
    buffer_size: int = 64,
    num_classes: int = 1000,
    channel_heads: int = 8,
    mlp_ratio: float = 4.0,
    buffers: bool = True,
) -> dict[str, tuple[int, ...]]:
    """Upstream's ``state_dict()`` shapes (``buffers=False``: its ``model_ema``, parameters only)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, n_in: int, n_out: int) -> None:
        shapes[f"{name}.weight"] = (n_out, n_in)
        shapes[f"{name}.bias"] = (n_out,)

    def norm(name: str, d: int) -> None:
        shapes[f"{name}.weight"] = (d,)
        shapes[f"{name}.bias"] = (d,)

    def vit_block(name: str, d: int, qk_norm_dim: int = 0) -> None:
        norm(f"{name}.norm1", d)
        linear(f"{name}.attn.qkv", d, 3 * d)
        if qk_norm_dim:
            norm(f"{name}.attn.q_norm", qk_norm_dim)
            norm(f"{name}.attn.k_norm", qk_norm_dim)
        linear(f"{name}.attn.proj", d, d)
        norm(f"{name}.norm2", d)
        linear(f"{name}.mlp.fc1", d, int(d * mlp_ratio))
        linear(f"{name}.mlp.fc2", int(d * mlp_ratio), d)

    positions = grid * grid
    shapes["class_emb.weight"] = (num_classes, dim)
    shapes["fake_latent"] = (1, dim)
    linear("z_proj", channels, dim)
    norm("z_proj_ln", dim)
    shapes["encoder_pos_embed_learned"] = (1, positions + buffer_size, dim)
    for i in range(encoder_depth):
        vit_block(f"encoder_blocks.{i}", dim)
    norm("encoder_norm", dim)
    linear("decoder_embed", dim, dim)
    shapes["mask_token"] = (1, 1, dim)
    shapes["decoder_pos_embed_learned"] = (1, positions + buffer_size, dim)
    for i in range(decoder_depth):
        vit_block(f"decoder_blocks.{i}", dim)
    norm("decoder_norm", dim)
    shapes["output_pos_embed"] = (1, positions, dim)
    linear("condition_proj", dim, channel_dim)
    shapes["channel_embed"] = (1, channels, channel_dim)
    shapes["timesteps_embeddings"] = (1, channels, channel_dim)
    for i in range(channels - 1):
        shapes[f"token_embeddings.{i}.weight"] = (levels, channel_dim)
    for i in range(channel_depth):
        vit_block(f"channel_blocks.{i}", channel_dim, channel_dim // channel_heads)
        linear(f"channel_blocks.{i}.adaLN_modulation.1", channel_dim, 6 * channel_dim)
    norm("channel_norm", channel_dim)
    linear("channel_final.adaLN_modulation.1", channel_dim, 2 * channel_dim)
    for i in range(channels):
        linear(f"channel_heads.{i}", channel_dim, levels)
    if buffers:
        shapes["channel_mask"] = (channels, channels)
        shapes["reconstruction_values"] = (levels,)
        shapes["boundaries"] = (levels + 1,)
    return shapes


def parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for name, shape in shapes.items():
        if name not in BUFFERS:
            count = 1
            for s in shape:
                count *= s
            total += count
    return total
