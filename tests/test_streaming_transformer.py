"""Causal sliding-window RoPE Transformer: offline masks, ring KV cache streaming, patch reshapes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.nn.streaming import (
    ProjectedTransformer,
    RingKVCache,
    StreamingTransformer,
    patchify,
    sliding_window_mask,
    unpatchify,
)
from zoo.nn.transformer import apply_rope, rope_angles


def _transformer(context: int | None, **kwargs) -> StreamingTransformer:
    model = StreamingTransformer(16, 2, 2, 32, context=context, layer_scale=0.5, **kwargs).eval()
    with torch.no_grad():  # non-trivial norms so every parameter matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_patchify_puts_consecutive_steps_in_consecutive_channels_and_unpatchify_inverts_it() -> None:
    x = torch.arange(12.0).view(1, 1, 12)
    patches = patchify(x, 4)
    assert patches.shape == (1, 4, 3)
    assert patches[0, :, 1].tolist() == [4.0, 5.0, 6.0, 7.0]  # frame 1 = samples 4..7
    y = torch.randn(2, 3, 8)
    z = patchify(y, 2)
    assert torch.equal(z[:, 2 * 1 + 1, 3], y[:, 1, 7])  # channel c * size + j holds step j of patch t
    assert torch.equal(unpatchify(z, 2), y)
    with pytest.raises(ValueError, match="do not split"):
        patchify(y, 3)


def test_sliding_window_mask() -> None:
    mask = sliding_window_mask(torch.arange(5), torch.arange(5), 2)
    expected = torch.tensor([[abs(i - j) < 2 and j <= i for j in range(5)] for i in range(5)])
    assert torch.equal(mask, expected)
    assert torch.equal(
        sliding_window_mask(torch.arange(3), torch.tensor([-1, 0, 1]), None)[:, 0],
        torch.zeros(3, dtype=torch.bool),
    )


def test_offline_attention_matches_a_per_query_window_loop() -> None:
    """Each query attends to exactly its own step and the ``context - 1`` before it, with RoPE on adjacent pairs."""
    torch.manual_seed(1)
    model = _transformer(context=3)
    layer = model.layers[0]
    x = torch.randn(2, 9, 16)
    attn = layer.self_attn
    out = attn(x)
    q, k, v = attn.in_projs[0](x).view(2, 9, 3, 2, 8).permute(2, 0, 3, 1, 4)
    angles = rope_angles(torch.arange(9)[:, None], 8, 1e4)
    q, k = apply_rope(q, angles), apply_rope(k, angles)
    rows = []
    for t in range(9):
        lo = max(0, t - 2)
        w = (q[:, :, t : t + 1] @ k[:, :, lo : t + 1].transpose(-1, -2) / math.sqrt(8)).softmax(-1)
        rows.append(w @ v[:, :, lo : t + 1])
    expected = attn.out_projs[0](torch.cat(rows, 2).transpose(1, 2).reshape(2, 9, 16))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    # Rotary angles follow theta ** (-2i / head_dim) on channel pairs (2i, 2i + 1).
    pos = torch.tensor([[5]])
    torch.testing.assert_close(
        rope_angles(pos, 8, 1e4)[0], 5 * torch.tensor([1e4 ** (-2 * i / 8) for i in range(4)])
    )


@pytest.mark.parametrize("context", [4, 1, None])
@pytest.mark.parametrize("chunks", [(1,) * 23, (3, 7, 1, 12), (23,), (10, 13)])
def test_streaming_in_any_chunks_equals_offline(context, chunks) -> None:
    model = _transformer(context)
    x = torch.randn(2, sum(chunks), 16)
    offline = model(x)
    state = model.new_state()
    pieces, start = [], 0
    for size in chunks:
        pieces.append(model(x[:, start : start + size], state))
        start += size
    assert state.offset == x.shape[1]
    torch.testing.assert_close(torch.cat(pieces, 1), offline, atol=1e-5, rtol=1e-5)
    if context is not None:  # the ring holds only what a later query can still see
        cache = state.caches[0]
        assert cache.keys.shape[2] == context - 1
        assert sorted(cache.positions.tolist()) == list(range(x.shape[1] - context + 1, x.shape[1]))


def test_window_limits_what_early_steps_influence() -> None:
    model = _transformer(context=3)
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[:, 0] += torch.randn(16)  # not a constant shift, which LayerNorm would remove
    a, b = model(x), model(y)
    # two layers of a 3-step window: step 0 reaches steps 0..4 and nothing later; nothing reaches back.
    assert (a[:, 4] - b[:, 4]).abs().max() > 1e-4
    torch.testing.assert_close(a[:, 5:], b[:, 5:])
    z = x.clone()
    z[:, 7] += torch.randn(16)
    torch.testing.assert_close(model(z)[:, :7], a[:, :7])


def test_ring_cache_wraps_and_rejects_other_batches() -> None:
    cache = RingKVCache(3)
    k = torch.arange(5.0).view(1, 1, 5, 1)
    keys, _, positions = cache.extend(k, k, torch.arange(5))
    assert positions.tolist() == [-1, -1, -1, 0, 1, 2, 3, 4] and keys.shape[2] == 8
    assert sorted(cache.positions.tolist()) == [2, 3, 4]
    assert cache.keys[0, 0, cache.positions.tolist().index(4), 0] == 4.0
    with pytest.raises(ValueError, match="batch"):
        cache.extend(torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1), torch.tensor([5]))


def test_non_causal_has_no_streaming_and_sees_the_future() -> None:
    model = _transformer(context=None, causal=False)
    with pytest.raises(ValueError, match="causal"):
        model.new_state()
    x = torch.randn(1, 5, 16)
    y = x.clone()
    y[:, -1] += torch.randn(16)
    assert not torch.allclose(model(x)[:, 0], model(y)[:, 0])


def test_projected_transformer_names_shapes_and_gradients() -> None:
    block = ProjectedTransformer(6, 10, 16, 2, 1, 32, context=4)
    names = {k for k, _ in block.named_parameters()}
    assert {
        "input_proj.weight",
        "output_proj.weight",
        "transformer.layers.0.self_attn.in_projs.0.weight",
        "transformer.layers.0.self_attn.out_projs.0.weight",
        "transformer.layers.0.norm1.bias",
        "transformer.layers.0.linear1.weight",
        "transformer.layers.0.layer_scale_2.scale",
    } <= names
    assert not any(k.endswith("bias") and "norm" not in k for k in names)  # bias-free but the LayerNorms
    x = torch.randn(2, 6, 7, requires_grad=True)
    out = block(x)
    assert out.shape == (2, 10, 7)
    F.mse_loss(out, torch.zeros_like(out)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    same = ProjectedTransformer(16, 16, 16, 2, 1, 32)
    assert isinstance(same.input_proj, torch.nn.Identity) and isinstance(same.output_proj, torch.nn.Identity)
    with pytest.raises(ValueError, match=r"expected \[B, 6, T\]"):
        block(torch.randn(1, 5, 3))


@pytest.mark.parametrize("context", [3, 7, None])
def test_long_offline_inputs_attend_in_query_blocks_with_the_same_outputs(context, monkeypatch) -> None:
    """Above ``query_block`` queries the offline path splits queries into blocks (each against only the keys
    its window sees) instead of one ``T x T`` mask: the outputs equal the one-call path."""
    torch.manual_seed(3)
    model = _transformer(context=context)
    x = torch.randn(2, 37, 16)
    whole = model(x)
    monkeypatch.setattr(type(model.layers[0].self_attn), "query_block", 5)
    calls = []
    original = F.scaled_dot_product_attention

    def counting(q, k, v, attn_mask=None, **kw):
        calls.append((q.shape[2], k.shape[2]))
        return original(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    blocked = model(x)
    torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=1e-5)
    assert max(q for q, _ in calls) == 5 and len(calls) == 2 * 8  # 2 layers x ceil(37 / 5) blocks
    if context is not None:
        assert max(k for _, k in calls) <= 5 + context - 1  # never the whole sequence of keys
