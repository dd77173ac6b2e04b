"""The linear-attention Transformer: its attention's defining properties and the package's key layout."""

from __future__ import annotations

import torch
from tfm_layout import _linear_attention_transformer

from zoo.nn.linear_attention import (
    ChunkedFeedForward,
    FeedForward,
    LinearAttentionTransformer,
    linear_attention,
)


def test_attention_normalises_queries_over_channels_and_keys_over_the_sequence() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    out = linear_attention(q, k, v)
    # written out for one position of one head
    weights = k[0, 1].softmax(0)  # [7, 8]: each key channel is a distribution over positions
    context = weights.T @ v[0, 1]  # [8, 8]
    torch.testing.assert_close(out[0, 1, 4], q[0, 1, 4].softmax(0) / 8**0.5 @ context)
    # constant keys average the values uniformly
    flat = linear_attention(q, torch.zeros_like(k), v)
    torch.testing.assert_close(flat, q.softmax(-1) / 8**0.5 @ v.mean(2, keepdim=True).expand(-1, -1, 8, -1))


def test_non_causal_attention_is_permutation_equivariant_and_ignores_duplication() -> None:
    torch.manual_seed(0)
    model = LinearAttentionTransformer(16, 2, 4).eval().double()
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    out = model(x)
    perm = torch.randperm(10)
    torch.testing.assert_close(model(x[:, perm]), out[:, perm])
    # every token twice: the key softmax over positions halves each weight, the summary is unchanged
    torch.testing.assert_close(model(x.repeat_interleave(2, 1))[:, ::2], out)
    torch.testing.assert_close(model(x[1:2]), out[1:2])  # items are independent


def test_chunked_feed_forward_equals_the_whole_sequence_at_once() -> None:
    torch.manual_seed(0)
    ff = FeedForward(8).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(ChunkedFeedForward(ff, 4)(x), ChunkedFeedForward(ff, 1)(x))


def test_state_dict_follows_the_linear_attention_transformer_package() -> None:
    expected: dict = {}
    _linear_attention_transformer(expected, "net", 64, 3)
    model = LinearAttentionTransformer(64, 3, 8)
    ours = {f"net.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
