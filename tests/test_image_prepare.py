"""``ImageTokenizer.prepare``: ADM's centre crop (LlamaGen, MAR, ReTok, ResTok tokenize with it) is the
default of those four models and bit-identical to a PIL reference written here; the original one-step
float bicubic stays selectable with ``resize="bicubic"``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import zoo
from zoo.io import read_image
from zoo.models.image.kl16 import KL16
from zoo.models.image.restok import ResTok
from zoo.models.image.retok import ReTok
from zoo.models.image.vq16 import VQ16

pytestmark = pytest.mark.usefixtures("single_thread")


def adm_reference(img: Image.Image, size: int) -> np.ndarray:
    """guided-diffusion's ``center_crop_arr``, written out from its description: halve with BOX while the
    short side is >= 2 * size, BICUBIC so the short side is size (Python ``round``), floor centre crop."""
    while min(img.size) >= 2 * size:
        img = img.resize((img.width // 2, img.height // 2), resample=Image.BOX)
    scale = size / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), resample=Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top : top + size, left : left + size]


def synthetic_photo(height: int, width: int) -> Image.Image:
    """A deterministic 8-bit RGB image with gradients, edges and texture (so filters disagree)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * xx / (width - 1)
    g = 127.5 + 127.5 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    b = np.where((xx // 37 + yy // 23) % 2 == 0, 230.0, 20.0)
    noise = np.random.default_rng(0).integers(-20, 21, size=(height, width))
    arr = np.stack([r, g, b + noise], axis=-1).clip(0, 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr.transpose(2, 0, 1))).float() / 255


@pytest.fixture(scope="module")
def vq16() -> zoo.Tokenizer:
    return zoo.create("vq16_tiny").eval()  # 4x downsampling: any multiple of 4 is a valid size


@pytest.mark.parametrize("cls", [VQ16, KL16, ResTok, ReTok])
def test_models_default_to_their_upstream_adm_crop(cls: type) -> None:
    assert cls.resize == "adm"
    assert zoo.ImageTokenizer.resize == "bicubic"  # other image models keep the original filter


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [
        (512, 768, 256),
        (512, 768, 224),
        (389, 517, 96),
        (300, 451, 256),
        (100, 400, 96),
        (2048, 128, 64),
    ],  # halving only / both / twice / upscaling / a 4:1 panorama / 16:1, the widest on the literal path
)
def test_adm_crop_is_bit_identical_to_pil(vq16, tmp_path, height: int, width: int, size: int) -> None:
    img = synthetic_photo(height, width)
    path = tmp_path / "photo.png"
    img.save(path)
    x = vq16.prepare(read_image(path), path=path, resolution=size)
    assert x.shape == (1, 3, size, size) and x.dtype == torch.float32
    expected = as_tensor(adm_reference(Image.open(path).convert("RGB"), size))
    assert torch.equal(x[0], expected)
    # as `zoo encode` reads it: 8-bit pixels kept as uint8 until PIL has resized them
    assert torch.equal(vq16.prepare(read_image(path, keep_uint8=True), resolution=size), x)


def test_adm_crop_on_a_real_photo(vq16, tmp_path) -> None:
    skdata = pytest.importorskip("skimage.data")
    Image.fromarray(skdata.coffee()).save(tmp_path / "coffee.png")  # 400 x 600: one bicubic step
    x = vq16.prepare(read_image(tmp_path / "coffee.png"), resolution=256)
    expected = as_tensor(adm_reference(Image.open(tmp_path / "coffee.png").convert("RGB"), 256))
    assert torch.equal(x[0], expected)


def test_grey_images_take_the_same_pil_path() -> None:
    model = zoo.create("vq16_tiny", in_channels=1)
    img = synthetic_photo(200, 300).convert("L")
    x = model.prepare(torch.from_numpy(np.array(img)).float()[None] / 255, resolution=64)
    assert torch.equal(x[0, 0], torch.from_numpy(np.array(adm_reference(img, 64))).float() / 255)


def test_bicubic_stays_selectable_and_differs(vq16) -> None:
    img = synthetic_photo(512, 768)
    media = as_tensor(np.asarray(img))
    old = vq16.prepare(media, resolution=224, resize="bicubic")
    resized = F.interpolate(media[None], size=(224, 336), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(old, resized.clamp(0, 1)[..., :, 56:280], rtol=0, atol=0)
    adm = vq16.prepare(media, resolution=224)
    assert (adm - old).abs().max() > 0.05  # the two filters really differ
    with pytest.raises(ValueError, match="resize must be one of"):
        vq16.prepare(media, resize="lanczos")


def test_non_8bit_input_takes_the_float_path_close_to_pil(vq16) -> None:
    img = synthetic_photo(512, 768)
    media = as_tensor(np.asarray(img))
    exact = vq16.prepare(media, resolution=224)
    nudged = vq16.prepare(media + 1e-2 / 255, resolution=224)  # no longer 8-bit levels: float path
    assert not torch.equal(exact, nudged)
    assert (exact - nudged).abs().mean() < 3 / 255


def test_zoo_encode_offers_every_resize_mode() -> None:
    """The CLI lists the modes as literals (it keeps zoo.io out of its start-up): they must stay the same."""
    from zoo.cli import build_parser
    from zoo.io.image import RESIZE_MODES

    encode = build_parser()._subparsers._group_actions[0].choices["encode"]
    (resize,) = [a for a in encode._actions if "--resize" in a.option_strings]
    assert tuple(resize.choices) == RESIZE_MODES
