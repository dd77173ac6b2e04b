"""BioCodec's ``model_state_dict`` (key names and shapes), described from its structure: ``biocodec/model.py``
(``BioCodecModel._get_optimized_model``: causal SEANet encoder and decoder with weight norm, ``ratios``
(3, 2, 2), two residual blocks per stage, ``true_skip``, ``compress=1``), ``modules/seanet.py``,
``modules/conv.py`` (``SConv1d``/``SConvTranspose1d`` wrapping ``NormConv1d`` with new-style
``parametrizations.weight_norm``) and ``quantization/{quantizer,core_vq}.py`` (``codebook_dim = dim // 8``)
of klean2050/BioCodec-release @ 575bf6e.

Used to test the converter without the released checkpoint, and to count upstream's parameters.
The released file prefixes every key with ``_orig_mod.`` (``torch.compile``); these keys are unprefixed.
"""

from __future__ import annotations

from collections.abc import Sequence


def _wn_conv(shapes: dict, name: str, cin: int, cout: int, k: int, transpose: bool = False) -> None:
    """``SConv1d``/``SConvTranspose1d`` with weight norm: gain ``original0``, direction ``original1``, bias."""
    inner = "convtr.convtr" if transpose else "conv.conv"
    v = (cin, cout, k) if transpose else (cout, cin, k)
    shapes[f"{name}.{inner}.bias"] = (cout,)
    shapes[f"{name}.{inner}.parametrizations.weight.original0"] = (v[0], 1, 1)
    shapes[f"{name}.{inner}.parametrizations.weight.original1"] = v


def _lstm(shapes: dict, name: str, dim: int, layers: int) -> None:
    for i in range(layers):
        shapes[f"{name}.lstm.weight_ih_l{i}"] = (4 * dim, dim)
        shapes[f"{name}.lstm.weight_hh_l{i}"] = (4 * dim, dim)
        shapes[f"{name}.lstm.bias_ih_l{i}"] = (4 * dim,)
        shapes[f"{name}.lstm.bias_hh_l{i}"] = (4 * dim,)


def _resblock(shapes: dict, name: str, dim: int, compress: int, kernel: int) -> None:
    """``SEANetResnetBlock`` with ``true_skip``: ELU, conv k, ELU, conv 1, and an identity shortcut."""
    _wn_conv(shapes, f"{name}.block.1", dim, dim // compress, kernel)
    _wn_conv(shapes, f"{name}.block.3", dim // compress, dim, 1)


def biocodec_shapes(
    ratios: Sequence[int] = (3, 2, 2),
    n_filters: int = 32,
    dimension: int = 128,
    n_residual_layers: int = 2,
    lstm_layers: int = 2,
    compress: int = 1,
    kernel: int = 3,
    num_quantizers: int = 6,
    codebook_size: int = 256,
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    enc, dec = "encoder.model", "decoder.model"
    _wn_conv(shapes, f"{enc}.0", 1, n_filters, kernel)
    i, width = 1, n_filters
    for ratio in reversed(tuple(ratios)):
        for _ in range(n_residual_layers):
            _resblock(shapes, f"{enc}.{i}", width, compress, kernel)
            i += 1
        _wn_conv(shapes, f"{enc}.{i + 1}", width, 2 * width, 2 * ratio)  # i is the ELU
        i, width = i + 2, 2 * width
    if lstm_layers:
        _lstm(shapes, f"{enc}.{i}", width, lstm_layers)
        i += 1
    _wn_conv(shapes, f"{enc}.{i + 1}", width, dimension, kernel)

    _wn_conv(shapes, f"{dec}.0", dimension, width, kernel)
    i = 1
    if lstm_layers:
        _lstm(shapes, f"{dec}.1", width, lstm_layers)
        i = 2
    for ratio in ratios:
        _wn_conv(shapes, f"{dec}.{i + 1}", width, width // 2, 2 * ratio, transpose=True)
        i, width = i + 2, width // 2
        for _ in range(n_residual_layers):
            _resblock(shapes, f"{dec}.{i}", width, compress, kernel)
            i += 1
    _wn_conv(shapes, f"{dec}.{i + 1}", width, 1, kernel)

    code_dim = dimension // 8
    for q in range(num_quantizers):
        p = f"quantizer.vq.layers.{q}"
        shapes[f"{p}.project_in.weight"] = (code_dim, dimension)
        shapes[f"{p}.project_in.bias"] = (code_dim,)
        shapes[f"{p}.project_out.weight"] = (dimension, code_dim)
        shapes[f"{p}.project_out.bias"] = (dimension,)
        shapes[f"{p}._codebook.inited"] = (1,)
        shapes[f"{p}._codebook.cluster_size"] = (codebook_size,)
        shapes[f"{p}._codebook.embed"] = (codebook_size, code_dim)
        shapes[f"{p}._codebook.embed_avg"] = (codebook_size, code_dim)
    return shapes


def parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    """Trainable parameters: everything but the codebooks' buffers."""
    total = 0
    for key, shape in shapes.items():
        if "._codebook." not in key:
            n = 1
            for s in shape:
                n *= s
            total += n
    return total
