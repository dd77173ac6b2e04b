"""EDF/BDF files whose signals have different sample rates (issue 17: ``--channels A1`` missed a channel
stored at another rate). One tensor holds one rate, so the reader keeps the most common one; a signal at
another rate is kept aside and, asked for by name, comes resampled onto the recording."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_io import edf_bytes

import zoo
from zoo.cli import main
from zoo.errors import MediaError
from zoo.io import read_eeg
from zoo.tokens import Tokens

SECONDS, FAST, SLOW, SINE_HZ, SINE_UV = 4, 256, 64, 5.0, 50.0
SCALE = {"unit": "uV", "pmin": -200, "pmax": 200, "dmin": -32768, "dmax": 32767}


def digital(values: np.ndarray) -> list[int]:
    """Microvolts -> the 16-bit values SCALE stores them as."""
    return np.rint((values + 200) * 65535 / 400 - 32768).astype(int).tolist()


@pytest.fixture
def mixed_edf(tmp_path):
    """Fz and Cz at 256 Hz, A1 at 64 Hz carrying a 5 Hz, 50 uV sine, and a signal with no samples."""
    rng = np.random.default_rng(0)
    t = np.arange(SECONDS * SLOW) / SLOW
    sine = SINE_UV * np.sin(2 * np.pi * SINE_HZ * t)
    signals = [
        {"label": "EEG Fz-REF", "n": FAST, **SCALE},
        {"label": "EEG Cz-REF", "n": FAST, **SCALE},
        {"label": "A1", "n": SLOW, **SCALE},
        {"label": "Empty", "n": 0, **SCALE},
    ]
    noise = rng.normal(0, 20, (2, SECONDS * FAST))
    records = [
        [
            digital(noise[0, r * FAST : (r + 1) * FAST]),
            digital(noise[1, r * FAST : (r + 1) * FAST]),
            digital(sine[r * SLOW : (r + 1) * SLOW]),
            [],
        ]
        for r in range(SECONDS)
    ]
    path = tmp_path / "rec.edf"
    path.write_bytes(edf_bytes(signals, records))
    return path


def test_without_names_the_other_rate_signals_are_left_out_but_listed(mixed_edf) -> None:
    with pytest.warns(
        UserWarning, match=r"keeping the 2 at 256 Hz and dropping 2: A1 \(64 Hz\), Empty \(0 Hz\)"
    ):
        rec = read_eeg(mixed_edf)
    assert rec.channel_names == ["EEG Fz-REF", "EEG Cz-REF"] and rec.sample_rate == FAST
    assert rec.other_rate_channels == {"A1": 64.0}
    for unknown in (lambda: rec.pick(["Pz"]), lambda: read_eeg(mixed_edf, channel_names=["Fz", "Pz"])):
        with pytest.raises(
            MediaError, match=r"rec\.edf: no channel\(s\) \['Pz'\];.* other sample rates: A1 \(64 Hz\)"
        ):
            unknown()


def test_a_named_other_rate_channel_is_resampled_onto_the_recording(mixed_edf) -> None:
    rec = read_eeg(mixed_edf, channel_names=["fz", "A1"])  # loose names match as pick matches them
    assert rec.channel_names == ["EEG Fz-REF", "A1"] and rec.sample_rate == FAST
    assert rec.data.shape == (2, SECONDS * FAST)
    a1 = rec.data[1].double().numpy()
    spectrum = np.abs(np.fft.rfft(a1)) / (a1.size / 2)
    assert np.fft.rfftfreq(a1.size, 1 / FAST)[spectrum.argmax()] == SINE_HZ
    assert spectrum.max() == pytest.approx(SINE_UV, rel=1e-3)
    expected = SINE_UV * np.sin(2 * np.pi * SINE_HZ * np.arange(a1.size) / FAST)
    error = np.abs(a1 - expected)
    assert error[: -FAST // 16].max() < 0.05  # 16-bit steps are 0.006 uV
    assert error.max() < 0.1 * SINE_UV  # after the last stored sample the edge padding extrapolates
    with pytest.warns(UserWarning):
        whole = read_eeg(mixed_edf)
    picked = whole.pick(["a1", "Fz"])  # picking later gives the same samples
    assert picked.channel_names == ["A1", "EEG Fz-REF"]
    torch.testing.assert_close(picked.data, rec.data.flip(0), rtol=0, atol=0)
    alone = read_eeg(mixed_edf, channel_names=["A1"])  # the named channels' own rate when they share one
    assert alone.sample_rate == SLOW and alone.data.shape == (1, SECONDS * SLOW)


def test_other_rate_channels_that_cannot_be_had_say_why(mixed_edf) -> None:
    with pytest.raises(MediaError, match=r"rec\.edf: channel\(s\) \['Empty'\] store no samples"):
        read_eeg(mixed_edf, channel_names=["Fz", "Empty"])
    with pytest.warns(UserWarning):
        rec = read_eeg(mixed_edf)
    rec.data = rec.data[:, : FAST // 2]  # cut after reading: A1 no longer lines up with it
    with pytest.raises(MediaError, match=r"rec\.edf: channel 'A1' is stored at 64 Hz and covers 4 s"):
        rec.pick(["Fz", "A1"])


def test_cli_channels_reach_a_channel_stored_at_another_rate(mixed_edf, tmp_path, capsys) -> None:
    model_dir, tokens_dir, out_dir = tmp_path / "biocodec", tmp_path / "tokens", tmp_path / "out"
    zoo.create("biocodec_tiny").eval().save_pretrained(model_dir)
    args = ["encode", str(model_dir), str(mixed_edf), "-o", str(tokens_dir), "--channels"]
    assert main([*args, "Fz,A1"]) == 0
    tokens = Tokens.load(tokens_dir / "rec.tokens.safetensors")
    assert tokens.grid[0] == 2 and tokens.meta["channel_names"] == ["EEG Fz-REF", "A1"]
    assert main(["decode", str(model_dir), str(tokens_dir), "-o", str(out_dir)]) == 0
    decoded = read_eeg(out_dir / "rec.npz")
    assert decoded.channel_names == ["EEG Fz-REF", "A1"] and decoded.sample_rate == 250.0
    assert decoded.data.shape == (2, SECONDS * 250)
    capsys.readouterr()
    assert main([*args, "Fz,Pz", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "rec.edf" in err and "no channel(s) ['Pz']" in err and "A1 (64 Hz)" in err
