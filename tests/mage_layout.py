"""The state-dict layout of MAGE's VQGAN ``VQModel`` (key names and shapes), described from its structure.

Source: LTH14/mage @ 1becb14, ``taming/models/vqgan.py`` + ``taming/modules/diffusionmodules/model.py`` with
``config/vqgan.yaml`` (MaskGIT's VQGAN ported to PyTorch): LDM naming (``down.{level}.block.{j}``,
``up.{level}``, ``mid.block_1/2``), bias-free 3x3 block convs, a bias-free 1x1 ``nin_shortcut`` of shape
``[out, out]`` where widths change, no attention, average-pool downsampling (no parameters), a bias-free
encoder ``conv_in``, a 1x1 encoder ``conv_out`` into the code space, ``num_res_blocks`` decoder blocks per
level, no quant convs, and ``quantize.embedding.weight``.

Used to test the converter without the real checkpoint: a random state dict in this layout must load
strictly into `zoo`'s VQGANMage after conversion.
"""

from __future__ import annotations

from collections.abc import Sequence


def mage_vqgan_shapes(
    *,
    ch: int = 128,
    ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
    num_res_blocks: int = 2,
    embed_dim: int = 256,
    n_embed: int = 1024,
    in_channels: int = 3,
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = (c,)
        shapes[f"{name}.bias"] = (c,)

    def res(name: str, cin: int, cout: int) -> None:
        norm(f"{name}.norm1", cin)
        shapes[f"{name}.conv1.weight"] = (cout, cin, 3, 3)
        norm(f"{name}.norm2", cout)
        shapes[f"{name}.conv2.weight"] = (cout, cout, 3, 3)
        if cin != cout:
            shapes[f"{name}.nin_shortcut.weight"] = (cout, cout, 1, 1)

    levels = len(ch_mult)
    shapes["encoder.conv_in.weight"] = (ch, in_channels, 3, 3)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            res(f"encoder.down.{i}.block.{j}", block_in, ch * mult)
            block_in = ch * mult
    res("encoder.mid.block_1", block_in, block_in)
    res("encoder.mid.block_2", block_in, block_in)
    norm("encoder.norm_out", block_in)
    shapes["encoder.conv_out.weight"] = (embed_dim, block_in, 1, 1)
    shapes["encoder.conv_out.bias"] = (embed_dim,)

    block_in = ch * ch_mult[-1]
    shapes["decoder.conv_in.weight"] = (block_in, embed_dim, 3, 3)
    shapes["decoder.conv_in.bias"] = (block_in,)
    res("decoder.mid.block_1", block_in, block_in)
    res("decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(levels)):
        for j in range(num_res_blocks):
            res(f"decoder.up.{i}.block.{j}", block_in, ch * ch_mult[i])
            block_in = ch * ch_mult[i]
        if i != 0:
            shapes[f"decoder.up.{i}.upsample.conv.weight"] = (block_in, block_in, 3, 3)
            shapes[f"decoder.up.{i}.upsample.conv.bias"] = (block_in,)
    norm("decoder.norm_out", block_in)
    shapes["decoder.conv_out.weight"] = (in_channels, block_in, 3, 3)
    shapes["decoder.conv_out.bias"] = (in_channels,)
    shapes["quantize.embedding.weight"] = (n_embed, embed_dim)
    return shapes
