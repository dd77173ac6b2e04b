"""Image benchmark: bits per pixel against PSNR, SSIM and MS-SSIM, beside JPEG, WebP and lossless PNG.

Convolutional tokenizers (VQ-16, KL-16, ...) are measured on whole images, cropped only to a multiple of
their downsampling factor; tokenizers with a fixed input size (ResTok, ReTok, SEED) on what their
``prepare`` makes of each image (its upstream's resize and centre crop). The reference is always the
image the tokenizer was given, and the classic codecs compress that same 8-bit image, so every row
describes the same pixels. Classic rates count whole files (headers included), which is what a user
stores; on 32 px images headers are most of a JPEG, and the report says so.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from tqdm.auto import tqdm

from ..errors import MediaError
from ..tokenizer import Tokenizer
from ..tokens import Tokens
from .rate import codebook_summary, codebook_use, token_rate
from .report import Metric, Row
from .suite import Items, PeakMemory, Suite, Timer, shared_data

__all__ = ["ImageItem", "ImageSuite", "image_metrics"]

# torchmetrics' MS-SSIM (5 scales, 11-px Gaussian) needs side // 16 > 10
MS_SSIM_MIN_SIDE = 176
JPEG_QUALITIES = (2, 5, 10, 20, 30, 50, 75, 90, 95)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 50, 75, 90, 100)
DISPLAY_SIDE = 256  # samples are shown at least this large


@dataclass
class ImageItem:
    name: str
    media: torch.Tensor  # [C, H, W], uint8 or float in [0, 1], as zoo.io.read_image returns it


def image_metrics(reference: torch.Tensor, estimate: torch.Tensor) -> dict[str, float]:
    """PSNR (dB), SSIM and MS-SSIM (NaN below 176 px) of one ``[C, H, W]`` image in ``[0, 1]``."""
    ref, est = reference[None].float(), estimate[None].float().clamp(0, 1)
    out = {
        "PSNR": float(peak_signal_noise_ratio(est, ref, data_range=1.0)),
        "SSIM": float(structural_similarity_index_measure(est, ref, data_range=1.0)),
        "MS-SSIM": math.nan,
    }
    if min(ref.shape[-2:]) >= MS_SSIM_MIN_SIDE:
        out["MS-SSIM"] = float(multiscale_structural_similarity_index_measure(est, ref, data_range=1.0))
    return out


def to_uint8_pil(x: torch.Tensor) -> Image.Image:
    arr = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def from_pil(img: Image.Image, channels: int) -> torch.Tensor:
    arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255
    t = torch.from_numpy(arr)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def compress(image: torch.Tensor, codec: str, quality: int) -> tuple[torch.Tensor, int]:
    """``image`` through a Pillow codec at ``quality``: the decoded image and the file's size in bytes."""
    buffer = io.BytesIO()
    pil = to_uint8_pil(image)
    if codec == "JPEG":
        pil.save(buffer, format="JPEG", quality=quality)
    elif codec == "WebP":
        pil.save(buffer, format="WEBP", quality=quality, method=6)
    elif codec == "PNG":
        pil.save(buffer, format="PNG", optimize=True)
    else:
        raise ValueError(f"unknown codec {codec!r}")
    size = buffer.tell()
    buffer.seek(0)
    return from_pil(Image.open(buffer), image.shape[0]), size


def cheapest_quality_at_least(image: torch.Tensor, codec: str, bits: float) -> tuple[int, torch.Tensor, int]:
    """The lowest quality whose file holds at least ``bits`` (the codec's file size grows with quality,
    not strictly: bisect, then step down while the rate still suffices); 100 when none reaches it."""
    low, high = 0 if codec == "WebP" else 1, 100
    best: tuple[int, torch.Tensor, int] | None = None
    while low <= high:
        mid = (low + high) // 2
        decoded, size = compress(image, codec, mid)
        if 8 * size >= bits:
            best, high = (mid, decoded, size), mid - 1
        else:
            low = mid + 1
    if best is None:
        decoded, size = compress(image, codec, 100)
        return 100, decoded, size
    while best[0] > 1:
        decoded, size = compress(image, codec, best[0] - 1)
        if 8 * size < bits:
            break
        best = (best[0] - 1, decoded, size)
    return best


def _read_folder(folder: Path, limit: int) -> list[ImageItem]:
    from ..io.image import IMAGE_SUFFIXES, read_image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MediaError(folder, "no image files found")
    items = []
    for path in files[:limit]:
        items.append(ImageItem(str(path.relative_to(folder)), read_image(path)))
    return items


def _read_npz(path: Path, limit: int) -> list[ImageItem]:
    with np.load(path) as data:
        if "x" not in data:
            raise MediaError(path, "expected an array 'x' of uint8 images [N, H, W, C] (CIFAR-style .npz)")
        x = data["x"][:limit]
    if x.ndim == 3:
        x = x[..., None]
    return [
        ImageItem(f"{path.stem}[{i}]", torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
        for i, img in enumerate(x)
    ]


def _read_skimage(names: tuple[str, ...], limit: int) -> list[ImageItem]:
    try:
        from skimage import data
    except ImportError:
        raise ModuleNotFoundError(
            "the scikit-image photos need scikit-image: pip install scikit-image"
        ) from None
    items = []
    for name in names[:limit]:
        array = getattr(data, name)()
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        items.append(ImageItem(name, torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1)))
    return items


class ImageSuite(Suite):
    modality = "image"
    rate_unit = "bits/pixel"
    metrics: ClassVar[list[Metric]] = [
        Metric("PSNR", True, "dB", 4),
        Metric("SSIM", True, "", 3),
        Metric("MS-SSIM", True, "", 3),
    ]
    default_limit = 64
    batch_size = 32

    def __init__(self, whole_images: bool = True) -> None:
        self.whole_images = whole_images
        self.prepared: dict[str, torch.Tensor] = {}
        self.reconstructions: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ items
    def load_items(self, data: str | None, limit: int | None) -> Items:
        """``data``: a folder of images, a CIFAR-style ``.npz`` (``x``: uint8 ``[N, H, W, C]``), ``cifar10``
        (the bundle's test split), ``skimage`` (scikit-image's nine photos) or ``skimage-val`` (the two the
        demo holds out); default ``skimage-val`` plus, when the data bundle is present, nothing else."""
        from ..data.photos import SKIMAGE_TRAIN_PHOTOS, SKIMAGE_VAL_PHOTOS

        limit = limit or self.default_limit
        key = data or "skimage-val"
        if key == "skimage-val":
            return Items(
                _read_skimage(SKIMAGE_VAL_PHOTOS, limit), "scikit-image photos chelsea and clock", "held out"
            )
        if key == "skimage":
            names = SKIMAGE_TRAIN_PHOTOS + SKIMAGE_VAL_PHOTOS
            return Items(_read_skimage(names, limit), "scikit-image photos", "all nine")
        if key == "cifar10":
            root = shared_data()
            if root is None:
                raise MediaError(key, "the data bundle is not here; pass the path of CIFAR-10's test.npz")
            key = str(root / "images/cifar10/test.npz")
        path = Path(key).expanduser()
        if path.is_dir():
            return Items(_read_folder(path, limit), str(path), "all files")
        if path.suffix == ".npz" and path.is_file():
            split = "test" if path.stem == "test" else path.stem
            return Items(_read_npz(path, limit), str(path), f"{split}, first {limit}")
        if path.is_file():
            from ..io.image import read_image

            return Items([ImageItem(path.name, read_image(path))], str(path), "one file")
        raise MediaError(
            path, "not an image folder, a CIFAR-style .npz, 'cifar10', 'skimage' or 'skimage-val'"
        )

    def _prepare(self, model: Tokenizer, item: ImageItem, whole: bool) -> torch.Tensor:
        return model.prepare(item.media, path=item.name, resolution=None if whole else 0)[0]

    def _whole_images_work(self, model: Tokenizer, item: ImageItem, device: torch.device) -> bool:
        if not self.whole_images:
            return False
        x = self._prepare(model, item, True)
        try:
            with torch.no_grad():
                model.encode(x[None].to(device))
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------ learned
    def measure_learned(
        self, model: Tokenizer, items: Items, *, device: torch.device, name: str, kind: str = "learned"
    ) -> Row:
        whole = self._whole_images_work(model, items.items[0], device)
        if not whole and kind == "learned":
            items.notes.append(
                f"{name} reads {model.resolution} px only: images were resized and centre-cropped by its "
                f"prepare ({getattr(model, 'resize', 'bicubic')}); every codec compresses that same image"
            )
        prepared = {item.name: self._prepare(model, item, whole) for item in items.items}
        groups: dict[tuple[int, ...], list[str]] = {}
        for key, x in prepared.items():
            groups.setdefault(tuple(x.shape), []).append(key)
        encode_timer, decode_timer, memory = Timer(), Timer(), PeakMemory(device)
        tokens_by_item: dict[str, Tokens] = {}
        recon: dict[str, torch.Tensor] = {}
        progress = tqdm(total=len(prepared), desc=f"{name} encode/decode", unit="img", leave=False)
        with torch.no_grad(), memory.measure():
            for keys in groups.values():
                for start in range(0, len(keys), self.batch_size):
                    chunk = keys[start : start + self.batch_size]
                    x = torch.stack([prepared[k] for k in chunk]).to(device)
                    with encode_timer(device):
                        tokens = model.encode(x)
                    with decode_timer(device):
                        y = model.decode(tokens).float().clamp(0, 1).cpu()
                    for i, key in enumerate(chunk):
                        tokens_by_item[key] = tokens[i : i + 1].to("cpu")
                        recon[key] = y[i]
                    progress.update(len(chunk))
        progress.close()
        self.prepared, self.reconstructions = prepared, recon
        metrics = _mean([image_metrics(prepared[k], recon[k]) for k in prepared])
        pixels = {k: x.shape[-1] * x.shape[-2] for k, x in prepared.items()}
        batches = list(tokens_by_item.values())
        raw_bpp = _mean_value([token_rate([tokens_by_item[k]]).raw_bits / pixels[k] for k in prepared])
        entropy_bpp = None
        extra: dict[str, Any] = {"whole_images": whole, "pixels_per_item": _mean_value(list(pixels.values()))}
        if batches[0].discrete:
            use = codebook_use(batches)
            bits_per_position = sum(use.entropy_bits)
            entropy_bpp = _mean_value(
                [
                    token_rate([tokens_by_item[k]]).positions_per_item * bits_per_position / pixels[k]
                    for k in prepared
                ]
            )
            extra.update(codebook_summary(batches))
        else:
            extra["continuous"] = "latents counted at 16 bits per value"
        count, megapixels = len(prepared), sum(pixels.values()) / 1e6
        speed = {
            "encode img/s": count / max(encode_timer.seconds, 1e-9),
            "decode img/s": count / max(decode_timer.seconds, 1e-9),
            "encode MP/s": megapixels / max(encode_timer.seconds, 1e-9),
            "decode MP/s": megapixels / max(decode_timer.seconds, 1e-9),
        }
        if memory.peak_bytes is not None:
            speed["peak MiB"] = memory.peak_bytes / 2**20
        return Row(
            name,
            kind,
            raw_bpp,
            metrics,
            entropy_rate=entropy_bpp,
            speed=speed,
            extra=extra,
            setting="whole images" if whole else f"{model.resolution} px",
        )

    # ------------------------------------------------------------------ classic
    def classic_rows(self, items: Items, rates: list[float]) -> tuple[list[Row], list[str]]:
        """JPEG and WebP at a ladder of qualities, plus, for each learned rate, each image at the lowest
        quality whose file has at least the learned rate ("matched"), and lossless PNG."""
        if not self.prepared:
            raise RuntimeError("measure_learned first: the classic codecs compress the images it prepared")
        rows: list[Row] = []
        images = self.prepared
        for codec, ladder in (("JPEG", JPEG_QUALITIES), ("WebP", WEBP_QUALITIES)):
            for quality in tqdm(ladder, desc=codec, leave=False):
                results = [compress(x, codec, quality) for x in images.values()]
                rows.append(self._row(codec, f"q={quality}", images, results))
            for rate in rates:
                matched = []
                qualities = []
                for x in images.values():
                    pixels = x.shape[-1] * x.shape[-2]
                    quality, decoded, size = cheapest_quality_at_least(x, codec, rate * pixels)
                    matched.append((decoded, size))
                    qualities.append(quality)
                reached = all(
                    8 * size >= rate * x.shape[-1] * x.shape[-2]
                    for x, (_, size) in zip(images.values(), matched, strict=True)
                )
                label = f"matched ≥ {rate:.3g}" if reached else f"highest quality, below {rate:.3g}"
                row = self._row(codec, f"{label} (q {min(qualities)}–{max(qualities)})", images, matched)
                row.extra["qualities"] = qualities
                rows.append(row)
        rows.append(self._row("PNG", "lossless", images, [compress(x, "PNG", 0) for x in images.values()]))
        return rows, []

    def _row(
        self,
        codec: str,
        setting: str,
        images: dict[str, torch.Tensor],
        results: list[tuple[torch.Tensor, int]],
    ) -> Row:
        metrics = _mean(
            [image_metrics(x, decoded) for x, (decoded, _) in zip(images.values(), results, strict=True)]
        )
        if codec == "PNG":
            metrics["PSNR"] = math.inf
        rate = _mean_value(
            [
                8 * size / (x.shape[-1] * x.shape[-2])
                for x, (_, size) in zip(images.values(), results, strict=True)
            ]
        )
        kind = "reference" if codec == "PNG" else "classic"
        return Row(f"{codec} {setting}", kind, rate, metrics, family=codec, setting=setting)

    # ------------------------------------------------------------------ pictures
    def samples(
        self, model: Tokenizer, items: Items, classic: list[Row], path: Path, *, device: torch.device
    ) -> Path | None:
        """Originals, the tokenizer and WebP at the matched rate (top to bottom) for up to four images,
        each shown at least 256 px high."""
        keys = list(self.prepared)[:4]
        if not keys:
            return None
        rate = None
        for row in classic:
            if row.family == "WebP" and "qualities" in row.extra:
                rate = row
                break
        rows = [[self.prepared[k] for k in keys], [self.reconstructions[k] for k in keys]]
        labels = ["original", model.arch if hasattr(model, "arch") else "tokenizer"]
        if rate is not None:
            qualities = rate.extra.get("qualities", [])
            rows.append(
                [compress(self.prepared[k], "WebP", q)[0] for k, q in zip(keys, qualities, strict=False)]
            )
            labels.append(
                f"WebP at >= the tokenizer's rate (q {min(qualities)}-{max(qualities)}), {rate.rate:.3f} bits/pixel"
            )
        tiles = [[_display(x) for x in row] for row in rows]
        widths = [max(tiles[r][c].width for r in range(len(tiles))) for c in range(len(keys))]
        height = max(t.height for row in tiles for t in row)
        label_h = 16
        canvas = Image.new(
            "RGB", (sum(widths) + 4 * (len(keys) + 1), len(tiles) * (height + label_h + 4) + 4), "white"
        )
        draw = ImageDraw.Draw(canvas)
        for r, row in enumerate(tiles):
            top = 4 + r * (height + label_h + 4)
            draw.text((4, top), labels[r], fill="black")
            left = 4
            for c, tile in enumerate(row):
                canvas.paste(tile, (left, top + label_h))
                left += widths[c] + 4
        from .._atomic import atomic_path

        with atomic_path(path) as tmp:
            canvas.save(tmp, format="PNG")
        return path


def _display(x: torch.Tensor) -> Image.Image:
    pil = to_uint8_pil(x).convert("RGB")
    scale = max(1, math.ceil(DISPLAY_SIDE / min(pil.size)))
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {k: _mean_value([r[k] for r in rows]) for k in keys}


def _mean_value(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan
