"""Benchmark Hi-MAR end to end on CIFAR-10 at its tiny size: a pivot token cache, training, Fréchet
distance beside baselines, the pivot ablation, and sampling speed.

Everything is trained inside the run on real images through the user's code path
(``build_token_cache(pivot=True)`` -> ``GeneratorModule`` -> ``sample`` -> ``decode``), reusing the
helpers of ``benchmarks/generators.py``:

1. ``kl16_tiny`` trains briefly and its latents are rescaled to unit std; caches of the train items
   (``views="flip"``) and of a class-balanced test set store the main moments and the pivot moments (the
   same tokenizer on the 2x-downsampled views: 4x4x4 pivots for 8x8x4 latents).
2. ``himar_tiny`` trains with its recipe's settings (pivot dropout warming up over the first quarter).
   The ablation samples the same model with its pivots switched off (``use_pivots=False``: phase 2 sees
   only the learned ``cond_tokens``, which upstream's pivot dropout trains it for); with
   ``--train-without-pivots`` a second model that never sees pivots (``pivot_drop_rate=0``, a MAR with
   the DiT head, the paper's baseline) trains too.
3. FD in the 128-d features of the benchmark's small CNN against held-out test images, beside shuffled
   test latents, class-mean latents and the tokenizer's reconstructions (the ceiling); class accuracy of
   the CNN on the samples; the seeded test losses of both phases; samples per second at batch 50.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/himar.py`` (about 5 minutes on one
core of a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generators as G  # the shared benchmark helpers

NUM_CLASSES = G.NUM_CLASSES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=G.DEFAULT_DATA, help="CIFAR-10 folder with train.npz, test.npz"
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/bench_himar"), help="tokenizer, caches, sample grids"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-items", type=int, default=1000, help="CIFAR-10 train images (evenly spread)")
    p.add_argument("--n-fd", type=int, default=100, help="generated and reference images for the FD")
    p.add_argument("--tok-steps", type=int, default=150, help="kl16_tiny training steps")
    p.add_argument("--tok-batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=200, help="training steps of each Hi-MAR (batch 64)")
    p.add_argument(
        "--train-without-pivots",
        action="store_true",
        help="also train a Hi-MAR that never sees pivots (pivot_drop_rate 0; doubles the training time)",
    )
    p.add_argument(
        "--head-steps",
        type=int,
        default=10,
        help="DDPM steps of both heads when sampling (upstream 100 / 250)",
    )
    p.add_argument("--cfg", type=float, default=1.5, help="guided scale of both phases")
    p.add_argument("--clf-epochs", type=int, default=3, help="feature CNN epochs")
    p.add_argument("--speed-repeats", type=int, default=1, help="timed batches per speed measurement")
    return p.parse_args(argv)


def reproduce_command(args: argparse.Namespace) -> str:
    parts = [f"OMP_NUM_THREADS={args.threads}", "python", "benchmarks/himar.py"]
    for key, value in vars(args).items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):  # store_true switches take no value
            parts += [flag] if value else []
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def himar_settings(steps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_args, module_args) of ``recipes/himar_tiny.yaml``, the pivot warm-up scaled to ``steps``
    and the EMA shortened to about a tenth of the run (the recipe's 0.999 would still be ~90 % the
    initial weights after a few hundred steps)."""
    settings = G.recipe_settings("himar_tiny")
    settings["ema_decay"] = min(settings.get("ema_decay") or 1.0, 1.0 - 10.0 / steps)
    model_args = dict(settings.pop("model_args", None) or {})
    model_args["pivot_warmup_steps"] = max(1, steps // 4)
    return model_args, settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    G.start_run(args)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    from zoo.data import TokenCache, build_token_cache

    out = args.out
    for sub in ("tokenizers", "caches", "samples"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "samples").mkdir(parents=True, exist_ok=True)

    ref = G.reference(args)
    train_ds, test_ds = ref.train_ds, ref.test_ds
    train_x, test_x, test_y = ref.train_x, ref.test_x, ref.test_y
    per_class, other_mask = ref.per_class, ref.other_mask
    clf, clf_acc, ref_feats = ref.clf, ref.clf_acc, ref.ref_feats
    timings["data + classifier"] = ref.data_seconds + ref.classifier_seconds
    G.log(f"classifier: test accuracy {clf_acc:.3f}", start)

    def fd_row(images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        feats, pred = G.features_and_predictions(clf, images)
        return G.frechet_distance(feats, ref_feats), float((pred == labels).float().mean())

    # ---- tokenizer and pivot caches
    t0 = time.perf_counter()
    kl, tok_loss = G.train_tokenizer("kl16_tiny", train_x, args.tok_steps, args.tok_batch, args.seed)
    std, factor = G.unit_scale_latents(kl, train_x[:1024])
    saved = kl.save_pretrained(out / "tokenizers" / "kl16_tiny")
    caches = {
        split: build_token_cache(
            kl, dataset, out / "caches" / f"kl16_tiny_pivot_{split}", views=views, pivot=True,
            tokenizer_source=str(saved), progress=False,
        )
        for split, dataset, views in (("train", train_ds, "flip"), ("test", test_ds, "none"))
    }  # fmt: skip
    timings["tokenizer + caches"] = time.perf_counter() - t0
    G.log(
        f"kl16_tiny: last loss {tok_loss:.4f}, latent std {std:.3f} -> scale {factor:.4f}; caches built",
        start,
    )
    test_cache = G.cache_tensors(caches["test"])
    test_lat, test_piv = test_cache["latents"][:, 0].float(), test_cache["pivot_mean"][:, 0].float()
    assert torch.equal(test_cache["labels"], test_y) and TokenCache(caches["train"]).index["pivot"]
    fd_labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    other_y = test_y[other_mask]
    train_lat = G.cache_tensors(caches["train"])["latents"].float().flatten(0, 1)
    train_lat_y = G.cache_tensors(caches["train"])["labels"].repeat_interleave(2)
    means = torch.stack([train_lat[train_lat_y == c].mean(0) for c in range(NUM_CLASSES)])
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
        "tokenizer reconstructions (ceiling)": (G.decode_latents(kl, test_lat[other_mask]), other_y),
        "shuffled test latents": (
            G.decode_latents(kl, G.shuffle_positions(test_lat[other_mask], args.seed)),
            other_y,
        ),
        "class-mean latents": (G.decode_latents(kl, means[fd_labels]), fd_labels),
    }
    recon_psnr = G.psnr(sets["tokenizer reconstructions (ceiling)"][0], G.as_float(test_x[other_mask]))

    # ---- generators
    gens: dict[str, Any] = {}
    losses: dict[str, float] = {}
    model_args, module_args = himar_settings(args.steps)
    runs = [("himar", {})] + ([("no pivots", {"pivot_drop_rate": 0.0})] if args.train_without_pivots else [])
    for key, extra in runs:
        t0 = time.perf_counter()
        gens[key], losses[key] = G.train_generator(
            "himar_tiny", {**model_args, **extra}, caches["train"], args.steps, args.seed, module_args
        )
        torch.set_num_threads(args.threads)
        timings[f"train {key}"] = time.perf_counter() - t0
        G.log(f"trained {key}: {args.steps} steps, last loss {losses[key]:.4f}", start)
    test_losses = {}
    for key, gen in gens.items():
        with torch.random.fork_rng():
            torch.manual_seed(args.seed)
            o = gen.training_loss({"latents": test_lat, "pivot": test_piv, "labels": test_y})
        test_losses[key] = (float(o.stats["pivot_loss"]), float(o.stats["main_loss"]))

    # ---- samples
    t0 = time.perf_counter()
    decode = lambda tokens: kl.decode(tokens)
    steps = {"head_steps": args.head_steps, "dit_steps": args.head_steps}
    plans = [
        ("Hi-MAR cfg 1", "himar", {"cfg": 1.0, "pivot_cfg": 1.0}),
        (f"Hi-MAR cfg {args.cfg:g}", "himar", {"cfg": args.cfg, "pivot_cfg": args.cfg}),
        (f"Hi-MAR, pivots switched off, cfg {args.cfg:g}", "himar", {"cfg": args.cfg, "use_pivots": False}),
    ]
    if "no pivots" in gens:
        label = f"trained without pivots (MAR + DiT head), cfg {args.cfg:g}"
        plans.append((label, "no pivots", {"cfg": args.cfg, "use_pivots": False}))
    for label, key, settings in plans:
        images = G.generate(gens[key], decode, fd_labels, args.seed + 1000, **settings, **steps)
        sets[label] = (images, fd_labels)
    timings["sampling"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    speed = {
        cfg: G.samples_per_second(
            gens["himar"], args.speed_repeats, args.seed, cfg=cfg, pivot_cfg=cfg, **steps
        )
        for cfg in (1.0, args.cfg)
    }
    timings["speed"] = time.perf_counter() - t0

    # ---- report
    gen = gens["himar"]
    rows = [
        ("train images / test images", f"{len(train_x)} / {len(test_x)}"),
        ("feature CNN test accuracy", f"{clf_acc:.1%}"),
        ("kl16_tiny test PSNR (dB)", f"{recon_psnr:.2f}"),
        ("himar_tiny parameters", f"{gen.num_parameters():,}"),
    ]
    for key in gens:
        rows.append(
            (f"{key}: training steps (batch 64), EMA decay, last train loss",
             f"{args.steps}, {module_args['ema_decay']:.3f}, {losses[key]:.3f}")
        )  # fmt: skip
        pivot_loss, main_loss = test_losses[key]
        rows.append((f"{key}: seeded test loss, pivots / main", f"{pivot_loss:.3f} / {main_loss:.3f}"))
    for name, (images, labels) in sets.items():
        value, acc = fd_row(images, labels)
        rows.append((f"FD / class accuracy: {name}", f"{value:.2f} / {acc:.1%}"))
        G.save_grid(images, labels, out / "samples" / f"{name.split(',')[0].replace(' ', '_')}.png")
    rows.append(
        (
            f"network passes per image: MAR steps (pivot + main), each with {args.head_steps} DDPM head steps",
            str(gen.forward_passes()),
        )
    )
    rows.append(
        (
            f"samples/s at batch {G.SPEED_BATCH}, cfg 1 / cfg {args.cfg:g}",
            f"{speed[1.0]:.1f} / {speed[args.cfg]:.1f}",
        )
    )
    total = time.perf_counter() - start
    rows.append(("torch threads", str(torch.get_num_threads())))
    rows += [(f"time: {k}", f"{v:.0f} s") for k, v in timings.items()]
    rows.append(("time: total", f"{total:.0f} s"))
    report = "\n\n".join(
        [
            G.table("Hi-MAR: himar_tiny over kl16_tiny latents (8x8x4) with 4x4 pivots, CIFAR-10", rows),
            f"FD against {per_class * NUM_CLASSES} held-out test images in the benchmark CNN's 128-d features.",
            f"command: {reproduce_command(args)}",
        ]
    )
    print("\n" + report, flush=True)
    (out / "results.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
