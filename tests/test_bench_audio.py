"""`zoo bench`'s audio suite: rates from known token layouts, metrics on known degradations, classic codecs
that bracket the learned rate, skipped codecs reported, and the speed fields and picture present."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo.benchmarking import audio as bench_audio
from zoo.benchmarking.audio import AudioItem, AudioSuite, speech_metrics
from zoo.benchmarking.suite import Items
from zoo.errors import MediaError

pytest.importorskip("pesq")
pytest.importorskip("pystoi")

CPU = torch.device("cpu")
SPEED_FIELDS = {"encode clips/s", "decode clips/s", "encode audio-s/s", "decode audio-s/s"}


def _synthetic(seconds: float, rate: int = 24000, seed: int = 0) -> torch.Tensor:
    """A voiced-like test tone: harmonics of 140 Hz under a slow envelope, plus a little noise."""
    t = torch.arange(round(seconds * rate)) / rate
    g = torch.Generator().manual_seed(seed)
    tone = sum(torch.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 8))
    return (0.2 * tone * torch.sin(math.pi * t / seconds) + 0.01 * torch.randn(len(t), generator=g))[None]


def _learned(arch: str, items: Items) -> tuple[AudioSuite, object]:
    torch.manual_seed(0)
    model = zoo.create(arch).eval()
    suite = AudioSuite()
    return suite, suite.measure_learned(model, items, device=CPU, name=arch)


@pytest.fixture(scope="module")
def two_clips(shared_data: Path) -> Items:
    """Two seconds of real speech at their stored rates (16 kHz read speech, an 8 kHz test sentence)."""
    from zoo.io import read_audio

    items = []
    for name in ("audio/pocketsphinx/cards/001.wav", "audio/codec2/forig.wav"):
        wav, rate = read_audio(shared_data / name)
        items.append(AudioItem(name, wav[:, :rate], rate))  # the first second
    return Items(items, "two clips", "test")


@pytest.fixture(scope="module")
def measured(two_clips: Items) -> tuple[AudioSuite, object, list, list[str]]:
    """sqcodec_tiny (random weights, 25.5 kbit/s) measured on the two clips, then the classic codecs."""
    for backend in (bench_audio.opus_backend, bench_audio.codec2_backend):
        found, why = backend()
        if found is None:
            pytest.skip(why)
    suite, row = _learned("sqcodec_tiny", two_clips)
    classic, skipped = suite.classic_rows(two_clips, [row.rate])
    return suite, row, classic, skipped


# ------------------------------------------------------------------ rates
@pytest.mark.parametrize(
    ("arch", "kbps"),
    [
        ("wavtokenizer_tiny", 24000 / 32 * 6 / 1000),  # hop 32, one codebook of 64
        ("sqcodec_tiny", 24000 / 64 * 16 * math.log2(19) / 1000),  # hop 64, 16 scalar codebooks of 19
    ],
)
def test_raw_rate_is_the_token_layout(arch: str, kbps: float) -> None:
    # clip lengths a whole number of hops, at the model's own rate: the raw rate is exact
    items = Items(
        [AudioItem("a", _synthetic(0.32), 24000), AudioItem("b", _synthetic(0.48, seed=1), 24000)], "t", "t"
    )
    suite, row = _learned(arch, items)
    assert row.kind == "learned" and row.rate == pytest.approx(kbps, rel=1e-9)
    assert row.entropy_rate is not None and 0 <= row.entropy_rate <= row.rate + 1e-9
    assert SPEED_FIELDS <= set(row.speed) and all(v > 0 for k, v in row.speed.items() if k in SPEED_FIELDS)
    assert row.extra["sample_rate"] == 24000 and row.extra["seconds"] == pytest.approx(0.8)
    assert len(row.extra["codebook_used"]) == len(zoo.create(arch).codebook_sizes)
    # the reference is the prepared clip: its length and rate are the model's
    assert {k: tuple(x.shape) for k, x in suite.prepared.items()} == {"a": (1, 7680), "b": (1, 11520)}
    assert all(suite.reconstructions[k].shape == x.shape for k, x in suite.prepared.items())


def test_reasoning_side_stream_is_counted() -> None:
    """ReasoningCodec's decoder reads side["reasoning"] (2 codebooks of 64 at 5 Hz in the tiny size) besides
    its ids (4 codebooks of 64 at 12.5 Hz): 300 + 60 bit/s."""
    items = Items(
        [AudioItem("a", _synthetic(0.4), 24000), AudioItem("b", _synthetic(0.8, seed=1), 24000)], "t", "t"
    )
    _, row = _learned("reasoningcodec_tiny", items)
    assert row.rate == pytest.approx(0.36, rel=1e-9)
    assert any(note.startswith("reasoning:") for note in row.extra["side streams"])


# ------------------------------------------------------------------ metrics
def test_identity_scores_perfectly_and_noise_gives_its_snr(two_clips: Items) -> None:
    item = two_clips.items[0]
    perfect = speech_metrics(item.wav, item.wav, item.rate)
    assert perfect["PESQ"] > 4.5 and perfect["STOI"] > 0.999 and perfect["SI-SDR"] > 80
    assert perfect["mel distance"] == 0
    noise = torch.randn(item.wav.shape, generator=torch.Generator().manual_seed(0))
    noise *= item.wav.norm() / noise.norm() / 10 ** (10 / 20)  # 10 dB below the speech
    noisy = speech_metrics(item.wav, item.wav + noise, item.rate)
    assert noisy["SI-SDR"] == pytest.approx(10, abs=0.2)
    assert 1 < noisy["PESQ"] < perfect["PESQ"] - 1 and noisy["STOI"] < perfect["STOI"]
    assert noisy["mel distance"] > 1


def test_too_short_for_pesq_and_stoi_is_missing_not_zero() -> None:
    short = _synthetic(0.2, 16000)
    scores = speech_metrics(short, short, 16000)
    assert math.isnan(scores["PESQ"]) and math.isnan(scores["STOI"]) and scores["SI-SDR"] > 80


# ------------------------------------------------------------------ classic codecs
def test_classic_rows_bracket_the_learned_rate(measured) -> None:
    _, row, classic, skipped = measured
    assert skipped == []
    assert all(r.kind == "classic" and r.family and r.setting for r in classic)
    opus = sorted((r for r in classic if r.family == "Opus"), key=lambda r: r.rate)
    assert [r.setting for r in opus[:4]] == ["6 kbit/s", "8 kbit/s", "10 kbit/s", "12 kbit/s"]
    above = [r for r in opus if r.rate >= row.rate]
    assert above, f"no Opus point at or above {row.rate:.3g} kbit/s: {[r.rate for r in opus]}"
    assert above[0].rate < 2 * row.rate  # the ladder climbs one step at a time
    assert opus[-1].metrics["PESQ"] > opus[0].metrics["PESQ"] > row.metrics["PESQ"]  # untrained model
    codec2 = {r.setting: r for r in classic if r.family == "Codec2"}
    assert set(codec2) == {"700C", "1200", "3200"}
    assert codec2["1200"].rate == pytest.approx(1.2, rel=0.02) and codec2["3200"].rate == pytest.approx(
        3.2, rel=0.02
    )
    flac = next(r for r in classic if r.family == "FLAC")
    assert flac.metrics["PESQ"] > 4.5 and flac.metrics["SI-SDR"] > 60 and flac.rate > opus[-1].rate


def test_learned_row_is_scored_against_the_prepared_clip(measured, two_clips: Items) -> None:
    suite, row, _, _ = measured
    torch.manual_seed(0)
    model = zoo.create("sqcodec_tiny").eval()
    for item in two_clips.items:  # one second at 16 and at 8 kHz, both brought to the model's 24 kHz
        x = model.prepare((item.wav, item.rate))
        assert x.shape == (1, 1, 24000) and torch.equal(suite.prepared[item.name], x[0])
        with torch.no_grad():
            y = model.decode(model.encode(x))[0].clamp(-1, 1)
        assert torch.allclose(suite.reconstructions[item.name], y, atol=1e-6)
    rescored = [speech_metrics(suite.prepared[k], suite.reconstructions[k], 24000) for k in suite.prepared]
    for name in ("SI-SDR", "mel distance"):
        assert row.metrics[name] == pytest.approx(sum(s[name] for s in rescored) / 2, rel=1e-6)


def test_rates_out_of_opus_reach_are_said(
    measured, two_clips: Items, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, _, _, _ = measured
    monkeypatch.setattr(bench_audio, "OPUS_LADDER", (6,))  # the climb, shortened
    monkeypatch.setattr(bench_audio, "OPUS_HIGHER", (16, 24))
    monkeypatch.setattr(bench_audio, "CODEC2_MODES", ())
    rows, skipped = suite.classic_rows(two_clips, [10_000.0])
    assert [r.setting for r in rows if r.family == "Opus"][-2:] == ["16 kbit/s", "24 kbit/s"]
    assert max(r.rate for r in rows if r.family == "Opus") < 10_000
    assert any(s.startswith("Opus stops at 24 kbit/s") and "above every Opus point" in s for s in skipped)


def test_missing_codecs_are_skipped_with_a_reason(
    measured, two_clips: Items, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, row, _, _ = measured
    monkeypatch.setattr(bench_audio, "_pyav_opus", lambda: False)
    monkeypatch.setattr(bench_audio.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "pycodec2", None)  # import fails
    rows, skipped = suite.classic_rows(two_clips, [row.rate])
    assert [r.family for r in rows] == ["FLAC"]
    assert any(s.startswith("Opus:") and "pip install av" in s for s in skipped)
    assert any(s.startswith("Codec2:") and "apt install codec2" in s for s in skipped)


@pytest.mark.skipif(
    not (shutil.which("opusenc") and shutil.which("opusdec")), reason="opus-tools not installed"
)
def test_opus_tools_agree_with_pyav(two_clips: Items) -> None:
    pytest.importorskip("av")
    item = two_clips.items[0]
    wav = item.wav[0].numpy()
    by_tools, tool_bytes = bench_audio.opus_roundtrip(wav, item.rate, 12, "cli")
    by_pyav, pyav_bytes = bench_audio.opus_roundtrip(wav, item.rate, 12, "pyav")
    assert tool_bytes == pytest.approx(pyav_bytes, rel=0.15)
    for decoded in (by_tools, by_pyav):  # aligned: the pre-skip is removed either way
        assert len(decoded) == len(wav)
        assert speech_metrics(item.wav, torch.from_numpy(decoded)[None], item.rate)["SI-SDR"] > 5


@pytest.mark.skipif(
    not (shutil.which("c2enc") and shutil.which("c2dec")), reason="codec2 tools not installed"
)
def test_codec2_tools_agree_with_pycodec2(two_clips: Items) -> None:
    pytest.importorskip("pycodec2")
    item = two_clips.items[1]
    wav = item.wav[0].numpy()
    tools, tool_bytes = bench_audio.codec2_roundtrip(wav, item.rate, "3200", "cli")
    wheel, wheel_bytes = bench_audio.codec2_roundtrip(wav, item.rate, "3200", "pycodec2")
    assert tool_bytes == wheel_bytes == math.ceil(len(wav) / 160) * 8  # 64 bits every 20 ms
    assert len(tools) == len(wheel) == len(wav)


def test_samples_draws_a_png(measured, two_clips: Items, tmp_path: Path) -> None:
    suite, _, classic, _ = measured
    model = zoo.create("sqcodec_tiny")
    path = suite.samples(model, two_clips, classic, tmp_path / "samples.png", device=CPU)
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ items
def test_items_from_a_folder_a_packed_npz_and_bad_paths(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "b.wav", np.zeros(800, np.float32), 8000)
    sf.write(folder / "sub/a.flac", np.zeros((1600, 2), np.float32), 16000)
    (folder / "notes.txt").write_text("not audio")
    items = AudioSuite().load_items(str(folder), None)
    assert [(i.name, i.rate, tuple(i.wav.shape)) for i in items.items] == [
        ("b.wav", 8000, (1, 800)),
        ("sub/a.flac", 16000, (2, 1600)),
    ]
    assert items.notes == [bench_audio.REFERENCE_NOTE]
    assert len(AudioSuite().load_items(str(folder), 1).items) == 1
    packed = tmp_path / "digits.npz"
    np.savez(
        packed,
        audio=np.arange(10, dtype=np.int16),
        offsets=np.array([0, 2, 5, 7, 10]),
        sample_rate=np.array(8000),
        is_test=np.array([True, True, False, True]),
        speaker=np.array(["ann", "bob", "ann", "ann"]),
    )
    items = AudioSuite().load_items(str(packed), None)
    assert [i.name for i in items.items] == ["digits/ann", "digits/bob"]
    assert items.items[0].wav.mul(32768).round().tolist() == [[0, 1, 7, 8, 9]]  # clips 0 and 3, not 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no audio files"):
        AudioSuite().load_items(str(tmp_path / "empty"), None)
    with pytest.raises(MediaError, match="not a folder of audio files"):
        AudioSuite().load_items(str(tmp_path / "missing"), None)


def test_default_items_mix_the_bundle_sources(shared_data: Path) -> None:
    items = AudioSuite().load_items(None, 4)
    assert [i.name.split("/")[0] for i in items.items] == ["pocketsphinx", "codec2", "fsdd", "pocketsphinx"]
    assert items.items[2].rate == 8000 and items.items[2].seconds > 10  # one FSDD speaker's test takes
