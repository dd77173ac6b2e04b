"""The state-dict layout of MAR's KL-16 ``AutoencoderKL`` (key names and shapes), described from its structure.

Source: LTH14/mar @ fe470ac24afbee924668d8c5c83e9fec60af3a73, ``models/vae.py`` (LDM's KL-VAE):
``Encoder``/``Decoder`` with ``down.{level}.block/attn/downsample``, ``up.{level}...`` indexed by
resolution level (0 = full resolution), ``mid.block_1/attn_1/block_2``, attention as separate q/k/v/
proj_out 1x1 convs, ``nin_shortcut`` when widths change, no ``temb_proj`` (``temb_channels=0``),
encoder attention at resolution 16 of 256 px (its last level), none in the decoder's levels,
``double_z`` encoder output, ``quant_conv`` (2E -> 2E) and ``post_quant_conv`` (E -> E).

Used to test the converter without the real checkpoint: a random state dict in this layout must load
strictly into `zoo`'s KL16 after conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

from llamagen_layout import LdmShapes


def mar_kl_shapes(
    *,
    ch: int = 128,
    ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
    num_res_blocks: int = 2,
    embed_dim: int = 16,
    in_channels: int = 3,
) -> dict[str, tuple[int, ...]]:
    shapes = LdmShapes()
    conv, norm, res, attn = shapes.conv, shapes.norm, shapes.res, shapes.attn

    def mid(prefix: str, c: int) -> None:
        res(f"{prefix}.mid.block_1", c, c)
        attn(f"{prefix}.mid.attn_1", c)
        res(f"{prefix}.mid.block_2", c, c)

    levels = len(ch_mult)
    conv("encoder.conv_in", in_channels, ch, 3)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            res(f"encoder.down.{i}.block.{j}", block_in, ch * mult)
            block_in = ch * mult
            if i == levels - 1:
                attn(f"encoder.down.{i}.attn.{j}", block_in)
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    mid("encoder", block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", block_in, 2 * embed_dim, 3)

    block_in = ch * ch_mult[-1]
    conv("decoder.conv_in", embed_dim, block_in, 3)
    mid("decoder", block_in)
    for i in reversed(range(levels)):
        for j in range(num_res_blocks + 1):
            res(f"decoder.up.{i}.block.{j}", block_in, ch * ch_mult[i])
            block_in = ch * ch_mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", block_in, in_channels, 3)

    conv("quant_conv", 2 * embed_dim, 2 * embed_dim, 1)
    conv("post_quant_conv", embed_dim, embed_dim, 1)
    return shapes
