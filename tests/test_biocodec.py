"""BioCodec: sizes and rates, real-EEG round trips, batching, gradients, training, save/load, Hub and the
upstream converter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from biocodec_layout import biocodec_shapes, parameter_count
from tokenizer_checks import (
    assert_batch_equals_single_items,
    assert_every_parameter_has_a_gradient,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)

import zoo
from zoo.errors import CheckpointError, HubError
from zoo.hub import load_weights, read_state_dict
from zoo.io import read_eeg
from zoo.losses import EEGReconstructionLoss
from zoo.models.eeg.biocodec import convert_biocodec
from zoo.nn.audio import SEANetDecoder, SEANetEncoder
from zoo.quantizers import ResidualVQ

PAPER_PARAMS = 3.15e6  # the paper's and README's size
TINY_UPSTREAM = {"n_filters": 8, "n_residual_layers": 1, "lstm_layers": 0, "dimension": 32}


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    torch.manual_seed(0)
    return zoo.create("biocodec_tiny").eval()


@pytest.fixture(scope="module")
def recording(shared_data):
    """Real 64-channel EEG at 160 Hz (a montage and rate other than the model's)."""
    return read_eeg(shared_data / "eeg/mne_testing/EDF/test_edf_overlapping_annotations.edf")


@pytest.fixture(scope="module")
def windows(shared_data) -> torch.Tensor:
    """Normalised single-channel 5 s windows of real EEG, as EEGDataModule gives them for training."""
    rec = read_eeg(shared_data / "eeg/eeglab/test.edf", sample_rate=250.0)
    model = zoo.create("biocodec_tiny")
    offset, gain = model.channel_statistics(rec.data[None])
    x = model.normalise(rec.data[None], offset, gain)[0, :8, :1250]
    return x[:, None].contiguous()


def test_paper_size_rates_and_upstream_parameter_count() -> None:
    with torch.device("meta"):
        model = zoo.create("biocodec")
    assert model.sample_rate == 250 and model.window_samples == 1250 and model.hop_length == 12
    assert model.frames_per_window == 105 and model.codebook_sizes == (256,) * 6
    assert math.isclose(model.tokens_per_second, 250 / 12) and round(model.tokens_per_second, 2) == 20.83
    assert model.bits_per_token == 48 and math.isclose(model.bits_per_second, 1000.0)
    assert model.normalisation == "median_iqr" and model.clip == 10
    layer = model.quantizer.layers[0]
    assert tuple(layer.codebook.shape) == (256, 16) and layer.project_in.bias is not None
    assert layer.ema_decay == 0.99 and layer.kmeans_iters == 50 and layer.restart_threshold == 2.0
    assert layer.commitment_weight == 0.25
    upstream = parameter_count(biocodec_shapes())
    assert model.num_parameters() == upstream == 3_152_770  # weight norm kept: the same parameters
    assert abs(model.num_parameters() / PAPER_PARAMS - 1) < 0.02
    assert model.token_layout()["tokens_per_window"] == 6 * 105


def test_real_eeg_round_trip_any_montage_and_rate(tiny, recording) -> None:
    names = recording.channel_names[:6]
    x = tiny.prepare(recording, channels=names)
    assert x.shape == (1, 6, round(recording.data.shape[1] * 250 / recording.sample_rate))
    tokens = tiny.encode(x, overlap=0.25)
    count = tokens.grid[1]
    assert tokens.ids.shape == (1, 2, 6, count, 105) and tokens.grid == (6, count, 105)
    assert tokens.side["gain"].shape == (1, 6)
    tokens.meta.update(tiny.media_meta(recording, channels=names))
    out = tiny.decode(tokens)
    assert out.shape == x.shape and torch.isfinite(out).all()
    finished = tiny.finish(out, tokens)
    assert finished.channel_names == names and finished.sample_rate == 250.0
    # the per-channel median and IQR travel with the tokens, so the output is in the input's units
    offset, gain = tiny.channel_statistics(x)
    torch.testing.assert_close(tokens.side["offset"], offset)
    assert bool((out.median(-1).values - offset).abs().le(5 * gain).all())


def test_normalisation_is_ch2files_median_and_iqr(tiny, recording) -> None:
    """BioCodec's ch2file.py: subtract each channel's median, divide by scipy's IQR + 1e-6 (float32, over
    the whole recording), clip at +-10 when loading; upstream keeps whole 5 s windows only."""
    from scipy.stats import iqr

    x = tiny.prepare(recording, channels=recording.channel_names[:4])[..., :5000]
    x[0, 1, 100] = 5e4  # an artefact: clipped after normalisation, barely moves the IQR
    tokens = tiny.encode(x, drop_partial=True)
    data = x[0].numpy()
    median = np.median(data, axis=1, keepdims=True)
    assert np.array_equal(tokens.side["offset"][0].numpy(), median[:, 0])
    assert np.array_equal(tokens.side["gain"][0].numpy(), iqr(data - median, axis=1) + np.float32(1e-6))
    assert tokens.grid[1] == 4 and tokens.meta["num_samples"] == 5000
    windows = tiny.normalise(x, tokens.side["offset"], tokens.side["gain"])
    assert float(windows.abs().max()) == 10.0


def test_encode_searches_codes_by_upstreams_cosine_argmax() -> None:
    """``encode_windows`` ranks codes by float32 cosine similarity as upstream's codebook does; away from
    near-ties that is the quantizer's own nearest code, stage after stage."""
    torch.manual_seed(0)
    model = zoo.create("biocodec", n_filters=4, lstm_layers=0, dimension=32, codebook_dim=4).eval()
    for layer in model.quantizer.layers:
        layer.codebook.copy_(torch.nn.functional.normalize(torch.randn_like(layer.codebook), dim=-1))
        layer.initted.fill_(True)
    z = torch.randn(3, 32, 40)
    ids = model.residual_search(z)
    assert ids.shape == (3, 6, 40) and torch.equal(ids, model.quantizer.encode(z))
    first = model.quantizer.layers[0]
    x = torch.nn.functional.normalize(first.project_in(z.transpose(1, 2)), dim=-1)
    expected = (x @ torch.nn.functional.normalize(first.codebook, dim=-1).t()).argmax(-1)
    assert torch.equal(ids[:, 0], expected)


def test_batch_equals_single_items(tiny, recording) -> None:
    x = tiny.prepare(recording, channels=recording.channel_names[:3])[..., :2000]
    batch = torch.cat([x, x.flip(-1), 3 * x + 10])
    assert_batch_equals_single_items(tiny, batch)


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match=r"expected EEG \[B, C, T\]"):
        tiny.encode(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 2, 300), float("nan")))
    with pytest.raises(ValueError, match=r"single-channel windows \[B, 1, L\]"):
        tiny(torch.zeros(2, 3, 1250))
    tokens = tiny.encode(torch.randn(1, 2, 1300))
    tokens.ids[0, 1, 0, 0, 0] = 64
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)


def test_every_parameter_gets_a_gradient(windows) -> None:
    torch.manual_seed(0)
    model = zoo.create("biocodec_tiny", lstm_layers=1).train()
    out = model(windows)
    assert out.recon.shape == windows.shape and out.ids.shape == (8, 2, 105)
    loss = EEGReconstructionLoss()(out.recon, windows) + sum(out.losses.values())
    loss.backward()
    assert_every_parameter_has_a_gradient(model)
    assert set(out.losses) == {"vq/commit"} and all(bool(q.initted) for q in model.quantizer.layers)
    assert model.last_layer() is model.decoder.model[-1].conv.parametrizations.weight.original1


def test_training_steps_reduce_the_loss(windows, single_thread) -> None:
    """The paper's objective (0.2 Huber + multi-scale STFT) plus the commitment loss, Adam (0.5, 0.9)."""
    torch.manual_seed(0)
    model = zoo.create("biocodec_tiny").train()
    assert_training_reduces_loss(
        model, windows, steps=60, lr=5e-3, ratio=0.8, reconstruction=EEGReconstructionLoss(), betas=(0.5, 0.9)
    )


def test_causal_seanet_and_detached_residuals() -> None:
    """Outputs never depend on later inputs (beyond the encoder's ragged last frame), and BioCodec's
    residual VQ sends later stages' commitment gradients to the encoder through the identity alone."""
    torch.manual_seed(0)
    kw = {"dimension": 16, "n_filters": 4, "ratios": (3, 2, 2), "kernel_size": 3, "last_kernel_size": 3}
    kw |= {"causal": True, "true_skip": True, "compress": 1, "lstm_layers": 1, "weight_norm": True}
    enc, dec = SEANetEncoder(**kw), SEANetDecoder(**kw)
    x = torch.randn(1, 1, 240)
    y = x.clone()
    y[..., 200:] = torch.randn(40)
    torch.testing.assert_close(enc(x)[..., :16], enc(y)[..., :16])  # frames 0..15 end before sample 192
    z = torch.randn(1, 16, 20)
    w = z.clone()
    w[..., 15:] = 0
    torch.testing.assert_close(dec(z)[..., : 15 * 12], dec(w)[..., : 15 * 12])
    rvq = ResidualVQ(8, 2, 16, detach_residual=True, codebook_dim=4)
    z = torch.randn(2, 8, 5, requires_grad=True)
    out = rvq(z)
    (grad,) = torch.autograd.grad(out.losses["vq/commit"], z)
    layers = rvq.layers
    q1, q2 = (layers[i].codebook[out.ids[:, i]] for i in (0, 1))
    z_leaf = z.detach().requires_grad_()
    expected = torch.nn.functional.mse_loss(layers[0].project_in(z_leaf.transpose(1, 2)), q1)
    expected = expected + torch.nn.functional.mse_loss(
        layers[1].project_in((z_leaf - layers[0].lookup(out.ids[:, 0]).detach()).transpose(1, 2)), q2
    )
    (want,) = torch.autograd.grad(0.25 * expected, z_leaf)
    torch.testing.assert_close(grad, want)


def test_save_load_and_hub_round_trip(tmp_path, tiny, hub) -> None:
    x = torch.randn(2, 3, 1400) * 20 + 5
    sha = assert_round_trips(tmp_path, tiny, x, repo_id="zoo-tests/biocodec-tiny")
    tokens = tiny.encode(x)
    assert set(tokens.side) == {"offset", "gain"}
    loaded = zoo.load(f"hf-hub:zoo-tests/biocodec-tiny@{sha}")
    torch.testing.assert_close(loaded.decode(tokens), tiny.decode(tokens))


def test_released_checkpoint_is_not_on_the_hub() -> None:
    info = zoo.info("biocodec.tueg")
    assert info["family"] == "biocodec" and info["parameters"] == 3_152_770
    with pytest.raises(
        HubError, match=r"not hosted.*biocodec_ckpt\.pt.*zoo\.load_upstream\('biocodec\.tueg'"
    ):
        zoo.load("biocodec.tueg")


def _upstream_checkpoint(tmp_path, shapes) -> tuple[dict, object]:
    """A file laid out as trainer_eeg.py saves it: compiled-model keys, Adam and scheduler states."""
    state = random_state_dict(shapes)
    for key in state:
        if key.endswith("_codebook.inited"):
            state[key] = torch.ones(1)
        if key.endswith("_codebook.cluster_size"):
            state[key] = state[key].abs()
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.Adam(params, lr=1e-4, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    sum(p.sum() for p in params).backward()
    opt.step()
    sched.step()
    scheduler_state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    scheduler_state |= {"warmup_iter": 48825, "warmup_ratio": 5e-4, "warmup": "linear", "max_iter": 195300}
    path = tmp_path / "biocodec_ckpt.pt"
    torch.save(
        {
            "epoch": 20,
            "model_state_dict": {f"_orig_mod.{k}": v for k, v in state.items()},
            "optimizer_state_dict": opt.state_dict(),
            "scheduler_state_dict": scheduler_state,
        },
        path,
    )
    return state, path


def test_converter_loads_the_released_layout_strictly(tmp_path) -> None:
    with torch.device("meta"):
        paper = zoo.create("biocodec")
    converted = convert_biocodec({f"_orig_mod.{k}": torch.empty(s) for k, s in biocodec_shapes().items()})
    assert set(converted) == set(paper.state_dict())
    state, path = _upstream_checkpoint(
        tmp_path, biocodec_shapes(codebook_size=64, num_quantizers=2, **TINY_UPSTREAM)
    )
    torch.load(path, weights_only=True)  # the whole file, optimizer and scheduler included
    model = zoo.load_upstream("biocodec.tueg", path, arch="biocodec_tiny")
    assert not model.training
    layer = model.quantizer.layers[1]
    torch.testing.assert_close(layer.codebook, state["quantizer.vq.layers.1._codebook.embed"])
    torch.testing.assert_close(layer.embed_sum, state["quantizer.vq.layers.1._codebook.embed_avg"])
    assert layer.initted.dtype == torch.bool and bool(layer.initted)
    conv = model.encoder.model[0].conv
    g = state["encoder.model.0.conv.conv.parametrizations.weight.original0"]
    v = state["encoder.model.0.conv.conv.parametrizations.weight.original1"]
    torch.testing.assert_close(conv.weight, g * v / v.flatten(1).norm(dim=1)[:, None, None])
    tokens = model.encode(torch.randn(1, 2, 1250))
    assert tokens.ids.shape == (1, 2, 2, 1, 105)


def test_converter_folds_weight_norm_and_reports_foreign_layouts(tmp_path) -> None:
    state = random_state_dict(biocodec_shapes(codebook_size=64, num_quantizers=2, **TINY_UPSTREAM))
    plain = zoo.create("biocodec_tiny", weight_norm=False)
    load_weights(plain, convert_biocodec(state, plain), "tiny upstream, folded")
    wn = zoo.create("biocodec_tiny")
    old_style = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    load_weights(wn, convert_biocodec(old_style, wn), "tiny upstream, weight_g/v")
    x = torch.randn(1, 1, 1250)
    torch.testing.assert_close(plain.encoder(x), wn.encoder(x))
    torch.testing.assert_close(plain.decoder.model[-1].conv.weight, wn.decoder.model[-1].conv.weight)
    extra = dict(state, **{"quantizer.vq.layers.2.project_in.bias": torch.zeros(4)})
    del extra["decoder.model.0.conv.conv.bias"]
    with pytest.raises(
        CheckpointError, match="missing keys: decoder.model.0.conv.bias.*unexpected keys: quantizer.layers.2"
    ):
        load_weights(wn, convert_biocodec(extra, wn), "upstream")
    del state["encoder.model.0.conv.conv.parametrizations.weight.original1"]
    with pytest.raises(KeyError, match="direction"):
        convert_biocodec(state, wn)
    with pytest.raises(CheckpointError, match="model_state_dict"):
        torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pt")
        read_state_dict(tmp_path / "other.pt", "model_state_dict")
