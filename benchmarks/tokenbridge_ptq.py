"""TokenBridge's post-training quantization against the continuous VAE it quantizes, on real images.

Trains the tiny KL-16 VAE briefly on CIFAR-10 (or loads any KL-16/TokenBridge you name), then decodes the
test images three ways: from the continuous posterior mean, and from 6-, 5- and 4-bit per-channel ids,
with upstream's fixed range ([-5, 5] onto [-3, 3]) and with ranges fitted on the training images
(`fit_levels`). Prints PSNR and the gap to the continuous VAE, and the command to rerun.

    OMP_NUM_THREADS=1 python benchmarks/tokenbridge_ptq.py                 # ~2 min on 2 CPU cores
    python benchmarks/tokenbridge_ptq.py --vae tokenbridge --resolution 256 --data /data/imagenet/val
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import zoo
from zoo.data import CifarNpz, ImageFolder
from zoo.data._common import Subsample
from zoo.data.token_cache import make_views
from zoo.models.image.kl16 import KL16

ROOT = Path(__file__).resolve().parents[1]


def images(dataset: object, resolution: int, count: int) -> torch.Tensor:
    subset = Subsample(dataset, count)
    return torch.stack([make_views(subset[i], "none", resolution)[0] for i in range(len(subset))])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b, reduction="none").flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def train_tiny_vae(train: torch.Tensor, steps: int, batch: int) -> zoo.Tokenizer:
    torch.manual_seed(0)
    vae = zoo.create("tokenbridge_tiny").train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, betas=(0.9, 0.95))
    for step in range(steps):
        x = train[torch.randint(len(train), (batch,))]
        out = vae(x)
        loss = F.l1_loss(out.recon, x) + F.mse_loss(out.recon, x) + sum(out.losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return vae.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/images/cifar10"))
    parser.add_argument(
        "--vae", help="a tokenbridge tokenizer to load (default: train tokenbridge_tiny here)"
    )
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=4000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=600, help="VAE training steps when none is given")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    data = Path(args.data)
    if data.suffix == ".npz" or (data / "train.npz").exists():
        train_set, test_set = CifarNpz(data, "train"), CifarNpz(data, "test")
    else:
        train_set, test_set = ImageFolder(data, None, split="train"), ImageFolder(data, None, split="val")
    train = images(train_set, args.resolution, args.train_images)
    test = images(test_set, args.resolution, args.test_images)
    vae = zoo.load(args.vae) if args.vae else train_tiny_vae(train, args.steps, args.batch)
    rows = []
    with torch.inference_mode():
        continuous = torch.cat([KL16.decode(vae, KL16.encode(vae, x)) for x in test.split(100)])
        base = psnr(continuous, test)
        rows.append(("continuous KL (posterior mean)", "-", base, 0.0, 0.0))
        state = {k: v.clone() for k, v in vae.state_dict().items()}
        for bits in (6, 5, 4):
            for ranges in ("fixed [-5, 5] (upstream)", "fitted on train images"):
                model = zoo.create(vae.arch, **{**vae.config, "bits": bits})
                model.load_state_dict(state)
                model.eval()
                if ranges.startswith("fitted"):
                    model.fit_levels(train.split(200))
                out = torch.cat([model.decode(model.encode(x)) for x in test.split(100)])
                clipped = float(
                    torch.cat(
                        [
                            model.ptq(KL16.encode(model, x).latents).stats["clipped"][None]
                            for x in test.split(100)
                        ]
                    ).mean()
                )
                value = psnr(out, test)
                rows.append((f"{bits}-bit PTQ, {ranges}", str(bits), value, value - base, clipped))
    print(
        f"\nTokenBridge PTQ vs the continuous VAE ({vae.arch}, {len(test)} test images at {args.resolution} px)\n"
    )
    print("| decode from | bits | PSNR (dB) | gap to continuous (dB) | values clipped |")
    print("|---|---|---|---|---|")
    for name, bits, value, gap, clipped in rows:
        print(f"| {name} | {bits} | {value:.2f} | {gap:+.2f} | {clipped:.2%} |")
    print(
        f"\n{time.time() - started:.0f} s; rerun: OMP_NUM_THREADS=1 python benchmarks/tokenbridge_ptq.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
