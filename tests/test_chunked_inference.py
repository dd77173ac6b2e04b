"""Chunked inference on long audio equals one call over the whole clip (issue 17: memory flat in length).

``zoo.nn.chunking`` cuts the input with the receptive field's overlap; these tests check that the bound
``conv_context`` computes covers the field measured by autograd, that chunked encodes give the same ids
as the whole clip for lengths that are not whole hops, and that WavTokenizer's windowed decode is exact
within one window and continuous across windows.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import zoo
from zoo.nn.chunking import conv_context, decode_in_chunks, decode_in_windows, encode_in_chunks


def measured_reach(fn: nn.Module, length: int, channels: int, position: int) -> tuple[int, int]:
    """Input positions before and after ``position`` that output ``position`` (of a same-rate map) or the
    output frame covering it depends on, from the gradient's support."""
    x = torch.randn(1, channels, length, requires_grad=True)
    with torch.enable_grad():
        y = fn(x)
        ratio = length / y.shape[-1]
        y[..., int(position / ratio)].sum().backward()
    support = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().flatten()
    return position - int(support.min()), int(support.max()) - position


@pytest.mark.parametrize("arch", ["sqcodec_tiny", "wavtokenizer_tiny"])
def test_conv_context_bounds_the_encoders_measured_receptive_field(arch: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(arch).eval()
    if arch == "sqcodec_tiny":
        stack, context = model._run_encoder, model.encoder_context
    else:
        stack = model.encoder.model[: model.encoder.conv_layers]
        context = conv_context(stack)
    length = 8 * math.ceil(context)
    before, after = measured_reach(stack, length, 1, length // 2)
    # the bound is the field's whole span (used on both sides): tight up to the frame's own width
    assert context / 2 < before + after <= context


def test_conv_context_bounds_sqcodecs_decoder_in_frames() -> None:
    torch.manual_seed(0)
    model = zoo.create("sqcodec_tiny").eval()
    frames = 8 * model.decoder_context
    z = torch.randn(1, model.latent_dim, frames, requires_grad=True)
    with torch.enable_grad():
        y = model._run_decoder(z)
        y[..., frames // 2 * model.hop_length].sum().backward()
    support = (z.grad.abs().sum(dim=(0, 1)) > 0).nonzero().flatten()
    span = int(support.max()) - int(support.min())
    assert 2 <= span <= model.decoder_context


def test_resample_factors_are_counted() -> None:
    """SQ-Codec's pooling sits outside its convs; without ``resample_factor`` the bound would be too small."""
    model = zoo.create("sqcodec_tiny")
    pre = model.encoder[1]
    assert pre.resample_factor == 2
    stripped = conv_context(nn.Sequential(model.encoder[0], pre.conv, *model.encoder[2:]))
    assert conv_context(model.encoder) > stripped


@pytest.mark.parametrize("length", [24000 * 2 + 77, 24000 * 2 + 64 * 5])
def test_sqcodec_chunked_encode_and_decode_equal_the_whole_clip(length: int) -> None:
    torch.manual_seed(0)
    model = zoo.create("sqcodec_tiny").eval()
    x = torch.randn(2, 1, length) * 0.2
    with torch.no_grad():
        whole_latents = model._run_encoder(model.pad_to_hop(x))
        whole_audio = model._run_decoder(torch.round(whole_latents * model.levels) / model.levels)
        model.chunk_seconds = 0.1  # 38 frames per chunk: many chunks
        tokens = model.encode(x)
        audio = model.decode(tokens)
    assert torch.equal(tokens.ids, model.ids_from_latents(whole_latents))
    torch.testing.assert_close(audio, whole_audio[..., :length], atol=1e-5, rtol=0)
    assert audio.shape == x.shape


def test_too_little_overlap_changes_the_result() -> None:
    """The equality above depends on the overlap: without it the chunk edges differ."""
    torch.manual_seed(0)
    model = zoo.create("sqcodec_tiny").eval()
    x = torch.randn(1, 1, 24000) * 0.2
    with torch.no_grad():
        whole = model._run_encoder(x)
        cut = encode_in_chunks(model._run_encoder, x, hop=model.hop_length, chunk_frames=40, context=0)
    assert cut.shape == whole.shape and not torch.allclose(cut, whole, atol=1e-4)


def test_training_keeps_one_graph_over_the_clip() -> None:
    model = zoo.create("sqcodec_tiny")
    model.chunk_seconds = 0.01
    x = torch.randn(1, 1, 24000) * 0.2
    out = model(x)
    out.recon.pow(2).mean().backward()
    assert model.encoder[0].weight.grad is not None


def test_wavtokenizer_chunked_encode_gives_the_whole_clips_ids() -> None:
    torch.manual_seed(0)
    model = zoo.create("wavtokenizer_tiny").eval()
    x = torch.randn(2, 1, 24000 * 2 + 77) * 0.2
    with torch.no_grad():
        whole = model.quantizer.encode(model.encoder(x))
        model.chunk_seconds = 0.05
        tokens = model.encode(x)
    assert model.chunk_frames * 10 < tokens.ids.shape[-1]
    assert torch.equal(tokens.ids, whole)


def test_wavtokenizer_windowed_decode() -> None:
    torch.manual_seed(0)
    model = zoo.create("wavtokenizer_tiny").eval()
    x = torch.randn(1, 1, int(24000 * 5.3)) * 0.2
    with torch.no_grad():
        tokens = model.encode(x)
        windowed = model.decode(tokens)  # tiny: 2 s windows, 0.1 s overlap
        model.decode_window = None
        whole = model.decode(tokens)
        model.decode_window = 10.0
        one_window = model.decode(tokens)
    assert windowed.shape == whole.shape == x.shape
    assert torch.equal(one_window, whole)  # within one window the decode is upstream's
    assert not torch.allclose(windowed, whole, atol=1e-6)  # windows really were used
    # the first window's core (before any overlap) is exact
    core = int(24000 * 1.9)
    torch.testing.assert_close(windowed[..., : core // 2], whole[..., : core // 2], atol=0.05, rtol=0)


def test_decode_in_windows_blends_to_the_same_signal() -> None:
    """With a decoder that has no global view, the cross-faded windows add up to the whole decode."""

    def upsample(z: torch.Tensor) -> torch.Tensor:
        return z.repeat_interleave(4, dim=-1)

    z = torch.randn(2, 3, 101)
    out = decode_in_windows(upsample, z, hop=4, window_frames=20, overlap_frames=5)
    torch.testing.assert_close(out, upsample(z))
    no_overlap = decode_in_windows(upsample, z, hop=4, window_frames=20, overlap_frames=0)
    torch.testing.assert_close(no_overlap, upsample(z))
    with pytest.raises(ValueError, match="overlap_frames"):
        decode_in_windows(upsample, z, hop=4, window_frames=20, overlap_frames=20)


def test_decode_in_chunks_keeps_each_chunks_core() -> None:
    conv = nn.Conv1d(3, 2, 5, padding=2)

    def decode(z: torch.Tensor) -> torch.Tensor:
        return conv(z).repeat_interleave(3, dim=-1)

    z = torch.randn(1, 3, 97)
    with torch.no_grad():
        torch.testing.assert_close(
            decode_in_chunks(decode, z, hop=3, chunk_frames=10, context_frames=2), decode(z)
        )
        assert not torch.allclose(
            decode_in_chunks(decode, z, hop=3, chunk_frames=10, context_frames=0), decode(z)
        )


def test_cat_long_clips_stream_to_the_offline_ids_and_audio() -> None:
    torch.manual_seed(0)
    model = zoo.create("cat_tiny").eval()
    x = torch.randn(2, 1, int(24000 * 1.5) + 7) * 0.2
    with torch.no_grad():
        offline = model.encode(x)
        offline_audio = model.decode(offline)
        model.chunk_seconds = 0.2
        assert model.chunk_frames * 5 < offline.ids.shape[-1]
        chunked = model.encode(x)
        chunked_audio = model.decode(chunked)
        last = model.encode(x, upstream_last_frame=True)
    assert torch.equal(chunked.ids, offline.ids)
    torch.testing.assert_close(chunked_audio, offline_audio, atol=1e-5, rtol=0)
    assert torch.equal(last.ids[..., -1], model.filler_ids().expand(2, -1))
