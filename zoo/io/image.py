"""Image reading and writing with one tensor convention: float32 [C, H, W] in [0, 1].

Tokenizers are trained on whatever files people have, so the reader accepts every PIL mode and
maps each onto that range by its real meaning (16-bit PNGs are not clipped to 8 bits, palette
transparency is honoured, CMYK becomes RGB) instead of letting PIL's lossy `convert` decide.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo._atomic import atomic_path
from zoo.errors import MediaError

__all__ = [
    "IMAGE_SUFFIXES",
    "RESIZE_MODES",
    "center_crop_adm",
    "center_crop_bicubic",
    "image_to_tensor",
    "read_image",
    "tensor_to_image",
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
    out = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def read_image(path: str | Path, mode: str = "RGB") -> torch.Tensor:
    """Read an image file as float32 [C, H, W] in [0, 1], upright (EXIF orientation applied).

    Anything that is not a complete, decodable image raises MediaError naming the file, so a bad
    file in a dataset is reported once with its name instead of as a PIL traceback mid-epoch.
    """
    _check_mode(mode, path)
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    try:
        with Image.open(p) as img:
            img.load()  # decode now: truncation surfaces here, not later in the pipeline
            try:
                upright = ImageOps.exif_transpose(img)
            except (OSError, ValueError, KeyError, TypeError, IndexError, SyntaxError) as e:
                # a broken EXIF block should not cost an otherwise good image
                warnings.warn(f"{p}: ignoring unreadable EXIF orientation ({e})", stacklevel=2)
                upright = img
            if upright is None:
                upright = img
            return image_to_tensor(upright, mode, path=p)
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
RESIZE_MODES = ("adm", "bicubic")


def as_uint8(x: torch.Tensor) -> np.ndarray | None:
    """``x`` [C, H, W] in [0, 1] as a uint8 [H, W, C] array when every value is an 8-bit level (what
    `read_image` returns for 8-bit files), else ``None``: such images can be resized by PIL exactly as
    an upstream script that opens the file with PIL would."""
    if x.ndim != 3 or x.shape[0] not in (1, 3) or not x.is_floating_point():
        return None
    scaled = x.detach().to("cpu", torch.float64) * 255.0
    levels = scaled.round()
    if not bool(((scaled - levels).abs() <= 1e-3).all()) or levels.min() < 0 or levels.max() > 255:
        return None
    return levels.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _from_uint8(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    out = torch.from_numpy(np.array(arr.reshape(*arr.shape[:2], -1).transpose(2, 0, 1)))  # a writable copy
    return (out.to(torch.float32) / 255.0).to(like.dtype)


def pil_bicubic(arr: np.ndarray, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """PIL's ``resize((w, h), BICUBIC)`` of a uint8 [H, W, C] array (from :func:`as_uint8`) -> [C, h, w]
    in [0, 1] with ``like``'s dtype, as ``ToTensor`` after a PIL resize gives it."""
    h, w = size
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    return _from_uint8(np.asarray(img.resize((w, h), resample=Image.BICUBIC)), like)


def center_crop_adm(x: torch.Tensor, size: int) -> torch.Tensor:
    """ADM's centre crop (guided-diffusion ``center_crop_arr``, used by LlamaGen, MAR, ReTok and ResTok's
    code extraction): halve with a box filter while the short side is at least ``2 * size``, resize with
    bicubic so the short side is ``size`` (the long side rounded half to even, as Python's ``round``),
    then crop the centre square (offsets rounded down).

    ``x`` is one image [C, H, W] in [0, 1]. 8-bit images (1 or 3 channels) go through PIL's BOX and
    BICUBIC filters on uint8, so the result is bit-identical to the upstream scripts; anything else
    (16-bit, float) takes a float path with the same geometry (area halving, antialiased bicubic).
    """
    arr = as_uint8(x)
    if arr is not None:
        img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        while min(img.size) >= 2 * size:
            img = img.resize(tuple(s // 2 for s in img.size), resample=Image.BOX)
        scale = size / min(img.size)
        img = img.resize(tuple(round(s * scale) for s in img.size), resample=Image.BICUBIC)
        out = np.asarray(img)
        top, left = (out.shape[0] - size) // 2, (out.shape[1] - size) // 2
        return _from_uint8(out[top : top + size, left : left + size], x)
    y = x[None].float()
    while min(y.shape[-2:]) >= 2 * size:
        y = F.interpolate(y, size=tuple(s // 2 for s in y.shape[-2:]), mode="area")
    scale = size / min(y.shape[-2:])
    new = tuple(round(s * scale) for s in y.shape[-2:])
    if new != tuple(y.shape[-2:]):
        y = F.interpolate(y, size=new, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (y.shape[-2] - size) // 2, (y.shape[-1] - size) // 2
    return y[0, :, top : top + size, left : left + size].to(x.dtype)


def center_crop_bicubic(x: torch.Tensor, size: int) -> torch.Tensor:
    """One antialiased bicubic resize of the short side to ``size`` (float, no 8-bit rounding), then the
    centre square: the zoo's original ``prepare``, kept as ``resize="bicubic"``."""
    y = x[None]
    h, w = y.shape[-2:]
    scale = size / min(h, w)
    if scale != 1:
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        y = F.interpolate(y, size=new, mode="bicubic", align_corners=False, antialias=scale < 1).clamp(0, 1)
    top, left = (y.shape[-2] - size) // 2, (y.shape[-1] - size) // 2
    return y[0, :, top : top + size, left : left + size]
