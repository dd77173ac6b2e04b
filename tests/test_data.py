"""zoo.data: every DataModule on tiny files written here, then on the real data bundle when it is present."""

from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from zoo.data import (
    AudioClips,
    AudioDataModule,
    CifarNpz,
    EEGDataModule,
    EEGWindows,
    FashionMnistIdx,
    ImageDataModule,
    ImageFolder,
    SeededSampler,
    SkimagePhotos,
    SVGCorpus,
    SVGDataModule,
    hash_split,
)
from zoo.data.audio import _crop_resampled
from zoo.errors import MediaError
from zoo.io import EEGRecording, read_audio, resample, write_eeg, write_image

SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M{0} 2H22V22H2Z"/></svg>'
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
    '<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>'
)


def batches(loader) -> list:
    return list(loader)


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------------
# Images


@pytest.fixture
def png_folder(tmp_path: Path, photos: torch.Tensor) -> Path:
    """Ten real photo crops as PNGs of assorted sizes, one grey, one in a subfolder, plus junk to ignore."""
    root = tmp_path / "pngs"
    for i in range(10):
        x = photos[i % 4][:, : 20 + i, : 24 + 2 * i]
        if i == 3:
            x = x.mean(0, keepdim=True)
        write_image(root / ("sub" if i == 9 else "") / f"img{i}.png", x)
    (root / "._img0.png").write_bytes(b"macOS resource fork, not a PNG")
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder_module_shapes_split_and_val_order(png_folder: Path) -> None:
    dm = ImageDataModule(str(png_folder), resolution=16, batch_size=4, val_fraction=0.3)
    dm.setup("fit")
    train, val = dm.train_dataset.files, dm.val_dataset.files
    assert not set(train) & set(val) and len(train) + len(val) == 10 and val
    assert png_folder / "sub" / "img9.png" in train + val
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    v1, v2 = batches(dm.val_dataloader()), batches(dm.val_dataloader())
    assert same(v1, v2)
    # the split depends on file names only: a second module, another seed, same split
    other = ImageDataModule(str(png_folder), resolution=16, val_fraction=0.3, seed=7)
    other.setup()
    assert other.val_dataset.files == val
    grey = ImageFolder(png_folder, resolution=8, channels=1)
    assert grey[0].shape == (1, 8, 8) and len(grey) == 10


def test_seeded_shuffle_reproducible_and_workers_do_not_change_batches(png_folder: Path) -> None:
    def train_batches(seed: int, workers: int) -> list:
        dm = ImageDataModule(png_folder, resolution=16, batch_size=3, num_workers=workers, seed=seed)
        loader = dm.train_dataloader()
        assert loader.persistent_workers == (workers > 0)
        return batches(loader)

    first = train_batches(0, 0)
    assert same(first, train_batches(0, 0))  # same seed: same order and same random crops
    assert not same(first, train_batches(1, 0))
    assert same(first, train_batches(0, 2))  # per-item seeds: workers decode, results identical

    sampler = SeededSampler(50, seed=3)
    epoch0, epoch1 = list(sampler), list(sampler)
    assert sorted(i for i, _ in epoch0) == list(range(50)) and epoch0 != epoch1
    sampler.set_epoch(1)  # what Lightning does when a run resumes at epoch 1
    assert list(sampler) == epoch1


def test_lightning_fit_uses_the_epoch_seeded_order(png_folder: Path) -> None:
    import lightning.pytorch as L

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[torch.Tensor] = []

        def training_step(self, batch: torch.Tensor, _: int) -> torch.Tensor:
            self.seen.append(batch.clone())
            return self.w * batch.mean()

        def validation_step(self, batch: torch.Tensor, _: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    probe = Probe()
    dm = ImageDataModule(png_folder, resolution=8, batch_size=4, val_fraction=0.3)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(max_epochs=2, enable_model_summary=False, **quiet).fit(probe, datamodule=dm)
    per_epoch = len(dm.train_dataloader())
    loader = ImageDataModule(png_folder, resolution=8, batch_size=4, val_fraction=0.3).train_dataloader()
    loader.sampler.set_epoch(1)  # a run resumed at epoch 1 sees the same batches
    assert same(probe.seen[per_epoch:], batches(loader))


def cifar_npz(path: Path, images: torch.Tensor) -> list[bytes]:
    streams = []
    for x in images:
        buf = io.BytesIO()
        Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=75)
        streams.append(buf.getvalue())
    offsets = np.cumsum([0] + [len(s) for s in streams])
    jpeg = np.frombuffer(b"".join(streams), np.uint8)
    np.savez(path, jpeg=jpeg, offsets=offsets, y=np.arange(len(streams), dtype=np.uint8))
    return streams


def test_cifar_npz_decodes_jpeg_streams_and_pixels(tmp_path: Path, photos: torch.Tensor) -> None:
    root = tmp_path / "cifar"
    root.mkdir()
    streams = cifar_npz(root / "train.npz", torch.cat([photos, photos.flip(-1)]))
    pixels = (photos * 255).round().byte().permute(0, 2, 3, 1).numpy()
    np.savez(root / "test.npz", x=pixels, y=np.zeros(4, np.uint8))
    ds = CifarNpz(root / "train.npz")
    assert len(ds) == 8
    for i, s in enumerate(streams):
        expected = torch.from_numpy(np.array(Image.open(io.BytesIO(s)).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal((ds[i] * 255).round().byte(), expected)
    assert torch.equal(CifarNpz(root, "test")[2], torch.from_numpy(pixels[2]).permute(2, 0, 1) / 255)
    assert CifarNpz(root / "train.npz", channels=1)[0].shape == (1, 32, 32)
    # one file split by index: disjoint, complete
    tr, va = (
        CifarNpz(root / "train.npz", "train", val_fraction=0.3),
        CifarNpz(root / "train.npz", "val", val_fraction=0.3),
    )
    assert sorted(list(tr._items) + list(va._items)) == list(range(8)) and len(va) > 0

    dm = ImageDataModule(str(root), resolution=32, batch_size=4, augment=False)
    dm.setup()
    assert len(dm.train_dataset) == 8 and len(dm.val_dataset) == 4  # official files
    assert next(iter(dm.val_dataloader())).shape == (4, 3, 32, 32)
    with pytest.raises(MediaError, match="neither 'x' nor 'jpeg'"):
        np.savez(tmp_path / "bad.npz", y=np.zeros(3))
        CifarNpz(tmp_path / "bad.npz")


def write_idx(path: Path, array: np.ndarray) -> None:
    raw = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def test_fashion_mnist_idx_gz_and_plain(tmp_path: Path, photos: torch.Tensor) -> None:
    grey = (photos.mean(1)[:, :28, :28] * 255).round().byte().numpy()
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.concatenate([grey, grey[::-1]]))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", grey[:3])
    train, test = FashionMnistIdx(tmp_path, "train"), FashionMnistIdx(tmp_path, "test")
    assert (len(train), len(test)) == (8, 3)
    assert torch.equal(train[1], torch.from_numpy(grey[1]).float()[None] / 255)
    assert FashionMnistIdx(tmp_path, "test", channels=3)[0].shape == (3, 28, 28)
    dm = ImageDataModule(tmp_path, resolution=32, batch_size=8)  # auto-detects idx, upsamples, RGB
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, 3, 32, 32) and 0 <= batch.min() and batch.max() <= 1
    write_idx(tmp_path / "t10k-images-idx3-ubyte", grey[:3])
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(
        (tmp_path / "t10k-images-idx3-ubyte").read_bytes()[:-100]
    )
    with pytest.raises(MediaError, match="truncated idx"):
        FashionMnistIdx(tmp_path, "test")[0]


def test_skimage_photos_split_by_photo_and_deterministic() -> None:
    train, val = SkimagePhotos(16, "train", crops_per_photo=8), SkimagePhotos(16, "val", crops_per_photo=8)
    assert not set(train.photos) & set(val.photos)
    train_items = torch.stack([train[i] for i in range(len(train))])
    val_items = torch.stack([val[i] for i in range(len(val))])
    assert train_items.shape == (8 * len(train.photos), 3, 16, 16) and val_items.shape[0] == 8 * len(
        val.photos
    )
    assert torch.equal(
        val_items, torch.stack([SkimagePhotos(16, "val", crops_per_photo=8)[i] for i in range(len(val))])
    )
    distance = torch.cdist(val_items.flatten(1), train_items.flatten(1))
    assert distance.min() > 0.5  # no validation crop comes from a training photo
    dm = ImageDataModule(None, resolution=16, batch_size=5, limit=20)
    assert next(iter(dm.train_dataloader())).shape == (5, 3, 16, 16)
    assert len(dm.val_dataset) == 20


# --------------------------------------------------------------------------------------------------
# Audio


@pytest.fixture
def wav_folder(tmp_path: Path) -> Path:
    root = tmp_path / "wavs"
    root.mkdir()
    t = np.arange(4000) / 8000
    sf.write(root / "short.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000)  # 0.5 s mono at 8 kHz
    t = np.arange(16000) / 8000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 700 * t * (1 + t))], 1)
    sf.write(root / "long.wav", stereo, 8000)  # 2 s stereo at 8 kHz
    return root


def test_audio_folder_resamples_crops_and_pads(wav_folder: Path) -> None:
    ds = AudioClips(wav_folder, sample_rate=16000, clip_seconds=1.0)
    by_name = {f.name: i for i, f in enumerate(ds.files)}
    short, long = ds[by_name["short.wav"]], ds[by_name["long.wav"]]
    assert short.shape == long.shape == (1, 16000)
    assert short[:, :7990].abs().max() > 0.4 and torch.all(short[:, 8000:] == 0)  # zero-padded after 0.5 s
    full = read_audio(wav_folder / "long.wav", sample_rate=16000, channels="mono")[0]
    assert torch.allclose(long, full[:, :16000], atol=1e-5)  # val crop: the start of the resampled clip
    assert AudioClips(wav_folder, 16000, 0.25, channels=2)[by_name["long.wav"]].shape == (2, 4000)

    wav = read_audio(wav_folder / "long.wav", channels="mono")[0]
    for seed in range(3):  # random crops equal the same stretch of the fully resampled clip
        for rate in (16000, 6000):
            crop = _crop_resampled(wav, 8000, rate, rate // 4, True, torch.Generator().manual_seed(seed))
            start = int(
                torch.randint(
                    -(-16000 * rate // 8000) - rate // 4 + 1,
                    (1,),
                    generator=torch.Generator().manual_seed(seed),
                )
            )
            assert torch.allclose(crop, resample(wav, 8000, rate)[:, start : start + rate // 4], atol=1e-5)

    dm = AudioDataModule(str(wav_folder), sample_rate=16000, clip_seconds=0.5, batch_size=2, val_fraction=0.5)
    dm.setup()
    assert len(dm.train_dataset) == len(dm.val_dataset) == 1
    assert next(iter(dm.train_dataloader())).shape == (1, 1, 8000)


def test_audio_packed_npz_uses_is_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n) * 3000).astype(np.int16) for n in (800, 1600, 400, 1200, 2000)]
    np.savez(
        tmp_path / "clips.npz",
        audio=np.concatenate(clips),
        offsets=np.cumsum([0] + [len(c) for c in clips]),
        sample_rate=np.int32(8000),
        is_test=np.array([True, False, False, True, False]),
    )
    train, val = (
        AudioClips(tmp_path / "clips.npz", 8000, 0.1, split="train"),
        AudioClips(tmp_path / "clips.npz", 8000, 0.1, split="val"),
    )
    assert (len(train), len(val)) == (3, 2)
    assert torch.allclose(val[0], torch.from_numpy(clips[0][:800] / 32768).float()[None])
    assert AudioClips(tmp_path / "clips.npz", 16000, 0.1, channels=2, split="val")[1].shape == (2, 1600)
    dm = AudioDataModule(tmp_path / "clips.npz", sample_rate=8000, clip_seconds=0.1, batch_size=2)
    assert [b.shape for b in dm.val_dataloader()] == [(2, 1, 800)]


# --------------------------------------------------------------------------------------------------
# EEG


def eeg_file(path: Path, channels: int, seconds: float = 20.0, rate: int = 256) -> EEGRecording:
    t = torch.arange(int(seconds * rate)) / rate
    rows = [(20 + 5 * c) * torch.sin(2 * torch.pi * (3 + c) * t) + 40 * c for c in range(channels)]
    rec = EEGRecording(torch.stack(rows), rate, [f"C{c}" for c in range(channels)])
    write_eeg(path, rec)
    return rec


def test_eeg_windows_per_channel_multichannel_and_normalisation(tmp_path: Path) -> None:
    eeg_file(tmp_path / "a.edf", 3)
    train = EEGWindows(tmp_path / "a.edf", sample_rate=128, window_seconds=2.0, split="train")
    val = EEGWindows(tmp_path / "a.edf", sample_rate=128, window_seconds=2.0, split="val")
    assert train.by_time and (train.windows, val.windows) == (9, 1)  # 20 s: 18 s train, last 2 s val
    assert (len(train), len(val)) == (27, 3) and train[0].shape == (1, 256)
    whole = EEGWindows(tmp_path / "a.edf", sample_rate=128, window_seconds=2.0)
    x = torch.cat([whole[i] for i in range(len(whole)) if i % 3 == 1], dim=1)  # channel 1, every window
    assert x.shape == (1, 2560) and abs(x.mean()) < 1e-3 and abs(x.std() - 1) < 1e-2
    pct = EEGWindows(tmp_path / "a.edf", 128, 2.0, per_channel=False, normalise="percentile95")
    y = torch.cat([pct[i] for i in range(len(pct))], dim=1)
    assert pct[0].shape == (3, 256) and torch.allclose(
        y.abs().quantile(0.95, dim=1), torch.ones(3), atol=0.02
    )
    overlap = EEGWindows(tmp_path / "a.edf", 128, 2.0, stride_seconds=1.0, per_channel=False)
    assert len(overlap) == 19 and torch.equal(overlap[1][:, :128], overlap[0][:, 128:])
    windowed = EEGWindows(
        tmp_path / "a.edf", 128, 2.0, per_channel=False, normalise="percentile95", normalise_per_window=True
    )
    for item in (windowed[0], windowed[4]):  # TFM-Tokenizer: every window scaled by its own percentile
        torch.testing.assert_close(item.abs().quantile(0.95, dim=1), torch.ones(3), atol=1e-6, rtol=1e-6)


def test_mne_default_fir_designs_have_mnes_lengths_and_responses() -> None:
    """The band-pass 0.1-75 Hz and 50 Hz notch of TFM-Tokenizer's data scripts, as MNE designs them: MNE
    logs 8449 taps (33.004 s) and 1691 taps (6.605 s) at 256 Hz; zero phase; Hamming's ~53 dB stop band."""
    from scipy.signal import freqz

    from zoo.io.eeg import fir_kernel, notch_kernel

    band, notch = fir_kernel(256.0, 0.1, 75.0), notch_kernel(256.0, 50.0)
    assert (len(band), len(notch)) == (8449, 1691)
    assert len(fir_kernel(128.0, 0.1, None)) == 4225 and fir_kernel(256.0, None, None) is None
    for h in (band, notch):
        np.testing.assert_allclose(h, h[::-1], atol=1e-15)  # symmetric: linear (zero after centring) phase

    def gain(h: np.ndarray, hz: list[float]) -> np.ndarray:
        return np.abs(freqz(h, worN=np.asarray(hz), fs=256.0)[1])

    assert abs(band.sum()) < 1e-12  # no DC at all: constant offsets vanish
    np.testing.assert_allclose(gain(band, [1.0, 10.0, 30.0, 60.0, 74.0]), 1.0, atol=0.01)
    # MNE's log: -6 dB cutoffs at 0.05 and 84.38 Hz (the middle of each transition band)
    np.testing.assert_allclose(gain(band, [0.05, 84.375]), 0.5, atol=0.01)
    assert gain(band, [100.0, 120.0]).max() < 0.003
    assert gain(notch, [50.0])[0] < 0.003 and abs(notch.sum() - 1) < 1e-12
    np.testing.assert_allclose(gain(notch, [10.0, 45.0, 55.0, 60.0]), 1.0, atol=0.01)
    with pytest.raises(ValueError, match="Nyquist"):
        notch_kernel(100.0, 50.0)


def test_fir_filtering_is_a_reflect_padded_linear_convolution() -> None:
    """``apply_fir`` equals a plain convolution of the odd-reflection padded signal (what MNE's overlap-add
    computes), also for a signal shorter than the filter (zeros beyond one reflection)."""
    from zoo.io.eeg import apply_fir, fir_kernel

    rng = np.random.default_rng(0)
    h = fir_kernel(128.0, 0.5, 30.0)
    for n in (5000, 300):
        x = rng.standard_normal((2, n)) * 20 + 300
        edge = min(len(h), n) - 1
        reflect = min(edge, n - 1)
        padded = np.pad(x, ((0, 0), (reflect, reflect)), mode="reflect", reflect_type="odd")
        padded = np.pad(padded, ((0, 0), (edge - reflect, edge - reflect)))
        full = np.stack([np.convolve(row, h) for row in padded])
        start = (len(h) - 1) // 2 + edge
        np.testing.assert_allclose(apply_fir(x, h), full[:, start : start + n], atol=1e-9)
    x = rng.standard_normal((1, 5000)) * 20
    np.testing.assert_allclose(apply_fir(x + 500.0, h), apply_fir(x, h), atol=1e-9)  # DC removed


def test_fft_resampling_and_per_block_resampling() -> None:
    """MNE-style FFT resampling is scipy.signal.resample of the signal odd-reflection padded to a power of
    two (MNE's npad="auto"), trimmed back; the per-block resampling is scipy's of each block on its own."""
    from scipy.signal import resample as scipy_resample

    from zoo.io.eeg import blockwise_resample, fft_resample

    t = np.arange(2500) / 250.0
    x = np.sin(2 * np.pi * 7.0 * t)[None] + 0.1 * np.random.default_rng(0).standard_normal((1, 2500))
    y = fft_resample(x, 250.0, 256.0)
    assert y.shape == (1, 2560)
    pad = (4096 - 2500) // 2  # 2500 + 2 * min(2500 // 8, 100) rounds up to 4096
    padded = np.pad(x, ((0, 0), (pad, pad)), mode="reflect", reflect_type="odd")
    reference = scipy_resample(padded, round(4096 * 256 / 250), axis=-1)
    cut = round(pad * 256 / 250)
    np.testing.assert_allclose(y, reference[:, cut : cut + 2560], atol=1e-10)
    tone = np.sin(2 * np.pi * 7.0 * np.arange(2560) / 256.0)
    assert np.abs(y - tone).mean() < 0.1  # still the 7 Hz tone (plus the noise)
    assert fft_resample(x, 250.0, 250.0) is x  # equal rates: untouched, as MNE
    z = np.random.default_rng(1).standard_normal((3, 2 * 1280 + 300))
    out = blockwise_resample(z, 1280, 1000)
    assert out.shape == (3, 2000 + round(300 * 1000 / 1280))
    np.testing.assert_allclose(out[:, 1000:2000], scipy_resample(z[:, 1280:2560], 1000, axis=-1))
    np.testing.assert_allclose(out[:, 2000:], scipy_resample(z[:, 2560:], 234, axis=-1))


def test_channel_statistics_follow_upstream_formulas() -> None:
    """percentile95: 95th percentile of |x| (linear) + 1e-8 (TFM-Tokenizer's loaders); median_iqr: float32
    median and IQR of the median-subtracted signal + 1e-6 (BioCodec's ch2file.py)."""
    from scipy.stats import iqr

    from zoo.io.eeg import channel_statistics

    x = torch.randn(2, 3, 997, generator=torch.Generator().manual_seed(0)) * 30 + 7
    offset, gain = channel_statistics(x, "percentile95")
    expected = np.quantile(np.abs(x.double().numpy()), 0.95, axis=-1) + 1e-8
    assert torch.equal(offset, torch.zeros(2, 3)) and np.allclose(gain.numpy(), expected, rtol=1e-7)
    offset, gain = channel_statistics(x, "median_iqr")
    x32 = x.numpy()
    median = np.median(x32, axis=-1, keepdims=True)
    assert np.array_equal(offset.numpy(), median[..., 0])
    assert np.array_equal(gain.numpy(), iqr(x32 - median, axis=-1) + np.float32(1e-6))
    _, flat = channel_statistics(torch.zeros(1, 50), "percentile95", eps=0.5)
    assert flat.item() == 0.5


def test_eeg_several_recordings_split_by_file_and_channel_counts(tmp_path: Path) -> None:
    for i in range(4):
        eeg_file(tmp_path / f"r{i}.edf", 3, seconds=6.0)
    eeg_file(tmp_path / "wide.edf", 5, seconds=6.0)
    train = EEGWindows(tmp_path, 128, 2.0, split="train", val_fraction=0.3)
    val = EEGWindows(tmp_path, 128, 2.0, split="val", val_fraction=0.3)
    assert not set(train.files) & set(val.files) and len(train.files) + len(val.files) == 5
    with pytest.raises(MediaError, match="different channel counts"):
        len(EEGWindows(tmp_path, 128, 2.0, per_channel=False))
    picked = EEGWindows(tmp_path, 128, 2.0, per_channel=False, channels=["C2", "C0"])
    assert picked[0].shape == (2, 256) and len(picked) == 15
    dm = EEGDataModule(str(tmp_path), sample_rate=100, window_seconds=1.0, batch_size=8, val_fraction=0.3)
    assert next(iter(dm.train_dataloader())).shape == (8, 1, 100)
    with pytest.raises(MediaError, match="no 10-s window fits"):
        len(EEGWindows(tmp_path / "r0.edf", 128, 10.0))


# --------------------------------------------------------------------------------------------------
# SVG


def test_svg_jsonl_and_folder_skip_bad_items_with_location(tmp_path: Path) -> None:
    lines = [json.dumps({"name": f"icon{i}", "svg": SVG.format(i)}) for i in range(8)]
    lines[3] = json.dumps({"name": "bomb", "svg": BOMB})
    lines.insert(5, "{not json")
    lines.append(json.dumps({"name": "nosvg"}))
    (tmp_path / "icons.jsonl").write_text("\n".join(lines) + "\n\n")
    with pytest.warns(UserWarning, match="skipped 3 of 10"):
        corpus = SVGCorpus(tmp_path / "icons.jsonl")
    assert len(corpus) == 7 and all(t.startswith("<svg") for t in corpus.texts)
    assert any("icons.jsonl:4" in s and "entity" in s for s in corpus.skipped)
    assert any("icons.jsonl:6" in s and "JSON" in s for s in corpus.skipped)

    folder = tmp_path / "svgs"
    for i in range(6):
        (folder / ("deep" if i == 5 else "")).mkdir(parents=True, exist_ok=True)
        (folder / ("deep" if i == 5 else "") / f"{i}.svg").write_text(SVG.format(i))
    (folder / "evil.svg").write_text(BOMB)
    with pytest.warns(UserWarning, match="evil.svg: declares an entity"):
        everything = SVGCorpus(folder)
    assert len(everything) == 6 and all("ENTITY" not in t for t in everything.texts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = SVGDataModule(str(folder), batch_size=4, val_fraction=0.3)
        dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, list) and all(isinstance(s, str) for s in batch)
    assert len(dm.train_dataset) + len(dm.val_dataset) == 6 and len(dm.val_dataset) > 0


# --------------------------------------------------------------------------------------------------
# Errors and helpers


def test_missing_and_empty_paths_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for make in (
        lambda: ImageDataModule(str(missing)).setup(),
        lambda: AudioDataModule(str(missing)).setup(),
        lambda: EEGDataModule(str(missing)).setup(),
        lambda: SVGDataModule(str(missing)).setup(),
        lambda: CifarNpz(missing / "train.npz"),
    ):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            make()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no media here")
    with pytest.raises(MediaError, match=r"empty: contains no image files"):
        ImageFolder(empty)
    with pytest.raises(MediaError, match=r"empty: contains no audio files"):
        AudioClips(empty)
    with pytest.raises(MediaError, match=r"empty: contains no EEG recording files"):
        EEGWindows(empty)
    with pytest.raises(MediaError, match=r"empty: contains no SVG files"):
        SVGCorpus(empty)
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        FashionMnistIdx(empty, "test")
    with pytest.raises(ValueError, match="val_fraction"):
        ImageDataModule(val_fraction=1.0)


def test_hash_split_is_stable_and_complete() -> None:
    keys = [f"file{i}.png" for i in range(200)]
    train, val = hash_split(keys, "train", 0.2), hash_split(keys, "val", 0.2)
    assert sorted(train + val) == list(range(200)) and 20 < len(val) < 60
    more = keys + [f"new{i}.png" for i in range(50)]
    assert set(hash_split(more, "val", 0.2)) & set(range(200)) == set(val)  # old files never move
    assert hash_split(["only"], "train", 0.5) == [0] and hash_split(["a", "b"], "val", 0.01) != []


# --------------------------------------------------------------------------------------------------
# The real data bundle (skipped when absent)


def test_bundle_cifar_first_64(shared_data: Path) -> None:
    path = shared_data / "images" / "cifar10" / "test.npz"
    ds = CifarNpz(path)
    with np.load(path) as z:
        x, jpeg, offsets = z["x"][:64], z["jpeg"], z["offsets"]
    assert len(ds) == 10000
    items = torch.stack([ds[i] for i in range(64)])
    assert torch.equal((items * 255).round().byte(), torch.from_numpy(x).permute(0, 3, 1, 2))
    for i in (0, 63):  # the pixels are the decoded JPEG streams
        stream = jpeg[offsets[i] : offsets[i + 1]].tobytes()
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(stream)).convert("RGB")), x[i])


def test_bundle_fashion_mnist(shared_data: Path) -> None:
    dm = ImageDataModule(
        shared_data / "images" / "fashion_mnist", resolution=28, channels=1, batch_size=16, limit=64
    )
    dm.setup()
    assert (len(dm.train_dataset.dataset), len(dm.val_dataset.dataset)) == (60000, 10000)
    batch = next(iter(dm.val_dataloader()))
    assert batch.shape == (16, 1, 28, 28) and batch.max() <= 1 and batch.mean() > 0.1


def test_bundle_fsdd(shared_data: Path) -> None:
    path = shared_data / "audio" / "fsdd" / "fsdd.npz"
    dm = AudioDataModule(path, sample_rate=16000, clip_seconds=0.5, batch_size=8, limit=32)
    dm.setup()
    assert (len(dm.train_dataset.dataset), len(dm.val_dataset.dataset)) == (2700, 300)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, 1, 8000) and batch.abs().max() <= 1.0 and batch.abs().max() > 0.01
    val = AudioClips(path, 16000, 0.5, split="val")
    with np.load(path) as z:
        first = np.flatnonzero(z["is_test"])[0]
        raw = z["audio"][z["offsets"][first] : z["offsets"][first + 1]].astype(np.float32) / 32768
    expected = resample(torch.from_numpy(raw)[None], 8000, 16000)[:, :8000]
    assert torch.allclose(val[0][:, : expected.shape[1]], expected, atol=1e-5)


def test_bundle_eeg_edf(shared_data: Path) -> None:
    # 16 EEG channels at 256 Hz for 60 s, and a trigger line that is left out by name
    dm = EEGDataModule(shared_data / "eeg" / "eeglab" / "test.bdf", batch_size=32)
    with pytest.warns(UserWarning, match="leaving out unusable channel.*Status: stair-step"):
        dm.setup()
    assert (dm.train_dataset.windows, dm.val_dataset.windows) == (10, 1)
    assert len(dm.train_dataset) == 160
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (32, 1, 1000) and torch.isfinite(batch).all()


def test_bundle_mdi_icons(shared_data: Path) -> None:
    path = shared_data / "svg" / "mdi" / "icons.jsonl"
    train, val = SVGCorpus(path, "train"), SVGCorpus(path, "val")
    assert len(train) + len(val) == 7447 and not train.skipped and not val.skipped
    assert not set(train.texts) & set(val.texts) and 500 < len(val) < 1000
