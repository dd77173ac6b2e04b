"""TFM-Tokenizer and its encoder: sizes and rates, the STFT and the masking, real-EEG round trips,
batching, gradients, training, save/load, Hub, the upstream converters and masked token prediction."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from tfm_layout import parameter_count, tfm_classifier_shapes, tfm_tokenizer_shapes
from tokenizer_checks import (
    assert_batch_equals_single_items,
    assert_every_parameter_has_a_gradient,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)

import zoo
from zoo.errors import HubError
from zoo.hub import load_weights
from zoo.io import EEGRecording, read_eeg
from zoo.models.eeg import TFMEncoder, convert_tfm_encoder
from zoo.models.eeg.tfm_tokenizer import (
    complementary_masks,
    convert_tfm_tokenizer,
    griffin_lim,
    magnitude_stft,
)

# Upstream parameters of TFM_VQVAE2_deep "2x2x8" counted from tfm_layout (its codebook is a parameter there);
# the paper reports 1.17 M.
UPSTREAM_TOKENIZER_PARAMS = 1_166_100
# TFM_TOKEN_Classifier 64x4 with a 6-class head, counted from tfm_layout, whose key set and shapes match the
# released tfm_encoder_best_model.pth (TUEV); the paper reports 0.73 M.
UPSTREAM_CLASSIFIER_PARAMS = 724_998
TINY_UPSTREAM = {"emb_size": 32, "code_book_size": 512, "depths": (1, 1, 1)}
EDF = "eeg/mne_testing/EDF/test_edf_overlapping_annotations.edf"


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    torch.manual_seed(0)
    return zoo.create("tfm_tokenizer_tiny").eval()


@pytest.fixture(scope="module")
def recording(shared_data):
    """BCI2000 scalp EEG (64 channels at 128 Hz) from MNE's test data."""
    return read_eeg(shared_data / EDF)


@pytest.fixture(scope="module")
def windows(recording) -> torch.Tensor:
    """Normalised 5 s single-channel windows [32, 1, 1000] at 200 Hz, as EEGDataModule(per_channel) gives."""
    from zoo.data.eeg import normalise_channels

    x = normalise_channels(recording.resample(200.0).data[:8, :4000], "percentile95")
    return x.reshape(8, 4, 1000).reshape(32, 1, 1000)


def test_paper_size_rates_and_upstream_parameter_count() -> None:
    with torch.device("meta"):
        model = zoo.create("tfm_tokenizer")
        ten_seconds = zoo.create("tfm_tokenizer", window_samples=2000)
    upstream = parameter_count(tfm_tokenizer_shapes())
    assert upstream == UPSTREAM_TOKENIZER_PARAMS
    ours = model.num_parameters() + model.quantizer.codebook.numel()  # the EMA codebook is a buffer here
    assert ours == upstream and abs(ours / 1.17e6 - 1) < 0.02
    assert tuple(model.quantizer.codebook.shape) == (8192, 64) and model.codebook_sizes == (8192,)
    assert model.sample_rate == 200 and model.window_samples == 1000 and model.hop_length == 100
    assert model.normalisation == "percentile95"
    assert model.frames_per_window == 9 and ten_seconds.frames_per_window == 19
    assert model.tokens_per_second == 2 and model.bits_per_token == 13 and model.bits_per_second == 26
    layout = model.token_layout()
    assert layout["tokens_per_window"] == 9 and layout["window_seconds"] == 5.0
    assert zoo.info("tfm_tokenizer")["family"] == "tfm" and zoo.info("tfm_tokenizer_tiny")["size"] == "tiny"


def test_stft_is_one_second_hann_magnitude_without_centring(tiny) -> None:
    t = torch.arange(1000) / 200
    tone = torch.sin(2 * torch.pi * 10 * t)[None, None]
    with torch.device("meta"):
        paper = zoo.create("tfm_tokenizer")
    assert paper.spectrogram_scale == 1.0 and tiny.spectrogram_scale == 10.0
    torch.testing.assert_close(tiny.spectrogram(tone) * 10, tiny.magnitude(tone))
    spec = tiny.magnitude(tone)
    assert spec.shape == (1, 100, 9)
    assert bool((spec.argmax(1) == 10).all())
    # a unit sine's peak is half the window's sum (100 for Hann 200); no log, no normalisation
    torch.testing.assert_close(spec[0, 10], torch.full((9,), 50.0), atol=1e-3, rtol=0)
    assert spec[0, 30:].max() < 1e-3
    direct = torch.stft(
        tone[:, 0], 200, 100, window=torch.hann_window(200), center=False, return_complex=True
    )
    torch.testing.assert_close(spec, direct.abs()[:, :100])


def test_encode_normalises_each_window_by_its_own_percentile(tiny, windows) -> None:
    """Upstream's loaders divide every stored window (per channel) by quantile(|x|, 0.95) + 1e-8."""
    x = torch.stack([windows[0:3, 0].reshape(-1) * torch.tensor([3.0, 40.0, 0.5]).repeat_interleave(1000)])
    x = torch.stack([x[0], 0.01 * windows[3:6, 0].reshape(-1)])[None]  # [1, 2, 3000]: 2 channels, 3 windows
    tokens = tiny.encode(x)
    expected = np.quantile(np.abs(x.double().numpy()).reshape(1, 2, 3, 1000), 0.95, axis=-1) + 1e-8
    assert tokens.side["gain"].shape == (1, 2, 3) and torch.equal(tokens.side["offset"], torch.zeros(1, 2, 3))
    np.testing.assert_allclose(tokens.side["gain"].double().numpy(), expected, rtol=1e-6)
    louder = x.clone()
    louder[..., 1000:2000] *= 250.0  # one window 250 times louder: no id anywhere changes
    loud_tokens = tiny.encode(louder)
    assert torch.equal(loud_tokens.ids, tokens.ids)
    # decoding restores each window's own scale
    spec, loud = tiny.decode_spectrogram(tokens), tiny.decode_spectrogram(loud_tokens)
    torch.testing.assert_close(loud[:, :, 1], 250 * spec[:, :, 1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loud[:, :, [0, 2]], spec[:, :, [0, 2]])
    assert tiny.decode(tokens).shape == x.shape


def test_tags_set_window_length_and_preprocessing(tmp_path) -> None:
    """TUAB and CHB-MIT tokenizers work on 10 s windows, CHB-MIT's script filters nothing, TUAB's stores
    volts (so its 1e-8 guard is 0.01 uV); the caller's own arguments still win."""
    from zoo._registry import get_pretrained_cfg

    file = tmp_path / "tfm_tokenizer_last.pth"
    torch.save(random_state_dict(tfm_tokenizer_shapes(**TINY_UPSTREAM)), file)
    load = functools.partial(zoo.load_upstream, path=file, arch="tfm_tokenizer_tiny")
    tuev, tuab, chbmit = (load(f"tfm_tokenizer.{t}") for t in ("tuev", "tuab", "chbmit"))
    assert (tuev.window_samples, tuab.window_samples, chbmit.window_samples) == (1000, 2000, 2000)
    assert (tuev.highpass, tuev.lowpass, tuev.notch, tuev.preprocess_rate) == (0.1, 75.0, 50.0, 256.0)
    assert (chbmit.highpass, chbmit.lowpass, chbmit.notch) == (None, None, None)
    assert tuab.norm_eps == 1e-2 and tuev.norm_eps == 1e-8 and tuab.frames_per_window == 19
    assert tuab.config["window_samples"] == 2000  # saved with the model, so zoo.load(dir) keeps it
    assert get_pretrained_cfg("tfm_tokenizer.multi_dataset")[1].model_args == {}
    mine = load("tfm_tokenizer.tuab", window_samples=1000, notch=60.0)
    assert (mine.window_samples, mine.notch) == (1000, 60.0)
    for tag in ("multi_dataset", "tuev", "tuab", "chbmit"):
        assert "@ d716ab9" in get_pretrained_cfg(f"tfm_tokenizer.{tag}")[1].upstream


def test_prepare_filters_resamples_to_256_then_each_window_to_200() -> None:
    """Upstream's TUAB/TUEV scripts: band-pass 0.1-75 Hz and 50 Hz notch at the recording's rate, 256 Hz;
    its loaders: every 5 s (1280-sample) window resampled to 1000 samples on its own."""
    from scipy.signal import resample

    torch.manual_seed(0)
    t = torch.arange(256 * 40) / 256.0
    tones = {
        5.0: 30.0,
        12.0: 20.0,
        50.0: 40.0,
        95.0: 25.0,
    }  # Hz: microvolts (95: past the 93.75 Hz stop edge)
    signal = sum(a * torch.sin(2 * torch.pi * f * t) for f, a in tones.items()) + 500.0
    rec = EEGRecording(torch.stack([signal, 0.5 * signal]), 256.0, ["C3", "C4"])
    unfiltered = zoo.create("tfm_tokenizer_tiny", highpass=None, lowpass=None, notch=None).prepare(rec)
    blocks = rec.data.double().numpy().reshape(2, 8, 1280)
    expected = resample(blocks, 1000, axis=-1).reshape(2, 8000)
    np.testing.assert_allclose(unfiltered[0].double().numpy(), expected, atol=1e-3)
    x = zoo.create("tfm_tokenizer_tiny").prepare(rec)[0, 0, 2000:6000].double()  # 20 s away from the ends
    spectrum = torch.fft.rfft(x).abs() * 2 / len(x)  # amplitudes at 0.05 Hz resolution (200 Hz, 20 s)
    amplitude = {f: float(spectrum[round(f * 20)]) for f in tones}
    assert abs(amplitude[5.0] / 30.0 - 1) < 0.02 and abs(amplitude[12.0] / 20.0 - 1) < 0.02  # pass band
    assert amplitude[50.0] < 40.0 * 0.01 and amplitude[95.0] < 25.0 * 0.01  # notch and low-pass
    no_offset = EEGRecording(rec.data - 500.0 * torch.tensor([[1.0], [0.5]]), 256.0, ["C3", "C4"])
    reference = zoo.create("tfm_tokenizer_tiny").prepare(no_offset)[0, 0, 2000:6000].double()
    assert (x - reference).abs().max() < 1e-3  # the 500 uV offset is gone
    tokens = zoo.create("tfm_tokenizer_tiny").encode(x[None, None].float(), drop_partial=True)
    assert tokens.grid[1] == 4


def test_a_dc_offset_changes_no_id(tiny, recording) -> None:
    """The 0.1 Hz high-pass removes any constant offset before the per-window normalisation."""
    rec = recording.pick(recording.channel_names[:6])
    shifted = EEGRecording(rec.data + 500.0, rec.sample_rate, rec.channel_names)
    x, y = tiny.prepare(rec), tiny.prepare(shifted)
    assert (x - y).abs().max() < 1e-3
    assert torch.equal(tiny.encode(x).ids, tiny.encode(y).ids)


def test_masks_are_complementary_band_structured_and_shared_across_the_batch() -> None:
    g = torch.Generator().manual_seed(3)
    keep_a, keep_b = complementary_masks((4, 100, 9), generator=g)
    assert torch.equal(keep_a, ~keep_b) and keep_a.shape == (4, 100, 9)
    assert all(torch.equal(keep_a[0], keep_a[i]) for i in range(4))
    bands = keep_a[0].reshape(20, 5, 9)
    assert bool((bands == bands[:, :1]).all())  # one decision per 5-bin band
    kept_bands = bands.any(2)[:, 0]
    kept_frames = keep_a[0].any(0)
    assert int(kept_bands.sum()) == 10 and int(kept_frames.sum()) == 5  # int(9 * 0.5) = 4 frames masked
    assert torch.equal(keep_a[0], kept_bands.repeat_interleave(5)[:, None] & kept_frames[None])
    again = complementary_masks((4, 100, 9), generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(again, keep_a)


def test_training_output_reconstructs_the_full_spectrogram_from_both_views(tiny, windows) -> None:
    tiny.train()
    x = windows[:6]
    out = tiny.training_output(x, 0, generator=torch.Generator().manual_seed(0))
    spec = tiny.spectrogram(x)
    assert out.recon.shape == (12, 100, 9) and torch.equal(out.target, torch.cat([spec, spec]))
    assert set(out.losses) == {"rec/spectrogram", "vq/commit"}
    expected = torch.nn.functional.mse_loss(out.recon[:6], spec) + torch.nn.functional.mse_loss(
        out.recon[6:], spec
    )
    torch.testing.assert_close(out.losses["rec/spectrogram"], expected)
    assert out.ids.shape == (12, 9)
    # the views differ: one model sees a masked spectrogram, the other its complement
    assert not torch.equal(out.recon[:6], out.recon[6:])


def test_real_eeg_round_trip_keeps_the_recording_shape(tiny, recording) -> None:
    names = recording.channel_names[:4]
    x = tiny.prepare(recording, channels=names)
    assert x.shape == (1, 4, round(recording.data.shape[1] * 200 / recording.sample_rate))
    tokens = tiny.encode(x, overlap=0.5)
    tokens.meta.update(tiny.media_meta(recording, channels=names))
    count = tokens.grid[1]
    assert tokens.ids.shape == (1, 4, count, 9) and tokens.grid == (4, count, 9)
    out = tiny.decode(tokens)
    assert out.shape == x.shape and torch.isfinite(out).all()
    spec = tiny.decode_spectrogram(tokens)
    assert spec.shape == (1, 4, count, 100, 9) and bool((spec[..., 0, :] != 0).any())
    finished = tiny.finish(out, tokens)
    assert finished.channel_names == names and finished.sample_rate == 200.0


def test_griffin_lim_recovers_a_signal_with_the_given_magnitudes(windows) -> None:
    x = windows[:4, 0].double()
    magnitude = magnitude_stft(x, 200, 100, 100)
    y = griffin_lim(magnitude, 200, 100, iterations=64)
    assert y.shape == x.shape and torch.equal(y, griffin_lim(magnitude, 200, 100, iterations=64))
    rebuilt = magnitude_stft(y, 200, 100, 100)
    convergence = (rebuilt - magnitude).norm() / magnitude.norm()
    assert convergence < 0.25, convergence
    # the signal keeps its level: the half frames at either end, which only one tapering window
    # covers, must not be amplified
    ratio = y.std(-1) / x.std(-1)
    assert bool(((ratio > 0.6) & (ratio < 1.2)).all()), ratio


def test_batch_equals_single_items(tiny, recording) -> None:
    x = tiny.prepare(recording, channels=recording.channel_names[:3])[..., :2300]
    batch = torch.cat([x, x.flip(-1), 0.5 * x.roll(1, 1)])
    assert_batch_equals_single_items(tiny, batch)


def test_bad_inputs_are_rejected(tiny) -> None:
    with pytest.raises(ValueError, match=r"expected normalised single-channel windows"):
        tiny(torch.zeros(2, 1, 950))
    with pytest.raises(ValueError, match=r"expected EEG \[B, C, T\]"):
        tiny.encode(torch.zeros(3, 100))
    with pytest.raises(ValueError, match="multiple of hop_length"):
        zoo.create("tfm_tokenizer_tiny", window_samples=1050)
    tokens = tiny.encode(torch.randn(1, 2, 1000))
    tokens.ids[0, 0, 0, 0] = 512
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)


def test_every_parameter_gets_a_gradient(windows) -> None:
    torch.manual_seed(0)
    model = zoo.create("tfm_tokenizer_tiny").train()
    out = model.training_output(windows[:8], 0)
    sum(out.losses.values()).backward()
    assert_every_parameter_has_a_gradient(model)
    assert not model.quantizer.codebook.requires_grad  # moved by its EMA only


def test_training_steps_reduce_the_loss(windows, single_thread) -> None:
    torch.manual_seed(0)
    model = zoo.create("tfm_tokenizer_tiny").train()
    codebook = model.quantizer.codebook.clone()
    assert_training_reduces_loss(
        model, windows, lr=5e-3, reconstruction=None
    )  # it scores its own spectrogram
    assert not torch.equal(codebook, model.quantizer.codebook)  # the EMA moved the codes


def test_trainer_module_uses_the_models_own_objective_and_spectrogram_target(windows) -> None:
    from zoo.training import TokenizerModule

    module = TokenizerModule("tfm_tokenizer_tiny", losses={})
    assert module.loss_weights == {}
    module.validation_step(windows[:4], 0)
    original, recon = module._val_batch
    assert original.shape == recon.shape == (4, 100, 9) and module._val_spectral
    with pytest.raises(ValueError, match="unknown loss"):
        TokenizerModule("tfm_tokenizer_tiny", losses={"spectral": 1.0})


def test_save_load_and_hub_round_trip(tmp_path, tiny, windows, hub) -> None:
    x = 20 * windows[:6, 0, :].reshape(2, 3, 1000)[..., :900]
    assert_round_trips(tmp_path, tiny, x, repo_id="zoo-tests/tfm-tokenizer-tiny")


def test_converter_loads_the_upstream_layout_strictly() -> None:
    upstream = random_state_dict(tfm_tokenizer_shapes(**TINY_UPSTREAM))
    model = zoo.create("tfm_tokenizer_tiny")
    load_weights(model, convert_tfm_tokenizer(upstream, model), "tiny upstream")
    torch.testing.assert_close(model.quantizer.codebook, upstream["quantizer.embedding.weight"])
    torch.testing.assert_close(model.quantizer.embed_sum, upstream["quantizer.ema_w"])
    torch.testing.assert_close(model.quantizer.cluster_size, upstream["quantizer.cluster_size"])
    torch.testing.assert_close(
        model.freq_transformer.layers.layers[0][1].fn.fn.w1.weight,
        upstream["trans_freq_encoder.transformer.layers.layers.0.1.fn.fn.w1.weight"],
    )
    torch.testing.assert_close(model.spectrum_head[2].bias, upstream["decoder.2.bias"])
    torch.testing.assert_close(model.freq_gate.weight, upstream["freq_patch_embedding_2_atten.0.weight"])
    # DDP / Lightning prefixes are stripped; foreign keys are reported, not dropped
    prefixed = {f"module.{k}": v for k, v in upstream.items()}
    load_weights(model, convert_tfm_tokenizer(prefixed, model), "prefixed")
    prefixed["module.extra.weight"] = torch.zeros(1)
    with pytest.raises(Exception, match="extra.weight"):
        load_weights(model, convert_tfm_tokenizer(prefixed, model), "foreign")


def test_converter_covers_the_paper_size_key_set() -> None:
    shapes = tfm_tokenizer_shapes()
    converted = convert_tfm_tokenizer({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    with torch.device("meta"):
        model = zoo.create("tfm_tokenizer")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours


def test_pretrained_tags_explain_the_manual_route() -> None:
    from zoo._registry import get_pretrained_cfg

    for tag in ("multi_dataset", "tuev", "tuab", "chbmit"):
        _, cfg = get_pretrained_cfg(f"tfm_tokenizer.{tag}")
        assert cfg.hf_hub_id is None and cfg.converter == "convert_tfm_tokenizer"
        assert cfg.filename.startswith("pretrained_weigths/") and cfg.filename.endswith(
            "tfm_tokenizer_last.pth"
        )
    with pytest.raises(
        HubError, match=r"not hosted on the Hugging Face Hub.*zoo\.load_upstream\('tfm_tokenizer\.tuev'"
    ):
        zoo.load("tfm_tokenizer.tuev")


# ---------------------------------------------------------------------------------------------- encoder
def test_encoder_converter_for_classifier_and_mtp_checkpoints() -> None:
    with torch.device("meta"):
        paper = TFMEncoder(num_classes=6)
    head_free = sum(p.numel() for n, p in paper.named_parameters() if not n.startswith("mtp_head"))
    assert head_free == parameter_count(tfm_classifier_shapes()) == UPSTREAM_CLASSIFIER_PARAMS

    small = {"emb_size": 32, "code_book_size": 64, "depth": 2}
    finetuned = random_state_dict(tfm_classifier_shapes(**small, n_classes=3))
    finetuned["index"] = torch.arange(16)
    model = TFMEncoder(3, vocab_size=64, dim=32, depth=2, heads=4)
    missing, unexpected = model.load_state_dict(convert_tfm_encoder(finetuned), strict=False)
    assert set(missing) == {"mtp_head.weight", "mtp_head.bias"} and not unexpected
    torch.testing.assert_close(model.token_embedding.weight, finetuned["eeg_token_embedding.weight"])

    mtp = random_state_dict(tfm_classifier_shapes(**small, n_classes=64))
    mtp["index"] = torch.arange(16)
    missing, unexpected = model.load_state_dict(convert_tfm_encoder(mtp), strict=False)
    assert set(missing) == {"classification_head.weight", "classification_head.bias"} and not unexpected
    torch.testing.assert_close(model.mtp_head.weight, mtp["classification_head.weight"])
    mtp["index"] = torch.arange(16).flip(0)
    with pytest.raises(ValueError, match="channel index"):
        convert_tfm_encoder(mtp)


def test_encoder_positions_match_upstreams_table() -> None:
    from zoo.models.eeg.tfm_encoder import sinusoidal_positions

    table = sinusoidal_positions(1000, 64)
    torch.testing.assert_close(table[7, 0::2], torch.sin(7 * 10000 ** (-torch.arange(0, 64, 2) / 64)))
    torch.testing.assert_close(table[7, 1::2], torch.cos(7 * 10000 ** (-torch.arange(0, 64, 2) / 64)))


def test_mtp_on_real_eeg_tokens_learns_and_the_encoder_classifies(tiny, recording, single_thread) -> None:
    x = tiny.prepare(recording, channels=recording.channel_names[:4])[..., : 8 * 1000]
    tokens = tiny.encode(x).ids  # [1, 4, 8, 9]: 8 five-second windows of 4 channels
    ids = tokens[0].permute(1, 0, 2)  # [8 windows, 4 channels, 9 frames]
    torch.manual_seed(0)
    encoder = TFMEncoder(2, vocab_size=512, dim=32, depth=1, heads=4, max_frames=32)
    encoder.embed_from_codebook(tiny.quantizer.codebook)
    assert torch.equal(encoder.token_embedding.weight[:512], tiny.quantizer.codebook)
    assert bool((encoder.token_embedding.weight[512] == 0).all())
    opt = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = encoder.mtp_loss(ids, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    # classification from the CLS token: windows of the first two channels vs the last two
    labels = torch.tensor([0, 1]).repeat(8)
    pairs = ids.reshape(8, 2, 2, 9).reshape(16, 2, 9)
    logits = encoder(pairs)
    assert logits.shape == (16, 2)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(encoder(pairs), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    encoder.eval()
    assert (encoder(pairs).argmax(1) == labels).float().mean() >= 0.9
    with pytest.raises(ValueError, match="mask id"):
        encoder.mtp_loss(torch.full((1, 2, 3), 512))
    with pytest.raises(ValueError, match="exceed"):
        encoder(torch.zeros(1, 17, 3, dtype=torch.long))


def test_tiny_learns_window_specific_spectra_instead_of_collapsing(recording, single_thread) -> None:
    """Beyond the mean spectrum: after 150 masked steps the tiny's decodes explain part of how windows differ
    from the average spectrum, and many codes are in use (before `spectrogram_scale` and restarts every
    window got the same code and R^2 stayed below 0)."""
    from zoo.data.eeg import normalise_channels

    x = normalise_channels(recording.resample(200.0).data[:, :12000], "percentile95")
    windows = x.reshape(-1, 1, 1000)
    held_out, train = windows[::7][:64], windows
    torch.manual_seed(0)
    model = zoo.create("tfm_tokenizer_tiny").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(150):
        out = model.training_output(train[torch.randint(0, len(train), (16,), generator=g)], step)
        opt.zero_grad()
        sum(out.losses.values()).backward()
        opt.step()
    model.eval()
    ids = model.encode_windows(held_out)
    decoded, spec = model.decode_windows_spectrogram(ids), model.magnitude(held_out)
    r2 = 1 - ((decoded - spec) ** 2).sum() / ((spec - spec.mean(0, keepdim=True)) ** 2).sum()
    assert r2 > 0.2 and torch.unique(ids).numel() > 32, (float(r2), torch.unique(ids).numel())
