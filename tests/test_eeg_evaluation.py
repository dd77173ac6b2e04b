"""EEG downstream evaluation: metrics against hand-computed values, the stimulus-locked task's guarantees,
and token and raw classifiers on the EEGLAB tutorial recording with the exact test tokenizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch
from test_eeg_tokenizer import HoldQuantizer

from zoo.evaluation.eeg import (
    TokenEmbedding,
    balanced_accuracy,
    band_powers,
    codebook_usage,
    codebook_vectors,
    cohen_kappa,
    evaluate_raw,
    evaluate_tokenizer,
    reconstruction_metrics,
    recording_statistics,
    stimulus_locked_task,
    token_embeddings,
    welch_psd,
    window_ids,
)
from zoo.io import EEGRecording, read_eeg


class HoldWithCodebooks(HoldQuantizer):
    """The hold quantizer with its levels offered as codebook vectors (the second stage is 1/8 scale)."""

    def codebook_vectors(self) -> list[torch.Tensor]:
        return [self.levels[:, None], self.levels[:, None] / 8]


def test_balanced_accuracy_and_kappa_by_hand() -> None:
    truth, guess = [0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]
    # recalls 3/4 and 1/2; p_o = 4/6, p_e = (4/6)^2 + (2/6)^2 = 5/9, kappa = (2/3 - 5/9) / (4/9) = 1/4
    assert balanced_accuracy(truth, guess) == pytest.approx(0.625)
    assert cohen_kappa(truth, guess) == pytest.approx(0.25)
    assert cohen_kappa([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)  # chance agreement
    assert cohen_kappa([0, 1, 2], [0, 1, 2]) == 1.0 and balanced_accuracy([0, 1, 2], [0, 1, 2]) == 1.0
    assert cohen_kappa([0, 1], [1, 0]) == pytest.approx(-1.0)
    assert balanced_accuracy([1, 1, 1, 0], [1, 1, 1, 1]) == pytest.approx(0.5)  # majority guess
    with pytest.raises(ValueError, match="equally many"):
        balanced_accuracy([0, 1], [0])


def test_welch_psd_matches_scipy_and_bands_find_a_rhythm() -> None:
    rate = 128.0
    t = torch.arange(1280) / rate
    x = torch.stack(
        [10 * torch.sin(2 * math.pi * 10 * t), torch.randn(1280, generator=torch.Generator().manual_seed(0))]
    )
    freqs, psd = welch_psd(x, rate)
    ref_f, ref = scipy.signal.welch(x.double().numpy(), rate, window="hann", nperseg=256, detrend="constant")
    np.testing.assert_allclose(freqs.numpy(), ref_f)
    # scipy's default Hann is periodic, ours symmetric: same to within a few percent
    np.testing.assert_allclose(psd.numpy().sum(-1), ref.sum(-1), rtol=0.05)
    powers = band_powers(x[:1], rate)
    assert max(powers, key=lambda b: float(powers[b][0])) == "alpha"
    assert float(powers["alpha"][0]) == pytest.approx(50.0, rel=0.1)  # a sine of amplitude 10 has power 50
    assert set(band_powers(x, 50.0)) == {"delta", "theta", "alpha", "beta"}  # gamma starts above Nyquist


def test_reconstruction_metrics_by_hand() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 1024, generator=g) * 20 + 5
    same = reconstruction_metrics(x, x, 128.0)
    assert same["nmse"] == pytest.approx(0.0, abs=1e-12) and same["pearson"] == pytest.approx(1.0)
    assert set(same["band_power_error"]) == {"delta", "theta", "alpha", "beta", "gamma"}
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same["band_power_error"].values())
    # half the amplitude about each channel's mean: error energy 1/4, power 1/4, correlation intact
    mean = x.mean(-1, keepdim=True)
    half = reconstruction_metrics(x, mean + (x - mean) / 2, 128.0)
    assert half["nmse"] == pytest.approx(0.25) and half["pearson"] == pytest.approx(1.0)
    assert all(v == pytest.approx(0.75) for v in half["band_power_error"].values())
    # a 6 Hz low-pass keeps delta and removes alpha, beta and gamma
    spectrum = torch.fft.rfft(x.double(), dim=-1)
    spectrum[..., torch.fft.rfftfreq(1024, 1 / 128.0) > 6] = 0
    smooth = reconstruction_metrics(x, torch.fft.irfft(spectrum, 1024, dim=-1), 128.0)
    errors = smooth["band_power_error"]
    assert errors["delta"] < 0.05 and min(errors["alpha"], errors["beta"], errors["gamma"]) > 0.95
    assert 0.0 < smooth["pearson"] < 0.5 and smooth["nmse"] > 0.5
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_metrics(x, x[..., :10], 128.0)


def test_codebook_usage_by_hand() -> None:
    one = codebook_usage(torch.tensor([[0, 0, 1, 1]]), [4])
    assert one["usage"] == [0.5] and one["perplexity"][0] == pytest.approx(2.0)
    ids = torch.tensor([[[0, 1, 2, 3], [5, 5, 5, -1]]])  # [B, K, T]; -1 is padding
    two = codebook_usage(ids, [4, 8])
    assert two["usage"] == [1.0, 0.125] and two["perplexity"] == pytest.approx([4.0, 1.0])
    tokens = HoldQuantizer().encode(torch.randn(1, 2, 200))
    assert len(codebook_usage(tokens)["usage"]) == 2
    with pytest.raises(ValueError, match="outside its 4 codes"):
        codebook_usage(torch.tensor([[4]]), [4])


def _recording_with_events(seed: int = 0) -> EEGRecording:
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.choice(np.arange(50, 9800, 10), 40, replace=False))
    onsets = onsets[np.concatenate([[True], np.diff(onsets) > 60])]
    events = [(int(s), "stim") for s in onsets] + [(int(s) + 30, "resp") for s in onsets]
    return EEGRecording(torch.randn(2, 10000), 100.0, ["a", "b"], events=events)


def test_task_is_balanced_time_split_and_seeded() -> None:
    rec = _recording_with_events()
    task = stimulus_locked_task(rec, ["stim"], window_seconds=0.5, offset_seconds=0.1, seed=3)
    window = task.window
    assert window == 50 and task.test_start == 7000
    counts = task.counts()
    assert counts["train_stimulus"] == counts["train_random"] > 0
    assert counts["test_stimulus"] == counts["test_random"] > 0
    starts, labels = task.starts.tolist(), task.labels.tolist()
    stim_onsets = {e.onset + 10 for e in rec.events_labelled("stim")}
    assert {s for s, c in zip(starts, labels, strict=True) if c == 1} <= stim_onsets
    # random windows overlap no stimulus window (kept or dropped) and no other random window
    random = [s for s, c in zip(starts, labels, strict=True) if c == 0]
    for r in random:
        assert all(abs(r - s) >= window for s in stim_onsets)
        assert all(abs(r - q) >= window for q in random if q != r)
    # nothing crosses the split: training windows end before the test span starts
    for s, test in zip(starts, task.is_test.tolist(), strict=True):
        assert (s >= task.test_start) if test else (s + window <= task.test_start)
    again = stimulus_locked_task(rec, ["stim"], window_seconds=0.5, offset_seconds=0.1, seed=3)
    other = stimulus_locked_task(rec, ["stim"], window_seconds=0.5, offset_seconds=0.1, seed=4)
    assert torch.equal(again.starts, task.starts) and not torch.equal(other.starts, task.starts)
    assert torch.equal(other.labels.sort().values, task.labels.sort().values)
    with pytest.raises(ValueError, match=r"no events labelled \['square'\].*'resp', 'stim'"):
        stimulus_locked_task(rec, ["square"])
    with pytest.raises(ValueError, match="random 50-sample windows fit"):
        crowded = EEGRecording(
            torch.randn(1, 1000), 100.0, ["a"], events=[(s, "stim") for s in range(0, 1000, 60)]
        )
        stimulus_locked_task(crowded, ["stim"], window_seconds=0.5)


def test_token_windows_line_up_with_the_signal() -> None:
    model = HoldWithCodebooks().eval()
    data = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0)) * 30
    starts = torch.tensor([0, 37, 480, 900])  # 37: off the hop grid; 100 samples span two tokenizer windows
    ids = window_ids(model, data, starts, 100)
    assert ids.shape == (4, 2, 2, 20)
    # the hold quantizer's value of each frame is the normalised signal's mean over that hop
    values = token_embeddings(model, ids)[..., 0]  # levels[first] + levels[second] / 8
    offset, gain = recording_statistics(model, data)
    torch.testing.assert_close((offset, gain), (data.mean(-1), data.std(-1)))  # HoldQuantizer z-scores
    z = (data - offset[:, None]) / gain[:, None]
    for row, s in enumerate(starts.tolist()):
        expected = z[:, s : s + 100].reshape(2, 20, 5).mean(-1).clamp(-4, 4)
        assert (values[row] - expected).abs().max() <= 0.25 / 16 + 1e-5
    vectors = codebook_vectors(model)
    assert [v.shape for v in vectors] == [(33, 1), (33, 1)]
    assert codebook_vectors(HoldQuantizer()) is None  # no vectors: classifiers learn embeddings
    learned = TokenEmbedding([33, 33], None, dim=6)
    assert learned(ids).shape == (4, 2, 20, 6) and learned.tables[0].weight.requires_grad


def test_token_and_raw_probes_beat_chance_on_the_tutorial_recording(shared_data) -> None:
    torch.set_num_threads(1)
    rec = read_eeg(shared_data / "eeg/eeglab/eeglab_data.set")
    task = stimulus_locked_task(rec, ["square"], window_seconds=1.0, seed=0)
    assert task.counts() == {"train_stimulus": 56, "train_random": 56, "test_stimulus": 24, "test_random": 24}
    raw = evaluate_raw(rec, task, heads=("linear",))[0]
    assert raw["balanced_accuracy"] > 0.8 and raw["kappa"] > 0.6, raw
    out = evaluate_tokenizer(HoldWithCodebooks(), rec, task, name="hold", heads=("linear",))
    probe = out["rows"][0]
    assert probe["model"] == "hold (codebook emb.)" and probe["classifier"] == "linear"
    assert probe["balanced_accuracy"] > 0.7 and probe["kappa"] > 0.4, probe
    assert probe["test_windows"] == 48 and probe["ci_low"] < probe["balanced_accuracy"] < probe["ci_high"]
    recon = out["reconstruction"]
    assert recon["pearson"] > 0.8 and recon["nmse"] < 0.4
    assert recon["band_power_error"]["delta"] < recon["band_power_error"]["gamma"]  # a 5-sample hold smooths
    span = out["original"]
    assert span.shape == out["reconstructed"].shape and span.shape[0] == 32
    assert abs(span.shape[1] - 0.3 * rec.duration * 100) <= 2  # the test span at the model's 100 Hz
    assert all(0 < u <= 1 for u in out["usage"]["usage"])
