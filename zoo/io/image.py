"""Image reading and writing with one tensor convention: float32 [C, H, W] in [0, 1].

Tokenizers are trained on whatever files people have, so the reader accepts every PIL mode and
maps each onto that range by its real meaning (16-bit PNGs are not clipped to 8 bits, palette
transparency is honoured, CMYK becomes RGB) instead of letting PIL's lossy `convert` decide.

Large images stay 8-bit until they are small: `read_image(..., keep_uint8=True)` returns 8-bit files
as uint8, and the resizes below shrink those with PIL before any float copy (a float32 copy of a
100-megapixel photo alone is 1.2 GB). Files over `MAX_PIXELS` are refused from their header.
"""

from __future__ import annotations

import math
import numbers
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo._atomic import atomic_path
from zoo.errors import MediaError

__all__ = [
    "CENTER_CROPS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "RESIZE_MODES",
    "center_crop_adm",
    "center_crop_bicubic",
    "center_crop_torchvision",
    "image_to_tensor",
    "read_image",
    "tensor_to_image",
    "unit_float",
    "write_image",
]

_MODES = ("RGB", "L", "RGBA")

# Suffix -> PIL format name for writing. Reading accepts anything PIL can identify.
_WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
IMAGE_SUFFIXES = frozenset(_WRITE_FORMATS) | {".gif"}

# ITU-R BT.601 luma weights: the same ones PIL uses for RGB -> L, so "L" means the same thing
# whether PIL or this module produced it.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

MAX_PIXELS = 2**28
"""Most pixels (width x height) `read_image` decodes unless told otherwise: 16384 x 16384, about 1 GiB
as PIL holds 8-bit RGB. It is checked on the header, before any pixel is decoded, and replaces PIL's
own decompression-bomb limit (a warning above 89 MP, an error above 179 MP)."""

# PIL reads its bomb limit from a module global; it is lifted only while one of our reads needs it.
_PIL_LIMIT_LOCK = threading.Lock()


def _check_mode(mode: str, path: str | Path | None) -> None:
    if mode not in _MODES:
        raise MediaError(path, f"unsupported target mode {mode!r}; expected one of {', '.join(_MODES)}")


def _unit_pixels(img: Image.Image, path: str | Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (colour [H, W, 1 or 3], alpha [H, W] or None) as float32 in [0, 1] for any PIL mode."""
    m = img.mode
    if m == "1":
        return (np.asarray(img, dtype=np.float32))[..., None], None
    if m == "L":
        return np.asarray(img, dtype=np.float32)[..., None] / 255.0, None
    if m in ("LA", "La"):
        a = np.asarray(img.convert("LA") if m == "La" else img, dtype=np.float32) / 255.0
        return a[..., :1], a[..., 1]
    if m.startswith("I;16"):
        # I;16, I;16L, I;16B, I;16N: unsigned 16-bit. numpy honours the byte order PIL reports.
        return np.asarray(img).astype(np.float32)[..., None] / 65535.0, None
    if m == "I":
        v = np.asarray(img).astype(np.int64)
        if v.size == 0 or (v.min() >= 0 and v.max() <= 65535):
            # 16-bit data carried in a 32-bit container (TIFF, older Pillow PNG decoding).
            return (v.astype(np.float64) / 65535.0).astype(np.float32)[..., None], None
        full = (v.astype(np.float64) - np.iinfo(np.int32).min) / (2.0**32 - 1)
        return full.astype(np.float32)[..., None], None
    if m == "F":
        v = np.asarray(img, dtype=np.float32)
        if not np.isfinite(v).all():
            raise MediaError(path, "contains NaN or infinite pixel values")
        if v.size and (v.min() < 0.0 or v.max() > 1.0):
            # Not a [0, 1] image: assume PIL's own float scale (what convert("F") gives from L).
            v = v / 255.0
        return np.clip(v, 0.0, 1.0)[..., None], None
    if m in ("RGBA", "RGBa", "PA") or (m == "P" and "transparency" in img.info):
        a = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return a[..., :3], a[..., 3]
    if m == "RGB":
        return np.asarray(img, dtype=np.float32) / 255.0, None
    # P without transparency, CMYK, YCbCr, LAB, HSV, RGBX and anything newer: PIL's RGB conversion
    # is the colour-correct one for all of them.
    try:
        rgb = img.convert("RGB")
    except (ValueError, OSError) as e:
        raise MediaError(path, f"unsupported image mode {m!r} ({e})") from e
    return np.asarray(rgb, dtype=np.float32) / 255.0, None


def _writable_pixels(img: Image.Image) -> np.ndarray:
    """``np.asarray(img)`` as an array of its own (PIL's is a read-only view of a bytes copy), copied in
    bands of rows when large, so that it is never held twice over."""
    row = img.width * len(img.getbands())
    if row * img.height <= 2**26:
        return np.array(img)
    step = max(1, 2**24 // row)
    band = np.asarray(img.crop((0, 0, img.width, step)))
    out = np.empty((img.height, *band.shape[1:]), dtype=band.dtype)
    for top in range(0, img.height, step):
        out[top : top + step] = np.asarray(img.crop((0, top, img.width, min(img.height, top + step))))
    return out


def _uint8_pixels(img: Image.Image, mode: str, path: str | Path | None) -> np.ndarray | None:
    """uint8 [H, W, 1 or 3] pixels for `mode` "RGB" or "L" when every value `_unit_pixels` would give is
    exactly ``k / 255`` (8-bit sources without transparency, or with an alpha that is opaque
    everywhere), else ``None``: those images can skip float until they are resized."""
    if mode == "RGBA":
        return None
    m = img.mode
    if m in ("LA", "La", "RGBA", "RGBa", "PA") or (m == "P" and "transparency" in img.info):
        if m not in ("LA", "RGBA"):
            img = img.convert("LA" if m == "La" else "RGBA")
        if img.getchannel("A").getextrema() != (255, 255):
            return None  # compositing over white makes values between the 8-bit levels
        img = img.convert("L" if img.mode == "LA" else "RGB")
        m = img.mode
    if m == "1":
        img, m = img.convert("L"), "L"  # 0 / 255, as _unit_pixels' 0.0 / 1.0
    if m == "L":
        return _writable_pixels(img)[..., None]
    if m.startswith("I") or m == "F" or mode == "L":
        return None  # deeper than 8 bits, or colour to grey through float luma weights
    if m != "RGB":
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as e:
            raise MediaError(path, f"unsupported image mode {m!r} ({e})") from e
    return _writable_pixels(img)


def _uint8_tensor(pixels: np.ndarray, mode: str) -> torch.Tensor:
    """[C, H, W] uint8 view of `_uint8_pixels`' array: grey repeated for "RGB" without a copy."""
    x = torch.from_numpy(pixels).permute(2, 0, 1)
    return x.expand(3, -1, -1) if mode == "RGB" and x.shape[0] == 1 else x


def unit_float(x: torch.Tensor) -> torch.Tensor:
    """``x`` as floats in [0, 1]: uint8 (what ``read_image(..., keep_uint8=True)`` gives) divided by 255
    into a new float32 tensor, bit-identical to what ``read_image`` returns; floats unchanged."""
    if x.is_floating_point():
        return x
    if x.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 or floating image tensor, got {x.dtype}")
    return torch.empty(x.shape, dtype=torch.float32, device=x.device).copy_(x).div_(255.0)


def image_to_tensor(img: Image.Image, mode: str = "RGB", *, path: str | Path | None = None) -> torch.Tensor:
    """Convert a PIL image of any mode to float32 [C, H, W] in [0, 1].

    `mode` "RGB" and "L" drop alpha by compositing over white (what a viewer shows, and what
    keeps transparent padding from turning into black edges); "RGBA" keeps it, opaque if absent.
    `path` only labels errors.
    """
    _check_mode(mode, path)
    colour, alpha = _unit_pixels(img, path)
    if mode == "RGBA":
        rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
        a = np.ones(rgb.shape[:2], np.float32) if alpha is None else alpha
        out = np.concatenate([rgb, a[..., None]], axis=2)
    else:
        if alpha is not None:
            colour = colour * alpha[..., None] + (1.0 - alpha[..., None])
        if mode == "RGB":
            out = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
        else:  # "L"
            out = colour if colour.shape[2] == 1 else (colour @ _LUMA)[..., None]
    out = np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)  # `out` is always a new array
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def _open_within(p: Path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` (which parses only the header) with `max_pixels` in place of PIL's bomb limit."""
    with _PIL_LIMIT_LOCK:
        pil_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(p)
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        img.close()
        raise MediaError(
            p,
            f"image is {w}x{h} ({w * h / 1e6:.0f} megapixels), over the limit of {max_pixels:,} pixels; "
            "raise it with max_pixels= (zoo encode --max-pixels) if the file is trusted",
        )
    return img


def _load_within(img: Image.Image, max_pixels: int | None) -> None:
    """Decode now (truncation surfaces here, not later in the pipeline). Images in PIL's bomb zone that
    `max_pixels` allows decode with PIL's limit lifted, so its checks on frames and tiles agree."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is None or img.width * img.height <= pil_limit:
        img.load()  # the common case takes no lock
        return
    with _PIL_LIMIT_LOCK:
        pil_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels  # PIL warns above it (never reached) and refuses above twice it
        try:
            img.load()
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit


def read_image(
    path: str | Path, mode: str = "RGB", *, max_pixels: int | None = MAX_PIXELS, keep_uint8: bool = False
) -> torch.Tensor:
    """Read an image file as float32 [C, H, W] in [0, 1], upright (EXIF orientation applied).

    Anything that is not a complete, decodable image raises MediaError naming the file, so a bad
    file in a dataset is reported once with its name instead of as a PIL traceback mid-epoch; so does
    an image of more than `max_pixels` pixels (``None``: no limit), refused before it is decoded.
    `keep_uint8` returns 8-bit images (no transparency, or opaque alpha) as uint8 [C, H, W] in 0..255,
    possibly a non-contiguous view, a quarter of the float copy's memory; ``prepare`` of every image
    tokenizer takes those, and `unit_float` turns them into exactly what this returns by default.
    """
    _check_mode(mode, path)
    if max_pixels is not None and (
        not isinstance(max_pixels, numbers.Integral) or isinstance(max_pixels, bool) or max_pixels < 1
    ):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    try:
        with _open_within(p, max_pixels) as img:
            _load_within(img, max_pixels)
            try:
                ImageOps.exif_transpose(img, in_place=True)  # no copy of an already upright image
            except (OSError, ValueError, KeyError, TypeError, IndexError, SyntaxError) as e:
                # a broken EXIF block should not cost an otherwise good image
                warnings.warn(f"{p}: ignoring unreadable EXIF orientation ({e})", stacklevel=2)
            if keep_uint8:
                pixels = _uint8_pixels(img, mode, p)
                if pixels is not None:
                    return _uint8_tensor(pixels, mode)
            return image_to_tensor(img, mode, path=p)
    except MediaError:
        raise
    except UnidentifiedImageError as e:
        raise MediaError(p, "not a valid image (cannot identify image file)") from e
    except Image.DecompressionBombError as e:
        raise MediaError(p, f"refusing to decode: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        # PIL plugins report corrupt or truncated data with any of these.
        raise MediaError(p, f"truncated or corrupt image ({e})") from e


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """Convert [C, H, W] (C in 1, 3, 4) or [H, W] values in [0, 1] to an 8-bit PIL image.

    Values are clamped then rounded (not truncated), so a read/write round trip is lossless for
    8-bit images. NaN or inf raise instead of silently becoming black pixels.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = x.detach().to("cpu", torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise MediaError(None, f"image tensor must be [C, H, W] or [H, W], got shape {tuple(x.shape)}")
    c = x.shape[0]
    if c not in (1, 3, 4):
        raise MediaError(None, f"image tensor must have 1, 3 or 4 channels, got {c} (shape {tuple(x.shape)})")
    if torch.isnan(x).any():
        raise MediaError(None, "image tensor contains NaN")
    if torch.isinf(x).any():
        raise MediaError(None, "image tensor contains infinite values")
    u8 = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if c == 1:
        return Image.fromarray(u8[..., 0], mode="L")
    return Image.fromarray(u8, mode="RGB" if c == 3 else "RGBA")


def write_image(path: str | Path, x: torch.Tensor | Image.Image, quality: int = 95) -> None:
    """Write an image atomically; the format follows the suffix (png, jpg/jpeg, webp, bmp, tif/tiff).

    `quality` (1-100) applies to JPEG and WebP. JPEG cannot store alpha, so RGBA is composited
    over white first, matching what `read_image(..., "RGB")` would give for the PNG.
    """
    p = Path(path)
    fmt = _WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_WRITE_FORMATS))
        raise MediaError(p, f"unknown image suffix {p.suffix!r}; known: {known}")
    if not 1 <= int(quality) <= 100:
        raise MediaError(p, f"quality must be in 1..100, got {quality}")
    try:
        img = x if isinstance(x, Image.Image) else tensor_to_image(x)
    except MediaError as e:
        raise MediaError(p, e.problem) from e
    if fmt == "JPEG" and img.mode not in ("L", "RGB", "CMYK"):
        img = tensor_to_image(image_to_tensor(img, "RGB", path=p))
    params: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = int(quality)
    try:
        with atomic_path(p) as tmp:
            img.save(tmp, format=fmt, **params)
    except (OSError, ValueError) as e:
        raise MediaError(p, f"cannot write {fmt} ({e})") from e


# ---------------------------------------------------------------------------------------------- resize
# A resize more than this many times larger than the square kept from it (aspect ratios beyond 16:1) is
# computed only over the source region the square depends on: a 1 x 60000 strip scaled to a 256 px short
# side would otherwise be 256 x 15.4 million pixels. Ordinary photos stay on the literal path.
_MAX_RESIZE_OVER_CROP = 16

# uint8 images with more pixels than this are box-reduced by PIL before `center_crop_bicubic`'s float
# copy (768 MiB for RGB at this size); smaller ones, every ordinary photo, are not touched.
_MAX_FLOAT_PIXELS = 2**26

# uint8 rows checked per step in `as_uint8`, so a float image is never copied whole to float64
_CHECK_ELEMENTS = 2**22


def as_uint8(x: torch.Tensor) -> np.ndarray | None:
    """``x`` [C, H, W] in [0, 1] as a uint8 [H, W, C] array when every value is an 8-bit level (what
    `read_image` returns for 8-bit files), else ``None``: such images can be resized by PIL exactly as
    an upstream script that opens the file with PIL would. A uint8 ``x`` (``keep_uint8=True``) is taken
    as it is, without a copy."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        return None
    if x.dtype == torch.uint8:
        return x.detach().cpu().permute(1, 2, 0).numpy()
    if not x.is_floating_point():
        return None
    c, h, w = x.shape
    out = torch.empty((h, w, c), dtype=torch.uint8)
    step = max(1, _CHECK_ELEMENTS // max(1, c * w))
    for top in range(0, h, step):
        scaled = x[:, top : top + step].detach().to("cpu", torch.float64) * 255.0
        levels = scaled.round()
        if not bool(((scaled - levels).abs() <= 1e-3).all()) or levels.min() < 0 or levels.max() > 255:
            return None
        out[top : top + step] = levels.to(torch.uint8).permute(1, 2, 0)
    return out.numpy()


def _from_uint8(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    out = torch.from_numpy(np.array(arr.reshape(*arr.shape[:2], -1).transpose(2, 0, 1)))  # a writable copy
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return (out.to(torch.float32) / 255.0).to(dtype)


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def pil_bicubic(arr: np.ndarray, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """PIL's ``resize((w, h), BICUBIC)`` of a uint8 [H, W, C] array (from :func:`as_uint8`) -> [C, h, w]
    in [0, 1] with ``like``'s dtype (float32 for a uint8 ``like``), as ``ToTensor`` after a PIL resize."""
    h, w = size
    return _from_uint8(np.asarray(_pil(arr).resize((w, h), resample=Image.BICUBIC)), like)


def _pil_resize_crop(img: Image.Image, full: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    """``img.resize(full[::-1], BICUBIC)`` cropped to the ``size`` square at (top, left), as uint8 [H, W, C].

    Literal when the resize is at most `_MAX_RESIZE_OVER_CROP` times the square. Beyond that, its two
    passes run as two PIL resizes over only the rows and columns the square depends on. The result is
    the same bicubic resize but not always bit-identical: PIL rounds each pass to 8 bits and picks their
    order from the sizes, and holds the fractional start of the window in float32 (on smooth images a
    pixel or two differ by a level or two)."""
    big_h, big_w = full
    if big_h * big_w <= _MAX_RESIZE_OVER_CROP * size * size:
        out = np.asarray(img.resize((big_w, big_h), resample=Image.BICUBIC))
        return out[top : top + size, left : left + size]
    w, h = img.size
    y0, y1 = top * h / big_h, (top + size) * h / big_h  # source rows the square spans
    reach = 2 * max(1.0, h / big_h) + 1  # bicubic support in source rows, and a row to spare
    r0, r1 = max(0, math.floor(y0 - reach)), min(h, math.ceil(y1 + reach))
    rows = img if (r0, r1) == (0, h) else img.crop((0, r0, w, r1))
    x0, x1 = left * w / big_w, (left + size) * w / big_w
    rows = rows.resize((size, r1 - r0), resample=Image.BICUBIC, box=(x0, 0, x1, r1 - r0))
    square = rows.resize((size, size), resample=Image.BICUBIC, box=(0, y0 - r0, size, y1 - r0))
    return np.asarray(square)


def pil_bicubic_crop(
    arr: np.ndarray, full: tuple[int, int], top: int, left: int, size: int, like: torch.Tensor
) -> torch.Tensor:
    """:func:`pil_bicubic` to ``full`` (h, w), then the ``size`` square at (top, left): [C, size, size].
    Extreme aspect ratios never build the full resize (see `_pil_resize_crop`)."""
    return _from_uint8(_pil_resize_crop(_pil(arr), full, top, left, size), like)


def bicubic_crop(
    x: torch.Tensor, full: tuple[int, int], top: int, left: int, size: int, *, antialias: bool
) -> torch.Tensor:
    """torch's bicubic resize of ``x`` [C, H, W] (uint8 or float) to ``full`` (h, w), clamped to [0, 1],
    then the ``size`` square at (top, left), as float.

    Literal when the resize is at most `_MAX_RESIZE_OVER_CROP` times the square. Beyond that (one side
    then is ``size``, the other far longer), only the source span the square depends on is converted
    and resized, cut where source and output pixel edges meet so the scale and grid are the full
    resize's (equal to it up to float rounding); where they never meet nearby, at the cut that comes
    closest, which can shift the square by a small fraction of a pixel."""
    big_h, big_w = full
    if big_h * big_w <= _MAX_RESIZE_OVER_CROP * size * size:
        y = unit_float(x)[None]
        if tuple(full) != tuple(y.shape[-2:]):
            y = F.interpolate(y, size=full, mode="bicubic", align_corners=False, antialias=antialias)
            y = y.clamp(0, 1)
        return y[0, :, top : top + size, left : left + size]
    axis = 1 if big_h > big_w else 2  # the long side, along which the square is cut
    length, big, start = (x.shape[1], big_h, top) if axis == 1 else (x.shape[2], big_w, left)
    ratio = length / big  # source pixels per output pixel
    reach = 2 * max(1.0, ratio) + 1  # bicubic support in source pixels, and one to spare
    lo, hi = max(0, math.floor(start * ratio - reach)), min(length, math.ceil((start + size) * ratio + reach))
    # Cut the span where a source pixel edge falls on (or nearest to) an output pixel edge of the full
    # resize (ratio = p / q): there the span's scale is the full resize's and its pixels on its grid.
    g = math.gcd(length, big)
    p, q = length // g, big // g
    search = 4 * (hi - lo) + 64

    def off_grid(i: int) -> int:
        return min(i * q % p, -i * q % p)

    a = min(range(max(0, lo - search), lo + 1), key=lambda i: (off_grid(i), lo - i))
    b = min(range(hi, min(length, hi + search) + 1), key=lambda i: (off_grid(i), i - hi))
    span, shift = round((b - a) * q / p), round(start - a * q / p)
    part = unit_float(x.narrow(axis, a, b - a))[None]
    out = (size, span) if axis == 2 else (span, size)
    y = F.interpolate(part, size=out, mode="bicubic", align_corners=False, antialias=antialias).clamp(0, 1)
    return y[0, :, shift : shift + size] if axis == 1 else y[0, :, :, shift : shift + size]


def _box_reduce(x: torch.Tensor, factor: int) -> torch.Tensor:
    """uint8 [C, H, W] averaged over ``factor`` x ``factor`` blocks by PIL (``Image.reduce``), still uint8."""
    arr = np.array(_pil(as_uint8(x)).reduce(factor))
    return torch.from_numpy(arr.reshape(*arr.shape[:2], -1)).permute(2, 0, 1)


def center_crop_adm(x: torch.Tensor, size: int) -> torch.Tensor:
    """ADM's centre crop (guided-diffusion ``center_crop_arr``, used by LlamaGen, MAR, ReTok and ResTok's
    code extraction): halve with a box filter while the short side is at least ``2 * size``, resize with
    bicubic so the short side is ``size`` (the long side rounded half to even, as Python's ``round``),
    then crop the centre square (offsets rounded down).

    ``x`` is one image [C, H, W] in [0, 1], or uint8 from ``read_image(..., keep_uint8=True)``. 8-bit
    images (1 or 3 channels) go through PIL's BOX and BICUBIC filters on uint8, so the result is
    bit-identical to the upstream scripts (aspect ratios beyond 16:1 excepted, see `_pil_resize_crop`)
    and no float copy is made at the input's size; anything else (16-bit, float) takes a float path with
    the same geometry (area halving, antialiased bicubic).
    """
    arr = as_uint8(x)
    if arr is not None:
        img = _pil(arr)
        del arr
        while min(img.size) >= 2 * size:
            img = img.resize(tuple(s // 2 for s in img.size), resample=Image.BOX)
        scale = size / min(img.size)
        new_w, new_h = (round(s * scale) for s in img.size)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return _from_uint8(_pil_resize_crop(img, (new_h, new_w), top, left, size), x)
    y = unit_float(x)[None].float()
    while min(y.shape[-2:]) >= 2 * size:
        y = F.interpolate(y, size=tuple(s // 2 for s in y.shape[-2:]), mode="area")
    scale = size / min(y.shape[-2:])
    new = tuple(round(s * scale) for s in y.shape[-2:])
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return bicubic_crop(y[0], new, top, left, size, antialias=True).to(
        x.dtype if x.is_floating_point() else torch.float32
    )


def center_crop_bicubic(x: torch.Tensor, size: int) -> torch.Tensor:
    """One antialiased bicubic resize of the short side to ``size`` (float, no 8-bit rounding), then the
    centre square: the zoo's original ``prepare``, kept as ``resize="bicubic"``.

    A uint8 ``x`` (``read_image(..., keep_uint8=True)``) gives the float image's result, except that one
    of more than 64 megapixels is first box-reduced by PIL to a short side of at least ``4 * size``, so
    its float copy (12 bytes a pixel) stays small; aspect ratios beyond 16:1 convert and resize only the
    span the square needs (see `bicubic_crop`).
    """
    h, w = x.shape[-2:]
    if x.dtype == torch.uint8 and h * w > _MAX_FLOAT_PIXELS and x.shape[0] in (1, 3):
        factor = min(h, w) // (4 * size)
        if factor >= 2:
            x = _box_reduce(x, factor)
            h, w = x.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return bicubic_crop(x, new, top, left, size, antialias=scale < 1)


def center_crop_torchvision(x: torch.Tensor, size: int) -> torch.Tensor:
    """``Resize(size, BICUBIC, antialias=True)`` + ``CenterCrop(size)`` of torchvision on a PIL image (the
    transform of KARL's demo and evaluation, which also read MAGE's VQGAN through it), for
    ``x`` ``[C, H, W]`` in ``[0, 1]`` or uint8: bit-identical to it when ``x`` holds 8-bit values (PIL
    resizes the uint8 pixels), torch's antialiased bicubic otherwise. Aspect ratios beyond 16:1 resize
    only the region the crop keeps (see ``zoo.io.image.pil_bicubic_crop`` and ``bicubic_crop``)."""
    h, w = x.shape[-2:]
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)  # torchvision truncates the long side
    new_h, new_w = (size, new_long) if h <= w else (new_long, size)
    top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)  # banker's rounding, as torchvision
    if (new_h, new_w) == (h, w):
        return unit_float(x[:, top : top + size, left : left + size])
    pixels = as_uint8(x)
    if pixels is not None:
        return pil_bicubic_crop(pixels, (new_h, new_w), top, left, size, x).to(x.device)
    return bicubic_crop(x, (new_h, new_w), top, left, size, antialias=True)


# ``ImageTokenizer.prepare(resize=...)``: each mode's resize + centre crop
CENTER_CROPS = {
    "adm": center_crop_adm,
    "bicubic": center_crop_bicubic,
    "torchvision": center_crop_torchvision,
}
RESIZE_MODES = tuple(CENTER_CROPS)
