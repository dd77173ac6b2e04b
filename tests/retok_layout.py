"""The state-dict layout of ReTok's ``VQVitModelPlus`` (key names and shapes), described from its structure.

Source of the names: zfu006/ReTok @ ffaa8a7, ``tokenizer/tokenizer_image/vq/vq_vit_model.py``
(``VQVitModelPlus``: ``encoder``, ``s2to1encoder``, ``s1to2decoder``, ``decoder``, ``quantize``,
``quant_conv``, ``post_quant_conv``) and ``blocks.py`` (``Encoder``/``Decoder`` with ``conv_blocks``,
``mid``, ``adaptive``; ``ViTEncoder``/``ViTDecoder`` with DETR ``TransformerDecoderLayer`` s built on
``nn.MultiheadAttention``), as configured by ``configs/vq/VQ_SB256.yaml`` (``use_attn: False``,
``adaptive_gn: True``, ``d2s_up: True``, ``distill_depth: 3``). For the paper size this enumerates the
same 648 entries (232,686,347 parameters plus the 65,536-entry ``codebook_used`` buffer) as upstream's
module built from that config on the meta device.
"""

from __future__ import annotations

from collections.abc import Sequence

from llamagen_layout import LdmShapes


def retok_shapes(
    *,
    ch: int = 128,
    ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
    num_res_blocks: int = 2,
    z_channels: int = 256,
    encoder_width: int = 512,
    encoder_layers: int = 6,
    decoder_width: int = 768,
    decoder_layers: int = 12,
    num_tokens: int = 256,
    min_tokens: int = 32,
    grid: int = 16,
    codebook_size: int = 16384,
    codebook_dim: int = 8,
    distill_dim: int = 768,
    in_channels: int = 3,
) -> dict[str, tuple[int, ...]]:
    shapes = LdmShapes()
    conv, norm, res = shapes.conv, shapes.norm, shapes.res

    def linear(name: str, cin: int, cout: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin)
        shapes[f"{name}.bias"] = (cout,)

    def qformer(name: str, width: int, layers: int) -> None:
        for i in range(layers):
            for attn in ("self_attn", "multihead_attn"):
                shapes[f"{name}.transformer.{i}.{attn}.in_proj_weight"] = (3 * width, width)
                shapes[f"{name}.transformer.{i}.{attn}.in_proj_bias"] = (3 * width,)
                linear(f"{name}.transformer.{i}.{attn}.out_proj", width, width)
            linear(f"{name}.transformer.{i}.linear1", width, 4 * width)
            linear(f"{name}.transformer.{i}.linear2", 4 * width, width)
            for n in (1, 2, 3):
                norm(f"{name}.transformer.{i}.norm{n}", width)

    levels = len(ch_mult)
    conv("encoder.conv_in", in_channels, ch, 3)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            res(f"encoder.conv_blocks.{i}.res.{j}", block_in, ch * mult)
            block_in = ch * mult
        if i != levels - 1:
            conv(f"encoder.conv_blocks.{i}.downsample.conv", block_in, block_in, 3)
    res("encoder.mid.0", block_in, block_in)
    res("encoder.mid.1", block_in, block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", block_in, z_channels, 3)

    enc = "s2to1encoder"
    linear(f"{enc}.encoder_embed", z_channels, encoder_width)
    norm(f"{enc}.ln_pre", z_channels)
    shapes[f"{enc}.positional_embedding"] = (grid * grid, 1, encoder_width)
    shapes[f"{enc}.latent_token_positional_embedding"] = (num_tokens, 1, encoder_width)
    shapes[f"{enc}.latent_token_positional_embedding_comp"] = (num_tokens - min_tokens, 1, encoder_width)
    linear(f"{enc}.global_proj", encoder_width, encoder_width)
    qformer(enc, encoder_width, encoder_layers)
    norm(f"{enc}.ln_post", encoder_width)
    conv(f"{enc}.conv_out", encoder_width, z_channels, 1)

    dec = "s1to2decoder"
    linear(f"{dec}.decoder_embed", z_channels, decoder_width)
    norm(f"{dec}.ln_pre", z_channels)
    shapes[f"{dec}.positional_embedding"] = (grid * grid, 1, decoder_width)
    shapes[f"{dec}.latent_token_positional_embedding"] = (num_tokens, 1, decoder_width)
    shapes[f"{dec}.latent_token_positional_embedding_comp"] = (num_tokens - min_tokens, 1, decoder_width)
    qformer(dec, decoder_width, decoder_layers)
    norm(f"{dec}.ln_post", decoder_width)
    conv(f"{dec}.conv_out", decoder_width, z_channels, 3)
    linear(f"{dec}.distill_mlp.0", decoder_width, 4 * decoder_width)
    linear(f"{dec}.distill_mlp.2", 4 * decoder_width, 4 * decoder_width)
    linear(f"{dec}.distill_mlp.4", 4 * decoder_width, distill_dim)

    block_in = ch * ch_mult[-1]
    conv("decoder.conv_in", z_channels, block_in, 3)
    res("decoder.mid.0", block_in, block_in)
    res("decoder.mid.1", block_in, block_in)
    for j, mult in enumerate(reversed(ch_mult)):
        linear(f"decoder.adaptive.{j}.gamma", z_channels, block_in)
        linear(f"decoder.adaptive.{j}.beta", z_channels, block_in)
        for r in range(num_res_blocks + 1):
            res(f"decoder.conv_blocks.{j}.res.{r}", block_in, ch * mult)
            block_in = ch * mult
        if j != levels - 1:
            conv(f"decoder.conv_blocks.{j}.upsample.conv1", block_in, 4 * block_in, 3)
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", block_in, in_channels, 3)

    shapes["quantize.embedding.weight"] = (codebook_size, codebook_dim)
    shapes["quantize.codebook_used"] = (65536,)
    conv("quant_conv", z_channels, codebook_dim, 1)
    conv("post_quant_conv", codebook_dim, z_channels, 1)
    return shapes
