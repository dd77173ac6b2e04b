"""The main job: train a tiny VQ-16 from its recipe on real photos, export it, load it back, and
compare its reconstructions of held-out photos with JPEG at the same or a higher bit rate.

Runs on 2 CPU cores in under 10 minutes with no network and no data bundle: the photographs are
the ones shipped inside scikit-image (training and held-out photos differ). The training step is
exactly ``zoo train recipes/vq16_tiny.yaml``; ``python -m zoo.demo --steps 1500 --out runs/demo``.
Exits 1 if the tokenizer does not beat JPEG's PSNR.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import zoo
from zoo.data.photos import SKIMAGE_VAL_PHOTOS, grid_crops, skimage_photo
from zoo.io import write_image

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "vq16_tiny.yaml"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b.clamp(0, 1)).item()
    return 10 * math.log10(1 / max(mse, 1e-12))


def jpeg_at_or_above(image: torch.Tensor, bpp: float) -> tuple[torch.Tensor, float, int]:
    """The lowest JPEG quality whose bit rate (whole file, headers included) is >= ``bpp``."""
    pil = Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    pixels = image.shape[1] * image.shape[2]
    for quality in range(1, 101):
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=quality)
        rate = 8 * buffer.tell() / pixels
        if rate >= bpp or quality == 100:
            decoded = (
                torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1).float() / 255
            )
            return decoded, rate, quality
    raise AssertionError("unreachable")


def _scan_bytes(jpeg: bytes) -> int:
    """Bytes of the entropy-coded scan: what a JPEG costs when its tables are shared (abbreviated
    JPEG streams), i.e. JPEG's rate without per-file headers."""
    start = jpeg.index(b"\xff\xda")
    length = int.from_bytes(jpeg[start + 2 : start + 4], "big")
    return len(jpeg) - (start + 2 + length) - 2  # minus the end-of-image marker


def jpeg_scan_at_or_above(image: torch.Tensor, bpp: float) -> tuple[torch.Tensor, float, int]:
    """Like :func:`jpeg_at_or_above`, counting only the scan data (headers and tables free)."""
    pil = Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    pixels = image.shape[1] * image.shape[2]
    for quality in range(1, 101):
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=quality, optimize=True)
        rate = 8 * _scan_bytes(buffer.getvalue()) / pixels
        if rate >= bpp or quality == 100:
            decoded = (
                torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1).float() / 255
            )
            return decoded, rate, quality
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(RECIPE), help="training recipe (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1500, help="training iterations")
    parser.add_argument("--out", default="runs/demo", help="run, export and picture directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    start = time.time()

    from zoo.training.cli import export, train

    print(f"1/3 training: zoo train {args.recipe} --trainer.max_steps {args.steps} ...", flush=True)
    train(
        [args.recipe, "--trainer.max_steps", str(args.steps), "--trainer.default_root_dir", str(out / "run")]
    )
    model_dir = export(out / "run", out / "model")
    print(f"2/3 exported to {model_dir} ({time.time() - start:.0f}s)", flush=True)

    loaded = zoo.load(model_dir)
    size = loaded.resolution
    photos = [skimage_photo(name, 128) for name in SKIMAGE_VAL_PHOTOS]
    tiles = torch.cat([grid_crops(photo, size) for photo in photos])
    tokens = loaded.encode(tiles)
    recon = loaded.decode(tokens).clamp(0, 1)
    bpp = tokens.bits_per_item / (size * size)
    ours = psnr(recon, tiles)
    jpeg = [jpeg_at_or_above(tile, bpp) for tile in tiles]
    jpeg_psnr = float(
        np.mean([psnr(decoded, tile) for (decoded, _, _), tile in zip(jpeg, tiles, strict=True)])
    )
    jpeg_rate = float(np.mean([rate for _, rate, _ in jpeg]))
    scan = [jpeg_scan_at_or_above(tile, bpp) for tile in tiles]
    scan_psnr = float(
        np.mean([psnr(decoded, tile) for (decoded, _, _), tile in zip(scan, tiles, strict=True)])
    )
    scan_rate = float(np.mean([rate for _, rate, _ in scan]))

    print(f"3/3 held-out photos {', '.join(SKIMAGE_VAL_PHOTOS)}: {len(tiles)} tiles of {size}x{size}")
    print(f"{'codec':<34}{'bits/pixel':>12}{'PSNR (dB)':>12}")
    print(f"{loaded.arch:<34}{bpp:>12.3f}{ours:>12.2f}")
    print(f"{'JPEG, lowest quality >= our rate':<34}{jpeg_rate:>12.3f}{jpeg_psnr:>12.2f}")
    print(f"{'JPEG scan only (tables shared)':<34}{scan_rate:>12.3f}{scan_psnr:>12.2f}")
    verdict = "beats" if ours > jpeg_psnr else "does not beat"
    print(f"\n{loaded.arch} {verdict} JPEG's PSNR at {jpeg_rate / bpp:.1f}x its bit rate (whole JPEG files).")
    scan_verdict = "still beats" if ours > scan_psnr else "does not beat"
    print(
        f"Counting only JPEG's scan data (tables shared, as in an abbreviated JPEG stream), "
        f"{loaded.arch} {scan_verdict} it ({scan_psnr:.2f} dB at {scan_rate:.3f} bits/pixel): on small "
        "tiles most of a JPEG file is headers."
    )
    side = torch.cat([tiles[:8], recon[:8], torch.stack([d for d, _, _ in jpeg[:8]])], dim=2)
    write_image(out / "side_by_side.png", torch.cat(list(side), dim=2))
    print(
        f"originals, {loaded.arch}, JPEG (top to bottom): {out / 'side_by_side.png'}; total {time.time() - start:.0f}s"
    )
    return 0 if ours > jpeg_psnr else 1


if __name__ == "__main__":
    raise SystemExit(main())
