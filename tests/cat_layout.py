"""MOSS-Audio-Tokenizer's ``state_dict`` (key names and shapes), described from its structure:
``modeling_moss_audio_tokenizer.py`` (``MossAudioTokenizerModel``: ``encoder``/``decoder`` ModuleLists of
``PatchedPretransform`` and ``ProjectedTransformer`` entries, ``ResidualLFQ`` quantizer with weight-normed
1x1 convs) and ``config.json`` of OpenMOSS/MOSS-Audio-Tokenizer.

Used to test the converter without the 7 GB checkpoint, and to count upstream's parameters.
"""

from __future__ import annotations

import math
from typing import Any


def _transformer(**kw: Any) -> dict[str, Any]:
    return {"module_type": "Transformer", **kw}


def _patch(size: int) -> dict[str, Any]:
    return {"module_type": "PatchedPretransform", "patch_size": size}


def upstream_config(
    patch_size: int = 240,
    patches: tuple[int, ...] = (2, 2, 2),
    dims: tuple[int, ...] = (768, 768, 768, 1280),
    depths: tuple[int, ...] = (12, 12, 12, 32),
    heads: tuple[int, ...] = (12, 12, 12, 20),
    ffn_dims: tuple[int, ...] = (3072, 3072, 3072, 5120),
    out_dims: tuple[int, ...] = (384, 384, 640, 768),
    rvq_dim: int = 512,
    num_quantizers: int = 32,
    codebook_size: int = 1024,
    codebook_dim: int = 8,
) -> dict[str, Any]:
    """The fields of upstream's ``config.json`` that shape the weights (defaults: the released model)."""
    encoder: list[dict[str, Any]] = [_patch(patch_size)]
    in_dim = patch_size
    for i, dim in enumerate(dims):
        encoder.append(
            _transformer(
                input_dimension=in_dim,
                output_dimension=out_dims[i],
                d_model=dim,
                num_heads=heads[i],
                num_layers=depths[i],
                dim_feedforward=ffn_dims[i],
            )
        )
        if i < len(patches):
            encoder.append(_patch(patches[i]))
            in_dim = out_dims[i] * patches[i]
    decoder: list[dict[str, Any]] = []
    for i in reversed(range(len(dims))):
        stage = encoder[2 * i + 1]
        decoder.append(
            _transformer(
                input_dimension=stage["output_dimension"],
                output_dimension=stage["input_dimension"],
                d_model=stage["d_model"],
                num_heads=stage["num_heads"],
                num_layers=stage["num_layers"],
                dim_feedforward=stage["dim_feedforward"],
            )
        )
        decoder.append(_patch(encoder[2 * i]["patch_size"]))
    return {
        "encoder_kwargs": encoder,
        "decoder_kwargs": decoder,
        "quantizer_kwargs": {
            "input_dim": out_dims[-1],
            "output_dim": out_dims[-1],
            "rvq_dim": rvq_dim,
            "num_quantizers": num_quantizers,
            "codebook_size": codebook_size,
            "codebook_dim": codebook_dim,
        },
    }


def _wn_conv1x1(shapes: dict, name: str, cin: int, cout: int) -> None:
    """``nn.utils.parametrizations.weight_norm(nn.Conv1d(cin, cout, 1))``."""
    shapes[f"{name}.bias"] = (cout,)
    shapes[f"{name}.parametrizations.weight.original0"] = (cout, 1, 1)
    shapes[f"{name}.parametrizations.weight.original1"] = (cout, cin, 1)


def _projected_transformer(shapes: dict, name: str, stage: dict[str, Any]) -> None:
    d, ff = stage["d_model"], stage["dim_feedforward"]
    if stage["input_dimension"] != d:
        shapes[f"{name}.input_proj.weight"] = (d, stage["input_dimension"])
    for layer in range(stage["num_layers"]):
        p = f"{name}.transformer.layers.{layer}"
        shapes[f"{p}.self_attn.in_projs.0.weight"] = (3 * d, d)
        shapes[f"{p}.self_attn.out_projs.0.weight"] = (d, d)
        for norm in ("norm1", "norm2"):
            shapes[f"{p}.{norm}.weight"] = shapes[f"{p}.{norm}.bias"] = (d,)
        shapes[f"{p}.linear1.weight"] = (ff, d)
        shapes[f"{p}.linear2.weight"] = (d, ff)
        shapes[f"{p}.layer_scale_1.scale"] = shapes[f"{p}.layer_scale_2.scale"] = (d,)
    if stage["output_dimension"] != d:
        shapes[f"{name}.output_proj.weight"] = (stage["output_dimension"], d)


def cat_shapes(config: dict[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """Every key of the released model's ``state_dict`` (weight norm as parametrizations)."""
    config = config or upstream_config()
    shapes: dict[str, tuple[int, ...]] = {}
    for part in ("encoder", "decoder"):
        for i, stage in enumerate(config[f"{part}_kwargs"]):
            if stage["module_type"] == "Transformer":
                _projected_transformer(shapes, f"{part}.{i}", stage)
    q = config["quantizer_kwargs"]
    if q["input_dim"] != q["rvq_dim"]:
        _wn_conv1x1(shapes, "quantizer.input_proj", q["input_dim"], q["rvq_dim"])
    if q["output_dim"] != q["rvq_dim"]:
        _wn_conv1x1(shapes, "quantizer.output_proj", q["rvq_dim"], q["output_dim"])
    for k in range(q["num_quantizers"]):
        _wn_conv1x1(shapes, f"quantizer.quantizers.{k}.in_proj", q["rvq_dim"], q["codebook_dim"])
        _wn_conv1x1(shapes, f"quantizer.quantizers.{k}.out_proj", q["codebook_dim"], q["rvq_dim"])
        shapes[f"quantizer.quantizers.{k}.codebook.weight"] = (q["codebook_size"], q["codebook_dim"])
    return shapes


def parameter_count(shapes: dict[str, tuple[int, ...]], prefix: str = "") -> int:
    return sum(math.prod(s) for k, s in shapes.items() if k.startswith(prefix))


# ---------------------------------------------------------------------------------------------- reference
# A plain re-statement of the released model's inference (``_encode_frame`` / ``_decode_frame``) over an
# upstream state dict, written for the converter test: explicit softmax attention under the banded causal
# mask, RoPE on adjacent pairs in float32, torch's own weight-norm parametrisation for the 1x1 convs.
def _wn_conv(state: dict, name: str):
    import torch

    if f"{name}.parametrizations.weight.original1" not in state:  # equal widths: upstream's identity
        return torch.nn.Identity()
    v = state[f"{name}.parametrizations.weight.original1"]
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(v.shape[1], v.shape[0], 1))
    conv.load_state_dict(
        {k.removeprefix(f"{name}."): t for k, t in state.items() if k.startswith(f"{name}.")}
    )
    return conv


def _reference_stage(state: dict, name: str, stage: dict, h, context: int, max_period: float = 1e4):
    import torch
    import torch.nn.functional as F

    x = h.transpose(1, 2)
    if f"{name}.input_proj.weight" in state:
        x = x @ state[f"{name}.input_proj.weight"].T
    d, heads = stage["d_model"], stage["num_heads"]
    hd = d // heads
    t = x.shape[1]
    pos = torch.arange(t, dtype=torch.float32)
    angle = pos[:, None] * torch.exp(
        torch.arange(hd // 2, dtype=torch.float32) * (-math.log(max_period) * 2 / hd)
    )
    cos, sin = angle.cos(), angle.sin()
    delta = pos[:, None] - pos[None, :]
    allowed = (delta >= 0) & (delta < context)

    def rope(u):
        re, im = u[..., 0::2], u[..., 1::2]
        return torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1).flatten(-2)

    for layer in range(stage["num_layers"]):
        p = f"{name}.transformer.layers.{layer}"
        y = F.layer_norm(x, (d,), state[f"{p}.norm1.weight"], state[f"{p}.norm1.bias"], 1e-5)
        q, k, v = (
            (y @ state[f"{p}.self_attn.in_projs.0.weight"].T).view(x.shape[0], t, 3, heads, hd).unbind(2)
        )
        q, k, v = (u.transpose(1, 2) for u in (q, k, v))
        scores = (rope(q) @ rope(k).transpose(-1, -2)) / math.sqrt(hd)
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
        attn = attn.transpose(1, 2).reshape(x.shape[0], t, d) @ state[f"{p}.self_attn.out_projs.0.weight"].T
        x = x + state[f"{p}.layer_scale_1.scale"] * attn
        y = F.layer_norm(x, (d,), state[f"{p}.norm2.weight"], state[f"{p}.norm2.bias"], 1e-5)
        ff = F.gelu(y @ state[f"{p}.linear1.weight"].T) @ state[f"{p}.linear2.weight"].T
        x = x + state[f"{p}.layer_scale_2.scale"] * ff
    if f"{name}.output_proj.weight" in state:
        x = x @ state[f"{name}.output_proj.weight"].T
    return x.transpose(1, 2)


def reference_encode_decode(
    state: dict, config: dict, x, n_quantizers: int, sample_rate: int = 24000, context_seconds: float = 10.0
):
    """Upstream's codes ``[B, n, T]`` for ``x [B, 1, T]`` and its decode of them (``[B, 1, T']``)."""
    import torch
    import torch.nn.functional as F

    hop = math.prod(s["patch_size"] for s in config["encoder_kwargs"] if s["module_type"] != "Transformer")
    h = F.pad(x, (0, -x.shape[-1] % hop))
    rate = float(sample_rate)
    for i, stage in enumerate(config["encoder_kwargs"]):
        if stage["module_type"] == "Transformer":
            h = _reference_stage(state, f"encoder.{i}", stage, h, int(rate * context_seconds))
        else:
            b, c, _ = h.shape
            p = stage["patch_size"]
            h = h.reshape(b, c, -1, p).permute(0, 1, 3, 2).reshape(b, c * p, -1)
            rate /= p
    residual = _wn_conv(state, "quantizer.input_proj")(h)
    codes, summed = [], torch.zeros_like(residual)
    for k in range(n_quantizers):
        stage = f"quantizer.quantizers.{k}"
        codebook = state[f"{stage}.codebook.weight"]
        e = _wn_conv(state, f"{stage}.in_proj")(residual).transpose(1, 2)
        ids = (F.normalize(e, dim=-1) @ F.normalize(codebook, dim=-1).T).argmax(-1)
        q = _wn_conv(state, f"{stage}.out_proj")(codebook[ids].transpose(1, 2))
        codes.append(ids)
        summed, residual = summed + q, residual - q
    h = _wn_conv(state, "quantizer.output_proj")(summed)
    for i, stage in enumerate(config["decoder_kwargs"]):
        if stage["module_type"] == "Transformer":
            h = _reference_stage(state, f"decoder.{i}", stage, h, int(rate * context_seconds))
        else:
            b, cp, n = h.shape
            p = stage["patch_size"]
            h = h.reshape(b, cp // p, p, n).permute(0, 1, 3, 2).reshape(b, cp // p, n * p)
            rate *= p
    return torch.stack(codes, dim=1), h
