"""The generator part of WavTokenizer's Lightning ``state_dict`` (key names and shapes), described from its
structure: ``decoder/feature_extractors.py`` (``EncodecFeatures``: SEANet encoder and decoder with
weight norm, ``ResidualVectorQuantizer``), ``encoder/modules/{seanet,conv,lstm}.py``,
``encoder/quantization/core_vq.py``, ``decoder/models.py`` (``VocosBackbone`` with ``pos_net``),
``decoder/modules.py`` and ``decoder/heads.py`` (``ISTFTHead``) of jishengpeng/WavTokenizer.

Used to test the converter without the 1.7 GB checkpoint, and to count upstream's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

ENC = "feature_extractor.encodec.encoder.model"
DEC = "feature_extractor.encodec.decoder.model"


def _wn_conv(shapes: dict, name: str, cin: int, cout: int, k: int, transpose: bool = False) -> None:
    """An EnCodec ``SConv1d``/``SConvTranspose1d`` with weight norm: ``{name}.conv.conv.weight_{g,v}``, bias."""
    inner = "convtr.convtr" if transpose else "conv.conv"
    v = (cin, cout, k) if transpose else (cout, cin, k)
    shapes[f"{name}.{inner}.weight_g"] = (v[0], 1, 1)
    shapes[f"{name}.{inner}.weight_v"] = v
    shapes[f"{name}.{inner}.bias"] = (cout,)


def _lstm(shapes: dict, name: str, dim: int, layers: int) -> None:
    for i in range(layers):
        shapes[f"{name}.lstm.weight_ih_l{i}"] = (4 * dim, dim)
        shapes[f"{name}.lstm.weight_hh_l{i}"] = (4 * dim, dim)
        shapes[f"{name}.lstm.bias_ih_l{i}"] = (4 * dim,)
        shapes[f"{name}.lstm.bias_hh_l{i}"] = (4 * dim,)


def _resblock(shapes: dict, name: str, dim: int) -> None:
    _wn_conv(shapes, f"{name}.block.1", dim, dim // 2, 3)
    _wn_conv(shapes, f"{name}.block.3", dim // 2, dim, 1)
    _wn_conv(shapes, f"{name}.shortcut", dim, dim, 1)


def seanet_encoder_shapes(ratios: Sequence[int], n_filters: int = 32, dimension: int = 512) -> dict:
    shapes: dict[str, tuple[int, ...]] = {}
    _wn_conv(shapes, f"{ENC}.0", 1, n_filters, 7)
    i, width = 1, n_filters
    for ratio in reversed(tuple(ratios)):
        _resblock(shapes, f"{ENC}.{i}", width)
        _wn_conv(shapes, f"{ENC}.{i + 2}", width, 2 * width, 2 * ratio)  # i + 1 is the ELU
        i, width = i + 3, 2 * width
    _lstm(shapes, f"{ENC}.{i}", width, 2)
    _wn_conv(shapes, f"{ENC}.{i + 2}", width, dimension, 7)
    return shapes


def seanet_decoder_shapes(
    n_filters: int = 32, dimension: int = 512, ratios: Sequence[int] = (8, 5, 4, 2)
) -> dict:
    """The SEANet decoder upstream builds (always with ratios 8, 5, 4, 2) but never runs."""
    shapes: dict[str, tuple[int, ...]] = {}
    width = n_filters * 2 ** len(ratios)
    _wn_conv(shapes, f"{DEC}.0", dimension, width, 7)
    _lstm(shapes, f"{DEC}.1", width, 2)
    i = 2
    for ratio in ratios:
        _wn_conv(shapes, f"{DEC}.{i + 1}", width, width // 2, 2 * ratio, transpose=True)
        _resblock(shapes, f"{DEC}.{i + 2}", width // 2)
        i, width = i + 3, width // 2
    _wn_conv(shapes, f"{DEC}.{i + 1}", width, 1, 7)
    return shapes


def backbone_shapes(
    cin: int = 512, dim: int = 768, mlp: int = 2304, layers: int = 12, conds: int = 4
) -> dict:
    shapes: dict[str, tuple[int, ...]] = {
        "backbone.embed.weight": (dim, cin, 7),
        "backbone.embed.bias": (dim,),
    }
    for j in (0, 1, 3, 4):
        p = f"backbone.pos_net.{j}"
        for n in ("norm1", "norm2"):
            shapes[f"{p}.{n}.weight"] = shapes[f"{p}.{n}.bias"] = (dim,)
        for n in ("conv1", "conv2"):
            shapes[f"{p}.{n}.weight"], shapes[f"{p}.{n}.bias"] = (dim, dim, 3), (dim,)
    shapes["backbone.pos_net.2.norm.weight"] = shapes["backbone.pos_net.2.norm.bias"] = (dim,)
    for n in ("q", "k", "v", "proj_out"):
        shapes[f"backbone.pos_net.2.{n}.weight"], shapes[f"backbone.pos_net.2.{n}.bias"] = (
            (dim, dim, 1),
            (dim,),
        )
    shapes["backbone.pos_net.5.weight"] = shapes["backbone.pos_net.5.bias"] = (dim,)
    shapes["backbone.norm.scale.weight"] = shapes["backbone.norm.shift.weight"] = (conds, dim)
    for i in range(layers):
        p = f"backbone.convnext.{i}"
        shapes[f"{p}.dwconv.weight"], shapes[f"{p}.dwconv.bias"] = (dim, 1, 7), (dim,)
        shapes[f"{p}.norm.scale.weight"] = shapes[f"{p}.norm.shift.weight"] = (conds, dim)
        shapes[f"{p}.pwconv1.weight"], shapes[f"{p}.pwconv1.bias"] = (mlp, dim), (mlp,)
        shapes[f"{p}.pwconv2.weight"], shapes[f"{p}.pwconv2.bias"] = (dim, mlp), (dim,)
        shapes[f"{p}.gamma"] = (dim,)
    shapes["backbone.final_layer_norm.weight"] = shapes["backbone.final_layer_norm.bias"] = (dim,)
    return shapes


QUANTIZER = "feature_extractor.encodec.quantizer.vq.layers.0._codebook"
BUFFERS = (
    "head.istft.window",
    *(f"{QUANTIZER}.{n}" for n in ("inited", "cluster_size", "embed", "embed_avg")),
)


def wavtokenizer_shapes(
    ratios: Sequence[int] = (8, 5, 4, 2), codebook_size: int = 4096, **sizes: int
) -> dict:
    """Generator keys of the Lightning checkpoint (the discriminators and losses are left out)."""
    dim, cin = sizes.get("dim", 768), sizes.get("latent_dim", 512)
    n_filters = sizes.get("n_filters", 32)
    hop = 1
    for r in ratios:
        hop *= r
    shapes = seanet_encoder_shapes(ratios, n_filters, cin)
    shapes.update(seanet_decoder_shapes(n_filters, cin))
    shapes[f"{QUANTIZER}.inited"] = (1,)
    shapes[f"{QUANTIZER}.cluster_size"] = (codebook_size,)
    shapes[f"{QUANTIZER}.embed"] = shapes[f"{QUANTIZER}.embed_avg"] = (codebook_size, cin)
    shapes.update(
        backbone_shapes(
            cin, dim, sizes.get("intermediate_dim", 2304), sizes.get("num_layers", 12), sizes.get("conds", 4)
        )
    )
    shapes["head.out.weight"], shapes["head.out.bias"] = (4 * hop + 2, dim), (4 * hop + 2,)
    shapes["head.istft.window"] = (4 * hop,)
    return shapes


def inference_parameter_count(shapes: dict) -> int:
    """Parameters upstream uses at inference: everything but the unused decoder and the buffers."""
    total = 0
    for key, shape in shapes.items():
        if key.startswith("feature_extractor.encodec.decoder.") or key in BUFFERS:
            continue
        n = 1
        for s in shape:
            n *= s
        total += n
    return total
