"""The state-dict layout of LlamaGen's ``VQModel`` (key names and shapes), described from its structure.

Used to test the converter without the real checkpoint: a random state dict in this layout must
load strictly into `zoo`'s VQ16 after conversion.
"""

from __future__ import annotations

from collections.abc import Sequence


class LdmShapes(dict):
    """Key -> shape of LDM-style conv blocks (taming/LDM naming, shared by LlamaGen's and MAR's models)."""

    def conv(self, name: str, cin: int, cout: int, k: int) -> None:
        self[f"{name}.weight"] = (cout, cin, k, k)
        self[f"{name}.bias"] = (cout,)

    def norm(self, name: str, c: int) -> None:
        self[f"{name}.weight"] = (c,)
        self[f"{name}.bias"] = (c,)

    def res(self, name: str, cin: int, cout: int) -> None:
        self.norm(f"{name}.norm1", cin)
        self.conv(f"{name}.conv1", cin, cout, 3)
        self.norm(f"{name}.norm2", cout)
        self.conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            self.conv(f"{name}.nin_shortcut", cin, cout, 1)

    def attn(self, name: str, c: int) -> None:
        self.norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            self.conv(f"{name}.{part}", c, c, 1)


def llamagen_vq_shapes(
    *,
    ch: int = 128,
    ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
    num_res_blocks: int = 2,
    z_channels: int = 256,
    codebook_size: int = 16384,
    codebook_dim: int = 8,
    in_channels: int = 3,
) -> dict[str, tuple[int, ...]]:
    shapes = LdmShapes()
    conv, norm, res, attn = shapes.conv, shapes.norm, shapes.res, shapes.attn

    levels = len(ch_mult)
    conv("encoder.conv_in", in_channels, ch, 3)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        block_out = ch * mult
        for j in range(num_res_blocks):
            res(f"encoder.conv_blocks.{i}.res.{j}", block_in, block_out)
            block_in = block_out
            if i == levels - 1:
                attn(f"encoder.conv_blocks.{i}.attn.{j}", block_in)
        if i != levels - 1:
            conv(f"encoder.conv_blocks.{i}.downsample.conv", block_in, block_in, 3)
    res("encoder.mid.0", block_in, block_in)
    attn("encoder.mid.1", block_in)
    res("encoder.mid.2", block_in, block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", block_in, z_channels, 3)

    block_in = ch * ch_mult[-1]
    conv("decoder.conv_in", z_channels, block_in, 3)
    res("decoder.mid.0", block_in, block_in)
    attn("decoder.mid.1", block_in)
    res("decoder.mid.2", block_in, block_in)
    for j, mult in enumerate(reversed(ch_mult)):
        block_out = ch * mult
        for r in range(num_res_blocks + 1):
            res(f"decoder.conv_blocks.{j}.res.{r}", block_in, block_out)
            block_in = block_out
            if j == 0:
                attn(f"decoder.conv_blocks.{j}.attn.{r}", block_in)
        if j != levels - 1:
            conv(f"decoder.conv_blocks.{j}.upsample.conv", block_in, block_in, 3)
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", block_in, in_channels, 3)

    shapes["quantize.embedding.weight"] = (codebook_size, codebook_dim)
    shapes["quantize.codebook_used"] = (65536,)
    conv("quant_conv", z_channels, codebook_dim, 1)
    conv("post_quant_conv", codebook_dim, z_channels, 1)
    return shapes
