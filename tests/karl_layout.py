"""The state-dict layout of upstream's ``KARLTokenizer`` (VQGAN variant) without its base, described from
its structure (ShivamDuggal4/karl @ 5c1a569, ``kolmogorov_tokenizers/karl_vqgan.py`` and
``modules/latent_distillation_modules.py``): CLIP ``ResidualAttentionBlock`` stacks under
``encoder.transformer`` and ``decoder.transformer``, position grids ``[width, 64, 64]``, 512-row latent
and per-index tables, 19 quality embeddings, the halting and pre-quantizer heads, the decoder's
``ffn`` to the base codebook, a ``patch_embed`` conv of ``width - base_dim`` channels, and the VQ
codebook ``quantize.embedding.weight``. The base's keys (``base_tokenizer.vqgan.*``) follow
``mage_layout``.
"""

from __future__ import annotations


def karl_shapes(
    *,
    width: int = 1024,
    layers: tuple[int, int] = (8, 8),
    num_latent_tokens: int = 512,
    pos_grid: int = 64,
    codebook_size: int = 4096,
    code_dim: int = 12,
    base_dim: int = 256,
    base_codes: int = 1024,
    patch: int = 16,
    bins: int = 19,
) -> dict[str, tuple[int, ...]]:
    w = width
    shapes: dict[str, tuple[int, ...]] = {
        "encoder_positional_embedding": (w, pos_grid, pos_grid),
        "decoder_positional_embedding": (w, pos_grid, pos_grid),
        "decoder_mask_token": (1, 1, w),
        "decoder_latent_tokens_timestep_embed": (num_latent_tokens, w),
        "latent_tokens": (num_latent_tokens, w),
        "rec_loss_embeddings": (bins, w),
        "pre_quantizer_mlp.weight": (code_dim, w),
        "pre_quantizer_mlp.bias": (code_dim,),
        "halting_mlp.0.weight": (512, w),
        "halting_mlp.0.bias": (512,),
        "halting_mlp.2.weight": (1, 512),
        "halting_mlp.2.bias": (1,),
        "decoder.ffn.0.weight": (2 * w, w),
        "decoder.ffn.0.bias": (2 * w,),
        "decoder.ffn.2.weight": (base_codes, 2 * w),
        "decoder.ffn.2.bias": (base_codes,),
        "decoder_embed.weight": (w, code_dim),
        "decoder_embed.bias": (w,),
        "patch_embed.weight": (w - base_dim, 3, patch, patch),
        "patch_embed.bias": (w - base_dim,),
        "quantize.embedding.weight": (codebook_size, code_dim),
    }
    for norm in (
        "encoder_ln_pre",
        "encoder_ln_post_halt",
        "encoder_ln_post",
        "decoder.ln_pre",
        "decoder.ln_post",
    ):
        shapes[f"{norm}.weight"] = shapes[f"{norm}.bias"] = (w,)
    for side, depth in zip(("encoder", "decoder"), layers, strict=True):
        for i in range(depth):
            block = f"{side}.transformer.{i}"
            for norm in ("ln_1", "ln_2"):
                shapes[f"{block}.{norm}.weight"] = shapes[f"{block}.{norm}.bias"] = (w,)
            shapes[f"{block}.attn.in_proj_weight"] = (3 * w, w)
            shapes[f"{block}.attn.in_proj_bias"] = (3 * w,)
            shapes[f"{block}.attn.out_proj.weight"] = (w, w)
            shapes[f"{block}.attn.out_proj.bias"] = (w,)
            shapes[f"{block}.mlp.c_fc.weight"] = (4 * w, w)
            shapes[f"{block}.mlp.c_fc.bias"] = (4 * w,)
            shapes[f"{block}.mlp.c_proj.weight"] = (w, 4 * w)
            shapes[f"{block}.mlp.c_proj.bias"] = (w,)
    return shapes
