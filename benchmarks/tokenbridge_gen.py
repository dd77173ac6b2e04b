"""Benchmark the tiny TokenBridge generator end to end on CIFAR-10, next to baselines that say what each
number is worth; the data, feature CNN, Fréchet distance and speed helpers are `benchmarks/generators.py`'s,
so the numbers sit on the same scale as NAR's and xAR's there.

1. ``tokenbridge_tiny`` (kl16_tiny's VAE + 4-bit per-channel PTQ) trains as kl16_tiny does there (same
   steps, batch and losses); its per-channel ranges are then fitted on train images (``fit_levels``)
   instead of rescaling the latents, since the quantizer, not a noise schedule, needs their scale.
2. Token caches of the train items (``views="flip"``) and of a class-balanced test set.
3. ``tokenbridge_gen_tiny`` and the same network with an *independent-channel* head (``channel_ar=False``:
   no ids fed back, the channels of a position independent given its feature) train with
   ``GeneratorModule`` and ``recipes/tokenbridge_gen_tiny.yaml``'s optimiser; EMA weights are evaluated.
4. Metrics. Likelihood: test ``log_prob`` (the sampler's exact likelihood under one seeded order) in
   nats per id for both heads, beside per-channel add-one unigram frequencies and the uniform 16 levels.
   Fréchet distance in the feature CNN's space against held-out test images, beside real train images
   (floor), the tokenizer's reconstructions (ceiling), shuffled-position tokens and per-class mean latents.
   Speed: samples per second at batch 50 after a warm-up.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/tokenbridge_gen.py`` (about 5 minutes
on one core of a shared 2-core machine). The tokenizer gets fewer steps than in generators.py (100, not
300) to stay inside that budget; its architecture and losses are the same.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generators as G  # the shared benchmark helpers

from zoo.tokens import Tokens

NUM_CLASSES = G.NUM_CLASSES


def channel_unigram_nll(train_ids: torch.Tensor, test_ids: torch.Tensor, levels: int) -> float:
    """Test NLL (nats/id) of add-one-smoothed per-channel level frequencies of the train ids ``[n, C, ...]``."""
    total = 0.0
    for c in range(train_ids.shape[1]):
        counts = torch.bincount(train_ids[:, c].flatten(), minlength=levels).double() + 1
        logp = (counts / counts.sum()).log()
        total -= float(logp[test_ids[:, c]].sum())
    return total / test_ids.numel()


@torch.no_grad()
def decode_channel_ids(tok: Any, ids: torch.Tensor) -> torch.Tensor:
    """Images from per-channel ids ``[n, C, h, w]`` (`generators.decode_ids` takes one id per position)."""
    out = [
        tok.decode(Tokens(ids=chunk.long(), grid=tuple(chunk.shape[2:]), codebook_sizes=tok.codebook_sizes))
        for chunk in ids.split(250)
    ]
    return torch.cat(out).clamp(0, 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=G.DEFAULT_DATA, help="CIFAR-10 folder with train.npz, test.npz"
    )
    p.add_argument("--out", type=Path, default=Path("/tmp/zoo-bench-tokenbridge-gen"), help="work folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-items", type=int, default=2000, help="train images (evenly spread)")
    p.add_argument("--n-fd", type=int, default=200, help="images per FD set (a multiple of 10)")
    p.add_argument("--tok-steps", type=int, default=100, help="tokenizer training steps")
    p.add_argument("--tok-batch", type=int, default=32)
    p.add_argument("--gen-steps", type=int, default=200, help="training steps of each generator")
    p.add_argument("--sample-steps", type=int, default=8, help="MAR iterations when sampling and scoring")
    p.add_argument("--cfg", type=float, default=2.0, help="guided scale")
    p.add_argument("--clf-epochs", type=int, default=3, help="feature classifier epochs")
    p.add_argument("--speed-repeats", type=int, default=2)
    args = p.parse_args(argv)
    if args.n_fd % NUM_CLASSES or args.n_fd < 2 * NUM_CLASSES:
        p.error("--n-fd must be a multiple of 10, at least 20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "train.npz").is_file():
        print(f"CIFAR-10 not found at {args.data} (train.npz, test.npz); pass --data", file=sys.stderr)
        return 2
    G.start_run(args)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    from zoo.data import build_token_cache

    out = args.out
    for sub in ("tokenizers", "caches", "samples"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "samples").mkdir(parents=True, exist_ok=True)

    ref = G.reference(args)
    train_ds, test_ds = ref.train_ds, ref.test_ds
    train_x, test_x, test_y = ref.train_x, ref.test_x, ref.test_y
    per_class, other_mask = ref.per_class, ref.other_mask
    clf, clf_acc, ref_feats, fd_floor = ref.clf, ref.clf_acc, ref.ref_feats, ref.fd_floor
    timings["data + classifier"] = ref.data_seconds + ref.classifier_seconds
    G.log(f"classifier: test accuracy {clf_acc:.3f}, FD(train, test) {fd_floor:.2f}", start)

    # ---- tokenizer and caches
    t0 = time.perf_counter()
    tok, tok_loss = G.train_tokenizer("tokenbridge_tiny", train_x, args.tok_steps, args.tok_batch, args.seed)
    tok.fit_levels([G.as_float(chunk) for chunk in train_x[:1024].split(256)])
    saved = tok.save_pretrained(out / "tokenizers" / "tokenbridge_tiny")
    caches = {
        split: build_token_cache(
            tok, dataset, out / "caches" / split, views=views, tokenizer_source=str(saved), progress=False
        )
        for split, dataset, views in (("train", train_ds, "flip"), ("test", test_ds, "none"))
    }
    train_ids = G.cache_tensors(caches["train"])["ids"].long().flatten(0, 1)  # [2n, C, 8, 8]
    test_cache = G.cache_tensors(caches["test"])
    assert torch.equal(test_cache["labels"], test_y)
    test_ids = test_cache["ids"][:, 0].long()  # [n, C, 8, 8]
    levels = tok.codebook_sizes[0]
    timings["tokenizer + caches"] = time.perf_counter() - t0
    G.log(f"tokenbridge_tiny: {args.tok_steps} steps, last loss {tok_loss:.4f}; caches built", start)

    decode = lambda tokens: tok.decode(tokens)
    fd_labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    other_y = test_y[other_mask]
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    sets["tokenizer reconstructions (ceiling)"] = (decode_channel_ids(tok, test_ids[other_mask]), other_y)
    sets["shuffled-position tokens"] = (
        decode_channel_ids(tok, G.shuffle_positions(test_ids[other_mask], args.seed)),
        other_y,
    )
    train_labels = G.cache_tensors(caches["train"])["labels"].repeat_interleave(2)
    with torch.no_grad():
        values = torch.cat([tok.ptq.lookup(chunk) for chunk in train_ids.split(500)])
    means = torch.stack([values[train_labels == c].mean(0) for c in range(NUM_CLASSES)])
    sets["class-mean latents"] = (G.decode_latents(tok, means[fd_labels]), fd_labels)
    recon, real = sets["tokenizer reconstructions (ceiling)"][0], G.as_float(test_x[other_mask])

    # ---- generators
    gens, losses = {}, {}
    settings = G.recipe_settings("tokenbridge_gen_tiny")
    for key, model_args in (("channel AR", {}), ("independent channels", {"channel_ar": False})):
        t0 = time.perf_counter()
        gens[key], losses[key] = G.train_generator(
            "tokenbridge_gen_tiny", model_args, caches["train"], args.gen_steps, args.seed, settings
        )
        torch.set_num_threads(args.threads)
        timings[f"train {key}"] = time.perf_counter() - t0
        G.log(f"trained {key}: {args.gen_steps} steps, last loss {losses[key]:.4f}", start)

    # ---- likelihood
    t0 = time.perf_counter()
    nll = {}
    for key, gen in gens.items():
        total = sum(
            float(gen.log_prob(i, y, steps=args.sample_steps, seed=args.seed).neg().sum())
            for i, y in zip(test_ids.split(250), test_y.split(250), strict=True)
        )
        nll[key] = total / test_ids.numel()
    unigram = channel_unigram_nll(train_ids, test_ids, levels)
    timings["likelihood"] = time.perf_counter() - t0

    # ---- samples, FD, speed
    t0 = time.perf_counter()
    for key, gen in gens.items():
        for cfg in (1.0, args.cfg):
            images = G.generate(gen, decode, fd_labels, args.seed + 1000, cfg=cfg, steps=args.sample_steps)
            sets[f"{key} cfg {cfg:g}"] = (images, fd_labels)
    timings["sampling"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    speed = {
        cfg: G.samples_per_second(
            gens["channel AR"], args.speed_repeats, args.seed, cfg=cfg, steps=args.sample_steps
        )
        for cfg in (1.0, args.cfg)
    }
    timings["speed"] = time.perf_counter() - t0
    fd = {}
    for name, (images, labels) in sets.items():
        feats, pred = G.features_and_predictions(clf, images)
        fd[name] = (G.frechet_distance(feats, ref_feats), float((pred == labels).float().mean()))
        G.save_grid(images, labels, out / "samples" / f"{name.split(' (')[0].replace(' ', '_')}.png")

    # ---- table
    params = {key: sum(p.numel() for p in g.parameters()) for key, g in gens.items()}
    gen = gens["channel AR"]
    rows = [
        ("data: CIFAR-10 train items (flip views) / class-balanced test images", f"{len(train_x)} / {len(test_x)}"),
        ("tokenbridge_tiny: training steps x batch, last loss; test PSNR (dB)",
         f"{args.tok_steps} x {args.tok_batch}, {tok_loss:.4f}; {G.psnr(recon, real):.2f}"),
        ("ids per image (positions x channels, levels)", f"64 x {gen.channels} ({levels} levels, fitted ranges)"),
        ("feature CNN test accuracy", f"{clf_acc:.1%}"),
        ("parameters: channel AR / independent channels", f"{params['channel AR']:,} / {params['independent channels']:,}"),
        ("generator training steps (batch 64), last loss: AR / independent",
         f"{args.gen_steps}, {losses['channel AR']:.3f} / {losses['independent channels']:.3f}"),
    ]  # fmt: skip
    for label, value in (
        ("uniform over the levels", math.log(levels)),
        ("per-channel unigram (add-one, train cache)", unigram),
        ("independent-channel head", nll["independent channels"]),
        ("channel AR head (TokenBridge)", nll["channel AR"]),
    ):
        rows.append((f"test NLL {label}: nats/id", f"{value:.3f}"))
    for name, (value, acc) in fd.items():
        rows.append((f"FD / class accuracy: {name}", f"{value:.2f} / {acc:.1%}"))
    rows.append(("FD floor: real train images", f"{fd_floor:.2f}"))
    rows.append(("channel steps per image; MAR iterations", f"{64 * gen.channels}; {args.sample_steps}"))
    rows.append(
        (
            f"samples/s at batch {G.SPEED_BATCH}, cfg 1 / cfg {args.cfg:g}",
            f"{speed[1.0]:.1f} / {speed[args.cfg]:.1f}",
        )
    )
    total = time.perf_counter() - start
    rows.append(("torch threads; total time", f"{torch.get_num_threads()}; {total:.0f} s"))
    report = "\n\n".join(
        [
            G.table("TokenBridge generator: tokenbridge_gen_tiny over tokenbridge_tiny ids (CIFAR-10)", rows),
            (
                f"NLL: the sampler's exact likelihood under one seeded order ({args.sample_steps} iterations). "
                f"FD: against {args.n_fd} held-out test images ({per_class} per class). "
                f"Grids: {out / 'samples'}."
            ),
            f"command: {G.reproduce_command(args).replace('generators.py', 'tokenbridge_gen.py')}",
        ]
    )
    print("\n" + report, flush=True)
    (out / "results.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
