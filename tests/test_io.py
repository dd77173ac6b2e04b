"""Tests for zoo.io: images, audio, EEG and SVG, on synthetic files built here and on the shared real data."""

from __future__ import annotations

import json
import math
import struct
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from zoo.errors import MediaError
from zoo.io import (
    EEGRecording,
    image_to_tensor,
    modality_of,
    parse_svg,
    read_audio,
    read_eeg,
    read_image,
    read_media,
    read_svg,
    resample,
    tensor_to_image,
    write_audio,
    write_eeg,
    write_image,
    write_media,
    write_svg,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SVG_NS = "{http://www.w3.org/2000/svg}"


def shared(rel: str) -> Path:
    """Path of a file in the shared data bundle; skip the test when the bundle or file is absent."""
    p = DATA / rel
    if not p.exists():
        pytest.skip(f"shared data file {p} not present")
    return p


def leftovers(directory: Path) -> list[str]:
    """Temporary files an interrupted or failed atomic write would leave behind."""
    return [p.name for p in directory.iterdir() if ".tmp" in p.name]


# ==================================================================================================
# Images


def gradient(h: int = 6, w: int = 5) -> np.ndarray:
    """uint8 [h, w, 3] with distinct values per pixel and channel."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 50) % 256, (y * 40) % 256, (x * 13 + y * 29) % 256], axis=-1).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def test_mode_1_bilevel(tmp_path):
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    p = tmp_path / "a.png"
    Image.fromarray(bits).save(p)
    assert Image.open(p).mode == "1"
    x = read_image(p)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    for c in range(3):
        assert torch.equal(x[c], torch.from_numpy(bits.astype(np.float32)))
    assert read_image(p, "L").shape == (1, 2, 3)
    assert torch.equal(read_image(p, "RGBA")[3], torch.ones(2, 3))


def test_mode_L_exact(tmp_path):
    g = np.arange(0, 256, 8, dtype=np.uint8).reshape(4, 8)
    p = tmp_path / "g.png"
    Image.fromarray(g, mode="L").save(p)
    x = read_image(p, "L")
    assert x.shape == (1, 4, 8)
    assert torch.allclose(x[0], torch.from_numpy(g / 255.0).float(), atol=1e-7)
    rgb = read_image(p, "RGB")
    assert torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2]) and torch.equal(rgb[0], x[0])


def test_mode_P_palette(tmp_path):
    colours = [(255, 0, 0), (0, 128, 255), (10, 20, 30)]
    img = Image.new("P", (3, 1))
    img.putpalette([v for c in colours for v in c] + [0] * (256 - len(colours)) * 3)
    img.putdata([0, 1, 2])
    p = tmp_path / "p.png"
    img.save(p)
    assert Image.open(p).mode == "P"
    x = read_image(p)
    expected = torch.tensor(colours, dtype=torch.float32).T[:, None, :] / 255
    assert torch.allclose(x, expected, atol=1e-7)


def test_mode_P_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 254 * 3)
    img.putdata([0, 1])
    p = tmp_path / "pt.png"
    img.save(p, transparency=0)  # palette index 0 (black) is fully transparent
    assert Image.open(p).mode == "P" and "transparency" in Image.open(p).info
    rgb = read_image(p, "RGB")
    assert torch.allclose(rgb[:, 0, 0], torch.ones(3))  # transparent black shows the white background
    assert torch.allclose(rgb[:, 0, 1], torch.tensor([0.0, 1.0, 0.0]))
    rgba = read_image(p, "RGBA")
    assert rgba[3, 0, 0] == 0.0 and rgba[3, 0, 1] == 1.0


def test_mode_LA_composited_over_white(tmp_path):
    la = np.array([[[0, 0], [0, 255], [200, 51]]], dtype=np.uint8)  # [1, 3, 2]
    p = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(p)
    assert Image.open(p).mode == "LA"
    g, a = la[..., 0] / 255.0, la[..., 1] / 255.0
    want = g * a + (1 - a)
    assert torch.allclose(read_image(p, "L")[0], torch.from_numpy(want).float(), atol=1e-6)
    assert torch.allclose(read_image(p, "RGBA")[3], torch.from_numpy(a).float(), atol=1e-7)


def test_mode_RGB_round_trip_is_exact(tmp_path):
    rgb = gradient()
    for suffix in (".png", ".bmp", ".tiff"):
        p = tmp_path / f"rgb{suffix}"
        Image.fromarray(rgb).save(p)
        x = read_image(p)
        assert x.shape == (3, 6, 5)
        assert torch.allclose(x, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255, atol=1e-7)
        q = tmp_path / f"out{suffix}"
        write_image(q, x)
        assert np.array_equal(np.asarray(Image.open(q).convert("RGB")), rgb)
    assert leftovers(tmp_path) == []


def test_rgba_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 128)  # half-transparent red
    rgba[0, 1] = (0, 0, 255, 255)  # opaque blue
    rgba[1, 0] = (0, 0, 0, 0)  # fully transparent black
    rgba[1, 1] = (40, 80, 120, 255)
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(p)
    x = read_image(p, "RGB")
    a = 128 / 255
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 1 - a, 1 - a]), atol=1e-6)
    assert torch.allclose(x[:, 0, 1], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(x[:, 1, 0], torch.ones(3))  # not black: transparent means background
    kept = read_image(p, "RGBA")
    assert kept.shape == (4, 2, 2)
    assert torch.allclose(kept, torch.from_numpy(rgba).permute(2, 0, 1).float() / 255, atol=1e-7)
    gray = read_image(p, "L")
    assert gray[0, 1, 0] == pytest.approx(1.0)
    assert gray[0, 1, 1] == pytest.approx(luma(np.array([40, 80, 120]) / 255), abs=1e-6)


def test_16bit_png_scaled_by_full_range(tmp_path):
    v = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(v).save(p)
    assert Image.open(p).mode.startswith("I")
    x = read_image(p, "L")
    assert torch.allclose(x[0], torch.from_numpy(v / 65535.0).float(), atol=1e-7)
    # PIL's convert("L") clips 16-bit values at 255; make sure nothing of that sort happened.
    assert x[0, 0, 1] == pytest.approx(1000 / 65535, abs=1e-7)
    assert x[0, 0, 1] < 0.02
    assert read_image(p, "RGB").shape == (3, 1, 4)


def test_mode_I_32bit(tmp_path):
    small = np.array([[0, 300, 65535]], dtype=np.int32)
    p = tmp_path / "i.tiff"
    Image.fromarray(small, mode="I").save(p)
    assert Image.open(p).mode == "I"
    assert torch.allclose(read_image(p, "L")[0], torch.from_numpy(small / 65535.0).float(), atol=1e-7)
    wide = np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32)
    q = tmp_path / "iw.tiff"
    Image.fromarray(wide, mode="I").save(q)
    x = read_image(q, "L")[0, 0]
    assert x[0] == 0.0 and x[2] == 1.0 and x[1] == pytest.approx(0.5, abs=1e-6)


def test_mode_F(tmp_path):
    f = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    p = tmp_path / "f.tiff"
    Image.fromarray(f, mode="F").save(p)
    assert Image.open(p).mode == "F"
    assert torch.allclose(read_image(p, "L")[0], torch.from_numpy(f), atol=1e-7)
    nan = np.array([[0.0, np.nan]], dtype=np.float32)
    q = tmp_path / "nan.tiff"
    Image.fromarray(nan, mode="F").save(q)
    with pytest.raises(MediaError, match="NaN"):
        read_image(q)


def test_mode_CMYK(tmp_path):
    cmyk = np.array([[[255, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 0], [0, 255, 255, 0]]], dtype=np.uint8)
    p = tmp_path / "c.tiff"
    Image.fromarray(cmyk, mode="CMYK").save(p)
    assert Image.open(p).mode == "CMYK"
    x = read_image(p)
    want = torch.tensor([[0, 1, 1], [0, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.float32).T[:, None, :]
    assert torch.allclose(x, want, atol=1e-7)  # cyan, black, white, red


def test_mode_YCbCr():
    y = np.array([[0, 64, 128, 255]], dtype=np.uint8)
    neutral = np.full_like(y, 128)
    img = Image.fromarray(np.stack([y, neutral, neutral], axis=-1), mode="YCbCr")
    x = image_to_tensor(img)
    assert x.shape == (3, 1, 4)
    # Neutral chroma is grey: R = G = B = Y (within one 8-bit step of rounding).
    for c in range(3):
        assert torch.allclose(x[c, 0], torch.from_numpy(y / 255.0).float(), atol=1.5 / 255)


def test_exif_orientation_applied(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)  # red in the stored top-left corner
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    p = tmp_path / "rot.png"
    img.save(p, exif=exif)
    x = read_image(p)
    assert x.shape == (3, 3, 2)  # height and width swapped
    assert torch.equal(x[:, 0, 1], torch.tensor([1.0, 0.0, 0.0]))  # top-left went to top-right
    assert x[0].sum() == 1.0


def test_bad_target_mode(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(gradient()).save(p)
    with pytest.raises(MediaError, match="unsupported target mode 'CMYK'"):
        read_image(p, "CMYK")


def test_jpeg_quality(tmp_path):
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 256, (16, 16, 3)), np.ones((4, 4, 1))).astype(np.float32) / 255
    x = torch.from_numpy(base).permute(2, 0, 1)
    sizes, errors = {}, {}
    for q in (20, 95):
        p = tmp_path / f"q{q}.jpg"
        write_image(p, x, quality=q)
        assert Image.open(p).format == "JPEG"
        sizes[q] = p.stat().st_size
        errors[q] = (read_image(p) - x).abs().mean().item()
    assert sizes[95] > sizes[20]
    assert errors[95] < errors[20] / 2
    write_image(tmp_path / "default.jpeg", x)
    assert (tmp_path / "default.jpeg").stat().st_size == sizes[95]  # default quality is 95
    with pytest.raises(MediaError, match="quality"):
        write_image(tmp_path / "bad.jpg", x, quality=0)


def test_jpeg_from_rgba_composites(tmp_path):
    x = torch.zeros(4, 8, 8)  # fully transparent black
    write_image(tmp_path / "t.jpg", x)
    assert read_image(tmp_path / "t.jpg").min() > 0.95  # white, as read_image would show the PNG


def test_webp_and_unknown_suffix(tmp_path):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    x = torch.stack([xx, yy, (xx + yy) / 2])  # smooth: lossy WebP keeps it close
    write_image(tmp_path / "a.webp", x)
    assert Image.open(tmp_path / "a.webp").format == "WEBP"
    assert (read_image(tmp_path / "a.webp") - x).abs().mean() < 0.02
    with pytest.raises(MediaError, match=r"unknown image suffix '\.xyz'") as e:
        write_image(tmp_path / "a.xyz", x)
    assert e.value.path == tmp_path / "a.xyz"
    assert not (tmp_path / "a.xyz").exists() and leftovers(tmp_path) == []


def test_not_an_image(tmp_path):
    p = tmp_path / "fake.png"
    p.write_bytes(b"this is plain text, not a PNG file at all")
    with pytest.raises(MediaError, match="not a valid image") as e:
        read_image(p)
    assert e.value.path == p and str(p) in str(e.value)


def test_truncated_image(tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible: data spans the file
    good = tmp_path / "good.png"
    Image.fromarray(noise).save(good)
    for name, cut in (("half.png", 0.5), ("most.png", 0.9)):
        bad = tmp_path / name
        bad.write_bytes(good.read_bytes()[: int(good.stat().st_size * cut)])
        with pytest.raises(MediaError, match="truncated or corrupt") as e:
            read_image(bad)
        assert e.value.path == bad
    jpg = tmp_path / "good.jpg"
    Image.fromarray(noise).save(jpg, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    with pytest.raises(MediaError, match="truncated or corrupt"):
        read_image(cut)


def test_missing_image(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(MediaError, match="not a regular file"):
        read_image(tmp_path)


def test_tensor_to_image_rounds_and_clamps():
    x = torch.tensor([[[-0.5, 0.0, 0.502, 1.0, 1.7, 0.499 / 255, 0.501 / 255]]])
    img = tensor_to_image(x)
    assert img.mode == "L"
    assert list(np.asarray(img)[0]) == [0, 0, 128, 255, 255, 0, 1]
    assert tensor_to_image(torch.rand(5, 7)).mode == "L"
    assert tensor_to_image(torch.rand(3, 5, 7)).size == (7, 5)
    assert tensor_to_image(torch.rand(4, 5, 7)).mode == "RGBA"


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([[[0.1, float("nan")]]]), "NaN"),
        (torch.full((3, 2, 2), float("inf")), "infinite"),
        (torch.rand(1, 3, 4, 4), "shape"),
        (torch.rand(2, 4, 4), "2"),
        (torch.rand(7), "shape"),
    ],
)
def test_tensor_to_image_rejects(bad, match):
    with pytest.raises(MediaError, match=match) as e:
        tensor_to_image(bad)
    assert e.value.path is None


def test_write_image_nan_names_file(tmp_path):
    with pytest.raises(MediaError, match="NaN") as e:
        write_image(tmp_path / "n.png", torch.full((3, 2, 2), float("nan")))
    assert e.value.path == tmp_path / "n.png"
    assert not (tmp_path / "n.png").exists()


def test_real_cifar_image(tmp_path):
    z = np.load(shared("images/cifar10/test.npz"))
    x, jpeg, offsets = z["x"], z["jpeg"], z["offsets"]
    for i in (0, 4321, 9999):
        # The stored JPEG stream decodes to exactly the stored pixels.
        jp = tmp_path / f"{i}.jpg"
        jp.write_bytes(jpeg[offsets[i] : offsets[i + 1]].tobytes())
        got = read_image(jp)
        want = torch.from_numpy(x[i]).permute(2, 0, 1).float() / 255
        assert got.shape == (3, 32, 32)
        assert torch.equal(got, want)
        png = tmp_path / f"{i}.png"
        write_image(png, got)
        assert np.array_equal(np.asarray(Image.open(png)), x[i])


# ==================================================================================================
# Audio


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(sr * seconds), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def peak_hz(x: torch.Tensor, sr: int) -> float:
    spec = torch.fft.rfft(x.double() * torch.hann_window(x.shape[-1], dtype=torch.float64)).abs()
    return spec.argmax().item() * sr / x.shape[-1]


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_audio_round_trip(tmp_path, suffix):
    wav = torch.stack([sine(440, 16000, 0.5), sine(1000, 16000, 0.5, 0.25)])
    p = tmp_path / f"a{suffix}"
    write_audio(p, wav, 16000)
    info = sf.info(str(p))
    assert info.samplerate == 16000 and info.channels == 2 and info.subtype == "PCM_16"
    got, sr = read_audio(p)
    assert sr == 16000 and got.shape == (2, 8000) and got.dtype == torch.float32
    assert (got - wav).abs().max() <= 1 / 32768 + 1e-6
    assert leftovers(tmp_path) == []


def test_audio_mono_1d_and_float_subtype(tmp_path):
    w = sine(300, 8000, 0.25)
    write_audio(tmp_path / "m.wav", w, 8000, subtype="FLOAT")
    got, sr = read_audio(tmp_path / "m.wav")
    assert got.shape == (1, 2000) and sr == 8000
    assert torch.equal(got[0], w)  # 32-bit float is lossless
    with pytest.raises(MediaError, match="cannot be written"):
        write_audio(tmp_path / "x.flac", w, 8000, subtype="FLOAT")


def test_audio_ogg(tmp_path):
    w = sine(440, 16000, 1.0)
    write_audio(tmp_path / "a.ogg", w, 16000)
    got, sr = read_audio(tmp_path / "a.ogg")
    assert sr == 16000 and abs(got.shape[1] - 16000) < 100
    assert abs(peak_hz(got[0], sr) - 440) < 2


def test_audio_clipped_not_wrapped(tmp_path):
    w = torch.tensor([[0.0, 1.5, -2.0, 0.5, 1.0, -1.0, 3.0]])
    write_audio(tmp_path / "c.wav", w, 8000)
    got, _ = read_audio(tmp_path / "c.wav")
    assert got[0, 1] > 0.999 and got[0, 6] > 0.999  # overshoot stays at +full scale
    assert got[0, 2] <= -0.999
    assert got[0, 3] == pytest.approx(0.5, abs=1e-4)
    # Float WAV could hold the overshoot; it is clipped all the same, so every format agrees.
    write_audio(tmp_path / "f.wav", w, 8000, subtype="FLOAT")
    got, _ = read_audio(tmp_path / "f.wav")
    assert got.tolist() == [[0.0, 1.0, -1.0, 0.5, 1.0, -1.0, 1.0]]


def test_resample_changes_length_and_keeps_frequency():
    x = sine(440, 16000, 1.0)[None]
    down = resample(x, 16000, 8000)
    assert down.shape == (1, 8000)
    assert abs(peak_hz(down[0], 8000) - 440) <= 1.0
    up = resample(x, 16000, 22050)
    assert up.shape == (1, 22050)
    assert abs(peak_hz(up[0], 22050) - 440) <= 1.0
    assert resample(x, 16000, 16000) is x
    # A tone above the new Nyquist frequency is filtered out, not aliased into the band.
    hi = resample(sine(6000, 16000, 1.0)[None], 16000, 8000)
    assert hi[:, 100:-100].abs().max() < 0.01  # away from the edges, where the tone starts abruptly
    with pytest.raises(MediaError):
        resample(x, 16000, 0)


def test_read_audio_resamples(tmp_path):
    write_audio(tmp_path / "s.wav", sine(440, 16000, 0.5), 16000)
    got, sr = read_audio(tmp_path / "s.wav", sample_rate=24000)
    assert sr == 24000 and got.shape == (1, 12000)
    assert abs(peak_hz(got[0], sr) - 440) <= 2.0


def test_channel_policies(tmp_path):
    left, right = sine(200, 8000, 0.1), sine(300, 8000, 0.1, 0.2)
    write_audio(tmp_path / "st.wav", torch.stack([left, right]), 8000, subtype="FLOAT")
    mono, _ = read_audio(tmp_path / "st.wav", channels="mono")
    assert mono.shape == (1, 800)
    assert torch.allclose(mono[0], (left + right) / 2, atol=1e-7)
    assert read_audio(tmp_path / "st.wav", channels="stereo")[0].shape == (2, 800)

    write_audio(tmp_path / "mo.wav", left, 8000, subtype="FLOAT")
    st, _ = read_audio(tmp_path / "mo.wav", channels="stereo")
    assert st.shape == (2, 800) and torch.equal(st[0], st[1]) and torch.equal(st[0], left)

    three = torch.stack([left, right, -left])
    write_audio(tmp_path / "3.wav", three, 8000, subtype="FLOAT")
    assert read_audio(tmp_path / "3.wav")[0].shape == (3, 800)
    assert torch.allclose(read_audio(tmp_path / "3.wav", channels="mono")[0][0], right / 3, atol=1e-7)
    with pytest.raises(MediaError, match="3 channels"):
        read_audio(tmp_path / "3.wav", channels="stereo")
    with pytest.raises(MediaError, match="channels must be"):
        read_audio(tmp_path / "3.wav", channels="surround")


def test_corrupt_audio(tmp_path):
    p = tmp_path / "bad.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(256)))
    with pytest.raises(MediaError, match="not a readable audio file") as e:
        read_audio(p)
    assert e.value.path == p
    with pytest.raises(MediaError, match="file not found"):
        read_audio(tmp_path / "missing.flac")


def test_empty_audio(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros((0, 1), dtype=np.float32), 16000)
    assert p.stat().st_size > 0
    with pytest.raises(MediaError, match="0 frames"):
        read_audio(p)
    with pytest.raises(MediaError, match="no samples"):
        write_audio(tmp_path / "e.wav", torch.zeros(1, 0), 16000)


def test_nan_audio(tmp_path):
    p = tmp_path / "nan.wav"
    sf.write(str(p), np.array([0.1, np.nan, 0.2], dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(MediaError, match="contains NaN"):
        read_audio(p)
    with pytest.raises(MediaError, match="contains NaN"):
        write_audio(tmp_path / "w.wav", torch.tensor([0.0, float("nan")]), 8000)
    assert not (tmp_path / "w.wav").exists()


def test_write_audio_rejects(tmp_path):
    w = sine(100, 8000, 0.1)
    with pytest.raises(MediaError, match="unknown audio suffix"):
        write_audio(tmp_path / "a.mp4", w, 8000)
    with pytest.raises(MediaError, match=r"\[T, C\]"):
        write_audio(tmp_path / "a.wav", w.reshape(-1, 2), 8000)  # [T, C] by mistake
    with pytest.raises(MediaError, match="sample_rate"):
        write_audio(tmp_path / "a.wav", w, 8000.5)


def test_real_codec2_clip():
    got, sr = read_audio(shared("audio/codec2/hts1a.wav"))
    assert sr == 8000 and got.shape == (1, 24000)  # 3.0 s at 8 kHz
    assert 0.01 < got.abs().max() <= 1.0
    up, sr16 = read_audio(shared("audio/codec2/hts1a.wav"), sample_rate=16000)
    assert sr16 == 16000 and up.shape == (1, 48000)
    mulaw, sr = read_audio(shared("audio/codec2/cross.wav"))
    assert sr == 8000 and mulaw.shape == (1, 24000) and mulaw.abs().max() > 0.01


def test_real_pocketsphinx_clip():
    got, sr = read_audio(shared("audio/pocketsphinx/cards/001.wav"), channels="stereo")
    assert sr == 16000 and got.shape[0] == 2 and 1.0 <= got.shape[1] / sr <= 3.6
    assert torch.equal(got[0], got[1])


def test_real_fsdd_digit_round_trip(tmp_path):
    z = np.load(shared("audio/fsdd/fsdd.npz"))
    off, rate = z["offsets"], int(z["sample_rate"])
    clip = z["audio"][off[0] : off[1]]  # 0_george_0.wav
    wav = torch.from_numpy(clip.astype(np.float32) / 32768)[None]
    write_audio(tmp_path / f"{z['filename'][0]}", wav, rate)
    got, sr = read_audio(tmp_path / "0_george_0.wav")
    assert sr == 8000 and got.shape == (1, clip.size)
    assert torch.equal(torch.round(got * 32768).to(torch.int16)[0], torch.from_numpy(clip))


# ==================================================================================================
# EEG


def edf_bytes(
    signals: list[dict],
    records: list[list[list[int]]],
    *,
    bdf: bool = False,
    n_records: int | None = None,
    record_seconds: str = "1",
) -> bytes:
    """Build an EDF/BDF file by hand from the specification, independently of zoo.io.eeg.

    signals: dicts with label, unit, pmin, pmax, dmin, dmax, n. records[r][s] = digital samples.
    """

    def a(text, width):
        return str(text).encode("latin-1").ljust(width, b" ")

    ns = len(signals)
    head = (
        (b"\xffBIOSEMI" if bdf else a("0", 8))
        + a("X", 80)
        + a("Startdate X", 80)
        + b"01.02.0303.04.05"
        + a(256 * (ns + 1), 8)
        + a("24BIT" if bdf else "", 44)
        + a(len(records) if n_records is None else n_records, 8)
        + a(record_seconds, 8)
        + a(ns, 4)
    )
    cols = [
        ("label", 16),
        ("transducer", 80),
        ("unit", 8),
        ("pmin", 8),
        ("pmax", 8),
        ("dmin", 8),
        ("dmax", 8),
        ("prefilter", 80),
        ("n", 8),
        ("reserved", 32),
    ]
    for key, width in cols:
        head += b"".join(a(s.get(key, ""), width) for s in signals)
    body = bytearray()
    for rec in records:
        for s, samples in zip(signals, rec, strict=True):
            assert len(samples) == s["n"]
            for v in samples:
                body += struct.pack("<i", v)[:3] if bdf else struct.pack("<h", v)
    return head + bytes(body)


def test_edf_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    t = np.arange(4 * 256) / 256
    data = np.stack(
        [
            40 * np.sin(2 * np.pi * 10 * t) + rng.normal(0, 5, t.size),
            2000 + 300 * np.cos(2 * np.pi * 3 * t),  # large DC offset
            rng.normal(0, 0.01, t.size),  # tiny signal: needs fine physical-range digits
        ]
    ).astype(np.float32)
    rec = EEGRecording(torch.from_numpy(data), 256, ["Fp1", "Cz", "tiny"])
    p = tmp_path / "r.edf"
    write_eeg(p, rec)
    assert p.stat().st_size == 256 * 4 + 4 * 3 * 256 * 2
    back = read_eeg(p)
    assert back.channel_names == ["Fp1", "Cz", "tiny"]
    assert back.sample_rate == 256.0 and back.data.shape == (3, 1024) and back.duration == 4.0
    assert back.path == p
    for i in range(3):
        step = (data[i].max() - data[i].min()) / 65535
        err = (back.data[i] - rec.data[i]).abs().max().item()
        assert err <= step / 2 * 1.01 + 1e-6 * abs(data[i]).max(), (i, err, step)
    assert leftovers(tmp_path) == []


def test_edf_round_trip_pads_partial_record(tmp_path):
    rec = EEGRecording(torch.linspace(-50, 50, 250)[None], 100, ["C3"])
    with pytest.warns(UserWarning, match="padded with 50"):
        write_eeg(tmp_path / "p.edf", rec)
    back = read_eeg(tmp_path / "p.edf")
    assert back.data.shape == (1, 300)
    assert torch.allclose(back.data[0, :250], rec.data[0], atol=0.01)
    assert torch.allclose(back.data[0, 250:], torch.full((50,), 50.0), atol=0.01)


def test_edf_non_integer_rate(tmp_path):
    rec = EEGRecording(torch.linspace(-1, 1, 50)[None], 12.5, ["slow"])
    write_eeg(tmp_path / "s.edf", rec)  # 2-s records of 25 samples: whole samples per record
    back = read_eeg(tmp_path / "s.edf")
    assert back.sample_rate == 12.5 and back.data.shape == (1, 50)
    assert (back.data - rec.data).abs().max() <= 2 / 65535


def test_edf_without_records(tmp_path):
    signal = {"label": "Cz", "unit": "uV", "pmin": -1, "pmax": 1, "dmin": -10, "dmax": 10, "n": 2}
    (tmp_path / "z.edf").write_bytes(edf_bytes([signal], []))
    with pytest.raises(MediaError, match="no data records"):
        read_eeg(tmp_path / "z.edf")


def test_edf_truncated(tmp_path):
    rec = EEGRecording(torch.randn(2, 5 * 128) * 20, 128, ["a", "b"])
    p = tmp_path / "t.edf"
    write_eeg(p, rec)
    raw = p.read_bytes()
    record_bytes = 2 * 128 * 2
    p.write_bytes(raw[: 768 + 3 * record_bytes + 100])  # 3 full records and part of a 4th
    with pytest.raises(
        MediaError,
        match=rf"truncated EDF: header says 5 records of {record_bytes} bytes, "
        r"file has 3 full records",
    ) as e:
        read_eeg(p)
    assert e.value.path == p
    p.write_bytes(raw[:300])
    with pytest.raises(MediaError, match="truncated header"):
        read_eeg(p)


def test_edf_header_garbage(tmp_path):
    rec = EEGRecording(torch.randn(2, 256), 128, ["a", "b"])
    good = tmp_path / "g.edf"
    write_eeg(good, rec)
    raw = bytearray(good.read_bytes())

    bad = bytearray(raw)
    bad[236:244] = b"abc     "
    (tmp_path / "n.edf").write_bytes(bad)
    with pytest.raises(MediaError, match="'number of data records' is not a number: 'abc'"):
        read_eeg(tmp_path / "n.edf")

    bad = bytearray(raw)
    dmin_col = 256 + (16 + 80 + 8 + 8 + 8) * 2
    bad[dmin_col + 8 : dmin_col + 16] = b"x1      "  # digital minimum of the second signal
    (tmp_path / "d.edf").write_bytes(bad)
    with pytest.raises(MediaError, match=r"digital minimum of signal 1 \('b'\)"):
        read_eeg(tmp_path / "d.edf")

    bad = bytearray(raw)
    bad[0:8] = b"PK\x03\x04    "
    (tmp_path / "v.edf").write_bytes(bad)
    with pytest.raises(MediaError, match="'version'"):
        read_eeg(tmp_path / "v.edf")

    bad = bytearray(raw)
    bad[184:192] = b"9999    "
    (tmp_path / "h.edf").write_bytes(bad)
    with pytest.raises(MediaError, match="'number of bytes in header' is 9999"):
        read_eeg(tmp_path / "h.edf")


def test_bdf_handwritten(tmp_path):
    signals = [
        {
            "label": "Fz",
            "unit": "uV",
            "pmin": -262144,
            "pmax": 262143,
            "dmin": -8388608,
            "dmax": 8388607,
            "n": 4,
        },
        {"label": "EOG", "unit": "mV", "pmin": -10, "pmax": 10, "dmin": -1000, "dmax": 1000, "n": 4},
        {
            "label": "BDF Annotations",
            "unit": "",
            "pmin": -1,
            "pmax": 1,
            "dmin": -8388608,
            "dmax": 8388607,
            "n": 2,
        },
    ]
    r0 = [[-8388608, -1, 0, 8388607], [-1000, 0, 500, 1000], [0, 0]]
    r1 = [[1, 2, 3, 4], [1, 2, 3, -3], [0, 0]]
    p = tmp_path / "h.bdf"
    p.write_bytes(edf_bytes(signals, [r0, r1], bdf=True))
    rec = read_eeg(p)
    assert rec.channel_names == ["Fz", "EOG"] and rec.sample_rate == 4.0 and rec.data.shape == (2, 8)

    def phys(d, s):
        return (d - s["dmin"]) * (s["pmax"] - s["pmin"]) / (s["dmax"] - s["dmin"]) + s["pmin"]

    fz = [phys(d, signals[0]) for d in r0[0] + r1[0]]
    eog = [phys(d, signals[1]) * 1000 for d in r0[1] + r1[1]]  # mV -> uV
    assert torch.allclose(rec.data[0].double(), torch.tensor(fz, dtype=torch.float64), rtol=1e-6)
    assert rec.data[0, 0] == -262144 and rec.data[0, 3] == 262143  # 24-bit sign extension
    assert torch.allclose(rec.data[1].double(), torch.tensor(eog, dtype=torch.float64), rtol=1e-6)
    assert rec.data[1, 1] == 0.0 and rec.data[1, 3] == 10000.0

    # Unknown record count (-1, written while recording): the file length decides.
    q = tmp_path / "open.bdf"
    q.write_bytes(edf_bytes(signals, [r0, r1], bdf=True, n_records=-1))
    assert read_eeg(q).data.shape == (2, 8)

    q.write_bytes(edf_bytes(signals, [r0, r1, r0], bdf=True)[:-5])
    with pytest.raises(MediaError, match="truncated BDF: header says 3 records of 30 bytes, file has 2"):
        read_eeg(q)


def test_edf_mixed_rates(tmp_path):
    signals = [
        {"label": "C3", "unit": "uV", "pmin": -100, "pmax": 100, "dmin": -100, "dmax": 100, "n": 4},
        {"label": "C4", "unit": "V", "pmin": -1, "pmax": 1, "dmin": -100, "dmax": 100, "n": 4},
        {"label": "Resp", "unit": "uV", "pmin": -100, "pmax": 100, "dmin": -100, "dmax": 100, "n": 1},
        {
            "label": "EDF Annotations",
            "unit": "",
            "pmin": -1,
            "pmax": 1,
            "dmin": -32768,
            "dmax": 32767,
            "n": 3,
        },
    ]
    recs = [[[1, 2, 3, 4], [10, 20, 30, 40], [7], [0, 0, 0]]] * 2
    p = tmp_path / "m.edf"
    p.write_bytes(edf_bytes(signals, recs, record_seconds="0.5"))
    with pytest.warns(UserWarning, match=r"keeping the 2 at 8 Hz and dropping 1: Resp \(2 Hz\)"):
        rec = read_eeg(p)
    assert rec.channel_names == ["C3", "C4"] and rec.sample_rate == 8.0
    assert rec.data[1, :4].tolist() == pytest.approx([1e5, 2e5, 3e5, 4e5])  # volts -> microvolts
    only = read_eeg(p, channel_names=["Resp"])
    assert only.sample_rate == 2.0 and only.data.tolist() == [[7.0, 7.0]]
    picked = read_eeg(p, channel_names=["C4", "C3"])
    assert picked.channel_names == ["C4", "C3"] and picked.data[1, 0] == 1.0
    both = read_eeg(p, channel_names=["C3", "Resp"])  # Resp resampled onto the recording's 8 Hz
    assert both.sample_rate == 8.0 and both.data[1].tolist() == pytest.approx([7.0] * 8)
    with pytest.raises(MediaError, match=r"no channel\(s\) \['Pz'\]"):
        read_eeg(p, channel_names=["Pz"])


def test_read_eeg_resamples_edf(tmp_path):
    t = torch.arange(10 * 256) / 256
    rec = EEGRecording(torch.stack([30 * torch.sin(2 * math.pi * 7 * t)]), 256, ["O1"])
    write_eeg(tmp_path / "s.edf", rec)
    back = read_eeg(tmp_path / "s.edf", sample_rate=100)
    assert back.sample_rate == 100 and back.data.shape == (1, 1000)
    assert abs(peak_hz(back.data[0], 100) - 7) <= 0.1


def test_recording_resample_non_integer_rate():
    t = torch.arange(2000) / 250.0
    rec = EEGRecording(torch.sin(2 * math.pi * 5 * t)[None].repeat(2, 1), 250.0, ["a", "b"])
    out = rec.resample(128.5)
    assert out.sample_rate == 128.5
    assert out.data.shape == (2, math.ceil(2000 * 128.5 / 250))
    assert out.duration == pytest.approx(rec.duration, abs=1 / 128.5)
    assert abs(peak_hz(out.data[0], 128.5) - 5) < 0.1
    # A ratio with no small fraction is approximated, and the true achieved rate is reported.
    with pytest.warns(UserWarning, match="approximated"):
        odd = rec.resample(250 * math.pi / 3)
    assert odd.sample_rate == pytest.approx(250 * math.pi / 3, rel=1e-5)
    assert odd.sample_rate != 250 * math.pi / 3


def test_recording_pick_and_validation():
    rec = EEGRecording(torch.arange(12.0).reshape(3, 4), 2, ["a", "b", "c"])
    assert rec.duration == 2.0
    sub = rec.pick(["c", "a"])
    assert sub.channel_names == ["c", "a"] and sub.data.tolist() == [[8, 9, 10, 11], [0, 1, 2, 3]]
    with pytest.raises(MediaError, match="available: a, b, c"):
        rec.pick(["z"])
    with pytest.raises(MediaError, match="2 channel names for 3"):
        EEGRecording(torch.zeros(3, 4), 2, ["a", "b"])
    with pytest.raises(MediaError, match=r"\[C, T\]"):
        EEGRecording(torch.zeros(4), 2, ["a"])


def test_npy_needs_sample_rate(tmp_path):
    p = tmp_path / "x.npy"
    arr = np.random.default_rng(3).normal(size=(4, 500)).astype(np.float32)
    np.save(p, arr)
    with pytest.raises(MediaError, match="stores no sample rate; give it"):
        read_eeg(p)
    rec = read_eeg(p, sample_rate=250)
    assert rec.sample_rate == 250 and rec.channel_names == ["ch0", "ch1", "ch2", "ch3"]
    assert torch.equal(rec.data, torch.from_numpy(arr)) and rec.duration == 2.0
    named = read_eeg(p, sample_rate=250, channel_names=["F3", "F4", "C3", "C4"])
    assert named.channel_names == ["F3", "F4", "C3", "C4"]
    with pytest.raises(MediaError, match="3 channel names given for 4"):
        read_eeg(p, sample_rate=250, channel_names=["a", "b", "c"])
    arr[2, 7] = np.inf
    np.save(p, arr)
    with pytest.raises(MediaError, match="infinite"):
        read_eeg(p, sample_rate=250)
    arr[2, 7] = np.nan
    np.save(p, arr)
    with pytest.raises(MediaError, match="contains NaN"):
        read_eeg(p, sample_rate=250)


def test_npz_keys(tmp_path):
    arr = np.random.default_rng(4).normal(size=(2, 400)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=arr, sfreq=200.0, ch_names=np.array(["Cz", "Pz"]))
    rec = read_eeg(tmp_path / "a.npz")
    assert (
        rec.sample_rate == 200
        and rec.channel_names == ["Cz", "Pz"]
        and torch.equal(rec.data, torch.from_numpy(arr))
    )
    assert read_eeg(tmp_path / "a.npz", channel_names=["Pz"]).data.shape == (1, 400)
    half = read_eeg(tmp_path / "a.npz", sample_rate=100)
    assert half.sample_rate == 100 and half.data.shape == (2, 200)

    np.savez(tmp_path / "b.npz", data=arr, fs=np.array(128))
    b = read_eeg(tmp_path / "b.npz")
    assert b.sample_rate == 128 and b.channel_names == ["ch0", "ch1"]

    np.savez(tmp_path / "c.npz", data=arr)
    with pytest.raises(MediaError, match="sample_rate= is needed"):
        read_eeg(tmp_path / "c.npz")
    assert read_eeg(tmp_path / "c.npz", sample_rate=50).sample_rate == 50  # the data's rate, no resampling

    np.savez(tmp_path / "d.npz", signal=arr, sample_rate=100)
    with pytest.raises(MediaError, match=r"no 'data' or 'x' array; keys are \['sample_rate', 'signal'\]"):
        read_eeg(tmp_path / "d.npz")


def test_npz_write_round_trip(tmp_path):
    rec = EEGRecording(torch.randn(3, 100) * 1e4, 512.5, ["a", "b", "c"])
    write_eeg(tmp_path / "r.npz", rec)
    back = read_eeg(tmp_path / "r.npz")
    assert (
        torch.equal(back.data, rec.data)
        and back.sample_rate == 512.5
        and back.channel_names == ["a", "b", "c"]
    )
    with pytest.raises(MediaError, match="use .npz or .edf"):
        write_eeg(tmp_path / "r.bdf", rec)
    with pytest.raises(MediaError, match="longer than the 16"):
        write_eeg(tmp_path / "long.edf", EEGRecording(torch.zeros(1, 10), 10, ["x" * 17]))
    assert not (tmp_path / "long.edf").exists() and leftovers(tmp_path) == []


def test_other_format_without_mne(tmp_path, monkeypatch):
    p = tmp_path / "rec.fif"  # .set is read natively now; .fif still needs MNE
    p.write_bytes(b"FIF header")
    monkeypatch.setitem(sys.modules, "mne", None)  # importing mne now fails as if absent
    with pytest.raises(MediaError, match=r"pip install zoo\[eeg\]") as e:
        read_eeg(p)
    assert e.value.path == p
    with pytest.raises(MediaError, match="file not found"):
        read_eeg(tmp_path / "nope.edf")


def test_real_eeglab_edf():
    p = shared("eeg/eeglab/test.edf")
    rec = read_eeg(p)
    assert len(rec.channel_names) == 16 and rec.sample_rate == 256 and rec.duration == 60
    assert rec.channel_names[0] == "EEG Fp1" and rec.channel_names[-1] == "EEG O2"
    # First sample of the first signal, decoded here straight from the bytes after the header.
    raw = p.read_bytes()
    d = struct.unpack("<h", raw[256 * 17 : 256 * 17 + 2])[0]
    assert rec.data[0, 0].item() == pytest.approx((d + 2046) * 1364 / 4092 - 682, abs=1e-4)
    assert 1 < rec.data.std().item() < 500  # plausible scalp EEG in microvolts


def test_real_eeglab_bdf_and_edf_round_trip(tmp_path):
    rec = read_eeg(shared("eeg/eeglab/test.bdf"))  # its header gives the record count as -1
    assert len(rec.channel_names) == 17 and rec.channel_names[-1] == "Status"
    assert rec.sample_rate == 256 and rec.duration == 60
    eeg = rec.pick([f"A{i}" for i in range(1, 17)])
    write_eeg(tmp_path / "copy.edf", eeg)
    back = read_eeg(tmp_path / "copy.edf")
    step = (eeg.data.amax(1) - eeg.data.amin(1)) / 65535
    assert ((back.data - eeg.data).abs().amax(1) <= step / 2 * 1.01 + 1e-3).all()


def test_real_mne_edf_and_bdf():
    over = read_eeg(shared("eeg/mne_testing/EDF/test_edf_overlapping_annotations.edf"))
    assert len(over.channel_names) == 64 and over.sample_rate == 128 and over.duration == 124
    with pytest.warns(UserWarning, match="different sample rates"):
        reduced = read_eeg(shared("eeg/mne_testing/EDF/test_reduced.edf"))
    assert len(reduced.channel_names) == 126 and "Status" in reduced.channel_names  # 125 + Status
    assert reduced.sample_rate == 512 and reduced.duration == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # annotations only differ in rate; nothing to warn about
        bdf = read_eeg(shared("eeg/mne_testing/BDF/multiple_annotation_chans.bdf"), sample_rate=100)
    assert len(bdf.channel_names) == 19 and bdf.channel_names[:3] == ["EMG", "EOG", "A1"]
    assert bdf.sample_rate == 100 and bdf.data.shape == (19, 24700)


# ==================================================================================================
# SVG

GOOD_SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M0 0h24v24H0z"/></svg>'


def test_svg_round_trip(tmp_path):
    write_svg(tmp_path / "a.svg", GOOD_SVG)
    assert read_svg(tmp_path / "a.svg") == GOOD_SVG
    root = parse_svg(GOOD_SVG)
    assert root.tag == SVG_NS + "svg" and root[0].tag == SVG_NS + "path"
    assert root.get("viewBox") == "0 0 24 24" and root[0].get("d") == "M0 0h24v24H0z"
    bare = parse_svg('<svg><g id="x">&lt;text&gt; &#65;</g></svg>')
    assert bare.tag == "svg" and bare[0].text == "<text> A"


def test_svg_doctype_without_entities_is_fine():
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
        + GOOD_SVG
    )
    assert parse_svg(text).tag == SVG_NS + "svg"


def test_svg_entity_bomb_rejected_quickly(tmp_path):
    lol = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE svg ['
        + "".join(lol)
        + ']>\n<svg xmlns="http://www.w3.org/2000/svg">&lol9;</svg>'
    )
    p = tmp_path / "bomb.svg"
    p.write_text(bomb)
    start = time.perf_counter()
    with pytest.raises(MediaError, match="declares an entity .*refusing to expand") as e:
        read_svg(p)
    assert time.perf_counter() - start < 0.5
    assert e.value.path == p
    with pytest.raises(MediaError, match="declares"):
        parse_svg(bomb)


def test_svg_external_entity_rejected(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = f'<!DOCTYPE svg [<!ENTITY x SYSTEM "file://{secret}">]><svg>&x;</svg>'
    with pytest.raises(MediaError, match="declares an entity") as e:
        parse_svg(xxe)
    assert "TOP-SECRET" not in str(e.value)
    param = f'<!DOCTYPE svg [<!ENTITY % p SYSTEM "file://{secret}"> %p;]><svg/>'
    with pytest.raises(MediaError, match="parameter entity"):
        parse_svg(param)
    # With an external DTD that is (deliberately) never loaded, an undeclared entity is refused too.
    skipped = '<!DOCTYPE svg SYSTEM "http://example.com/evil.dtd"><svg>&nbsp;</svg>'
    with pytest.raises(MediaError, match="undeclared entity &nbsp"):
        parse_svg(skipped)


def test_svg_wrong_root_and_malformed(tmp_path):
    with pytest.raises(MediaError, match=r"root element is <html>, expected <svg>"):
        parse_svg("<html><body/></html>")
    with pytest.raises(MediaError, match="expected <svg>"):
        parse_svg('<svg xmlns="http://example.com/not-svg"/>')
    bad = tmp_path / "bad.svg"
    bad.write_text('<svg xmlns="http://www.w3.org/2000/svg">\n  <g>\n    <path d="M0 0"></g>\n</svg>\n')
    with pytest.raises(
        MediaError, match=r"not well-formed XML at line 3, column \d+ \(mismatched tag\)"
    ) as e:
        read_svg(bad)
    assert e.value.path == bad
    with pytest.raises(MediaError, match="empty"):
        parse_svg("  \n")
    (tmp_path / "latin.svg").write_bytes(b"<svg><text>caf\xe9</text></svg>")
    with pytest.raises(MediaError, match="not UTF-8"):
        read_svg(tmp_path / "latin.svg")


def test_write_svg_validates_first(tmp_path):
    with pytest.raises(MediaError, match="expected <svg>"):
        write_svg(tmp_path / "x.svg", "<html/>")
    assert not (tmp_path / "x.svg").exists() and leftovers(tmp_path) == []
    write_svg(tmp_path / "e.svg", parse_svg(GOOD_SVG))  # an Element is serialised
    assert parse_svg(read_svg(tmp_path / "e.svg"))[0].get("d") == "M0 0h24v24H0z"


@pytest.mark.parametrize("rel", ["svg/mdi/icons.jsonl", "svg/tabler_outline/icons.jsonl"])
def test_real_icons(tmp_path, rel):
    with open(shared(rel), encoding="utf-8") as f:
        icons = [json.loads(next(f)) for _ in range(20)]
    for icon in icons:
        p = tmp_path / f"{icon['name']}.svg"
        p.write_text(icon["svg"], encoding="utf-8")
        text = read_svg(p)
        assert text == icon["svg"]
        root = parse_svg(text, p)
        assert root.tag == SVG_NS + "svg" and root.get("viewBox") == "0 0 24 24"
        assert root.findall(SVG_NS + "path")


# ==================================================================================================
# Dispatch


def test_modality_of():
    assert modality_of("a/b.PNG") == "image"
    assert modality_of("x.jpeg") == "image"
    assert modality_of("x.flac") == "audio"
    assert modality_of("x.edf") == "eeg" and modality_of("x.vhdr") == "eeg" and modality_of("x.npz") == "eeg"
    assert modality_of("x.svg") == "svg"
    with pytest.raises(MediaError, match=r"unknown media suffix '\.docx'.*\.png.*\.wav.*\.edf.*\.svg") as e:
        modality_of("report.docx")
    assert e.value.path == Path("report.docx")
    with pytest.raises(MediaError, match="none"):
        modality_of("Makefile")


def test_read_write_media_dispatch(tmp_path):
    img = torch.from_numpy(gradient()).permute(2, 0, 1).float() / 255
    write_media(tmp_path / "i.png", img)
    assert torch.allclose(read_media(tmp_path / "i.png"), img, atol=1e-7)
    assert read_media(tmp_path / "i.png", mode="L").shape == (1, 6, 5)

    wav = sine(440, 8000, 0.25)[None]
    write_media(tmp_path / "a.wav", (wav, 8000))
    got, sr = read_media(tmp_path / "a.wav")
    assert sr == 8000 and got.shape == (1, 2000)
    write_media(tmp_path / "b.flac", wav, sample_rate=8000)
    assert read_media(tmp_path / "b.flac", sample_rate=16000)[0].shape == (1, 4000)

    rec = EEGRecording(torch.randn(2, 100), 50, ["a", "b"])
    write_media(tmp_path / "e.npz", rec)
    assert torch.equal(read_media(tmp_path / "e.npz").data, rec.data)
    with pytest.raises(MediaError, match="EEGRecording"):
        write_media(tmp_path / "e.edf", rec.data)

    write_media(tmp_path / "s.svg", GOOD_SVG)
    assert read_media(tmp_path / "s.svg") == GOOD_SVG

    # An explicit modality overrides the suffix.
    (tmp_path / "icon.txt").write_text(GOOD_SVG)
    assert read_media(tmp_path / "icon.txt", modality="svg") == GOOD_SVG
    with pytest.raises(MediaError, match="unknown modality 'video'"):
        read_media(tmp_path / "icon.txt", modality="video")


def test_real_other_formats_through_mne():
    pytest.importorskip("mne")
    eeglab = read_eeg(shared("eeg/eeglab/eeglab_data.set"))
    assert eeglab.data.shape == (32, 30504) and eeglab.sample_rate == 128
    assert "EOG1" in eeglab.channel_names
    assert 1 < eeglab.data.std().item() < 500  # microvolts, not volts
    bva = read_eeg(shared("eeg/eeglab/testbva.vhdr"), sample_rate=100, channel_names=["Fp1", "Fp2"])
    assert bva.channel_names == ["Fp1", "Fp2"] and bva.sample_rate == 100
    assert bva.duration == pytest.approx(10.56, abs=0.01)


def test_channels_are_found_by_name_across_naming_conventions() -> None:
    from zoo.io.eeg import channel_key

    rec = EEGRecording(torch.randn(5, 10), 100.0, ["EEG Fp1-REF", "Cz..", "C3", "c3.", "Status"])
    assert [channel_key(n) for n in rec.channel_names] == ["fp1", "cz", "c3", "c3", "status"]
    picked = rec.pick(["cz", "fp1", "C3"])  # an exact name wins over a loose match
    assert picked.channel_names == ["Cz..", "EEG Fp1-REF", "C3"]
    assert torch.equal(picked.data, rec.data[[1, 0, 2]])
    with pytest.raises(MediaError, match=r"no channel\(s\) \['Oz'\]; ambiguous channel\(s\) \['C3 '\]"):
        rec.pick(["Oz", "C3 "])
    with pytest.raises(MediaError, match=r"ambiguous channel\(s\) \['c3 '\]"):
        rec.pick(["c3 "])
