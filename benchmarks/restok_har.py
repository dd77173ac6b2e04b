"""Benchmark ResTok's HAR generator at its tiny size on CIFAR-10, beside a plain next-token GPT of the same
size over the same ids, and baselines that say what each number is worth.

The run trains everything it measures (``restok_tiny`` -> token caches -> ``GeneratorModule`` with the
``restok_har_tiny`` recipe's settings -> ``sample`` -> ``decode``) and reuses the helpers of
``benchmarks/generators.py`` (data, feature CNN, Fréchet distance, training, speed):

- likelihood: test NLL per token of HAR (5 passes) and of the same network with ``ar_tokens=16`` (a plain
  next-token GPT, 16 passes), beside add-one unigram and bigram models of the train ids;
- Fréchet distance (FD) in the 128-d features of a small CNN trained here, against held-out test
  images, for samples at cfg 1 and cfg 2, beside the tokenizer's reconstructions (the ceiling),
  shuffled-position tokens (no layout) and per-class mode tokens (no diversity); and the CNN's class
  accuracy on each set;
- forward passes and samples per second at batch 50.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/restok_har.py`` (about 4 minutes of
CPU on one thread; 7 minutes on a busy shared 2-core machine). The last lines are a markdown table and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import generators as bench  # benchmarks/generators.py: the shared helpers
import torch

NUM_CLASSES = bench.NUM_CLASSES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=bench.DEFAULT_DATA, help="CIFAR-10 folder (train.npz, test.npz)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("/tmp/zoo-bench-restok-har"), help="work and output folder"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-items", type=int, default=2000, help="train images (evenly spread)")
    p.add_argument("--n-fd", type=int, default=300, help="images per FD set (a multiple of 10)")
    p.add_argument("--tok-steps", type=int, default=600, help="restok_tiny training steps")
    p.add_argument("--tok-batch", type=int, default=32)
    p.add_argument("--gen-steps", type=int, default=400, help="training steps of HAR and of the plain AR")
    p.add_argument("--cfg", type=float, default=2.0, help="guided scale")
    p.add_argument("--clf-epochs", type=int, default=5, help="feature CNN epochs over the train items")
    p.add_argument("--speed-repeats", type=int, default=2, help="timed batches per speed measurement")
    args = p.parse_args(argv)
    if args.n_fd % NUM_CLASSES or args.n_fd < 2 * NUM_CLASSES:
        p.error("--n-fd must be a multiple of 10, at least 20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench.start_run(args)
    start = time.perf_counter()
    from zoo.data import build_token_cache

    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    (out / "samples").mkdir(parents=True)

    # ---- data and feature CNN
    ref = bench.reference(args)
    train_ds, test_ds = ref.train_ds, ref.test_ds
    train_x, test_x, test_y = ref.train_x, ref.test_x, ref.test_y
    per_class, other_mask = ref.per_class, ref.other_mask
    clf, clf_acc, ref_feats, fd_floor = ref.clf, ref.clf_acc, ref.ref_feats, ref.fd_floor
    bench.log(f"data + feature CNN: accuracy {clf_acc:.3f}, FD(train, test) {fd_floor:.2f}", start)

    def fd_row(images: torch.Tensor, labels: torch.Tensor) -> str:
        feats, pred = bench.features_and_predictions(clf, images)
        fd = bench.frechet_distance(feats, ref_feats)
        return f"{fd:.2f} / {float((pred == labels).float().mean()):.1%}"

    # ---- tokenizer and caches
    tok, tok_loss = bench.train_tokenizer("restok_tiny", train_x, args.tok_steps, args.tok_batch, args.seed)
    saved = tok.save_pretrained(out / "restok_tiny")
    caches = {
        split: build_token_cache(
            tok, ds, out / f"cache_{split}", views=views, tokenizer_source=str(saved), progress=False
        )
        for split, ds, views in (("train", train_ds, "flip"), ("test", test_ds, "none"))
    }
    train_ids = bench.cache_tensors(caches["train"])["ids"].long().flatten(0, 1)  # [2n, 16]
    train_id_labels = bench.cache_tensors(caches["train"])["labels"].repeat_interleave(2)
    test_ids = bench.cache_tensors(caches["test"])["ids"][:, 0].long()  # [n, 16]
    vocab = tok.codebook_sizes[0]
    decode = lambda ids: bench.decode_ids(tok, ids)
    recon = decode(test_ids[other_mask])
    psnr = bench.psnr(recon, bench.as_float(test_x[other_mask]))
    bench.log(
        f"restok_tiny: {args.tok_steps} steps, last loss {tok_loss:.4f}, test PSNR {psnr:.2f} dB", start
    )

    # ---- generators: HAR and the same network as a plain next-token GPT
    settings = bench.recipe_settings("restok_har_tiny")
    gens, losses = {}, {}
    for key, model_args in (("HAR", {}), ("plain AR", {"ar_tokens": 16})):
        gens[key], losses[key] = bench.train_generator(
            "restok_har_tiny", model_args, caches["train"], args.gen_steps, args.seed, settings
        )
        torch.set_num_threads(args.threads)
        bench.log(f"trained {key}: {args.gen_steps} steps, last loss {losses[key]:.4f}", start)

    # ---- likelihood
    unigram, bigram = bench.ngram_nll(train_ids, test_ids, vocab)
    nll = {key: bench.nll_per_token(g, test_ids, test_y) for key, g in gens.items()}

    # ---- FD sets
    fd_labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    other_ids = test_ids[other_mask]
    shuffled = bench.shuffle_positions(other_ids.view(-1, 4, 4), args.seed).view_as(other_ids)
    modes = bench.class_mode_ids(train_ids, train_id_labels, vocab)
    counts = torch.bincount(train_ids.flatten(), minlength=vocab).double()
    used = counts[counts > 0] / counts.sum()
    usage = f"{int((counts > 0).sum())} / {float(torch.exp(-(used * used.log()).sum())):.1f} of {vocab}"
    rows = [
        ("train images / FD set size", f"{len(train_x)} / {args.n_fd} vs {args.n_fd} held-out test images"),
        ("feature CNN test accuracy", f"{clf_acc:.1%}"),
        ("restok_tiny: steps x batch, test PSNR", f"{args.tok_steps} x {args.tok_batch}, {psnr:.2f} dB"),
        ("restok_tiny: codes used in the train cache / perplexity of their frequencies", usage),
        ("parameters HAR / plain AR", " / ".join(f"{g.num_parameters():,}" for g in gens.values())),
        ("training steps (batch 64), last loss HAR / plain AR",
         f"{args.gen_steps}, {losses['HAR']:.3f} / {losses['plain AR']:.3f}"),
    ]  # fmt: skip
    for label, value in (
        ("uniform", math.log(vocab)),
        ("unigram (add-one, train ids)", unigram),
        ("bigram, previous id (add-one)", bigram),
        ("plain AR", nll["plain AR"]),
        ("HAR", nll["HAR"]),
    ):
        rows.append(
            (f"test NLL {label}: nats/token (bits/token)", f"{value:.3f} ({value / math.log(2):.3f})")
        )
    rows.append(("FD / class accuracy: real train images (floor)", f"{fd_floor:.2f} / -"))
    rows.append(
        ("FD / class accuracy: restok_tiny reconstructions (ceiling)", fd_row(recon, test_y[other_mask]))
    )
    rows.append(
        ("FD / class accuracy: shuffled-position tokens", fd_row(decode(shuffled), test_y[other_mask]))
    )
    rows.append(("FD / class accuracy: class-mode tokens", fd_row(decode(modes[fd_labels]), fd_labels)))
    for key, g in gens.items():
        for cfg in (1.0, args.cfg):
            images = bench.generate(g, lambda t: decode(t.ids), fd_labels, args.seed + 1000, cfg=cfg)
            rows.append((f"FD / class accuracy: {key} cfg {cfg:g}", fd_row(images, fd_labels)))
            bench.save_grid(images, fd_labels, out / "samples" / f"{key.replace(' ', '_')}_cfg{cfg:g}.png")
    bench.log("likelihood and FD done", start)

    # ---- speed
    for key, g in gens.items():
        speeds = [bench.samples_per_second(g, args.speed_repeats, args.seed, cfg=c) for c in (1.0, args.cfg)]
        rows.append((f"{key}: forward passes per image", str(g.forward_passes())))
        rows.append(
            (f"{key}: samples/s at batch {bench.SPEED_BATCH} ({args.threads} threads), cfg 1 / cfg {args.cfg:g}",
             f"{speeds[0]:.1f} / {speeds[1]:.1f}")
        )  # fmt: skip
    rows.append(
        (
            "time: total wall / process CPU",
            f"{time.perf_counter() - start:.0f} s / {time.process_time():.0f} s",
        )
    )
    command = shlex.join(
        [f"OMP_NUM_THREADS={args.threads}", "python", "benchmarks/restok_har.py"]
        + [part for k, v in vars(args).items() for part in (f"--{k.replace('_', '-')}", str(v))]
    )
    report = "\n\n".join(
        [bench.table("restok_har_tiny over restok_tiny ids (16 ids, levels 1, 1, 2, 4, 8), CIFAR-10", rows),
         f"command: {command}"]
    )  # fmt: skip
    print("\n" + report, flush=True)
    (out / "results.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
