"""Running convolutional stacks over long signals in chunks, so peak memory does not grow with the input.

A stack of 1-d convolutions maps each output position to a bounded window of its input (its receptive
field). Cutting the input into chunks that overlap by at least that window on each side, running the
stack on every chunk and keeping only each chunk's central outputs gives what the whole input gives:
the same ids, decodes equal up to float rounding (padding at a chunk's cut only touches outputs that
are thrown away, and chunk starts are aligned to the stack's total stride so every strided layer sees
the same phase). ``conv_context`` bounds the window from a module's convolutions; ``encode_in_chunks``
and ``decode_in_chunks`` do the cutting for down- and upsampling stacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["conv_context", "decode_in_chunks", "decode_in_windows", "encode_in_chunks"]


def conv_context(module: nn.Module) -> float:
    """Upper bound, in units of ``module``'s input positions, on how far one output looks on either side.

    Walks the 1-d (transposed) convolutions in registration order, which is the order the stacks built
    here apply them; parallel branches (residual skips) are counted as if in series, which only
    over-estimates. Each conv of kernel ``k`` and dilation ``d`` met where one position spans ``r`` input
    positions adds ``(k - 1) * d * r``; strides multiply ``r`` (transposed ones divide it). Modules that
    resample outside a conv (pooling, repeating) say so with a ``resample_factor`` attribute, applied
    after their children.
    """

    def visit(node: nn.Module, scale: float) -> tuple[float, float]:
        if isinstance(node, nn.ConvTranspose1d):
            stride = node.stride[0]
            # an output depends on ceil(k / s) inputs; count them at the input's resolution
            return math.ceil(node.kernel_size[0] * node.dilation[0] / stride) * scale, scale / stride
        if isinstance(node, nn.Conv1d):
            span = (node.kernel_size[0] - 1) * node.dilation[0] * scale
            return span, scale * node.stride[0]
        total = 0.0
        for child in node.children():
            span, scale = visit(child, scale)
            total += span
        return total, scale * float(getattr(node, "resample_factor", 1))

    return visit(module, 1.0)[0]


def _map_in_chunks(
    function: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    in_step: int,
    out_step: int,
    chunk_steps: int,
    context_steps: int,
) -> torch.Tensor:
    """``function`` maps every ``in_step`` positions of ``x``'s last axis to ``out_step`` of its output; apply
    it ``chunk_steps`` steps at a time with ``context_steps`` extra steps read on both sides of each chunk
    and keep each chunk's own outputs. A ragged last step (``x`` not a whole number of steps) stays at the
    end of the last chunk, where the whole input has it."""
    length = x.shape[-1]
    steps = math.ceil(length / in_step)
    if steps <= chunk_steps + 2 * context_steps:
        return function(x)
    parts = []
    for first in range(0, steps, chunk_steps):
        last = min(first + chunk_steps, steps)
        start = max(first - context_steps, 0)
        out = function(x[..., start * in_step : min((last + context_steps) * in_step, length)])
        parts.append(out[..., (first - start) * out_step : (last - start) * out_step])
    return torch.cat(parts, dim=-1)


def encode_in_chunks(
    encode: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    hop: int,
    chunk_frames: int,
    context: int,
) -> torch.Tensor:
    """``encode`` (``[B, C, T] -> [B, ..., ceil(T / hop)]``, time last) applied ``chunk_frames`` output frames
    at a time, each chunk read with ``context`` extra input samples on both sides (rounded up to whole
    hops, so every chunk starts on a frame boundary); equal to ``encode(x)`` when ``context`` covers the
    receptive field. Short inputs take one call."""
    return _map_in_chunks(
        encode, x, in_step=hop, out_step=1, chunk_steps=chunk_frames, context_steps=math.ceil(context / hop)
    )


def decode_in_chunks(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    *,
    hop: int,
    chunk_frames: int,
    context_frames: int,
) -> torch.Tensor:
    """``decode`` (``[B, D, F] -> [B, C, F * hop]``) applied ``chunk_frames`` frames at a time, each chunk
    read with ``context_frames`` extra frames on both sides; equal to ``decode(z)`` when they cover the
    receptive field. Short inputs take one call."""
    return _map_in_chunks(
        decode, z, in_step=1, out_step=hop, chunk_steps=chunk_frames, context_steps=context_frames
    )


def decode_in_windows(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    *,
    hop: int,
    window_frames: int,
    overlap_frames: int,
) -> torch.Tensor:
    """``decode`` (``[B, D, F] -> [B, C, F * hop]``) over windows of ``window_frames`` frames that overlap by
    ``overlap_frames``, blended with linear cross-fades.

    For decoders that look at the whole input (attention, GroupNorm over time): the result is not the
    whole-input decode, but each window is decoded as a clip of its own length and memory is bounded by
    one window. Short inputs take one call.
    """
    frames = z.shape[-1]
    if frames <= window_frames:
        return decode(z)
    if not 0 <= overlap_frames < window_frames:
        raise ValueError(f"overlap_frames must lie in [0, {window_frames}), got {overlap_frames}")
    stride = window_frames - overlap_frames
    starts = list(range(0, frames - window_frames, stride)) + [frames - window_frames]
    fade = overlap_frames * hop
    out: torch.Tensor | None = None
    total = torch.zeros(frames * hop, dtype=torch.float32, device=z.device)
    for index, start in enumerate(starts):
        piece = decode(z[..., start : start + window_frames])
        weight = torch.ones(piece.shape[-1], dtype=torch.float32, device=z.device)
        if fade:
            ramp = (torch.arange(fade, dtype=torch.float32, device=z.device) + 0.5) / fade
            if index > 0:
                weight[:fade] = ramp
            if index < len(starts) - 1:
                weight[-fade:] = torch.minimum(weight[-fade:], ramp.flip(0))
        if out is None:
            out = torch.zeros(*piece.shape[:-1], frames * hop, dtype=piece.dtype, device=piece.device)
        span = slice(start * hop, start * hop + piece.shape[-1])
        out[..., span] += piece * weight.to(piece.dtype)
        total[span] += weight
    assert out is not None
    return out / total.to(out.dtype)
