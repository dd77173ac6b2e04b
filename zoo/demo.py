"""End-to-end example: train a tiny VQ-16 on real photos, publish it to a folder, load it back, and
compare its reconstructions with JPEG at the same or a higher bit rate.

Runs on 2 CPU cores in a few minutes with no network and no data bundle: the photographs are the
ones shipped inside scikit-image. ``python -m zoo.demo --steps 400 --out runs/demo``.
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
from zoo.io import write_image

TRAIN_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "immunohistochemistry",
    "hubble_deep_field",
)
HELD_OUT = ("chelsea", "cat")


def _photo(name: str, short_side: int) -> torch.Tensor:
    from skimage import data

    array = getattr(data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float()[None] / 255
    scale = short_side / min(x.shape[-2:])
    size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
    return F.interpolate(x, size=size, mode="area")[0]


def _random_crops(photos: list[torch.Tensor], n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    crops = []
    for _ in range(n):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=generator))
        crop = photo[:, top : top + size, left : left + size]
        crops.append(crop.flip(-1) if bool(torch.rand(1, generator=generator) < 0.5) else crop)
    return torch.stack(crops)


def _grid_crops(photo: torch.Tensor, size: int) -> torch.Tensor:
    h, w = photo.shape[1] // size * size, photo.shape[2] // size * size
    tiles = photo[:, :h, :w].unfold(1, size, size).unfold(2, size, size)  # [3, nh, nw, s, s]
    return tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="runs/demo")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    out = Path(args.out)

    model = zoo.create("vq16_tiny").train()
    size = model.resolution
    train = [_photo(name, 96) for name in TRAIN_PHOTOS]
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    print(
        f"training vq16_tiny ({model.num_parameters():,} parameters) on crops of {len(train)} scikit-image photos"
    )
    start = time.time()
    for step in range(1, args.steps + 1):
        x = _random_crops(train, args.batch_size, size, generator)
        result = model(x)
        rec = F.l1_loss(result.recon, x)
        loss = rec + sum(result.losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == 1:
            print(
                f"step {step:4d}  L1 {rec.item():.4f}  codebook usage {result.stats['usage'].item():.2f}  "
                f"{time.time() - start:.0f}s",
                flush=True,
            )

    model.eval().save_pretrained(
        out / "model", metrics={}, training=f"{args.steps} steps of Adam on scikit-image photo crops"
    )
    loaded = zoo.load(out / "model")
    held_out = [_photo(name, 128) for name in HELD_OUT]
    tiles = torch.cat([_grid_crops(p, size) for p in held_out])
    tokens = loaded.encode(tiles)
    recon = loaded.decode(tokens).clamp(0, 1)
    bpp = tokens.bits_per_item / (size * size)
    ours = psnr(recon, tiles)
    jpeg_psnrs, jpeg_rates = [], []
    for tile in tiles:
        decoded, rate, _ = jpeg_at_or_above(tile, bpp)
        jpeg_psnrs.append(psnr(decoded, tile))
        jpeg_rates.append(rate)
    print(f"\nheld-out photos {', '.join(HELD_OUT)}: {len(tiles)} tiles of {size}x{size}")
    print(f"{'codec':<12}{'bits/pixel':>12}{'PSNR (dB)':>12}")
    print(f"{'vq16_tiny':<12}{bpp:>12.3f}{ours:>12.2f}")
    print(f"{'JPEG':<12}{np.mean(jpeg_rates):>12.3f}{np.mean(jpeg_psnrs):>12.2f}")
    side = torch.cat([tiles[:8], recon[:8]], dim=2)  # originals above reconstructions
    write_image(out / "side_by_side.png", torch.cat(list(side), dim=2))
    print(f"\nmodel saved to {out / 'model'}; originals above reconstructions in {out / 'side_by_side.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
