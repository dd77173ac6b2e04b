"""Benchmark the tiny generators end to end on CIFAR-10: tokenizers, token caches, training, likelihood,
Fréchet distance and sampling speed, each next to baselines that say what the number is worth.

Everything is trained inside the run on real images, so the numbers measure the code path a user takes
(``build_token_cache`` -> ``GeneratorModule`` -> ``sample`` -> ``decode``), not a downloaded checkpoint:

1. ``vq16_tiny`` and ``kl16_tiny`` train briefly (L1 + L2 + the quantizer's own losses). The KL latents
   are then rescaled to unit standard deviation (``scale_factor = 1 / std``, as LDM and MAR chose 0.2325),
   because a flow model assumes latents on the scale of its noise.
2. Token caches of the train items (``views="flip"``) and of a class-balanced test set.
3. ``nar_tiny``, a raster-order AR with as many blocks (``nar_tiny`` with ``order="raster"``) and
   ``xar_tiny`` train with ``GeneratorModule`` under a CPU ``lightning.Trainer``, with the recipes'
   optimiser settings; the EMA weights are evaluated.
4. Metrics. Likelihood: test NLL per token beside add-one-smoothed unigram and raster bigram models of the
   train cache and the raster AR. Fréchet distance (FD): in the 128-d penultimate features of a small CNN
   classifier trained here (there is no Inception network offline), between N generated images and N
   held-out test images, beside the real train images (the floor), the tokenizer's reconstructions of
   other test images (the generator's ceiling), shuffled-position tokens and per-class "mean" tokens
   (what no spatial or no sample diversity scores). The classifier's accuracy on the samples says
   whether the class comes through. Speed: samples per second at batch 50 after a warm-up.

Torch runs on ``--threads`` threads (1 by default: the machine is shared) and every seed is fixed.
Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/generators.py`` (about 15 minutes on
one core), or ``--quick`` for a smoke run of a few minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/images/cifar10"
NUM_CLASSES = 10
SPEED_BATCH = 50
QUICK = {
    "train_items": 1000,
    "n_fd": 100,
    "tok_steps": 30,
    "nar_steps": 60,
    "xar_steps": 60,
    "clf_epochs": 1,
    "speed_repeats": 1,
}
LOG2 = math.log(2)


def log(message: str, start: float) -> None:
    """A progress line with the elapsed time, flushed so that a log file can be polled."""
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------


def balanced_indices(dataset: Any, per_class: int) -> list[int]:
    """The first ``per_class`` items of every class, in dataset order: a test set whose classes weigh the
    same, so per-class baselines and samples (50 per class) compare with it."""
    picked: dict[int, list[int]] = {c: [] for c in range(NUM_CLASSES)}
    for i in range(len(dataset)):
        c = dataset.label(i)
        if len(picked[c]) < per_class:
            picked[c].append(i)
        if all(len(v) == per_class for v in picked.values()):
            break
    return sorted(i for v in picked.values() for i in v)


def load_images(dataset: Any, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded images as uint8 ``[N, 3, 32, 32]`` (compact; every stage reads them many times) and labels."""
    images = torch.stack([(dataset[i] * 255).round().to(torch.uint8) for i in indices])
    labels = torch.tensor([dataset.label(i) for i in indices], dtype=torch.long)
    return images, labels


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


def cache_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every shard of a token cache concatenated (``ids`` or ``latents`` ``[n, V, ...]``, ``labels``)."""
    from safetensors.torch import load_file

    index = json.loads((path / "index.json").read_text())
    shards = [load_file(path / entry["file"]) for entry in index["shards"]]
    return {key: torch.cat([s[key] for s in shards]) for key in shards[0]}


# --------------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------------


def train_tokenizer(
    name: str, images: torch.Tensor, steps: int, batch: int, seed: int
) -> tuple[torch.nn.Module, float]:
    """A plain AdamW loop on random flipped batches; returns the model in eval mode and its last loss."""
    import zoo

    torch.manual_seed(seed)
    tok = zoo.create(name).train()
    opt = torch.optim.AdamW(tok.parameters(), lr=5e-4)
    rng = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(images), (batch,), generator=rng)
        x = as_float(images[idx])
        flip = torch.rand(batch, generator=rng) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        out = tok(x)
        loss = F.l1_loss(out.recon, x) + F.mse_loss(out.recon, x) + sum(out.losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return tok.eval(), float(loss.detach())


@torch.no_grad()
def unit_scale_latents(tok: Any, images: torch.Tensor) -> tuple[float, float]:
    """Set a KL tokenizer's ``scale_factor`` so that its posterior means have unit std; (old std, new factor)."""
    z = torch.cat([tok.encode(as_float(chunk)).latents for chunk in images.split(256)])
    std = float(z.std())
    factor = tok.scale_factor / std
    tok.scale_factor = factor
    tok.update_config(scale_factor=factor)
    return std, factor


@torch.no_grad()
def decode_ids(tok: Any, ids: torch.Tensor) -> torch.Tensor:
    from zoo.tokens import Tokens

    out = [
        tok.decode(Tokens(ids=chunk.long(), grid=tuple(chunk.shape[1:]), codebook_sizes=tok.codebook_sizes))
        for chunk in ids.split(250)
    ]
    return torch.cat(out).clamp(0, 1)


@torch.no_grad()
def decode_latents(tok: Any, latents: torch.Tensor) -> torch.Tensor:
    from zoo.tokens import Tokens

    out = [
        tok.decode(Tokens(latents=chunk.float(), grid=tuple(chunk.shape[2:]))) for chunk in latents.split(250)
    ]
    return torch.cat(out).clamp(0, 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


# --------------------------------------------------------------------------------------------------------
# Feature network for the Fréchet distance
# --------------------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Three conv stages and a 128-d penultimate layer: a CIFAR feature space trainable on one core."""

    def __init__(self, width: int = 32, features: int = 128) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.body = nn.Sequential(stage(3, width), stage(width, 2 * width), stage(2 * width, 4 * width))
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * 16, features), nn.ReLU())
        self.head = nn.Linear(features, NUM_CLASSES)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.body((x - 0.5) / 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int, batch: int = 128
) -> SmallCNN:
    """Adam with a one-cycle cosine schedule and random flips and 2 px shifts."""
    torch.manual_seed(seed)
    model = SmallCNN()
    steps = epochs * (len(images) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=max(steps, 1))
    rng = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=rng)
        for k in range(len(images) // batch):
            idx = order[k * batch : (k + 1) * batch]
            x = as_float(images[idx])
            flip = torch.rand(len(x), generator=rng) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            dy, dx = torch.randint(-2, 3, (2,), generator=rng).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def features_and_predictions(model: SmallCNN, images: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Penultimate features (float64, for the covariances) and predicted classes of float images."""
    feats = torch.cat([model.embed(chunk) for chunk in images.float().split(250)])
    return feats.double().numpy(), model.head(feats).argmax(1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID's formula ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``; the trace of the matrix
    root is taken from the eigenvalues of the symmetric ``S_a^(1/2) S_b S_a^(1/2)``, which stays real
    and exact for the rank-deficient covariances of the class-mean baseline."""
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ sb @ root_a).clip(min=0)
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * np.sqrt(cross).sum())


# --------------------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------------------


def start_run(args: argparse.Namespace) -> None:
    """Threads, seeds and quiet Lightning logs, as every generator benchmark starts."""
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    import lightning  # noqa: F401 - configures its loggers on import; quieted below

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # device banners and tips
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")  # the EMA copy, on purpose


@dataclass
class Reference:
    """The benchmark's data and feature space: evenly spread train images, class-balanced test images
    whose first half per class (``ref_mask``) is the FD reference and second half (``other_mask``) feeds
    the tokenizer baselines, and the small CNN whose features the Fréchet distances are taken in."""

    train_full: Any
    test_full: Any
    train_ds: Subset
    test_ds: Subset
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    per_class: int
    ref_mask: torch.Tensor
    other_mask: torch.Tensor
    clf: SmallCNN
    clf_acc: float
    test_feats: np.ndarray
    ref_feats: np.ndarray
    fd_floor: float  # FD of as many real train images: the best a generator can reach
    data_seconds: float
    classifier_seconds: float


def reference(args: argparse.Namespace) -> Reference:
    """Load CIFAR-10 (``args.data``, ``train_items``, ``n_fd``) and train the feature CNN (``clf_epochs``)."""
    from zoo.data import CifarNpz

    t0 = time.perf_counter()
    train_full = CifarNpz(args.data, split="train")
    n_train = min(args.train_items, len(train_full))
    train_ds = Subset(train_full, [i * len(train_full) // n_train for i in range(n_train)])  # evenly spread
    test_full = CifarNpz(args.data, split="test")
    per_class = args.n_fd // NUM_CLASSES
    test_ds = Subset(test_full, balanced_indices(test_full, 2 * per_class))
    train_x, train_y = load_images(train_full, train_ds.indices)
    test_x, test_y = load_images(test_full, test_ds.indices)
    # Per class: the first half is the FD reference, the second feeds the tokenizer baselines.
    rank = torch.zeros(len(test_y), dtype=torch.long)
    for c in range(NUM_CLASSES):
        where = (test_y == c).nonzero()[:, 0]
        rank[where] = torch.arange(len(where))
    data_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf = train_classifier(train_x, train_y, args.clf_epochs, args.seed)
    test_feats, test_pred = features_and_predictions(clf, as_float(test_x))
    ref_mask = rank < per_class
    ref_feats = test_feats[ref_mask.numpy()]
    fd_train_idx = torch.cat([(train_y == c).nonzero()[:per_class, 0] for c in range(NUM_CLASSES)])
    train_feats, _ = features_and_predictions(clf, as_float(train_x[fd_train_idx]))
    return Reference(
        train_full=train_full,
        test_full=test_full,
        train_ds=train_ds,
        test_ds=test_ds,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        per_class=per_class,
        ref_mask=ref_mask,
        other_mask=rank >= per_class,
        clf=clf,
        clf_acc=float((test_pred == test_y).float().mean()),
        test_feats=test_feats,
        ref_feats=ref_feats,
        fd_floor=frechet_distance(train_feats, ref_feats),
        data_seconds=data_seconds,
        classifier_seconds=time.perf_counter() - t0,
    )


def train_generator(
    model: str, model_args: dict[str, Any], cache: Path, steps: int, seed: int, module_args: dict[str, Any]
) -> tuple[Any, float]:
    """``GeneratorModule`` + ``TokenCacheDataModule`` under a CPU Trainer; returns the EMA generator (eval)
    and the last training loss."""
    import lightning as L

    from zoo.data import TokenCacheDataModule
    from zoo.training import GeneratorModule

    L.seed_everything(seed, verbose=False)
    module = GeneratorModule(model, model_args=model_args, **module_args)
    data = TokenCacheDataModule(str(cache), batch_size=64, num_workers=0, seed=seed)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    return module.evaluated_generator().eval(), loss


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipe_settings(name: str) -> dict[str, Any]:
    """The optimiser, schedule, EMA and clipping of ``recipes/<name>.yaml``, so the benchmark trains
    exactly as the recipe does (sample grids off)."""
    import yaml

    settings = dict(yaml.safe_load((RECIPES / f"{name}.yaml").read_text())["model"]["init_args"])
    for key in ("model", "sample_every", "sample_cfg"):
        settings.pop(key, None)
    return settings


@torch.no_grad()
def generate(
    gen: Any, decode: Callable[[Any], torch.Tensor], labels: torch.Tensor, seed: int, **settings: Any
) -> torch.Tensor:
    """Decoded samples for ``labels`` in batches of 50, batch k seeded ``seed + k``."""
    out = []
    for k, chunk in enumerate(labels.split(SPEED_BATCH)):
        tokens = gen.sample(chunk, seed=seed + k, **settings)
        out.append(decode(tokens).float().clamp(0, 1))
    return torch.cat(out)


@torch.no_grad()
def samples_per_second(gen: Any, repeats: int, seed: int, **settings: Any) -> float:
    """Wall-clock throughput of ``sample`` at batch 50 (token sampling only), median of ``repeats`` after
    one warm-up batch."""
    labels = torch.arange(SPEED_BATCH) % NUM_CLASSES
    gen.sample(labels, seed=seed, **settings)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        gen.sample(labels, seed=seed + 1 + r, **settings)
        times.append(time.perf_counter() - t0)
    return SPEED_BATCH / float(np.median(times))


@torch.no_grad()
def nll_per_token(gen: Any, ids: torch.Tensor, labels: torch.Tensor) -> float:
    total = sum(
        float(gen.log_prob(i, y).neg().sum()) for i, y in zip(ids.split(250), labels.split(250), strict=True)
    )
    return total / ids[0].numel() / len(ids)


def ngram_nll(train_ids: torch.Tensor, test_ids: torch.Tensor, vocab: int) -> tuple[float, float]:
    """Test NLL (nats/token) of add-one-smoothed unigram and raster bigram models of the train ids
    (``[n, L]``); the bigram scores the first id of each image with the unigram."""
    uni = torch.bincount(train_ids.flatten(), minlength=vocab).double() + 1
    uni_logp = (uni / uni.sum()).log()
    pairs = train_ids[:, :-1] * vocab + train_ids[:, 1:]
    bi = torch.bincount(pairs.flatten(), minlength=vocab * vocab).double().view(vocab, vocab) + 1
    bi_logp = (bi / bi.sum(1, keepdim=True)).log()
    unigram = -float(uni_logp[test_ids].mean())
    bigram_total = -(uni_logp[test_ids[:, 0]].sum() + bi_logp[test_ids[:, :-1], test_ids[:, 1:]].sum())
    return unigram, float(bigram_total) / test_ids.numel()


def shuffle_positions(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Each item's grid positions permuted at random (``[n, *grid]`` ids or ``[n, C, *grid]`` latents):
    the same token histogram per image without its layout."""
    rng = torch.Generator().manual_seed(seed)
    flat = x.flatten(-2)
    perms = torch.stack([torch.randperm(flat.shape[-1], generator=rng) for _ in range(len(x))])
    if flat.ndim == 3:
        perms = perms[:, None].expand_as(flat)
    return flat.gather(-1, perms).view_as(x)


def class_mode_ids(ids: torch.Tensor, labels: torch.Tensor, vocab: int) -> torch.Tensor:
    """Per class and position the most frequent train id: ``[classes, *grid]``."""
    out = []
    for c in range(NUM_CLASSES):
        flat = ids[labels == c].flatten(1)
        counts = torch.zeros(flat.shape[1], vocab, dtype=torch.long)
        counts.scatter_add_(1, flat.T, torch.ones_like(flat.T))
        out.append(counts.argmax(1).view(ids.shape[1:]))
    return torch.stack(out)


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------


def table(title: str, rows: list[tuple[str, str]]) -> str:
    lines = [f"### {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def save_grid(images: torch.Tensor, labels: torch.Tensor, path: Path, per_class: int = 10) -> None:
    """One row per class, the first ``per_class`` images of each."""
    from zoo.io import write_image
    from zoo.training.samples import image_grid

    rows = [images[labels == c][:per_class] for c in range(NUM_CLASSES)]
    write_image(path, image_grid(torch.cat(rows), columns=per_class))


def reproduce_command(args: argparse.Namespace) -> str:
    """Every option spelled out, so the line reruns this configuration even if defaults change."""
    parts = [f"OMP_NUM_THREADS={args.threads}", "python", "benchmarks/generators.py"]
    for key, value in vars(args).items():
        if key == "quick":
            continue
        parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 folder with train.npz, test.npz")
    p.add_argument(
        "--out", type=Path, default=Path("/tmp/zoo-bench-generators"), help="work and output folder"
    )
    p.add_argument("--quick", action="store_true", help="smoke run (~3 min): " + str(QUICK))
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-items", type=int, default=5000, help="train images (evenly spread) for everything"
    )
    p.add_argument(
        "--n-fd",
        type=int,
        default=500,
        help="images per FD set (a multiple of 10); the test set is 2x this, class-balanced",
    )
    p.add_argument("--tok-steps", type=int, default=300, help="tokenizer training steps (each)")
    p.add_argument("--tok-batch", type=int, default=32)
    p.add_argument("--nar-steps", type=int, default=600, help="training steps of NAR and of the raster AR")
    p.add_argument("--xar-steps", type=int, default=600, help="training steps of xAR")
    p.add_argument("--raster-depth", type=int, default=3, help="raster AR blocks (NAR tiny has 2 + 1)")
    p.add_argument("--sample-steps", type=int, default=10, help="xAR sampling steps per cell")
    p.add_argument("--nar-cfg", type=float, default=2.0, help="guided scale for NAR and the raster AR")
    p.add_argument("--xar-cfg", type=float, default=1.5, help="guided scale for xAR")
    p.add_argument(
        "--clf-epochs", type=int, default=10, help="feature classifier epochs over the train items"
    )
    p.add_argument("--speed-repeats", type=int, default=3, help="timed batches per speed measurement")
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in QUICK.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, value)
    if args.n_fd % NUM_CLASSES or args.n_fd < 2 * NUM_CLASSES:
        p.error("--n-fd must be a multiple of 10, at least 20")
    return args


# --------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_run(args)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    from zoo.data import build_token_cache

    out = args.out
    for sub in ("tokenizers", "caches", "samples"):  # caches refuse other weights: start clean
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "samples").mkdir(parents=True, exist_ok=True)

    # ---- data and feature classifier
    ref = reference(args)
    train_ds, test_ds, train_x, test_x, test_y = (
        ref.train_ds,
        ref.test_ds,
        ref.train_x,
        ref.test_x,
        ref.test_y,
    )
    per_class, ref_mask, other_mask = ref.per_class, ref.ref_mask, ref.other_mask
    clf, clf_acc, ref_feats, fd_floor = ref.clf, ref.clf_acc, ref.ref_feats, ref.fd_floor
    log(f"data: {len(train_x)} train, {len(test_x)} test images", start)
    timings["data"], timings["classifier"] = ref.data_seconds, ref.classifier_seconds
    log(f"classifier: test accuracy {clf_acc:.3f}, FD(train, test) {fd_floor:.2f}", start)

    def fd_row(images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        feats, pred = features_and_predictions(clf, images)
        return frechet_distance(feats, ref_feats), float((pred == labels).float().mean())

    fd_labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    other_y = test_y[other_mask]
    setup_rows = [
        ("train images (evenly spread) / test images (class-balanced)", f"{len(train_x)} / {len(test_x)}"),
        ("FD set size (generated, reference)", f"{args.n_fd}, {args.n_fd} held-out test images"),
        ("feature CNN test accuracy (10 classes)", f"{clf_acc:.1%}"),
        ("FD real train vs test images (floor)", f"{fd_floor:.2f}"),
    ]

    # ---- tokenizers and caches
    toks: dict[str, Any] = {}
    caches: dict[str, dict[str, Path]] = {}
    for name in ("vq16_tiny", "kl16_tiny"):
        t0 = time.perf_counter()
        tok, loss = train_tokenizer(name, train_x, args.tok_steps, args.tok_batch, args.seed)
        scale_note = ""
        if name == "kl16_tiny":
            std, factor = unit_scale_latents(tok, train_x[:1024])
            scale_note = f"latent std {std:.3f} at scale_factor 0.2325 -> scale_factor {factor:.4f}"
        saved = tok.save_pretrained(out / "tokenizers" / name)
        caches[name] = {}
        for split, dataset, views in (("train", train_ds, "flip"), ("test", test_ds, "none")):
            caches[name][split] = build_token_cache(
                tok, dataset, out / "caches" / f"{name}_{split}", views=views,
                tokenizer_source=str(saved), progress=False,
            )  # fmt: skip
        toks[name] = tok
        timings[f"tokenizer + caches {name}"] = time.perf_counter() - t0
        note = f"; {scale_note}" if scale_note else ""
        log(f"{name}: {args.tok_steps} steps, last loss {loss:.4f}{note}; caches built", start)
        setup_rows.append(
            (f"{name}: training steps x batch, last loss", f"{args.tok_steps} x {args.tok_batch}, {loss:.4f}")
        )
        if scale_note:
            setup_rows.append(("kl16_tiny latents rescaled to unit std", scale_note))

    vq, kl = toks["vq16_tiny"], toks["kl16_tiny"]
    vq_train, vq_test = (
        cache_tensors(caches["vq16_tiny"]["train"]),
        cache_tensors(caches["vq16_tiny"]["test"]),
    )
    kl_train, kl_test = (
        cache_tensors(caches["kl16_tiny"]["train"]),
        cache_tensors(caches["kl16_tiny"]["test"]),
    )
    assert torch.equal(vq_test["labels"], test_y) and torch.equal(kl_test["labels"], test_y)
    test_ids = vq_test["ids"][:, 0].long()  # [n, 8, 8]
    test_lat = kl_test["latents"][:, 0].float()  # [n, 4, 8, 8]
    sets: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {"nar": {}, "xar": {}}
    sets["nar"]["recon"] = (decode_ids(vq, test_ids[other_mask]), other_y)
    sets["xar"]["recon"] = (decode_latents(kl, test_lat[other_mask]), other_y)
    sets["nar"]["shuffled"] = (decode_ids(vq, shuffle_positions(test_ids[other_mask], args.seed)), other_y)
    sets["xar"]["shuffled"] = (
        decode_latents(kl, shuffle_positions(test_lat[other_mask], args.seed)),
        other_y,
    )
    train_ids = vq_train["ids"].long()  # [n, 2, 8, 8]
    train_id_labels = vq_train["labels"].repeat_interleave(2)
    counts = torch.bincount(train_ids.flatten(), minlength=256).double()
    probs = counts[counts > 0] / counts.sum()
    perplexity = float(torch.exp(-(probs * probs.log()).sum()))
    setup_rows.append(
        ("vq16_tiny: codes used in the train cache / perplexity of their frequencies",
         f"{int((counts > 0).sum())} / {perplexity:.1f} of 256")
    )  # fmt: skip
    modes = class_mode_ids(train_ids.flatten(0, 1), train_id_labels, 256)
    sets["nar"]["class mode"] = (decode_ids(vq, modes[fd_labels]), fd_labels)
    lat = kl_train["latents"].float().flatten(0, 1)
    lat_labels = kl_train["labels"].repeat_interleave(2)
    means = torch.stack([lat[lat_labels == c].mean(0) for c in range(NUM_CLASSES)])
    sets["xar"]["class mean"] = (decode_latents(kl, means[fd_labels]), fd_labels)
    for family, tok_name in (("nar", "vq16_tiny"), ("xar", "kl16_tiny")):
        recon, real = sets[family]["recon"][0], as_float(test_x[other_mask])
        l1 = float((recon - real).abs().mean())
        setup_rows.append((f"{tok_name}: test PSNR (dB) / L1", f"{psnr(recon, real):.2f} / {l1:.4f}"))

    # ---- generators
    gens: dict[str, Any] = {}
    losses: dict[str, float] = {}
    plans = (
        ("nar", "nar_tiny", {}, caches["vq16_tiny"]["train"], args.nar_steps, recipe_settings("nar_tiny")),
        ("raster", "nar_tiny", {"order": "raster", "depth": args.raster_depth}, caches["vq16_tiny"]["train"],
         args.nar_steps, recipe_settings("nar_tiny")),
        ("xar", "xar_tiny", {}, caches["kl16_tiny"]["train"], args.xar_steps, recipe_settings("xar_tiny")),
    )  # fmt: skip
    for key, model, model_args, cache, steps, module_args in plans:
        t0 = time.perf_counter()
        gens[key], losses[key] = train_generator(model, model_args, cache, steps, args.seed, module_args)
        torch.set_num_threads(args.threads)  # whatever Lightning did, the rest stays on our threads
        timings[f"train {key}"] = time.perf_counter() - t0
        log(f"trained {key} ({model} {model_args}): {steps} steps, last loss {losses[key]:.4f}", start)
    assert torch.get_num_threads() == args.threads

    # ---- likelihood
    t0 = time.perf_counter()
    flat_train = train_ids.flatten(0, 1).flatten(1)
    unigram, bigram = ngram_nll(flat_train, test_ids.flatten(1), 256)
    nll = {key: nll_per_token(gens[key], test_ids, test_y) for key in ("nar", "raster")}
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        flow = float(gens["xar"].training_loss({"latents": test_lat, "labels": test_y}).loss)
    timings["likelihood"] = time.perf_counter() - t0

    # ---- samples
    t0 = time.perf_counter()
    decode_vq = lambda tokens: vq.decode(tokens)
    decode_kl = lambda tokens: kl.decode(tokens)
    sample_plans = (
        ("nar", "NAR", "nar", decode_vq, {}, args.nar_cfg),
        ("nar", "raster AR", "raster", decode_vq, {}, args.nar_cfg),
        ("xar", "xAR", "xar", decode_kl, {"steps": args.sample_steps}, args.xar_cfg),
    )
    for family, label, key, decode, settings, guided in sample_plans:
        for cfg in (1.0, guided):
            images = generate(gens[key], decode, fd_labels, args.seed + 1000, cfg=cfg, **settings)
            sets[family][f"{label} cfg {cfg:g}"] = (images, fd_labels)
    timings["sampling"] = time.perf_counter() - t0

    # ---- speed
    t0 = time.perf_counter()
    speed: dict[str, float] = {}
    for _, label, key, _, settings, guided in sample_plans:
        for cfg in (1.0, guided):
            speed[f"{label} cfg {cfg:g}"] = samples_per_second(
                gens[key], args.speed_repeats, args.seed, cfg=cfg, **settings
            )
    timings["speed"] = time.perf_counter() - t0

    # ---- FD, accuracy, grids
    fd: dict[str, dict[str, tuple[float, float]]] = {}
    for family, entries in sets.items():
        fd[family] = {}
        for name, (images, labels) in entries.items():
            fd[family][name] = fd_row(images, labels)
            save_grid(images, labels, out / "samples" / f"{family}_{name.replace(' ', '_')}.png")
    save_grid(as_float(test_x[ref_mask]), test_y[ref_mask], out / "samples" / "real_test.png")

    # ---- tables
    params = {key: sum(p.numel() for p in g.parameters()) for key, g in gens.items()}
    nar_rows = [
        ("parameters NAR / raster AR", f"{params['nar']:,} / {params['raster']:,} ({args.raster_depth} blocks)"),
        ("training steps (batch 64), last train loss NAR / raster",
         f"{args.nar_steps}, {losses['nar']:.3f} / {losses['raster']:.3f}"),
    ]  # fmt: skip
    for label, value in (
        ("unigram (add-one, train cache)", unigram),
        ("bigram, raster (add-one, train cache)", bigram),
        ("raster AR", nll["raster"]),
        ("NAR", nll["nar"]),
    ):
        nar_rows.append((f"test NLL {label}: nats/token (bits/token)", f"{value:.3f} ({value / LOG2:.3f})"))
    nar_rows.append(("uniform over 256 codes: nats/token (bits/token)", f"{math.log(256):.3f} (8.000)"))
    xar_rows = [
        ("parameters", f"{params['xar']:,}"),
        ("training steps (batch 64), last train loss", f"{args.xar_steps}, {losses['xar']:.3f}"),
        ("test flow-matching loss (seeded, posterior means)", f"{flow:.4f}"),
    ]
    for family, rows in (("nar", nar_rows), ("xar", xar_rows)):
        for name, (value, acc) in fd[family].items():
            rows.append((f"FD / class accuracy: {name}", f"{value:.2f} / {acc:.1%}"))
    nar_rows.append(("FD floor: real train images", f"{fd_floor:.2f}"))
    xar_rows.append(("FD floor: real train images", f"{fd_floor:.2f}"))
    for _, label, key, _, settings, guided in sample_plans:
        rows = xar_rows if key == "xar" else nar_rows
        passes = gens[key].forward_passes(settings.get("steps"))
        extra = f" ({args.sample_steps} steps x 4 cells)" if key == "xar" else ""
        rows.append((f"{label}: forward passes per image{extra}", str(passes)))
        rows.append(
            (f"{label}: samples/s at batch {SPEED_BATCH}, cfg 1 / cfg {guided:g}",
             f"{speed[f'{label} cfg 1']:.1f} / {speed[f'{label} cfg {guided:g}']:.1f}")
        )  # fmt: skip
    total = time.perf_counter() - start
    setup_rows.append(("torch threads", str(torch.get_num_threads())))
    setup_rows += [(f"time: {k}", f"{v:.0f} s") for k, v in timings.items()]
    setup_rows.append(("time: total", f"{total:.0f} s"))
    command = reproduce_command(args)
    report = "\n\n".join(
        [
            table("Setup: CIFAR-10, tokenizers, feature CNN", setup_rows),
            table("NAR family: nar_tiny over vq16_tiny ids (8x8, 256 codes)", nar_rows),
            table("xAR family: xar_tiny over kl16_tiny latents (8x8x4)", xar_rows),
            (
                "FD: Fréchet distance in the feature CNN's 128-d penultimate space against "
                f"{args.n_fd} held-out test images ({per_class} per class); class accuracy: the CNN's "
                "prediction equals the conditioning (or true) label. Sample grids: "
                f"{out / 'samples'} (one row per class)."
            ),
            f"command: {command}",
        ]
    )
    print("\n" + report, flush=True)
    (out / "results.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
