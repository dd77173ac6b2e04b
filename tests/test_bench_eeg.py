"""``zoo bench``'s EEG suite: items, metrics, the classic codecs' rates and errors, the learned row's rate."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.benchmarking import eeg as bench_eeg
from zoo.benchmarking.eeg import (
    DECIMATE_FAMILY,
    FLAC_FAMILY,
    EEGSuite,
    decimate_quantize,
    eeg_metrics,
    flac_bits,
)
from zoo.errors import MediaError

RATE = 128.0


def _sines(
    freqs: list[float], seconds: float = 20.0, rate: float = RATE, amplitude: float = 10.0
) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([amplitude * np.sin(2 * np.pi * f * t + 0.3 * i) for i, f in enumerate(freqs)])


def _write(path: Path, data: np.ndarray, names: list[str], rate: float = RATE) -> Path:
    np.savez(path, data=data.astype(np.float32), sample_rate=np.float64(rate), channel_names=np.array(names))
    return path


def _synthetic_folder(folder: Path) -> Path:
    """Two recordings of mixed rhythms and noise; the first with a flat and a trigger line to be left out."""
    rng = np.random.default_rng(0)
    eeg = _sines([3.0, 7.0, 10.0, 21.0]) + rng.normal(0, 3, (4, int(20 * RATE)))
    extra = np.stack([np.zeros(eeg.shape[-1]), (np.arange(eeg.shape[-1]) % 256 == 0) * 5.0])
    _write(folder / "a.npz", np.concatenate([eeg, extra]), ["Fz", "Cz", "Pz", "Oz", "Flat", "Trigger"])
    _write(folder / "b.npz", eeg[:2] * 2 + 40, ["C3", "C4"])
    return folder


# --------------------------------------------------------------------------------------------------
# metrics


def test_identity_gives_perfect_scores() -> None:
    x = torch.from_numpy(_sines([2.0, 6.0, 10.0, 20.0, 38.0]))
    metrics = eeg_metrics(x, x.clone(), RATE)
    assert metrics["NMSE"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["Pearson r"] == pytest.approx(1.0, abs=1e-9)
    for name in ("band-power err", "delta err", "theta err", "alpha err", "beta err", "gamma err"):
        assert metrics[name] == pytest.approx(0.0, abs=1e-9)


def test_alpha_sine_counts_in_the_alpha_band_only() -> None:
    rhythms = _sines([2.0, 6.0, 10.0, 20.0, 38.0])
    one_channel = torch.from_numpy(rhythms.sum(0, keepdims=True))
    without_alpha = one_channel - torch.from_numpy(rhythms[2:3])
    metrics = eeg_metrics(one_channel, without_alpha, RATE)
    assert metrics["alpha err"] == pytest.approx(1.0, abs=0.02)  # the 10 Hz power is gone
    for band in ("delta err", "theta err", "beta err", "gamma err"):
        assert metrics[band] < 0.02, band
    # the band powers are scipy's Welch estimate (Hann segments of 2 s, half overlapping)
    from scipy.signal import get_window, welch

    from zoo.evaluation.eeg import band_powers

    size = int(2 * RATE)
    freqs, psd = welch(rhythms[2], RATE, window=get_window("hann", size, fftbins=False), nperseg=size)
    alpha = psd[(freqs >= 8) & (freqs < 13)].sum() * (freqs[1] - freqs[0])
    assert float(band_powers(rhythms[2], RATE)["alpha"]) == pytest.approx(alpha, rel=1e-9)
    assert alpha == pytest.approx(10.0**2 / 2, rel=0.02)


def test_correlation_ignores_gain_but_nmse_does_not() -> None:
    x = torch.from_numpy(_sines([5.0, 11.0]))
    metrics = eeg_metrics(x, 0.5 * x, RATE)
    assert metrics["Pearson r"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["NMSE"] == pytest.approx(0.25, rel=1e-6)
    assert eeg_metrics(x, torch.zeros_like(x), RATE)["Pearson r"] == 0.0  # constant decode: r counted 0


def test_metrics_in_channel_blocks_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(5, 2048)))
    y = x + 0.3 * torch.from_numpy(rng.normal(size=(5, 2048)))
    whole = eeg_metrics(x, y, RATE)
    monkeypatch.setattr(bench_eeg, "CHANNEL_BLOCK", 2 * 2048)  # two channels per block
    blocked = eeg_metrics(x, y, RATE)
    assert blocked == pytest.approx(whole, rel=1e-9)


# --------------------------------------------------------------------------------------------------
# classic codecs


@pytest.mark.parametrize("bits", [4, 8, 12])
def test_uniform_quantization_error_is_step_squared_over_twelve(bits: int) -> None:
    rng = np.random.default_rng(bits)
    x = _sines([3.1, 9.7, 17.3]) + rng.normal(0, 2, (3, int(20 * RATE)))
    y, used = decimate_quantize(x, RATE, RATE, bits)
    step = (x.max(-1) - x.min(-1)) / (2**bits - 1)
    expected = np.mean(step**2 / 12 / x.var(-1))
    assert eeg_metrics(torch.from_numpy(x), torch.from_numpy(y), RATE)["NMSE"] == pytest.approx(
        expected, rel=0.1
    )
    assert used == 3 * (x.shape[-1] * bits + 64)  # packed samples + each channel's float32 range
    assert np.abs(x - y).max() <= step.max() / 2 * (1 + 1e-6)


def test_decimation_keeps_slow_rhythms_and_loses_fast_ones() -> None:
    slow, fast = _sines([5.0]), _sines([20.0])
    kept, used = decimate_quantize(slow, RATE, 32.0, 16)
    lost, _ = decimate_quantize(fast, RATE, 16.0, 16)  # 20 Hz is above 16 Hz's Nyquist frequency
    middle = slice(256, -256)  # away from the filters' edges
    assert used == 8 * (-(-slow.shape[-1] // 4) * 16 // 8) + 64
    assert np.mean((kept - slow)[:, middle] ** 2) / slow.var() < 1e-3
    assert np.mean((lost - fast)[:, middle] ** 2) / fast.var() > 0.9


def test_flac_is_lossless_at_its_step_and_counts_the_file() -> None:
    pytest.importorskip("soundfile")
    rng = np.random.default_rng(2)
    x = rng.normal(0, 10, (2, 4096))  # 100 steps of 0.1 uV: about 8.7 bits of entropy per sample
    y, used = flac_bits(x, RATE)
    assert np.abs(x - y).max() <= 0.05 + 1e-9
    assert 7 < used / x.size < 12


def test_classic_rows_bracket_every_learned_rate(tmp_path: Path) -> None:
    suite = EEGSuite()
    items = suite.load_items(str(_synthetic_folder(tmp_path)), None)
    learned = [37.3, 250.0]
    rows, skipped = suite.classic_rows(items, learned)
    ladder = sorted((r for r in rows if r.family == DECIMATE_FAMILY), key=lambda r: r.rate)
    assert len(ladder) >= 4 and all(r.kind == "classic" and r.setting for r in ladder)
    for rate in learned:
        matched = next(r for r in ladder if r.rate >= rate)
        assert matched.rate < 2 * rate  # a point near the learned rate, not just the top of the ladder
    # the rate is what the packed samples and ranges take on these items
    channel_seconds = sum(i.channel_seconds for i in items.items)
    for row in ladder:
        hz, bits = row.extra["sample_rate_hz"], row.extra["bits"]
        used = sum(
            decimate_quantize(i.read().data.double().numpy(), i.sample_rate, hz, bits)[1] for i in items.items
        )
        assert row.rate == pytest.approx(used / channel_seconds)
    # more bits buy less error along the ladder's ends
    assert ladder[-1].metrics["NMSE"] < ladder[0].metrics["NMSE"]
    if "soundfile" in sys.modules:
        (flac,) = [r for r in rows if r.family == FLAC_FAMILY]
        assert flac.metrics["NMSE"] < 1e-4 and flac.metrics["Pearson r"] > 0.99999  # 0.1 uV steps
        assert not skipped


def test_missing_soundfile_skips_flac_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile now raises ImportError
    monkeypatch.setattr(bench_eeg, "RATE_LADDER", (64,))
    suite = EEGSuite()
    items = suite.load_items(str(_synthetic_folder(tmp_path)), 1)
    rows, skipped = suite.classic_rows(items, [])
    assert [r.family for r in rows] == [DECIMATE_FAMILY]
    assert len(skipped) == 1 and "soundfile" in skipped[0] and skipped[0].startswith("FLAC")


# --------------------------------------------------------------------------------------------------
# items


def test_items_leave_out_unusable_channels_and_files(tmp_path: Path) -> None:
    folder = _synthetic_folder(tmp_path)
    np.save(folder / "c.npy", np.zeros((2, 10), np.float32))  # .npy stores no rate: not readable alone
    items = EEGSuite().load_items(str(folder), None)
    assert [i.path.name for i in items.items] == ["a.npz", "b.npz"]
    first = items.items[0]
    assert first.channels == ["Fz", "Cz", "Pz", "Oz"]
    assert set(first.dropped) == {"Flat", "Trigger"}
    assert tuple(first.read().data.shape) == (4, int(20 * RATE))
    assert any("c.npy" in n for n in items.notes) and any("Trigger" in n for n in items.notes)
    assert len(EEGSuite().load_items(str(folder), 1).items) == 1


def test_missing_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(MediaError, match="pass a folder of EEG recordings"):
        EEGSuite().load_items(None, None)
    with pytest.raises(MediaError, match="not found"):
        EEGSuite().load_items(str(tmp_path / "nothing.edf"), None)


# --------------------------------------------------------------------------------------------------
# learned rows, on a crop of a real recording


@pytest.fixture(scope="module")
def real_crop(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 s of 8 channels of the EEGLAB tutorial recording (128 Hz)."""
    from zoo.io import read_eeg

    rec = read_eeg(shared_data / "eeg/eeglab/eeglab_data.set")
    folder = tmp_path_factory.mktemp("eeg_crop")
    _write(
        folder / "crop.npz", rec.data[:8, : int(12 * RATE)].numpy(), rec.channel_names[:8], rec.sample_rate
    )
    return folder


def test_biocodec_row_rate_metrics_speed_and_picture(real_crop: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create("biocodec_tiny").eval()
    suite = EEGSuite()
    items = suite.load_items(str(real_crop), None)
    row = suite.measure_learned(model, items, device=torch.device("cpu"), name="biocodec_tiny")
    # 12 s at 250 Hz = 3000 samples: 3 windows of 1250 (the last zero-padded) x 105 frames x 2 x 6 bits,
    # plus one offset and one gain per channel at 16 bits, per second of each channel
    assert row.rate == pytest.approx((3 * 105 * 2 * 6 + 2 * 16) / 12.0)
    assert row.extra["side_rate"] == pytest.approx(32 / 12.0)
    assert 0 < row.entropy_rate <= row.rate
    assert len(row.extra["codebook_used"]) == 2
    assert set(row.metrics) == {m.name for m in suite.metrics}
    assert all(np.isfinite(v) for v in row.metrics.values())
    assert -1 <= row.metrics["Pearson r"] <= 1 and row.metrics["NMSE"] > 0
    for key in ("encode rec/s", "decode rec/s", "encode ch·s/s", "decode ch·s/s"):
        assert row.speed[key] > 0
    # the reference is the prepared recording: decoding it exactly would score NMSE 0
    x = model.prepare(items.items[0].read())[0]
    assert eeg_metrics(x, x, model.sample_rate)["NMSE"] == 0.0
    rows, _ = suite.classic_rows(items, [row.rate])
    assert any(r.family == DECIMATE_FAMILY and r.rate >= row.rate for r in rows)
    picture = suite.samples(model, items, rows, tmp_path / "eeg.png", device=torch.device("cpu"))
    assert picture is not None and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tfm_rate_counts_a_side_statistic_pair_per_window(real_crop: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create("tfm_tokenizer_tiny").eval()
    suite = EEGSuite()
    items = suite.load_items(str(real_crop), None)
    row = suite.measure_learned(model, items, device=torch.device("cpu"), name="tfm_tokenizer_tiny")
    samples = model.prepare(items.items[0].read()).shape[-1]
    windows = 1 + -(-max(samples - model.window_samples, 0) // model.window_samples)
    seconds = samples / model.sample_rate
    assert row.rate == pytest.approx(windows * (model.frames_per_window * 9 + 2 * 16) / seconds)
    assert row.extra["side_rate"] == pytest.approx(windows * 32 / seconds)


def test_bench_runs_the_eeg_suite_end_to_end(real_crop: Path, tmp_path: Path) -> None:
    from zoo.benchmarking import bench

    report = bench("biocodec_tiny", str(real_crop), out=tmp_path)
    assert report.modality == "eeg" and report.rate_unit == "bit/ch·s" and report.primary.name == "NMSE"
    learned = next(r for r in report.rows if r.kind == "learned")
    assert report.matched(learned)[DECIMATE_FAMILY] is not None  # a classic point at or above its rate
    assert any(line.startswith(DECIMATE_FAMILY) for line in report.verdicts(learned))
    assert Path(report.files["samples"]).is_file()
    assert "| **biocodec_tiny** |" in report.to_markdown()
