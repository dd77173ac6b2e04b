"""The native EEGLAB .set reader and EEG events: the shared tutorial recording, and synthetic .set files
written with scipy.io.savemat for the layouts and failures a real file rarely shows."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from scipy.io import savemat

from zoo.data.eeg import EEGWindows
from zoo.errors import MediaError
from zoo.io import EEGRecording, read_eeg
from zoo.io.eeg import EEGEvent

LABELS = ["Fz", "Cz", "Pz"]


def _chanlocs(labels: list[str]) -> np.ndarray:
    locs = np.zeros(len(labels), dtype=[("labels", object), ("theta", float)])
    locs["labels"] = labels
    return locs


def _events(rows: list[tuple[object, float]]) -> np.ndarray:
    events = np.zeros(len(rows), dtype=[("type", object), ("latency", float)])
    for i, (kind, latency) in enumerate(rows):
        events[i] = (kind, latency)
    return events


def _write_set(
    path, data: np.ndarray | str, *, channels: int, samples: int, trials: int = 1, **extra
) -> None:
    eeg = {
        "nbchan": float(channels),
        "pnts": float(samples),
        "trials": float(trials),
        "srate": 100.0,
        "data": data,
        "chanlocs": _chanlocs(LABELS[:channels]),
        "event": _events([("stim", 11.0), (7, 30.5)]),
    }
    eeg.update(extra)
    savemat(path, {"EEG": eeg}, format="5")


def test_shared_tutorial_recording_reads_with_its_events(shared_data) -> None:
    path = shared_data / "eeg/eeglab/eeglab_data.set"
    rec = read_eeg(path)
    assert rec.data.shape == (32, 30504) and rec.sample_rate == 128.0
    assert rec.channel_names[:2] == ["FPz", "EOG1"] and "EOG2" in rec.channel_names
    assert 1 < rec.data.std().item() < 500  # microvolts, as EEGLAB keeps them
    # the first sample of every channel, straight from the column-major float32 .fdt
    first = np.fromfile(path.with_suffix(".fdt"), dtype="<f4", count=32)
    assert np.array_equal(rec.data[:, 0].numpy(), first)
    assert len(rec.events) == 154
    assert collections.Counter(e.label for e in rec.events) == {"square": 80, "rt": 74}
    # EEG.event(1).latency is 129.00875 (1-based): sample 128, one second in
    assert rec.events[0] == EEGEvent(128, "square")
    assert [e.onset for e in rec.events] == sorted(e.onset for e in rec.events)
    assert len(rec.events_labelled("square")) == 80
    picked = read_eeg(path, channel_names=["Cz", "Pz"])
    assert picked.channel_names == ["Cz", "Pz"] and picked.events == rec.events
    # without MNE the data module reads it too (MNE is not installed here)
    windows = EEGWindows(path, window_seconds=2.0, sample_rate=128, channels=["Cz"])
    assert len(windows) > 0


def test_inline_data_channels_and_events(tmp_path) -> None:
    data = np.arange(3 * 50, dtype=np.float64).reshape(3, 50)
    _write_set(tmp_path / "inline.set", data, channels=3, samples=50)
    rec = read_eeg(tmp_path / "inline.set")
    assert rec.channel_names == LABELS and rec.sample_rate == 100.0
    assert torch.equal(rec.data, torch.from_numpy(data).float())
    # latencies are 1-based and may be fractional; numeric event types become text
    assert rec.events == [EEGEvent(10, "stim"), EEGEvent(30, "7")]  # 30.5 - 1 rounds to even


def test_fdt_data_is_column_major_float32(tmp_path) -> None:
    data = np.random.default_rng(0).normal(size=(2, 40)).astype(np.float32)
    data.T.tofile(tmp_path / "rec.fdt")  # channels of one sample adjacent
    _write_set(tmp_path / "rec.set", "rec.fdt", channels=2, samples=40)
    rec = read_eeg(tmp_path / "rec.set")
    assert np.array_equal(rec.data.numpy(), data) and rec.channel_names == LABELS[:2]


def test_epoched_data_is_joined_epoch_after_epoch(tmp_path) -> None:
    epochs = np.random.default_rng(1).normal(size=(2, 10, 3))  # channels x samples x trials
    _write_set(tmp_path / "ep.set", epochs, channels=2, samples=10, trials=3)
    with pytest.warns(UserWarning, match="3 epochs"):
        rec = read_eeg(tmp_path / "ep.set")
    expected = np.concatenate([epochs[:, :, k] for k in range(3)], axis=1)
    np.testing.assert_allclose(rec.data.numpy(), expected, rtol=1e-6)


def test_no_chanlocs_gives_numbered_channels(tmp_path) -> None:
    _write_set(tmp_path / "n.set", np.zeros((2, 5)), channels=2, samples=5, chanlocs=np.zeros(0))
    assert read_eeg(tmp_path / "n.set").channel_names == ["ch0", "ch1"]


def test_missing_and_truncated_fdt(tmp_path) -> None:
    _write_set(tmp_path / "a.set", "a.fdt", channels=2, samples=40)
    with pytest.raises(MediaError, match=r"'a\.fdt', which is not next to it"):
        read_eeg(tmp_path / "a.set")
    np.zeros(2 * 39, dtype="<f4").tofile(tmp_path / "a.fdt")
    with pytest.raises(MediaError, match=r"a\.fdt is truncated: 312 bytes, but 80 float32 samples need 320"):
        read_eeg(tmp_path / "a.set")
    np.zeros(2 * 41, dtype="<f4").tofile(tmp_path / "a.fdt")
    with pytest.raises(MediaError, match="longer than the header says"):
        read_eeg(tmp_path / "a.set")


def test_inconsistent_and_broken_files(tmp_path) -> None:
    _write_set(tmp_path / "b.set", np.zeros((3, 49)), channels=3, samples=50)
    with pytest.raises(MediaError, match="holds 147 values, but nbchan x pnts x trials = 3 x 50 x 1 = 150"):
        read_eeg(tmp_path / "b.set")
    _write_set(tmp_path / "r.set", np.zeros((3, 50)), channels=3, samples=50, srate="fast")
    with pytest.raises(MediaError, match="srate"):
        read_eeg(tmp_path / "r.set")
    savemat(tmp_path / "x.set", {"other": np.zeros(3)})
    with pytest.raises(MediaError, match="no EEG struct"):
        read_eeg(tmp_path / "x.set")
    (tmp_path / "junk.set").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(MediaError, match="not a readable MATLAB .set file"):
        read_eeg(tmp_path / "junk.set")


def test_v73_hdf5_file_is_named(tmp_path) -> None:
    _write_set(tmp_path / "h.set", np.zeros((3, 5)), channels=3, samples=5)
    raw = bytearray((tmp_path / "h.set").read_bytes())
    raw[124:126] = b"\x00\x02"  # the header's version field as MATLAB v7.3 writes it
    (tmp_path / "h.set").write_bytes(bytes(raw))
    with pytest.raises(MediaError, match=r"v7\.3 \(HDF5\).*version 7"):
        read_eeg(tmp_path / "h.set")


def test_events_follow_pick_and_resample() -> None:
    rec = EEGRecording(torch.randn(2, 1000), 100.0, ["a", "b"], events=[(100, "x"), EEGEvent(250, "y", 50)])
    assert rec.events == [EEGEvent(100, "x"), EEGEvent(250, "y", 50)]
    assert rec.pick(["b"]).events == rec.events
    up = rec.resample(250.0)
    assert up.events == [EEGEvent(250, "x"), EEGEvent(625, "y", 125)]
    assert rec.resample(100.0).events == rec.events


def test_edf_plus_annotations_become_events(shared_data) -> None:
    rec = read_eeg(shared_data / "eeg/mne_testing/EDF/test_edf_overlapping_annotations.edf")
    assert len(rec.events) == 38 and {e.label for e in rec.events} == {"T0", "T1", "T2"}
    # T0 at 0 s for 1.375 s, then T1 at 1.375 s for 5.125 s (at 128 Hz)
    assert rec.events[:2] == [EEGEvent(0, "T0", 176), EEGEvent(176, "T1", 656)]
    bdf = read_eeg(shared_data / "eeg/mne_testing/BDF/multiple_annotation_chans.bdf")
    assert len(bdf.events) == 10 and bdf.events[0].label == "signal_start"
