"""Key names and shapes of an upstream ResTok state dict, for converter tests without the real checkpoint.

Source: Kwai-Kolors/ResTok @ e0059cbae1858a9da66e4ba32d4db686a5db4996 (Apache-2.0):
- ``modeling/restok.py``: top level ``encoder``, ``decoder``, ``pixel_encoder``, ``pixel_decoder``,
  ``quantize.embedding`` (``nn.Embedding``), and with ``use_vf`` the bias-free 1x1 convs ``vf_proj`` and
  ``vf_proj_dec`` (the frozen ``foundation_model.*`` is not enumerated here);
- ``modeling/modules/blocks.py``: ``ResTokEncoder`` (``patch_embed`` 1x1 conv from the 256-channel CNN
  output, ``ln_pre``, ``blocks.N``, ``ln_post``, ParameterLists ``level_embedding`` and
  ``latent_token_level_embedding`` of ``[1, width]`` entries, per-level 1x1 convs ``conv_out.N``),
  ``ResTokDecoder`` (``latent_mask_token``, ``mask_token``, ``feat_mask_token``, ``ln_pre``, ``blocks.N``,
  ``ln_post``, ``ffn`` 1x1 conv to 256, ``latent_token_level_embedding.N``, ``decoder_embed.N`` linears),
  and ``TransformerBlock``/``Attention`` (fused bias-free ``qkv`` plus ``q_bias``/``v_bias``; ``k_bias``
  is a non-persistent buffer; LayerNorm ``q_norm``/``k_norm`` over the head dimension; ``gamma_1/2``);
- ``modeling/modules/maskgit_vqgan.py``: ``Encoder``/``Decoder`` with ``ResnetBlock``s (bias-free 3x3
  convs, bias-free 1x1 ``nin_shortcut`` of shape out x out when widths differ), ``Conv2dSame`` layers;
- config ``configs/training/ResTok/restok_l_128.yaml`` (large/large, 128 latents, ``hierarchy_stages`` 4,
  ``multi_quant``, ``vae_encoder``, ``use_vf: dinov3``, decoder feature supervision).
"""

from __future__ import annotations


def _vit_block(prefix: str, width: int, heads: int) -> dict[str, tuple[int, ...]]:
    head_dim = width // heads
    return {
        f"{prefix}.gamma_1": (width,),
        f"{prefix}.gamma_2": (width,),
        f"{prefix}.attn.q_bias": (width,),
        f"{prefix}.attn.v_bias": (width,),
        f"{prefix}.attn.qkv.weight": (3 * width, width),
        f"{prefix}.attn.q_norm.weight": (head_dim,),
        f"{prefix}.attn.q_norm.bias": (head_dim,),
        f"{prefix}.attn.k_norm.weight": (head_dim,),
        f"{prefix}.attn.k_norm.bias": (head_dim,),
        f"{prefix}.attn.proj.weight": (width, width),
        f"{prefix}.attn.proj.bias": (width,),
        f"{prefix}.mlp.fc1.weight": (4 * width, width),
        f"{prefix}.mlp.fc1.bias": (4 * width,),
        f"{prefix}.mlp.fc2.weight": (width, 4 * width),
        f"{prefix}.mlp.fc2.bias": (width,),
        f"{prefix}.norm1.weight": (width,),
        f"{prefix}.norm1.bias": (width,),
        f"{prefix}.norm2.weight": (width,),
        f"{prefix}.norm2.bias": (width,),
    }


def _norm(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _resnet(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    out = {
        **_norm(f"{prefix}.norm1", cin),
        f"{prefix}.conv1.weight": (cout, cin, 3, 3),
        **_norm(f"{prefix}.norm2", cout),
        f"{prefix}.conv2.weight": (cout, cout, 3, 3),
    }
    if cin != cout:
        out[f"{prefix}.nin_shortcut.weight"] = (cout, cout, 1, 1)
    return out


def _maskgit(ch: int, mult: tuple[int, ...], blocks: int, z: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {"pixel_encoder.conv_in.weight": (ch, 3, 3, 3)}
    widths = [ch * m for m in (1, *mult)]
    for i in range(len(mult)):
        for j in range(blocks):
            out.update(
                _resnet(
                    f"pixel_encoder.down.{i}.block.{j}", widths[i] if j == 0 else widths[i + 1], widths[i + 1]
                )
            )
    top = ch * mult[-1]
    for j in range(blocks):
        out.update(_resnet(f"pixel_encoder.mid.{j}", top, top))
    out.update(_norm("pixel_encoder.norm_out", top))
    out.update({"pixel_encoder.conv_out.weight": (z, top, 1, 1), "pixel_encoder.conv_out.bias": (z,)})
    out.update({"pixel_decoder.conv_in.weight": (top, z, 3, 3), "pixel_decoder.conv_in.bias": (top,)})
    for j in range(blocks):
        out.update(_resnet(f"pixel_decoder.mid.{j}", top, top))
    for i in range(len(mult)):
        cin = ch * (mult[i + 1] if i + 1 < len(mult) else mult[-1])
        for j in range(blocks):
            out.update(
                _resnet(f"pixel_decoder.up.{i}.block.{j}", cin if j == 0 else ch * mult[i], ch * mult[i])
            )
        if i > 0:
            c = ch * mult[i]
            out.update(
                {
                    f"pixel_decoder.up.{i}.upsample_conv.weight": (c, c, 3, 3),
                    f"pixel_decoder.up.{i}.upsample_conv.bias": (c,),
                }
            )
    out.update(_norm("pixel_decoder.norm_out", ch * mult[0]))
    out.update(
        {"pixel_decoder.conv_out.weight": (3, ch * mult[0], 3, 3), "pixel_decoder.conv_out.bias": (3,)}
    )
    return out


def restok_shapes(
    *,
    width: int = 1024,
    depth: int = 24,
    heads: int = 16,
    num_latent_tokens: int = 128,
    hierarchy_stages: int = 4,
    token_size: int = 8,
    codebook_size: int = 8192,
    use_vf: bool = True,
    vf_dim: int = 1024,
    ch: int = 128,
    mult: tuple[int, ...] = (1, 1, 2, 2, 4),
    res_blocks: int = 2,
    z: int = 256,
) -> dict[str, tuple[int, ...]]:
    """Upstream ``ResTok(config).state_dict()`` shapes (without ``foundation_model.*``)."""
    n_levels = num_latent_tokens.bit_length()  # 1, 1, 2, ..., n/2
    out: dict[str, tuple[int, ...]] = {
        "encoder.patch_embed.weight": (width, z, 1, 1),
        "encoder.patch_embed.bias": (width,),
    }
    out.update(_norm("encoder.ln_pre", width))
    for i in range(depth):
        out.update(_vit_block(f"encoder.blocks.{i}", width, heads))
    out.update(_norm("encoder.ln_post", width))
    for i in range(hierarchy_stages):
        out[f"encoder.level_embedding.{i}"] = (1, width)
    for i in range(n_levels):
        out[f"encoder.latent_token_level_embedding.{i}"] = (1, width)
        out[f"encoder.conv_out.{i}.weight"] = (token_size, width, 1, 1)
        out[f"encoder.conv_out.{i}.bias"] = (token_size,)
    out["decoder.latent_mask_token"] = (1, 1, token_size)
    out["decoder.mask_token"] = (1, 1, width)
    if use_vf:
        out["decoder.feat_mask_token"] = (1, 1, width)
    out.update(_norm("decoder.ln_pre", width))
    for i in range(depth):
        out.update(_vit_block(f"decoder.blocks.{i}", width, heads))
    out.update(_norm("decoder.ln_post", width))
    out.update({"decoder.ffn.weight": (z, width, 1, 1), "decoder.ffn.bias": (z,)})
    for i in range(n_levels):
        out[f"decoder.latent_token_level_embedding.{i}"] = (1, width)
        out[f"decoder.decoder_embed.{i}.weight"] = (width, token_size)
        out[f"decoder.decoder_embed.{i}.bias"] = (width,)
    out.update(_maskgit(ch, mult, res_blocks, z))
    out["quantize.embedding.weight"] = (codebook_size, token_size)
    if use_vf:
        out["vf_proj.weight"] = (vf_dim, width, 1, 1)
        out["vf_proj_dec.weight"] = (vf_dim, width, 1, 1)
    return out
