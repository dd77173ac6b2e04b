"""Upstream SQ-Codec ``ScalarModel.state_dict()`` (key names and shapes), described from the structure of
UniAudio 2.0 ``tools/tokenizer/ReasoningCodec_film/models/scalar24k.py``: weight-normed ``Conv1d`` /
``ConvTranspose1d`` (``weight_g`` ``[out or in, 1, 1]``, ``weight_v``, ``bias``), ``PreProcessor`` /
``PostProcessor`` with plain convs, ``ResEncoderBlock`` (5 ``ResidualUnit`` then ``down_conv``) and
``ResDecoderBlock`` (``up_conv`` without activation, then 5 units), single-slope ``nn.PReLU`` everywhere.

``sqcodec.pth`` wraps it as ``{"codec_model": state_dict}``. Every encoder ``down_conv.activation`` is the same
module-level PReLU instance upstream: its key appears once per block in the state dict but is one parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

SHARED_PRELU = "down_conv.activation.weight"


def sqcodec_shapes(
    latent_dim: int = 136,
    init_channel: int = 64,
    downsample_factors: Sequence[int] = (3, 4, 4, 4, 5),
    num_samples: int = 1,
    default_kernel_size: int = 7,
    delay_kernel_size: int = 5,
    res_kernel_size: int = 7,
) -> dict[str, tuple[int, ...]]:
    """Kernels of the strided convs are twice their strides; the decoder mirrors the encoder."""
    s: dict[str, tuple[int, ...]] = {}
    k = default_kernel_size

    def wn_conv(name: str, cin: int, cout: int, kernel: int) -> None:
        s[f"{name}.bias"] = (cout,)
        s[f"{name}.weight_g"] = (cout, 1, 1)
        s[f"{name}.weight_v"] = (cout, cin, kernel)

    def wn_conv_t(name: str, cin: int, cout: int, kernel: int) -> None:
        s[f"{name}.bias"] = (cout,)
        s[f"{name}.weight_g"] = (cin, 1, 1)
        s[f"{name}.weight_v"] = (cin, cout, kernel)

    def units(name: str, dim: int) -> None:
        for j in range(5):
            wn_conv(f"{name}.convs.{j}.conv1", dim, dim, res_kernel_size)
            wn_conv(f"{name}.convs.{j}.conv2", dim, dim, 1)
            s[f"{name}.convs.{j}.activation1.weight"] = (1,)
            s[f"{name}.convs.{j}.activation2.weight"] = (1,)

    def plain(name: str, dim: int) -> None:
        s[f"{name}.conv.weight"] = (dim, dim, k)
        s[f"{name}.conv.bias"] = (dim,)
        s[f"{name}.activation.weight"] = (1,)

    n = len(downsample_factors)
    wn_conv("encoder.0", 1, init_channel, k)
    i = 1
    if num_samples > 1:
        plain("encoder.1", init_channel)
        i = 2
    for b, stride in enumerate(downsample_factors):
        dim = init_channel * 2**b
        units(f"encoder.{i}", dim)
        wn_conv(f"encoder.{i}.down_conv.layer", dim, 2 * dim, 2 * stride)
        s[f"encoder.{i}.{SHARED_PRELU}"] = (1,)
        i += 1
    wn_conv(f"encoder.{i}", init_channel * 2**n, latent_dim, k)

    wn_conv("decoder.0", latent_dim, init_channel * 2**n, delay_kernel_size)
    for b, stride in enumerate(reversed(tuple(downsample_factors))):
        dim = init_channel * 2 ** (n - b)
        wn_conv_t(f"decoder.{b + 1}.up_conv.layer", dim, dim // 2, 2 * stride)
        units(f"decoder.{b + 1}", dim // 2)
    i = n + 1
    if num_samples > 1:
        plain(f"decoder.{i}", init_channel)
        i += 1
    wn_conv(f"decoder.{i}", init_channel, 1, k)
    return s


def upstream_parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    """What ``sum(p.numel() for p in ScalarModel(...).parameters())`` gives: the shared PReLU once."""
    total, shared_seen = 0, False
    for key, shape in shapes.items():
        if key.endswith(SHARED_PRELU):
            if shared_seen:
                continue
            shared_seen = True
        n = 1
        for d in shape:
            n *= d
        total += n
    return total
