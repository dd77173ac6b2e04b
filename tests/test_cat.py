"""CAT (MOSS-Audio-Tokenizer): size and rates, real-speech round trips at any bit rate, batching, gradients,
training, save/load and Hub (sharded upstream checkpoints), the converter against a reference forward of
the upstream layout, and streaming that equals offline processing."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from cat_layout import cat_shapes, parameter_count, reference_encode_decode, upstream_config
from safetensors.torch import save as save_safetensors
from tokenizer_checks import (
    assert_batch_equals_single_items,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)

import zoo
from zoo._registry import unregister_pretrained
from zoo.errors import CheckpointError, HubError
from zoo.hub import load_weights
from zoo.losses import MultiResolutionMelLoss
from zoo.models.audio.cat import convert_cat

# Upstream's released layout (config.json) counted key by key: 886,609,920 per encoder and decoder and
# 1,346,560 for the quantizer, i.e. the reference's analytic "1.77 B".
UPSTREAM_PARAMS = 1_774_566_400
# Weight norm folded into plain weights drops one gain per output channel of each quantizer 1x1 conv.
FOLDED_GAINS = 512 + 768 + 32 * (8 + 512)
# The cat_tiny shapes in upstream's config vocabulary, for the converter tests.
TINY_UPSTREAM = upstream_config(
    patch_size=60,
    patches=(2, 2),
    dims=(32, 32, 48),
    depths=(1, 1, 2),
    heads=(2, 2, 4),
    ffn_dims=(64, 64, 96),
    out_dims=(16, 24, 32),
    rvq_dim=24,
    num_quantizers=4,
    codebook_size=64,
)


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    return zoo.create("cat_tiny").eval()


def _upstream_tiny(seed: int = 0) -> dict[str, torch.Tensor]:
    state = random_state_dict(cat_shapes(TINY_UPSTREAM), seed)
    for key in state:  # upstream-like magnitudes, so the reference comparison is not of tiny numbers
        if key.endswith(("norm1.weight", "norm2.weight")):
            state[key] = 1 + state[key]
        elif key.endswith(("layer_scale_1.scale", "layer_scale_2.scale", "original0")):
            state[key] = state[key] * 10
        elif key.endswith((".weight", "original1")) and state[key].ndim >= 2:
            state[key] = state[key] * 6
    return state


def test_paper_size_rates_layout_and_upstream_parameter_count() -> None:
    with torch.device("meta"):
        model = zoo.create("cat")
    assert model.sample_rate == 24000 and model.hop_length == 1920 and model.tokens_per_second == 12.5
    assert model.codebook_sizes == (1024,) * 32 and model.bits_per_second == 4000
    assert model.bits_per_second_at(1) == 125 and model.bits_per_second_at(8) == 1000
    assert model.token_layout()["bits_per_second"] == 4000
    assert model.encoder_contexts == [1000, 500, 250, 125] and model.decoder_contexts == [125, 250, 500, 1000]
    shapes = cat_shapes()
    assert parameter_count(shapes) == UPSTREAM_PARAMS
    assert model.num_parameters() == UPSTREAM_PARAMS - FOLDED_GAINS
    assert abs(model.num_parameters() / UPSTREAM_PARAMS - 1) < 0.02
    # The reference's per-stage sizes (M): 85.5 / 85.3 / 85.5 / 630.4, mirrored by the decoder.
    for index, millions in zip((1, 3, 5, 7), (85.5, 85.3, 85.5, 630.4), strict=True):
        ours = sum(p.numel() for p in model.encoder[index].parameters())
        assert ours == parameter_count(shapes, f"encoder.{index}.") and round(ours / 1e6, 1) == millions
    for index, mirrored in zip((0, 2, 4, 6), (7, 5, 3, 1), strict=True):
        ours = sum(p.numel() for p in model.decoder[index].parameters())
        assert (
            ours
            == parameter_count(shapes, f"decoder.{index}.")
            == parameter_count(shapes, f"encoder.{mirrored}.")
        )
    stage4 = model.encoder[7].transformer
    assert len(stage4.layers) == 32 and stage4.layers[0].self_attn.heads == 20
    assert stage4.layers[0].linear1.weight.shape == (5120, 1280)
    assert model.quantizer.rvq.layers[0].codebook.shape == (1024, 8)


def test_real_speech_round_trip_at_any_rate_and_length(tiny, speech) -> None:
    for wav, rate in speech.values():
        x = tiny.prepare((wav, rate))
        assert x.shape == (1, 1, round(wav.shape[-1] * 24000 / rate))
        tokens = tiny.encode(x)
        assert tokens.ids.shape == (1, 4, -(-x.shape[-1] // tiny.hop_length))
        out = tiny.decode(tokens)
        assert out.shape == x.shape and torch.isfinite(out).all()
        wav_out, out_rate = tiny.finish(out, tokens)
        assert out_rate == 24000 and wav_out.shape == x.shape[1:]
    for length in (1, 239, 241, 1000):
        x = torch.randn(1, 1, length) * 0.1
        assert tiny.decode(tiny.encode(x)).shape == x.shape


def test_batch_equals_single_items_and_padding_never_leaks_backwards(tiny, speech) -> None:
    x = tiny.prepare(speech["16k"])[..., :9600]
    assert_batch_equals_single_items(tiny, torch.cat([x, x.flip(-1), 0.5 * x]))
    # Items of different lengths zero-padded into one batch: causal attention keeps each item's ids.
    short = x[..., :4000]
    batch = torch.cat([x, torch.nn.functional.pad(short, (0, 9600 - 4000))])
    ids = tiny.encode(batch).ids
    alone = tiny.encode(short).ids
    assert torch.equal(
        ids[1:, :, : alone.shape[-1] - 1], alone[..., :-1]
    )  # all whole tokens of the short item


def test_any_codebook_prefix_encodes_and_decodes(tiny, speech) -> None:
    x = tiny.prepare(speech["8k"])[..., :4800]
    full = tiny.encode(x)
    errors = []
    for k in range(1, 5):
        prefix = tiny.encode(x, n_quantizers=k)
        ids = prefix.ids if k > 1 else prefix.ids.unsqueeze(1)
        assert torch.equal(ids, full.ids[:, :k]) and prefix.codebook_sizes == (64,) * k
        assert prefix.bits_per_item == 6 * k * full.grid[0]
        assert tiny.bits_per_second_at(k) == 600 * k
        out = tiny.decode(prefix)
        assert out.shape == x.shape and torch.isfinite(out).all()
        errors.append(out)
    assert not torch.allclose(errors[0], errors[-1])  # later codebooks change the decode


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match=r"expected audio \[B, 1, T\]"):
        tiny.encode(torch.zeros(1, 2, 240))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 1, 240), float("nan")))
    with pytest.raises(ValueError, match="n_quantizers must lie in"):
        tiny.encode(torch.zeros(1, 1, 240), n_quantizers=5)
    tokens = tiny.encode(torch.zeros(1, 1, 480))
    tokens.ids[0, 0, 0] = 64
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)
    other = zoo.Tokens(ids=torch.zeros(1, 2, 3, dtype=torch.long), grid=(3,), codebook_sizes=(64, 32))
    with pytest.raises(ValueError, match="prefix of its 4 codebooks"):
        tiny.decode(other)
    with pytest.raises(ValueError, match="multiple of the hop 240"):
        tiny.encode_stream(torch.zeros(1, 1, 960), chunk_samples=300)


def test_every_parameter_gets_a_gradient(speech) -> None:
    model = zoo.create("cat_tiny", quantizer_dropout=0.0).train()
    x = model.prepare(speech["16k"])[..., :4800]
    out = model(x.repeat(2, 1, 1))
    loss = (out.recon - x).abs().mean() + sum(out.losses.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    assert set(out.losses) == {"vq/commit", "vq/codebook"}


def test_quantizer_dropout_keeps_a_random_prefix_per_sample() -> None:
    model = zoo.create("cat_tiny").train()
    ids = model(torch.randn(16, 1, 480) * 0.1).ids
    kept = (ids[:, :, 0] >= 0).sum(1)
    assert ((ids >= 0).int().diff(dim=1) <= 0).all()  # dropped stages form a suffix
    assert kept.min() >= 1 and len(set(kept.tolist())) > 1
    assert (model.eval().encode(torch.randn(16, 1, 480)).ids >= 0).all()


def test_training_steps_reduce_the_loss(speech, single_thread) -> None:
    model = zoo.create("cat_tiny").train()
    x = model.prepare(speech["8k"])[..., 4800 : 4800 + 4 * 4800].reshape(4, 1, 4800)
    mel = MultiResolutionMelLoss(sample_rate=24000, window_lengths=(256, 1024), n_mels=(40, 80))
    assert_training_reduces_loss(
        model,
        x,
        lr=1e-3,
        ratio=0.85,
        reconstruction=mel,
        optimizer=torch.optim.AdamW,
        betas=(0.8, 0.9),
        grad_clip=0.5,
    )


def test_save_load_and_hub_round_trip(tmp_path, tiny, hub) -> None:
    x = torch.randn(2, 1, 2000) * 0.1
    assert_round_trips(tmp_path, tiny, x, repo_id="zoo-tests/cat-tiny")


# ---------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("chunk_tokens", [1, 3, 7])
def test_streaming_encode_and_decode_equal_offline_across_window_wraps(tiny, speech, chunk_tokens) -> None:
    """1.1 s at 100 tokens/s with windows of 40/20/10 frames: every ring buffer wraps many times."""
    x = tiny.prepare(speech["16k"])[..., : 26400 + 100]  # a partial last token too
    offline = tiny.encode(x)
    streamed = tiny.encode_stream(x, chunk_samples=chunk_tokens * tiny.hop_length)
    assert torch.equal(streamed.ids, offline.ids) and streamed.meta == offline.meta
    decoded = tiny.decode(offline)
    torch.testing.assert_close(
        tiny.decode_stream(offline, chunk_frames=chunk_tokens), decoded, atol=1e-5, rtol=1e-4
    )
    prefix = tiny.encode(x, n_quantizers=2)
    torch.testing.assert_close(tiny.decode_stream(prefix, 5), tiny.decode(prefix), atol=1e-5, rtol=1e-4)


def test_stateful_streams_take_uneven_chunks_and_refuse_misuse(tiny) -> None:
    x = torch.randn(2, 1, 40 * 240 + 17) * 0.1
    offline = tiny.encode(x, n_quantizers=3)
    encoder = tiny.streaming_encoder(n_quantizers=3)
    bounds = [0, 240, 5 * 240, 6 * 240, 30 * 240, x.shape[-1]]
    ids = [encoder.push(x[..., a:b], final=b == x.shape[-1]) for a, b in itertools.pairwise(bounds)]
    assert torch.equal(torch.cat(ids, -1), offline.ids)
    with pytest.raises(RuntimeError, match="finished"):
        encoder.push(x[..., :240])
    with pytest.raises(ValueError, match="whole number"):
        tiny.streaming_encoder().push(x[..., :300])
    decoder = tiny.streaming_decoder()
    frames = [0, 2, 3, 19, offline.ids.shape[-1]]
    audio = torch.cat([decoder.push(offline.ids[..., a:b]) for a, b in itertools.pairwise(frames)], -1)
    torch.testing.assert_close(audio[..., : x.shape[-1]], tiny.decode(offline), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="expected ids"):
        decoder.push(offline.ids[:, 0])


# ---------------------------------------------------------------------------------------------- converter
def test_converter_loads_upstream_layout_strictly_and_matches_a_reference_forward() -> None:
    upstream = _upstream_tiny()
    model = zoo.create("cat_tiny").eval()
    load_weights(model, convert_cat(upstream, model), "tiny upstream")
    x = torch.randn(2, 1, 7000) * 0.3  # 70 tokens: windows of 40/20/10 frames are exceeded
    with torch.no_grad():
        codes, audio = reference_encode_decode(upstream, TINY_UPSTREAM, x, 4, context_seconds=0.1)
    tokens = model.encode(x)
    assert torch.equal(tokens.ids, codes)
    decoded = model.decode(tokens)
    scale = float(audio.abs().max())
    assert scale > 1.0
    torch.testing.assert_close(decoded, audio[..., :7000], atol=1e-5 * scale, rtol=1e-4)
    # The weight-normed convs are folded: their per-channel norms are the stored gains.
    g = upstream["quantizer.quantizers.0.in_proj.parametrizations.weight.original0"]
    folded = model.quantizer.rvq.layers[0].project_in.weight
    torch.testing.assert_close(folded.norm(dim=1), g.flatten().abs())


def test_converter_accepts_moshi_attention_names_and_reports_foreign_layouts() -> None:
    upstream = _upstream_tiny()
    model = zoo.create("cat_tiny")
    moshi = dict(upstream)
    moshi["encoder.1.transformer.layers.0.self_attn.in_proj_weight"] = moshi.pop(
        "encoder.1.transformer.layers.0.self_attn.in_projs.0.weight"
    )
    moshi["decoder.0.transformer.layers.1.self_attn.out_proj.weight"] = moshi.pop(
        "decoder.0.transformer.layers.1.self_attn.out_projs.0.weight"
    )
    assert convert_cat(moshi).keys() == convert_cat(upstream).keys()
    load_weights(model, convert_cat(moshi, model), "moshi-style upstream")
    legacy = dict(upstream)  # torch's older weight_norm names
    legacy["quantizer.input_proj.weight_g"] = legacy.pop(
        "quantizer.input_proj.parametrizations.weight.original0"
    )
    legacy["quantizer.input_proj.weight_v"] = legacy.pop(
        "quantizer.input_proj.parametrizations.weight.original1"
    )
    load_weights(model, convert_cat(legacy, model), "legacy weight norm")
    broken = dict(upstream)
    broken["decoder.0.extra.weight"] = torch.zeros(1)
    del broken["encoder.1.output_proj.weight"]
    with pytest.raises(
        CheckpointError, match="missing keys: encoder.1.output_proj.weight.*unexpected keys: decoder.0.extra"
    ):
        load_weights(model, convert_cat(broken, model), "upstream")
    del broken["quantizer.output_proj.parametrizations.weight.original1"]
    with pytest.raises(KeyError, match="original1"):
        convert_cat(broken, model)


def test_converter_maps_the_released_key_set_onto_the_paper_model() -> None:
    """Every key and shape of the released checkpoint, without allocating 1.77 B parameters."""
    upstream = {k: torch.empty(s, device="meta") for k, s in cat_shapes().items()}
    converted = convert_cat(upstream)
    with torch.device("meta"):
        model = zoo.create("cat")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    assert "encoder.1.transformer.layers.11.self_attn.in_projs.0.weight" in converted
    assert "encoder.3.input_proj.weight" not in converted  # 768 -> 768: identity, as upstream


# ---------------------------------------------------------------------------------------------- Hub
def _shard(state: dict[str, torch.Tensor]) -> dict[str, bytes]:
    keys = sorted(state)
    first, second = keys[: len(keys) // 2], keys[len(keys) // 2 :]
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    index = {"metadata": {"total_size": 0}, "weight_map": {k: names[k in second] for k in keys}}
    return {
        names[0]: save_safetensors({k: state[k].contiguous() for k in first}),
        names[1]: save_safetensors({k: state[k].contiguous() for k in second}),
        "model.safetensors.index.json": json.dumps(index).encode(),
        "config.json": b'{"model_type": "speech_tokenizer"}',
    }


def test_sharded_upstream_checkpoint_loads_from_the_hub(hub, tiny) -> None:
    upstream = _upstream_tiny(seed=3)
    files = _shard(upstream)
    hub.create_repo("upstream/moss-tiny")
    hub.put_files("upstream/moss-tiny", files)
    cfg = zoo.PretrainedCfg(
        hf_hub_id="upstream/moss-tiny", filename="model.safetensors.index.json", converter="convert_cat"
    )
    zoo.register_pretrained("cat_tiny.sharded", cfg)
    try:
        model = zoo.load("cat_tiny.sharded")
        load_weights(tiny, convert_cat(upstream, tiny), "direct")
        x = torch.randn(1, 1, 2400) * 0.1
        assert torch.equal(model.encode(x).ids, tiny.encode(x).ids)
        requested = {path for _, path in hub.requests}
        assert any(p.endswith("model-00002-of-00002.safetensors") for p in requested)
        # An index naming a shard the repo lacks: the error names that shard.
        hub.create_repo("upstream/moss-broken")
        broken = dict(files)
        del broken["model-00002-of-00002.safetensors"]
        hub.put_files("upstream/moss-broken", broken)
        zoo.register_pretrained(
            "cat_tiny.broken", zoo.PretrainedCfg(**{**cfg.__dict__, "hf_hub_id": "upstream/moss-broken"})
        )
        with pytest.raises(HubError, match="shard 'model-00002-of-00002.safetensors'"):
            zoo.load("cat_tiny.broken")
    finally:
        unregister_pretrained("cat_tiny.sharded")
        unregister_pretrained("cat_tiny.broken")


def test_registered_pretrained_entry() -> None:
    from zoo._registry import get_pretrained_cfg

    name, cfg = get_pretrained_cfg("cat")
    assert name == "cat.moss" and cfg.hf_hub_id == "OpenMOSS-Team/MOSS-Audio-Tokenizer"
    assert cfg.filename == "model.safetensors.index.json" and cfg.converter == "convert_cat"


# ---------------------------------------------------------------------------------------------- upstream's choices
def test_upstream_last_frame_gives_upstreams_filler_ids(tiny) -> None:
    """Fix 6 of issue 16: upstream's ``encode`` counts ``T // hop`` valid tokens and masks a last partial
    one out of its quantizer, whose stages then each quantize a zero residual: the code nearest to their
    input projection's bias. The zoo quantizes that token's audio unless ``upstream_last_frame``."""
    upstream = _upstream_tiny()
    load_weights(tiny, convert_cat(upstream, tiny), "tiny upstream")
    stages = [f"quantizer.quantizers.{k}" for k in range(4)]
    filler = torch.stack(
        [
            (
                torch.nn.functional.normalize(upstream[f"{s}.in_proj.bias"], dim=0)
                @ torch.nn.functional.normalize(upstream[f"{s}.codebook.weight"], dim=-1).T
            ).argmax()
            for s in stages
        ]
    )
    torch.manual_seed(0)
    x = torch.randn(2, 1, 12 * 240 + 100) * 0.3
    ours, theirs = tiny.encode(x).ids, tiny.encode(x, upstream_last_frame=True).ids
    assert ours.shape == theirs.shape == (2, 4, 13)
    assert torch.equal(theirs[..., :12], ours[..., :12])
    assert (theirs[..., 12] == filler).all()  # the same for both clips
    assert not torch.equal(ours[..., 12], theirs[..., 12])  # the zoo's last token carries the audio
    whole = x[..., : 12 * 240]
    assert torch.equal(tiny.encode(whole, upstream_last_frame=True).ids, tiny.encode(whole).ids)
    assert (tiny.encode(x[..., :100], upstream_last_frame=True).ids[..., 0] == filler).all()
    prefix = tiny.encode(x, n_quantizers=2, upstream_last_frame=True).ids
    assert (prefix[..., -1] == filler[:2]).all()
    assert torch.equal(tiny.filler_ids(), filler) and torch.equal(tiny.filler_ids(3), filler[:3])


def test_upstream_cache_reproduces_upstreams_chunked_attention(monkeypatch) -> None:
    """Upstream's ring holds ``context`` steps and a chunk writes before it reads, so a query sees only
    ``(chunk end - context, itself]``; the zoo's exact cache makes streaming equal offline instead."""
    from zoo.models.audio.cat import UpstreamRingKVCache
    from zoo.nn import streaming

    torch.manual_seed(0)
    t = streaming.StreamingTransformer(16, 2, 2, 32, context=6, layer_scale=1.0).eval()
    x = torch.randn(1, 22, 16)
    chunk = 4

    def run(upstream_cache: bool) -> torch.Tensor:
        state = t.new_state()
        if upstream_cache:
            state.caches = [UpstreamRingKVCache(6) for _ in t.layers]
        return torch.cat([t(x[:, s : s + chunk], state) for s in range(0, x.shape[1], chunk)], dim=1)

    with torch.no_grad():
        offline, exact, ring = t(x), run(False), run(True)
        torch.testing.assert_close(exact, offline, rtol=1e-5, atol=1e-6)
        assert (ring - offline).abs().max() > 1e-2  # keys lost once the window is full

        def chunked_window(query: torch.Tensor, key: torch.Tensor, context: int | None) -> torch.Tensor:
            end = ((query // chunk + 1) * chunk - 1).clamp_max(x.shape[1] - 1)
            delta = query[:, None] - key[None, :]
            return (delta >= 0) & (key[None, :] > end[:, None] - context)

        monkeypatch.setattr(streaming, "sliding_window_mask", chunked_window)
        torch.testing.assert_close(ring, t(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            ring[:, :chunk], offline[:, :chunk], rtol=1e-5, atol=1e-6
        )  # window not full


def test_cat_streams_with_upstreams_cache(tiny) -> None:
    """``upstream_cache=True`` streams: equal to offline until a stage's window is full, then not."""
    torch.manual_seed(0)
    load_weights(tiny, convert_cat(_upstream_tiny(), tiny), "tiny upstream")
    short = torch.randn(1, 1, 2400) * 0.3  # 0.1 s: no stage's ring ever overwrites a slot
    assert torch.equal(tiny.encode_stream(short, 480, upstream_cache=True).ids, tiny.encode(short).ids)
    x = torch.randn(1, 1, 9600) * 0.3
    exact = tiny.encode_stream(x, 720)
    ring = tiny.encode_stream(x, 720, upstream_cache=True)
    assert torch.equal(exact.ids, tiny.encode(x).ids) and not torch.equal(ring.ids, exact.ids)
    decoded = tiny.decode_stream(exact, 3, upstream_cache=True)
    assert decoded.shape == (1, 1, 9600) and not torch.allclose(decoded, tiny.decode(exact), atol=1e-3)
    # with upstream_last_frame too, upstream's chunked encode: a partial last token is dropped when the
    # clip spans several chunks, and is the filler when one chunk holds the clip (upstream runs offline)
    y = x[..., : 9600 - 100]
    dropped = tiny.encode_stream(y, 720, upstream_cache=True, upstream_last_frame=True)
    assert torch.equal(dropped.ids, tiny.encode_stream(y, 720, upstream_cache=True).ids[..., :39])
    one = tiny.encode_stream(short[..., :2300], 2400, upstream_cache=True, upstream_last_frame=True)
    assert torch.equal(one.ids, tiny.encode(short[..., :2300], upstream_last_frame=True).ids)
    with pytest.raises(ValueError, match="does not fit"):
        tiny.encode_stream(x, 4800, upstream_cache=True)  # longer than the 0.1 s window, as upstream refuses
