"""Task windows get exactly the token frames inside them, and the test span reaches no training feature.

A ramp recording (sample ``t`` of channel ``c`` holds ``t + 1 + c * 10**5``) and a tokenizer whose ids
per frame are the first and last sample value its frame reads (and the extremes its tokenizer window
reads) make the frame arithmetic checkable: a window starting at ``s`` must get ids ``s + j * hop + 1``
and ``s + j * hop + extent``, and 0 marks padding. The old fixed-grid lookup gave TFM's 1 s windows
frames up to a second late wherever the window began in the last 200 samples of a 5 s tokenizer window.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_eeg_tokenizer import HoldQuantizer

from zoo.evaluation.eeg import (
    FrameGeometry,
    PooledLinearProbe,
    WindowTask,
    frame_geometry,
    prepare_spans,
    recording_statistics,
    summarise_runs,
    untrained_copy,
    wilson_interval,
    window_ids,
)
from zoo.io import EEGRecording
from zoo.tokenizer import EEGTokenizer

CHANNEL_STEP = 10**5


class RampReader(EEGTokenizer):
    """Ids ``[N, 4, F]``: the first and last sample each frame reads, and the largest and smallest
    non-zero sample of its whole tokenizer window (what a window-wide Transformer could see). With
    ``n_fft`` it frames like an STFT (``center`` pads ``n_fft // 2`` zeros at both ends, as
    ``torch.stft`` does, but with zeros); without, frame ``f`` reads its hop ``[f * hop, (f + 1) * hop)``
    of the zero-padded window (a codec)."""

    normalisation = "none"

    def __init__(self, window_samples: int, hop: int, n_fft: int | None = None, center: bool = False) -> None:
        super().__init__()
        self.sample_rate, self.window_samples, self.hop_length = 100.0, window_samples, hop
        self.n_fft, self.center = n_fft, center

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (10 * CHANNEL_STEP,) * 4

    @property
    def frames_per_window(self) -> int:
        if self.n_fft is None:
            return math.ceil(self.window_samples / self.hop_length)
        if self.center:
            return self.window_samples // self.hop_length + 1
        return (self.window_samples - self.n_fft) // self.hop_length + 1

    def encode_windows(self, x: torch.Tensor) -> torch.Tensor:
        extent = self.hop_length if self.n_fft is None else self.n_fft
        pad = (self.n_fft // 2, self.n_fft // 2) if self.center else (0, extent)
        padded = F.pad(x[:, 0], pad)
        first = torch.arange(self.frames_per_window) * self.hop_length
        frames = [padded[:, first], padded[:, first + extent - 1]]
        seen = x[:, 0].where(x[:, 0] != 0, torch.full_like(x[:, 0], float("inf")))
        frames += [
            v[:, None].expand(-1, len(first))
            for v in (x[:, 0].amax(-1), seen.amin(-1).nan_to_num(posinf=0.0))
        ]
        return torch.stack(frames, 1).round().long()


def _ramp(channels: int, length: int) -> torch.Tensor:
    return (
        torch.arange(length, dtype=torch.float64) + 1 + CHANNEL_STEP * torch.arange(channels)[:, None]
    ).float()


@pytest.mark.parametrize(
    ("model", "geometry"),
    [
        # TFM's framing: 1 s STFT frames every 0.5 s at 200 Hz, no centring, 9 frames per 5 s window
        (RampReader(1000, 100, n_fft=200), FrameGeometry(100, 0, 200, 9, 1000)),
        # a centred STFT whose window is no multiple of the hop: frames 1..6 lie inside [0, 500)
        (RampReader(500, 64, n_fft=128, center=True), FrameGeometry(64, -64, 128, 8, 500)),
        # BioCodec's framing: hop 12 in 1250-sample windows, the 105th frame half padding
        (RampReader(1250, 12), FrameGeometry(12, 0, 12, 105, 1250)),
    ],
)
@pytest.mark.parametrize("window", [200, 250, 333, 1300])
def test_each_task_window_gets_exactly_the_frames_inside_it(
    model: RampReader, geometry: FrameGeometry, window: int
) -> None:
    assert frame_geometry(model) == geometry
    length, split = 9000, 5000
    data = _ramp(2, length)
    # starts off the hop grid, at the span edges and across tokenizer-window boundaries
    g = torch.Generator().manual_seed(0)
    train = torch.cat(
        [
            torch.tensor([0, 1, 99, 850, 901, split - window]),
            torch.randint(0, split - window, (20,), generator=g),
        ]
    )
    test = torch.cat(
        [
            torch.tensor([split, split + 7, length - window]),
            torch.randint(split, length - window, (20,), generator=g),
        ]
    )
    starts = torch.cat([train, test])
    ids = window_ids(model, data, starts, window, split=split)
    n = (window - geometry.extent) // geometry.hop + 1
    assert ids.shape == (len(starts), 4, 2, n)
    assert (
        n * geometry.hop + geometry.extent > window >= (n - 1) * geometry.hop + geometry.extent
    )  # no room for more
    frame_starts = starts[:, None] + torch.arange(n) * geometry.hop  # [N, n]
    for c in range(2):
        torch.testing.assert_close(ids[:, 0, c], frame_starts + 1 + c * CHANNEL_STEP, rtol=0, atol=0)
        torch.testing.assert_close(
            ids[:, 1, c], frame_starts + geometry.extent + c * CHANNEL_STEP, rtol=0, atol=0
        )
    _assert_reads_only_its_span(ids, starts, split, length)


def _assert_reads_only_its_span(ids: torch.Tensor, starts: torch.Tensor, split: int, length: int) -> None:
    """No tokenizer window of a training task window reads a test-span sample, nor the reverse."""
    channel_base = CHANNEL_STEP * torch.arange(ids.shape[2])[:, None]
    largest, smallest = ids[:, 2] - channel_base, ids[:, 3] - channel_base  # [N, C, n]: sample index + 1
    train = starts < split
    assert int(largest[train].max()) <= split and int(smallest[train].min()) >= 1
    assert int(smallest[~train].min()) >= split + 1 and int(largest[~train].max()) <= length


def test_spans_shorter_than_a_tokenizer_window_are_padded_not_crossed() -> None:
    model = RampReader(1000, 100, n_fft=200)  # TFM's framing: a 5 s tokenizer window, 3 s spans
    data, split = _ramp(2, 1200), 600
    starts = torch.tensor([0, 137, 400, 600, 777, 1000])
    ids = window_ids(model, data, starts, 200, split=split)
    torch.testing.assert_close(ids[:, 0, 0, 0], starts + 1, rtol=0, atol=0)
    torch.testing.assert_close(ids[:, 1, 0, 0], starts + 200, rtol=0, atol=0)
    _assert_reads_only_its_span(ids, starts, split, 1200)


def test_window_ids_refuse_windows_shorter_than_a_frame_or_across_the_split() -> None:
    model = RampReader(1000, 100, n_fft=200)
    data = _ramp(1, 3000)
    with pytest.raises(ValueError, match="shorter than one token frame"):
        window_ids(model, data, torch.tensor([0]), 150)
    with pytest.raises(ValueError, match=r"task window \[1900, 2100\) leaves its span \[0, 2000\)"):
        window_ids(model, data, torch.tensor([1900]), 200, split=2000)


def test_real_tfm_stft_frames_cover_what_the_geometry_says() -> None:
    import zoo
    from zoo.models.eeg.tfm_tokenizer import magnitude_stft

    model = zoo.create("tfm_tokenizer_tiny")
    geometry = frame_geometry(model)
    assert geometry == FrameGeometry(100, 0, 200, 9, 1000) and geometry.whole == 9
    for position in (1, 150, 370, 999):  # an impulse lights exactly the frames whose span holds it
        impulse = torch.zeros(1, 1000)
        impulse[0, position] = 1.0
        lit = (
            magnitude_stft(impulse, model.n_fft, model.hop_length, model.n_freq)[0].sum(0) > 1e-9
        ).nonzero()
        expected = [
            f for f in range(9) if geometry.start(f) <= position < geometry.start(f) + geometry.extent
        ]
        assert lit[:, 0].tolist() == expected
    biocodec = frame_geometry(zoo.create("biocodec_tiny"))
    assert biocodec == FrameGeometry(12, 0, 12, 105, 1250) and biocodec.whole == 104


@pytest.mark.parametrize("per_window", [False, True])
def test_test_span_values_reach_no_training_feature(per_window: bool) -> None:
    model = HoldQuantizer(residual=True).eval()
    model.normalise_windows = per_window
    g = torch.Generator().manual_seed(1)
    data = torch.randn(3, 2000, generator=g) * 30 + 5
    split = 1400
    starts = torch.tensor([0, 33, 700, 1299, 1300, split, 1502, 1900])
    is_test = starts >= split
    changed = data.clone()
    changed[:, split:] = torch.randn(3, 600, generator=g) ** 3 * 1000 - 4000  # another test span
    stats = recording_statistics(model, data, split)
    if per_window:
        assert stats is None
    else:
        for before, after in zip(stats, recording_statistics(model, changed, split), strict=True):
            assert torch.equal(before, after)
        assert not torch.equal(
            stats[0], recording_statistics(model, data)[0]
        )  # the test span would move them
    ids, ids_changed = (window_ids(model, x, starts, 100, split=split) for x in (data, changed))
    assert torch.equal(ids[~is_test], ids_changed[~is_test])
    assert not torch.equal(ids[is_test], ids_changed[is_test])
    # the probe's feature standardisation is set from training windows only, so it is unchanged too
    probes = []
    for x in (ids, ids_changed):
        probe = PooledLinearProbe(1, 3, 2, 4, torch.nn.Embedding(33 * 33, 1))
        probe.embed.weight.data = torch.arange(33 * 33, dtype=torch.float32)[:, None]
        probe.calibrate(x[~is_test, 0] * 33 + x[~is_test, 1])
        probes.append(probe)
    assert torch.equal(probes[0].mean, probes[1].mean) and torch.equal(probes[0].std, probes[1].std)


def test_preparing_the_spans_apart_keeps_test_samples_out_of_the_training_span() -> None:
    """TFM's preparation band-passes with zero-phase filters and FFT-resamples the whole input: prepared
    whole, the training span's samples would depend on the test span's."""
    import zoo

    model = zoo.create("tfm_tokenizer_tiny")
    g = torch.Generator().manual_seed(2)
    data = torch.randn(3, 128 * 40, generator=g) * 20
    split = 128 * 28 + 5
    changed = data.clone()
    changed[:, split:] = torch.randn(3, data.shape[1] - split, generator=g) * 300
    prepared = [prepare_spans(model, EEGRecording(x, 128.0, ["a", "b", "c"]), split) for x in (data, changed)]
    (before, at), (after, at_changed) = prepared
    assert at == at_changed == 200 * 28 + 8 and before.shape == after.shape == (3, 200 * 40)
    assert torch.equal(before[:, :at], after[:, :at]) and not torch.equal(before[:, at:], after[:, at:])
    whole = [model.prepare(EEGRecording(x, 128.0, ["a", "b", "c"]))[0] for x in (data, changed)]
    assert not torch.equal(whole[0][:, : at - 400], whole[1][:, : at - 400])  # what the split prevents


def test_rounding_to_another_rate_keeps_windows_in_their_span() -> None:
    task = WindowTask(
        starts=torch.tensor([0, 371, 1000, 1629]),
        labels=torch.tensor([1, 0, 1, 0]),
        is_test=torch.tensor([False, False, True, True]),
        window=128,
        test_start=1000,
        sample_rate=128.0,
    )
    starts, window, test_start = task.at_rate(250.0)
    assert window == 250 and test_start == 1953
    assert starts.tolist() == [0, 725, 1953, 3182]  # 371 * 250 / 128 = 724.6 and 1629 -> 3181.6 round up
    assert task.at_rate(250.0, length=3400)[0].tolist() == [0, 725, 1953, 3150]  # kept inside the recording
    # spans resampled apart: the test windows keep their distance from wherever the split lands
    assert task.at_rate(250.0, split=1960)[0].tolist() == [0, 725, 1960, 3189]
    assert task.at_rate(250.0, split=900)[0].tolist() == [0, 650, 900, 2129]  # 725 + 250 > 900: moved back
    # 80 -> 81.6 and 30 -> 30.6 both round up, 110 -> 112.2 rounds down: the window would end at 113
    over = WindowTask(torch.tensor([80]), torch.tensor([1]), torch.tensor([False]), 30, 110, 100.0)
    s, w, t = over.at_rate(102.0)
    assert (int(s[0]), w, t) == (81, 31, 112)


def test_wilson_interval_by_hand_and_summary() -> None:
    # 40 of 48 correct: centre (p + z^2/2n) / (1 + z^2/n), z = 1.95996
    z = 1.959963984540054
    p, n = 40 / 48, 48
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(p, n) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(1.0, 48) == pytest.approx((0.9259, 1.0), abs=1e-4)  # not empty at 1
    low, high = wilson_interval(0.5, 48)
    assert low < 0.4 and 0.6 < high < 0.64  # 48 test windows cannot tell 0.6 from chance
    row = summarise_runs(
        [
            {"balanced_accuracy": 0.75, "accuracy": 0.75, "kappa": 0.5},
            {"balanced_accuracy": 0.85, "accuracy": 0.85, "kappa": 0.7},
        ],
        48,
    )
    assert row["balanced_accuracy"] == pytest.approx(0.8) and row["balanced_accuracy_std"] == pytest.approx(
        0.05
    )
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(0.8, 48)) and row[
        "test_windows"
    ] == 48
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0.5, 0)


def test_untrained_copy_is_the_same_architecture_with_seeded_random_weights() -> None:
    import zoo

    trained = zoo.create("biocodec_tiny")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # stands for training
    first, second = untrained_copy(trained, seed=3), untrained_copy(trained, seed=3)
    assert type(first) is type(trained) and first.config == trained.config and first.arch == "biocodec_tiny"
    a, b, t = (dict(m.named_parameters()) for m in (first, second, trained))
    assert a.keys() == t.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the seed fixes the weights
    assert any(not torch.equal(a[k], t[k]) for k in a)
    other = dict(untrained_copy(trained, seed=4).named_parameters())
    assert any(not torch.equal(a[k], other[k]) for k in a)


def test_benchmark_reports_control_rows_intervals_and_json(tmp_path, monkeypatch, capsys) -> None:
    """The benchmark end to end on a small synthetic recording (an evoked bump after each event), with a
    saved tiny TFM-Tokenizer as given weights: its untrained control row, the Wilson interval and the
    JSON and markdown files all appear."""
    import json
    import sys
    from pathlib import Path

    import zoo

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import eeg_downstream

    torch.manual_seed(0)
    rate, seconds = 200, 60
    g = torch.Generator().manual_seed(3)
    data = torch.randn(4, rate * seconds, generator=g) * 10
    onsets = list(range(rate, rate * (seconds - 2), int(2.5 * rate)))
    bump = 40 * torch.sin(torch.linspace(0, math.pi, rate // 2))
    for s in onsets:
        data[:, s + 20 : s + 20 + len(bump)] += bump
    recording = EEGRecording(data, float(rate), ["a", "b", "c", "d"], events=[(s, "square") for s in onsets])
    monkeypatch.setattr(eeg_downstream, "read_eeg", lambda path: recording)
    saved = zoo.create("tfm_tokenizer_tiny").save_pretrained(tmp_path / "tfm")
    out = tmp_path / "out"
    eeg_downstream.main(
        ["--recording", "synthetic", "--tokenizers", str(saved), "--seeds", "0", "--heads", "linear"]
        + ["--out", str(out), "--markdown", str(tmp_path / "r.md"), "--threads", "1"]
    )
    printed = capsys.readouterr().out
    assert "95 % CI (Wilson)" in printed and "| raw " in printed
    report = json.loads((out / "eeg_downstream.json").read_text())
    rows = {r["weights"]: r for r in report["classification"]}
    assert rows["random init (seed 0)"]["model"].startswith(f"{saved} untrained")
    assert rows["given weights"]["model"].startswith(str(saved))
    for row in rows.values():
        assert row["test_windows"] == report["task"]["counts"]["test_stimulus"] * 2
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    assert rows["-"]["balanced_accuracy"] > 0.9  # the bump is plain in the raw signal
    assert (tmp_path / "r.md").read_text().count("untrained") >= 2
