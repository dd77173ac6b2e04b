"""Parts of ReasoningCodec's checkpoint ``state_dict`` (key names and shapes), described from the structure of
UniAudio 2.0 ``tools/tokenizer/ReasoningCodec_film/``: ``models/transformer_1d_flow.py`` (``Transformer1DModel``,
``ProjectLayer``, ``AdaLayerNormSingleFlow``), ``models/attention.py`` (diffusers ``BasicTransformerBlock`` /
``FeedForward``), ``models/model_config.json`` and ``models/AudioDiffusion1D.py``.

Used to test converters without the 15 GB checkpoint, and to count upstream's parameters. Each part of the
model has its own function; buffers are listed separately so parameter counts can leave them out.
"""

from __future__ import annotations

DIT = "cfm_wrapper.estimator"

# Key suffixes of persistent buffers (in the state dict, not parameters).
BUFFER_SUFFIXES: tuple[str, ...] = ("pos_embed.pe",)


def dit_shapes(
    in_channels: int = 1040,
    out_channels: int = 136,
    heads: int = 24,
    head_dim: int = 64,
    depth: int = 32,
    max_positions: int = 3000,
    time_freq_dim: int = 512,
    prefix: str = DIT,
) -> dict[str, tuple[int, ...]]:
    """The flow-matching estimator, defaults from ``model_config.json``.

    ``norm_elementwise_affine=false``: the block/out LayerNorms have no parameters; no ``norm3`` (ada_norm_single),
    no ``attn2`` (no cross attention); ``use_additional_conditions=False``: no resolution/aspect embedders.
    """
    dim = heads * head_dim
    ff = 4 * dim
    s: dict[str, tuple[int, ...]] = {}

    def linear(name: str, cin: int, cout: int) -> None:
        s[f"{prefix}.{name}.weight"] = (cout, cin)
        s[f"{prefix}.{name}.bias"] = (cout,)

    def project(name: str, cin: int, cout: int) -> None:  # ProjectLayer: Conv1d k3 + Linear
        s[f"{prefix}.{name}.ffn_1.weight"] = (cout, cin, 3)
        s[f"{prefix}.{name}.ffn_1.bias"] = (cout,)
        linear(f"{name}.ffn_2", cout, cout)

    project("proj_in", in_channels, dim)
    s[f"{prefix}.pos_embed.pe"] = (1, max_positions, dim)
    for i in range(depth):
        b = f"transformer_blocks.{i}"
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            linear(f"{b}.attn1.{proj}", dim, dim)
        linear(f"{b}.ff.net.0.proj", dim, ff)
        linear(f"{b}.ff.net.2", ff, dim)
        s[f"{prefix}.{b}.scale_shift_table"] = (6, dim)
    s[f"{prefix}.scale_shift_table"] = (2, dim)
    project("proj_out", dim, out_channels)
    linear("adaln_single.emb.timestep_embedder.linear_1", time_freq_dim, dim)
    linear("adaln_single.emb.timestep_embedder.linear_2", dim, dim)
    linear("adaln_single.linear", dim, 6 * dim)
    return s


def count(shapes: dict[str, tuple[int, ...]], buffer_suffixes: tuple[str, ...] = BUFFER_SUFFIXES) -> int:
    """Number of parameters in a layout, leaving out keys that end with a buffer suffix."""
    total = 0
    for key, shape in shapes.items():
        if key.endswith(buffer_suffixes):
            continue
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


# ---------------------------------------------------------------------------------------------------------------
# Encoder-side parts (reasoning branch, reconstruction branch, VQs) go below, in their own functions.


def _linear(s: dict, name: str, cin: int, cout: int, bias: bool = True) -> None:
    s[f"{name}.weight"] = (cout, cin)
    if bias:
        s[f"{name}.bias"] = (cout,)


def _conv(s: dict, name: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
    s[f"{name}.weight"] = (cout, cin, k)
    if bias:
        s[f"{name}.bias"] = (cout,)


def _weight_norm_linear(s: dict, name: str, cin: int, cout: int, bias: bool) -> None:
    """``torch.nn.utils.parametrizations.weight_norm`` on a Linear: g ``original0 [out, 1]``, v ``original1``."""
    s[f"{name}.parametrizations.weight.original0"] = (cout, 1)
    s[f"{name}.parametrizations.weight.original1"] = (cout, cin)
    if bias:
        s[f"{name}.bias"] = (cout,)


# vector-quantize-pytorch ``EuclideanCodebook`` buffers (EMA codebooks: ``embed`` is a buffer too).
VQ_BUFFERS: tuple[str, ...] = (
    "_codebook.initted",
    "_codebook.cluster_size",
    "_codebook.embed_avg",
    "_codebook.embed",
)


def rvq_shapes(prefix: str, dim: int, num_quantizers: int, codebook_size: int, codebook_dim: int) -> dict:
    """vector-quantize-pytorch ``ResidualVQ(dim, codebook_dim=d)``: one shared projection pair, then per layer an
    EMA ``EuclideanCodebook`` with a leading ``num_codebooks = 1`` axis."""
    s: dict[str, tuple[int, ...]] = {}
    if codebook_dim != dim:
        _linear(s, f"{prefix}.project_in", dim, codebook_dim)
        _linear(s, f"{prefix}.project_out", codebook_dim, dim)
    for i in range(num_quantizers):
        p = f"{prefix}.layers.{i}._codebook"
        s[f"{p}.initted"] = (1,)
        s[f"{p}.cluster_size"] = (1, codebook_size)
        s[f"{p}.embed_avg"] = (1, codebook_size, codebook_dim)
        s[f"{p}.embed"] = (1, codebook_size, codebook_dim)
    return s


def query_block_shapes(prefix: str, dim: int, head_dim: int = 128, mult: int = 4) -> dict:
    """``modules/transformer.py`` ``TransformerBlock(power_normalized=True, layer_scale=True, add_rope=True,
    qk_norm=True)``: norms removed, weight-normalised linears, GLU feed-forward, ``rope.inv_freq`` buffer."""
    s: dict[str, tuple[int, ...]] = {}
    _weight_norm_linear(s, f"{prefix}.self_attn.to_qkv", dim, 3 * dim, bias=False)
    _weight_norm_linear(s, f"{prefix}.self_attn.to_out", dim, dim, bias=False)
    for norm in ("q_norm", "k_norm"):
        s[f"{prefix}.self_attn.{norm}.weight"] = s[f"{prefix}.self_attn.{norm}.bias"] = (head_dim,)
    s[f"{prefix}.self_attn_scale.scale"] = (dim,)
    _weight_norm_linear(s, f"{prefix}.ff.ff.0.proj", dim, 2 * mult * dim, bias=True)
    _weight_norm_linear(s, f"{prefix}.ff.ff.2", mult * dim, dim, bias=True)
    s[f"{prefix}.ff_scale.scale"] = (dim,)
    s[f"{prefix}.rope.inv_freq"] = (max(head_dim // 2, 32) // 2,)
    return s


def audio_thinking_shapes(
    dim: int = 768,
    whisper_dim: int = 1024,
    ssl_dim: int = 1024,
    depth: int = 5,
    head_dim: int = 128,
    num_quantizers: int = 8,
    codebook_size: int = 4096,
    codebook_dim: int = 64,
) -> dict:
    """``AudioThinking``: query token, Transformer, merge projection, reasoning RVQ, Whisper downsampling."""
    p = "audio_thinking"
    s: dict[str, tuple[int, ...]] = {f"{p}.cls_token": (1, dim)}
    for i in range(depth):
        s.update(query_block_shapes(f"{p}.encoder_transformers.{i}", dim, head_dim))
    _linear(s, f"{p}.semantic_merge_proj", whisper_dim + ssl_dim, dim)
    s.update(rvq_shapes(f"{p}.reasoning_vq", dim, num_quantizers, codebook_size, codebook_dim))
    _conv(s, f"{p}.down_sampling_layer_whisper", whisper_dim, whisper_dim, 2)
    return s


def semantic_decoder_shapes(
    prefix: str, code_dim: int, out: int, channels: int, strides: tuple[int, ...]
) -> dict:
    """``models/semantic_decoder.py`` ``Decoder``: conv1 (no bias), blocks (conv or transposed conv + 2 residual
    units with bias-free convs), conv2 (no bias)."""
    s: dict[str, tuple[int, ...]] = {}
    _conv(s, f"{prefix}.conv1.conv", code_dim, channels, 3, bias=False)
    for i, stride in enumerate(strides):
        b = f"{prefix}.conv_blocks.{i}"
        if stride == 1:
            _conv(s, f"{b}.conv.conv", channels, channels, 3)
        else:
            s[f"{b}.conv.deconv.weight"] = (channels, channels, 2 * stride)
            s[f"{b}.conv.deconv.bias"] = (channels,)
        for j in range(2):
            _conv(s, f"{b}.res_units.{j}.conv1.conv", channels, channels, 3, bias=False)
            _conv(s, f"{b}.res_units.{j}.conv2", channels, channels, 1, bias=False)
    _conv(s, f"{prefix}.conv2.conv", channels, out, 3, bias=False)
    return s


def reconstruction_shapes(
    dim: int = 768,
    whisper_dim: int = 1024,
    wavlm_dim: int = 768,
    ssl_dim: int = 1024,
    acoustic_quantizers: int = 6,
    codebook_size: int = 8192,
    codebook_dim: int = 32,
) -> dict:
    """``AudioDiffusion1D``'s reconstruction branch: downsampling convs, semantic decoders, three RVQs, fusion
    linears, FiLM heads, reasoning adaptor, condition projection and the padding embedding."""
    s: dict[str, tuple[int, ...]] = {}
    _conv(s, "d_conv_whisper", whisper_dim, whisper_dim, 4)
    _conv(s, "d_conv_wavlm", wavlm_dim, wavlm_dim, 4)
    _conv(s, "d_conv_embedding_semantic", ssl_dim, ssl_dim, 2)
    _conv(s, "d_conv_embedding_acoustic", ssl_dim, ssl_dim, 2)
    s.update(semantic_decoder_shapes("structure_semantic_decoder", dim, ssl_dim, ssl_dim, (1, 2)))
    s.update(semantic_decoder_shapes("pronunciation_decoder", dim, wavlm_dim, wavlm_dim, (2, 2)))
    s.update(rvq_shapes("vq_acoustic", dim, acoustic_quantizers, codebook_size, codebook_dim))
    s.update(rvq_shapes("vq_structure_semantic", dim, 1, codebook_size, codebook_dim))
    s.update(rvq_shapes("vq_pronunciation_semantic", dim, 1, codebook_size, codebook_dim))
    _linear(s, "cond_fusion_layer_semantic", ssl_dim, dim)
    _linear(s, "cond_fusion_layer_acoustic", ssl_dim + whisper_dim, dim)
    _linear(s, "cond_fusion_layer_phone", wavlm_dim, dim)
    for branch in ("phone", "semantic", "acoustic"):
        _linear(s, f"time_film_{branch}", dim, 2 * dim)
    _linear(s, "reason_adaptor", dim, dim)
    _linear(s, "cond_feature_emb", dim, dim)
    s["zero_cond_embedding1"] = (dim,)
    return s


CODEC_BUFFER_SUFFIXES: tuple[str, ...] = (*BUFFER_SUFFIXES, "rope.inv_freq", *VQ_BUFFERS)


def reasoningcodec_shapes(
    *, dit: dict | None = None, reasoning: dict | None = None, reconstruction: dict | None = None
) -> dict:
    """The codec's own part of the checkpoint (teachers and SQ-Codec left out), paper sizes by default."""
    s = audio_thinking_shapes(**(reasoning or {}))
    s.update(reconstruction_shapes(**(reconstruction or {})))
    s.update(dit_shapes(**(dit or {})))
    return s
