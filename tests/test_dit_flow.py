"""DiT1d (ReasoningCodec's flow estimator) and ConditionalFlowMatching: shapes, upstream size and layout, masks,
the CFM loss weighting, deterministic Euler sampling with CFG and in-context prefix, windowed sampling, training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from reasoningcodec_layout import count, dit_shapes
from tokenizer_checks import random_state_dict
from torch import nn

from zoo.nn.dit import DiT1d, convert_dit1d, sinusoidal_positions
from zoo.nn.flow_matching import ConditionalFlowMatching, crossfade_concat

# Upstream Transformer1DModel with model_config.json (1040 -> 136, 24 x 64 heads, 32 layers), counted from the
# layout in reasoningcodec_layout.py (the pos_embed.pe buffer left out).
UPSTREAM_DIT_PARAMS = 931_823_952
LATENT, COND = 6, 5


def tiny_dit(depth: int = 2, width: int = 32) -> DiT1d:
    return DiT1d(2 * LATENT + COND, LATENT, width=width, depth=depth, heads=4)


def tiny_cfm(**kwargs) -> ConditionalFlowMatching:
    torch.manual_seed(0)
    return ConditionalFlowMatching(tiny_dit(), LATENT, COND, **kwargs).eval()


def test_paper_size_parameter_count_and_names_match_upstream() -> None:
    with torch.device("meta"):
        model = DiT1d(1040, 136, width=1536, depth=32, heads=24)
    upstream = dit_shapes()
    assert count(upstream) == UPSTREAM_DIT_PARAMS
    assert sum(p.numel() for p in model.parameters()) == UPSTREAM_DIT_PARAMS
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    renamed = {
        k.removeprefix("cfm_wrapper.estimator."): v for k, v in upstream.items() if not k.endswith(".pe")
    }
    assert ours == renamed


def test_converter_loads_an_upstream_layout_strictly() -> None:
    shapes = dit_shapes(in_channels=2 * LATENT + COND, out_channels=LATENT, heads=4, head_dim=8, depth=2)
    state = random_state_dict(shapes)
    model = tiny_dit()
    model.load_state_dict(convert_dit1d(state), strict=True)
    assert torch.equal(
        model.transformer_blocks[1].attn1.to_k.bias,
        state["cfm_wrapper.estimator.transformer_blocks.1.attn1.to_k.bias"],
    )
    with pytest.raises(ValueError, match="no key starts"):
        convert_dit1d({"encoder.weight": torch.zeros(1)})


def test_positions_are_upstreams_sinusoid_table() -> None:
    # diffusers SinusoidalPositionalEmbedding: pe[:, 0::2] = sin(p * w_i), pe[:, 1::2] = cos(p * w_i),
    # w_i = 10000 ** (-2i / dim).
    dim, n = 16, 7
    pe = sinusoidal_positions(n, dim)
    p, i = 5, 3
    w = 10000 ** (-2 * i / dim)
    assert pe[p, 2 * i].item() == pytest.approx(math.sin(p * w), abs=1e-6)
    assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(p * w), abs=1e-6)


def test_shapes_timestep_forms_and_bad_input() -> None:
    torch.manual_seed(0)
    dit = tiny_dit().eval()
    x = torch.randn(3, 2 * LATENT + COND, 11)
    out = dit(x, torch.rand(3))
    assert out.shape == (3, LATENT, 11) and torch.isfinite(out).all()
    assert torch.allclose(dit(x, torch.tensor(0.3)), dit(x, torch.full((3,), 0.3)))
    assert not torch.allclose(dit(x, torch.full((3,), 0.1)), dit(x, torch.full((3,), 0.9)))
    with pytest.raises(ValueError, match="expected x of shape"):
        dit(torch.randn(3, 4, 11), torch.rand(3))
    with pytest.raises(ValueError, match="timestep"):
        dit(x, torch.rand(2))
    with pytest.raises(ValueError, match="divisible"):
        DiT1d(4, 4, width=30, depth=1, heads=4)


def test_mask_makes_a_padded_item_match_itself_alone() -> None:
    torch.manual_seed(0)
    dit = tiny_dit().eval()
    short = torch.randn(1, 2 * LATENT + COND, 9)
    padded = torch.cat([short, 5 * torch.randn(1, 2 * LATENT + COND, 4)], dim=-1)
    mask = torch.arange(13)[None] < 9
    t = torch.tensor([0.4])
    alone = dit(short, t)
    out = dit(padded, t, mask)
    assert torch.allclose(out[..., :9], alone, atol=1e-5)
    assert (out[..., 9:] == 0).all()
    # Without the mask the padding leaks into the real frames.
    assert not torch.allclose(dit(padded, t)[..., :9], alone, atol=1e-3)
    with pytest.raises(ValueError, match="mask"):
        dit(padded, t, mask[:, :5])


class _ZeroEstimator(nn.Module):
    """Returns zero velocity and records its input, to check the loss weighting and the input layout."""

    in_channels = 2 * LATENT + COND

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.scale * x[:, :LATENT]


def test_loss_weights_target_padding_and_prefix_as_upstream() -> None:
    est = _ZeroEstimator()
    cfm = ConditionalFlowMatching(est, LATENT, COND)
    target, cond = torch.randn(2, LATENT, 10), torch.randn(2, COND, 10)
    prompt_len = torch.tensor([3, 0])
    valid = (torch.arange(10)[None] < torch.tensor([[10], [7]])).float()
    torch.manual_seed(1)
    loss = cfm.loss(target, cond, prompt_len, valid)
    torch.manual_seed(1)
    t = torch.rand(2)
    noise = torch.randn_like(target)
    u = target - (1 - 1e-4) * noise
    w = torch.where(valid > 0, 1.0, 0.01)
    w[0, :3] = 0.0
    expected = (u * w[:, None]).square().sum() / (w.sum() * LATENT)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Input layout: [x_t | prefix (clean target on the prompt frames, else 0) | cond].
    x_in = est.seen[-1]
    x_t = (1 - (1 - 1e-4) * t[:, None, None]) * noise + t[:, None, None] * target
    assert torch.allclose(x_in[:, :LATENT], x_t, atol=1e-6)
    assert torch.equal(x_in[0, LATENT : 2 * LATENT, :3], target[0, :, :3])
    assert (x_in[0, LATENT : 2 * LATENT, 3:] == 0).all() and (x_in[1, LATENT : 2 * LATENT] == 0).all()
    assert torch.equal(x_in[:, 2 * LATENT :], cond)


def test_loss_is_finite_with_gradients_and_cond_dropout_zeroes_cond() -> None:
    cfm = tiny_cfm().train()
    target, cond = torch.randn(2, LATENT, 12), torch.randn(2, COND, 12)
    loss = cfm.loss(target, cond, torch.tensor([4, 0]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in cfm.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    with pytest.raises(ValueError, match="frame_weights"):
        cfm.loss(target, cond, frame_weights=torch.ones(2, 5))
    est = _ZeroEstimator()
    dropper = ConditionalFlowMatching(est, LATENT, COND, cond_drop_prob=0.5).train()
    torch.manual_seed(0)
    for _ in range(8):
        dropper.loss(torch.randn(4, LATENT, 3), torch.ones(4, COND, 3))
    conds = torch.stack([x[:, 2 * LATENT :].flatten(1).amax(1) for x in est.seen])
    assert (conds == 0).any() and (conds == 1).any()


def _reference_euler(cfm, cond, steps, scale, noise, prompt=None):
    """Upstream's solve_euler written out: prefix reset to the path each step, guided by zero cond."""
    x, plen = noise.clone(), 0 if prompt is None else prompt.shape[-1]
    prefix = torch.zeros_like(noise)
    if plen:
        prefix[..., :plen] = prompt
    ts = torch.linspace(0, 1, steps + 1)
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]
        if plen:
            x[..., :plen] = (1 - (1 - 1e-4) * t) * noise[..., :plen] + t * prompt
        tb = t.expand(x.shape[0])
        v_c = cfm.estimator(torch.cat([x, prefix, cond], 1), tb)
        if scale != 1:
            v_u = cfm.estimator(torch.cat([x, prefix, torch.zeros_like(cond)], 1), tb)
            v_c = v_u + scale * (v_c - v_u)
        x = x + dt * v_c
    if plen:
        x[..., :plen] = prompt
    return x


def test_sample_is_deterministic_and_matches_upstreams_euler_with_cfg() -> None:
    cfm = tiny_cfm()
    cond = torch.randn(2, COND, 9)
    a = cfm.sample(cond, steps=3, generator=torch.Generator().manual_seed(7))
    b = cfm.sample(cond, steps=3, generator=torch.Generator().manual_seed(7))
    c = cfm.sample(cond, steps=3, generator=torch.Generator().manual_seed(8))
    assert a.shape == (2, LATENT, 9) and torch.equal(a, b) and not torch.allclose(a, c)
    noise = torch.randn(2, LATENT, 9, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for scale in (1.0, 1.5):
            ref = _reference_euler(cfm, cond, 3, scale, noise)
            assert torch.allclose(cfm.sample(cond, steps=3, cfg_scale=scale, noise=noise), ref, atol=1e-5)
    # Scale 1 is the conditional model alone; other scales differ from it.
    assert not torch.allclose(cfm.sample(cond, steps=3, cfg_scale=1.0, noise=noise), a, atol=1e-4)


def test_in_context_prefix_is_kept_verbatim() -> None:
    cfm = tiny_cfm()
    cond, prompt = torch.randn(2, COND, 10), torch.randn(2, LATENT, 4)
    noise = torch.randn(2, LATENT, 10)
    out = cfm.sample(cond, prompt, steps=2, noise=noise)
    assert torch.equal(out[..., :4], prompt)
    with torch.no_grad():
        assert torch.allclose(out, _reference_euler(cfm, cond, 2, 1.5, noise, prompt), atol=1e-5)
    with pytest.raises(ValueError, match="prompt"):
        cfm.sample(cond, torch.randn(2, LATENT, 10))


def test_crossfade_is_upstreams_linear_ramp() -> None:
    a, b = torch.zeros(1, 6), torch.ones(1, 5)
    out = crossfade_concat([a, b], 3)
    assert out.shape == (1, 8)
    assert torch.allclose(out, torch.tensor([[0, 0, 0, 0, 0.5, 1, 1, 1]]))
    assert torch.equal(crossfade_concat([a], 3), a)


def test_sample_long_equals_sample_in_one_window_and_chains_windows() -> None:
    cfm = tiny_cfm()
    cond = torch.randn(1, COND, 12)
    one = cfm.sample_long(cond, window=16, steps=2, generator=torch.Generator().manual_seed(3))
    ref = cfm.sample(cond, steps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one, ref)
    long_cond = torch.randn(1, COND, 30)
    windows = cfm.sample_long(
        long_cond, 12, steps=2, generator=torch.Generator().manual_seed(3), return_windows=True
    )
    # 25 % of 12 = 3 shared frames, hop 9: windows at 0, 9, 18 (the last 12 frames long).
    assert [w.shape[-1] for w in windows] == [12, 12, 12]
    for prev, cur in itertools.pairwise(windows):
        assert torch.equal(cur[..., :3], prev[..., -3:])
    joined = cfm.sample_long(long_cond, 12, steps=2, generator=torch.Generator().manual_seed(3))
    assert joined.shape == (1, LATENT, 30) and torch.allclose(joined, crossfade_concat(windows, 3))
    # Each window is conditioned on its own slice of cond.
    g = torch.Generator().manual_seed(3)
    first = cfm.sample(long_cond[..., :12], steps=2, generator=g)
    assert torch.equal(windows[0], first)


def test_adam_steps_reduce_the_flow_matching_loss() -> None:
    torch.manual_seed(0)
    cfm = ConditionalFlowMatching(tiny_dit(width=32), LATENT, COND).train()
    cond = torch.randn(8, COND, 16)
    target = torch.tanh(torch.einsum("dc,bct->bdt", torch.randn(LATENT, COND), cond))

    def held_out() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return sum(cfm.loss(target, cond).item() for _ in range(8)) / 8

    before = held_out()
    opt = torch.optim.Adam(cfm.parameters(), lr=3e-3)
    torch.manual_seed(1)
    for _ in range(60):
        opt.zero_grad()
        cfm.loss(target, cond).backward()
        opt.step()
    after = held_out()
    assert after < 0.7 * before, (before, after)
