"""Large and oddly shaped images without float copies at full size (issue 17): a 100-megapixel PNG and
1 x 60000 strips go through `zoo encode` / `zoo decode` under a fixed memory ceiling (the 100 MP PNG here
used to peak at 10.6 GiB with ADM's crop and 4.6 GiB with ``--resize bicubic``, as it became float32 before
any resize; the strips at 8.9 GiB), and images over `max_pixels` are refused from their header with one
line saying how to allow them.

The two memory runs are child processes (their own VmHWM peak), 10 to 18 s and 3 to 7 s on a busy 2-core
machine: decoding the 100 MP PNG alone takes over a second, and it is read once per resize mode.
Everything else here is small."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.errors import MediaError
from zoo.io import image as image_io
from zoo.io import read_image
from zoo.io.image import center_crop_adm, center_crop_bicubic, unit_float

pytestmark = pytest.mark.usefixtures("single_thread")

# encode every image given with each resize, decode every token file, report this process's own peak
WORKER = """
import json, sys, warnings, torch
from PIL import Image
warnings.simplefilter("error", Image.DecompressionBombWarning)  # read_image lifts PIL's limit itself
torch.set_num_threads(1)
from zoo.cli import main
model, out, resolution, *images = sys.argv[1:]
for resize in ("adm", "bicubic"):
    done = f"{out}/{resize}"
    assert main(["encode", model, *images, "-o", done, "--resize", resize, "--resolution", resolution]) == 0
    assert main(["decode", model, done, "-o", f"{done}/decoded"]) == 0
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_gib": peak / 2**20}))
"""


def png_bytes(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit RGB PNG file around already compressed pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_png(path: Path, width: int, height: int, band: int = 64) -> Path:
    """An RGB PNG of gradients and checks, written band by band (PIL would hold the whole image and
    take several seconds): each band of rows repeats its first row, stored with PNG's "up" filter."""
    packer = zlib.compressobj(1)
    x = np.arange(width)
    parts = []
    for top in range(0, height, band):
        shade = np.full(width, top * 255 // height)
        row = np.stack([x * 255 // max(1, width - 1), shade, (x // 64 + top // 64) % 2 * 200], -1)
        repeats = (b"\x02" + bytes(3 * width)) * (min(band, height - top) - 1)
        parts.append(packer.compress(b"\x00" + row.astype(np.uint8).tobytes() + repeats))
    parts.append(packer.flush())
    path.write_bytes(png_bytes(width, height, b"".join(parts)))
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header promises ``width x height`` pixels and whose data is a few bytes."""
    path.write_bytes(png_bytes(width, height, zlib.compress(bytes(3 * 64 + 1))))
    return path


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "vq16"
    zoo.create("vq16_tiny").eval().save_pretrained(folder, card=False)
    return folder


def run_worker(model: Path, out: Path, resolution: int, *images: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(model), str(out), str(resolution), *map(str, images)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_gib"]


def test_a_100_megapixel_png_encodes_and_decodes_under_a_memory_ceiling(saved_model, tmp_path) -> None:
    photo = write_png(tmp_path / "huge.png", 10_000, 10_000)  # 1.5 MB on disk, 300 MB as 8-bit RGB
    peak = run_worker(saved_model, tmp_path / "out", 64, photo)
    # 0.5 GiB of torch and zoo, the decoded image twice (PIL's and uint8), a quarter of it while halving
    assert peak < 2.0, f"100 MP PNG peaked at {peak:.2f} GiB (ceiling 2.0 GiB)"
    for resize in ("adm", "bicubic"):
        decoded = read_image(tmp_path / "out" / resize / "decoded" / "huge.png")
        assert decoded.shape == (3, 64, 64)


def test_one_pixel_strips_encode_and_decode_under_a_memory_ceiling(saved_model, tmp_path) -> None:
    wide = write_png(tmp_path / "wide.png", 60_000, 1)
    tall = write_png(tmp_path / "tall.png", 1, 60_000)
    # cropped before resizing: the short side scaled to 64 px would make 64 x 3.84 million pixels (the
    # float one of `resize="bicubic"` 2.9 GB), at 256 px 256 x 15.4 million
    peak = run_worker(saved_model, tmp_path / "out", 64, wide, tall)
    assert peak < 1.0, f"1 x 60000 strips peaked at {peak:.2f} GiB (ceiling 1.0 GiB)"


def test_images_over_max_pixels_are_refused_from_the_header(tmp_path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 20_000, 20_000)  # 400 MP promised, a few bytes given
    with pytest.raises(MediaError, match=r"bomb\.png: image is 20000x20000 \(400 megapixels\)") as err:
        read_image(bomb)
    assert "max_pixels=" in str(err.value) and "--max-pixels" in str(err.value)
    assert "\n" not in str(err.value)
    small = write_png(tmp_path / "small.png", 40, 30)
    with pytest.raises(MediaError, match=r"40x30 .* over the limit of 1,000 pixels"):
        read_image(small, max_pixels=1000)
    assert read_image(small, max_pixels=1200).shape == (3, 30, 40)
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        read_image(small, max_pixels=0)


def test_pil_bomb_limit_gives_way_to_max_pixels(tmp_path) -> None:
    # 225 MP is over PIL's own error limit (179 MP) and under MAX_PIXELS: the header is accepted, so
    # what fails is the missing data, not PIL's bomb check; PIL's global limit is left as it was
    promised = png_header_only(tmp_path / "big.png", 15_000, 15_000)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(MediaError, match="truncated or corrupt"):
        read_image(promised)
    assert Image.MAX_IMAGE_PIXELS == before
    with pytest.raises(MediaError, match="over the limit of 100,000,000 pixels"):
        read_image(promised, max_pixels=10**8)


def test_cli_max_pixels_refuses_one_file_and_keeps_the_batch(saved_model, tmp_path, capsys) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    write_png(folder / "a.png", 64, 64)
    write_png(folder / "b.png", 200, 100)
    assert main(["encode", str(saved_model), str(folder), "-o", str(out), "--max-pixels", "5000"]) == 1
    err = capsys.readouterr().err
    assert "b.png: image is 200x100" in err and "--max-pixels" in err and "Traceback" not in err
    assert sorted(f.name for f in out.iterdir()) == ["a.tokens.safetensors"]
    assert main(["encode", str(saved_model), str(folder), "-o", str(out), "--max-pixels", "-1"]) == 2
    assert "--max-pixels -1" in capsys.readouterr().err


def test_uint8_reading_is_the_float_reading_exactly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    opaque = np.dstack([rgb, np.full((23, 31), 255, np.uint8)])
    seethrough = np.dstack([rgb, rng.integers(0, 256, (23, 31), dtype=np.uint8)])
    files = {
        "rgb.png": Image.fromarray(rgb),
        "grey.png": Image.fromarray(rgb[..., 0]),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "opaque.png": Image.fromarray(opaque),
        "alpha.png": Image.fromarray(seethrough),
        "deep.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
    }
    for name, img in files.items():
        img.save(tmp_path / name)
        for mode in ("RGB", "L"):
            floats = read_image(tmp_path / name, mode)
            kept = read_image(tmp_path / name, mode, keep_uint8=True)
            assert torch.equal(unit_float(kept), floats), (name, mode)
            # 8 bits without real transparency stay uint8; see-through, deeper and grey-from-colour do not
            eight_bit = name not in ("alpha.png", "deep.png") and (mode == "RGB" or name == "grey.png")
            assert (kept.dtype == torch.uint8) == eight_bit, (name, mode, kept.dtype)


@pytest.mark.parametrize("shape", [(300, 400), (200, 800), (64, 1024), (1000, 250)])  # up to 16:1
def test_uint8_input_gives_the_same_crops_as_float(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    pixels = torch.from_numpy(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).permute(2, 0, 1)
    floats = unit_float(pixels)
    for crop in (center_crop_adm, center_crop_bicubic):
        assert torch.equal(crop(pixels, 64), crop(floats, 64)), crop.__name__
    vq16 = zoo.create("vq16_tiny").eval()
    assert torch.equal(vq16.prepare(pixels, resolution=None), vq16.prepare(floats, resolution=None))


def smooth_strip(height: int, width: int) -> torch.Tensor:
    yy, xx = np.mgrid[0:height, 0:width]
    wave = 127 + 120 * np.sin(xx / 5.3 + yy / 3.1)
    arr = np.stack([wave, 255 - wave, np.full_like(wave, 90)], 0).round().astype(np.uint8)
    return torch.from_numpy(arr)


@pytest.mark.parametrize(("height", "width"), [(20, 999), (999, 20), (7, 500), (300, 12)])
def test_extreme_aspect_ratios_match_the_literal_resize(monkeypatch, height: int, width: int) -> None:
    strip = smooth_strip(height, width)
    window = {crop: crop(strip, 32) for crop in (center_crop_adm, center_crop_bicubic)}
    monkeypatch.setattr(image_io, "_MAX_RESIZE_OVER_CROP", 10**9)  # the full-size resize, then the crop
    literal = {crop: crop(strip, 32) for crop in window}
    adm_levels = (window[center_crop_adm] - literal[center_crop_adm]).abs() * 255
    assert adm_levels.max() <= 2.5 and adm_levels.mean() < 0.2
    assert (window[center_crop_bicubic] - literal[center_crop_bicubic]).abs().max() < 2e-3


def test_bicubic_shrinks_only_huge_uint8_images_first(monkeypatch) -> None:
    photo = smooth_strip(600, 800)
    exact = center_crop_bicubic(photo, 64)
    monkeypatch.setattr(image_io, "_MAX_FLOAT_PIXELS", 100_000)  # as if 600 x 800 were huge
    reduced = center_crop_bicubic(photo, 64)
    assert not torch.equal(reduced, exact)  # box-reduced by 2 before the float resize
    assert (reduced - exact).abs().mean() < 0.01
    assert torch.equal(center_crop_bicubic(unit_float(photo), 64), exact)  # floats are never reduced


@pytest.mark.parametrize("arch", ["seed_tiny", "karl_tiny", "vq16_tiny"])
def test_every_resize_path_takes_uint8_and_gives_the_float_result(arch: str, tmp_path) -> None:
    model = zoo.create(arch).eval()
    rng = np.random.default_rng(2)
    for h, w in ((75, 131), (130, 47), (21, 29)):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
        kept = read_image(tmp_path / "photo.png", keep_uint8=True)
        assert kept.dtype == torch.uint8
        wanted = model.prepare(read_image(tmp_path / "photo.png"))
        got = model.prepare(kept)
        assert got.dtype == torch.float32 and torch.equal(got, wanted), (h, w)
    strip = smooth_strip(2, 3000)  # 1500:1 - only the crop's region is resized
    assert model.prepare(strip).shape == (1, 3, model.resolution, model.resolution)
