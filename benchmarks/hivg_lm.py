"""Benchmark the tiny HiVG LM on real icons: held-out likelihood against byte-level BPE LMs of the same
size, and how many of its samples are valid SVG.

Everything is trained inside the run, on 2 CPU cores, in a few minutes:

1. The icons (Material Design Icons by default) split into train and held-out icons as
   ``SVGTokenDataModule`` splits them (name hash, ``--val-fraction``).
2. Tokenizers: HiVG (``hivg``) with ``--segments`` segment merges learned on the training icons; a
   byte-level BPE (the ``tokenizers`` package) with the same total vocabulary, trained on the same
   training SVG texts as they are stored ("BPE, raw SVG"); and a second BPE of that size trained on the
   HiVG-normalised texts, the SVG that HiVG's ids decode to ("BPE, normalised SVG"). HiVG drops ids,
   names and styling it cannot represent and quantises coordinates onto its canvas, so the raw-text BPE
   models more information than HiVG does; the normalised BPE models exactly the same documents as
   HiVG, and is the like-for-like comparison.
3. One ``hivg_lm_tiny`` network per tokenizer (same width, depth and context; only the embedding and
   head follow the vocabulary), trained for the same steps on the same icons in the same order (the
   training icons that fit ``--max-length`` ids under every tokenizer), with the recipe's optimiser
   settings (AdamW 3e-3, betas 0.9/0.95, weight decay 0.05 on matrices, warmup then cosine to 0.1,
   clipping at 1). No length curriculum, so the three differ only in their tokens.
4. Likelihood: exact NLL in nats per icon (EOS included) on the held-out icons that fit every
   tokenizer: a total over the icon, so it compares across vocabularies; bits per icon and nats per
   token beside it.
5. Validity: ``--samples`` icons drawn from each LM (``--temperature``, ``--top-k``; seeded). A sample is
   valid when it ended at EOS within ``--sample-length`` ids, ``zoo.io.parse_svg`` accepts its text,
   it passes the grammar check, and ``resvg_py`` renders it (where installed). The grammar check of an
   HiVG sample is ``tok.decode(..., errors="strict")`` succeeding (every command complete, elements
   balanced); of a BPE sample, every path's ``d`` lexing by the SVG grammar into whole parameter groups
   (the same demand on text). "draws" counts valid samples with at least one shape.

Run from the repository root: ``python benchmarks/hivg_lm.py`` (about 3-4 minutes on 2 cores; one torch
thread by default, as the machine is shared).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/svg/mdi/icons.jsonl"
SHAPES = ("path", "rect", "circle", "ellipse", "line", "polyline", "polygon")


def log(message: str, start: float) -> None:
    """A progress line with the elapsed time, flushed so that a log file can be polled."""
    print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------------------------------------
# Tokenizers


class BPE:
    """A byte-level BPE from the ``tokenizers`` package, trained on SVG texts, with `encode`/`decode` on id lists."""

    def __init__(self, texts: Sequence[str], vocab_size: int) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        self.tokenizer = Tokenizer(models.BPE())
        # No word-splitting regex: merges may cross spaces, as SVG path data needs, so the vocabulary
        # reaches the asked size (split at spaces, normalised SVG runs out of merges near 700).
        self.tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        self.tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        self.tokenizer.train_from_iterator(texts, trainer)
        self.vocab_size = self.tokenizer.get_vocab_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))


# --------------------------------------------------------------------------------------------------------
# Training and scoring


def batch_plan(
    sizes: Sequence[int], steps: int, batch_size: int, seed: int, bucket: int = 8
) -> list[list[int]]:
    """Index batches for every model alike: ``bucket`` batches' worth of shuffled icons at a time, sorted by
    ``sizes`` (the raw text length, neutral to every tokenizer) and cut into batches, so a batch pads
    little; the batches are then shuffled within the bucket."""
    g = torch.Generator().manual_seed(seed)
    plan: list[list[int]] = []
    order: list[int] = []
    while len(plan) < steps:
        if len(order) < bucket * batch_size:
            order += torch.randperm(len(sizes), generator=g).tolist()
        take, order = order[: bucket * batch_size], order[bucket * batch_size :]
        take.sort(key=lambda i: sizes[i])
        chunk = [take[k : k + batch_size] for k in range(0, len(take), batch_size)]
        plan += [chunk[k] for k in torch.randperm(len(chunk), generator=g).tolist()]
    return plan[:steps]


def train_lm(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    plan: Sequence[Sequence[int]],
    *,
    lr: float,
    warmup: int,
) -> list[float]:
    """The recipe's optimiser over the batches of ``plan`` (the same icons in the same order for every model)."""
    from zoo.data.svg_tokens import TokenSequences, collate_sequences
    from zoo.training.schedule import lr_factor

    steps = len(plan)
    data = TokenSequences(sequences, [len(s) for s in sequences])
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.05},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    factor = lambda step: lr_factor("cosine", step, warmup_steps=warmup, total_steps=steps, min_ratio=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    losses = []
    model.train()
    for index in plan:
        loss = model.training_loss(collate_sequences([data[i] for i in index])).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def nll_per_icon(model: Any, sequences: Sequence[Sequence[int]], batch: int = 16) -> torch.Tensor:
    """Exact ``-log p(ids, EOS)`` in nats of each sequence, in batches of similar length."""
    from zoo.models.generators.hivg_lm import pad_sequences

    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out = torch.empty(len(sequences))
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        out[chunk] = -model.log_prob(pad_sequences([sequences[i] for i in chunk]))
    return out


def path_grammar(root: Any) -> bool:
    """Every ``d`` of a parsed SVG lexes by the SVG grammar and gives each command whole parameter groups
    (``L 1 2 3 4`` repeats ``L``, which SVG allows; ``L 1 2 3`` is incomplete)."""
    from zoo.errors import MediaError
    from zoo.models.svg.pathdata import lex_path
    from zoo.models.svg.vocab import COMMANDS

    params = {c.letter: c.params for c in COMMANDS}
    for el in root.iter():
        d = el.get("d")
        if d is None:
            continue
        try:
            commands = lex_path(d)
        except MediaError:
            return False
        for letter, numbers in commands:
            count = params[letter.upper()]
            if (count == 0 and numbers) or (count and (not numbers or len(numbers) % count)):
                return False
    return True


def svg_checks(text: str) -> tuple[Any, bool, bool]:
    """(parsed root or None, renders, draws a shape) for SVG text; without resvg_py, renders = parses."""
    from zoo.errors import MediaError
    from zoo.io import parse_svg

    try:
        root = parse_svg(text)
    except MediaError:
        return None, False, False
    draws = any(el.tag.rsplit("}", 1)[-1] in SHAPES for el in root.iter())
    try:
        import resvg_py
    except ImportError:
        return root, True, draws
    try:
        resvg_py.svg_to_bytes(svg_string=text, skip_system_fonts=True)
    except (ValueError, RuntimeError):
        return root, False, draws
    return root, True, draws


def validity(
    samples: Sequence[Sequence[int]],
    ended: Sequence[bool],
    decode: Callable[[Sequence[int]], tuple[str, bool | None]],
) -> dict[str, float]:
    """Shares of samples that ended at EOS, parse, pass the grammar check, render, are valid (all four: a
    sample cut at the length limit is not) and valid with a drawn shape. ``decode`` gives the text and
    its own grammar verdict (HiVG's strict decode), or None to check the text's path data."""
    counts = dict.fromkeys(("ended", "parses", "grammar", "renders", "valid", "draws"), 0)
    for ids, done in zip(samples, ended, strict=True):
        text, grammar = decode(ids)
        root, renders, draws = svg_checks(text)
        parses = root is not None
        grammar = bool(grammar) if grammar is not None else parses and path_grammar(root)
        valid = bool(done) and parses and grammar and renders
        for key, value in (("ended", done), ("parses", parses), ("grammar", grammar), ("renders", renders)):
            counts[key] += bool(value)
        counts["valid"] += valid
        counts["draws"] += valid and draws
    return {k: v / max(len(samples), 1) for k, v in counts.items()}


# --------------------------------------------------------------------------------------------------------
# Main


def reproduce_command(args: argparse.Namespace) -> str:
    parts = ["python", "benchmarks/hivg_lm.py"]
    for key, value in vars(args).items():
        if key == "data" and Path(value) == DEFAULT_DATA:
            continue
        parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="SVG folder or .jsonl with an 'svg' field")
    p.add_argument("--segments", type=int, default=500, help="HiVG segment merges (0: atomic ids only)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--max-length", type=int, default=1024, help="ids per icon, under every tokenizer")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--sample-length", type=int, default=512, help="ids per sample at most (cut: invalid)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import zoo
    from zoo.data import SVGCorpus
    from zoo.data.svg_tokens import tokenize_texts

    train_texts = SVGCorpus(args.data, "train", args.val_fraction).texts
    val_texts = SVGCorpus(args.data, "val", args.val_fraction).texts
    log(f"{len(train_texts)} training and {len(val_texts)} held-out icons from {args.data}", start)

    tok = zoo.create("hivg")
    if args.segments:
        stats = tok.train_segments(train_texts, num_merges=args.segments)
        log(f"HiVG: {stats['segments']} segments ({stats['compression']:.2f}x shorter sequences)", start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parts HiVG cannot represent; counted in the report below
        hivg_train, _, train_failed = tokenize_texts(tok, train_texts)
        hivg_val, _, val_failed = tokenize_texts(tok, val_texts)
        normalised_train = [tok.decode(torch.tensor(s))[0] if s else "" for s in hivg_train]
    vocab = tok.vocab_size
    log(f"HiVG ids: vocabulary {vocab}; {len(train_failed) + len(val_failed)} icons failed to encode", start)
    bpe_raw = BPE(train_texts, vocab)
    bpe_norm = BPE([t for t in normalised_train if t], vocab)
    log(f"BPE vocabularies: raw {bpe_raw.vocab_size}, normalised {bpe_norm.vocab_size}", start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        normalised_val = [tok.decode(torch.tensor(s))[0] if s else "" for s in hivg_val]
    data = {
        "HiVG": (hivg_train, hivg_val),
        "BPE, raw SVG": (bpe_raw.encode(train_texts), bpe_raw.encode(val_texts)),
        "BPE, normalised SVG": (bpe_norm.encode(normalised_train), bpe_norm.encode(normalised_val)),
    }
    fits = lambda split: [
        i
        for i in range(len(data["HiVG"][split]))
        if all(0 < len(seqs[split][i]) <= args.max_length for seqs in data.values())
    ]
    train_keep, val_keep = fits(0), fits(1)
    log(
        f"icons that fit {args.max_length} ids under every tokenizer: {len(train_keep)}/{len(train_texts)} train, "
        f"{len(val_keep)}/{len(val_texts)} held out",
        start,
    )

    def hivg_text(ids: Sequence[int]) -> tuple[str, bool]:
        """The strict decode and True, or the repaired decode and False."""
        row = torch.tensor(list(ids), dtype=torch.long)[None]
        try:
            return tok.decode(row, errors="strict")[0], True
        except ValueError:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return tok.decode(row, errors="repair")[0], False

    decoders: dict[str, Callable[[Sequence[int]], tuple[str, bool | None]]] = {
        "HiVG": hivg_text,
        "BPE, raw SVG": lambda ids: (bpe_raw.decode(ids), None),
        "BPE, normalised SVG": lambda ids: (bpe_norm.decode(ids), None),
    }
    sizes = {"HiVG": vocab, "BPE, raw SVG": bpe_raw.vocab_size, "BPE, normalised SVG": bpe_norm.vocab_size}

    plan = batch_plan([len(train_texts[i]) for i in train_keep], args.steps, args.batch_size, args.seed)
    rows = []
    for name, (train_seqs, val_seqs) in data.items():
        torch.manual_seed(args.seed)
        model = zoo.create("hivg_lm_tiny", tokenizer=None, vocab_size=sizes[name], max_length=args.max_length)
        t0 = time.process_time()  # CPU time: wall time says more about the machine's load than the model
        losses = train_lm(model, [train_seqs[i] for i in train_keep], plan, lr=args.lr, warmup=args.warmup)
        seconds = time.process_time() - t0
        held_out = [val_seqs[i] for i in val_keep]
        nll = nll_per_icon(model, held_out)
        tokens = sum(len(s) + 1 for s in held_out)
        drawn = model.sample(
            n=args.samples,
            seed=args.seed,
            temperature=args.temperature,
            top_k=args.top_k,
            max_length=args.sample_length,
        )
        samples = [drawn.ids[b, :n].tolist() for b, n in enumerate(drawn.lengths.tolist())]
        valid = validity(samples, drawn.meta["ended"], decoders[name])
        log(
            f"{name}: loss {losses[0]:.2f} -> {sum(losses[-10:]) / 10:.2f} in {seconds:.0f}s; "
            f"NLL {nll.mean():.1f} nats/icon; valid samples {valid['valid']:.0%}",
            start,
        )
        rows.append(
            {
                "name": name,
                "vocab": sizes[name],
                "params": model.num_parameters(),
                "ids": sum(len(s) for s in held_out) / len(held_out),
                "nll": float(nll.mean()),
                "bits": float(nll.mean()) / math.log(2),
                "per_token": float(nll.sum()) / tokens,
                "seconds": seconds,
                **valid,
            }
        )

    resvg = "resvg_py" if _has_resvg() else "no renderer installed (renders = parses)"
    lines = [
        (
            f"## HiVG LM (hivg_lm_tiny) vs byte-level BPE LMs: {args.steps} steps x {args.batch_size} icons, "
            f"{len(train_keep)} training icons, {len(val_keep)} held-out icons ({Path(args.data).parent.name})"
        ),
        "",
        (
            "| tokens | vocabulary | parameters | ids per held-out icon | NLL nats/icon | bits/icon | nats/id "
            "| train CPU s | samples ended | parse | grammar | render | valid | valid, draws |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['vocab']:,} | {r['params']:,} | {r['ids']:.0f} | {r['nll']:.1f} | {r['bits']:.0f} "
            f"| {r['per_token']:.3f} | {r['seconds']:.0f} | {r['ended']:.0%} | {r['parses']:.0%} | {r['grammar']:.0%} "
            f"| {r['renders']:.0%} | {r['valid']:.0%} | {r['draws']:.0%} |"
        )
    lines += [
        "",
        (
            f"{args.samples} samples per model at temperature {args.temperature}, top-k {args.top_k or 'off'}, "
            f"seed {args.seed}, at most {args.sample_length} ids; whole run {time.perf_counter() - start:.0f} s wall, "
            f"{time.process_time():.0f} s CPU; rendering: {resvg}. Grammar: HiVG's "
            "strict decode (complete commands, balanced elements), for BPE text every path's data lexes with whole "
            "parameter groups. Valid: ended at EOS, parses, grammar and renders. HiVG segments: "
            f"{args.segments} merges learned on the training icons."
        ),
        "",
        "```bash",
        reproduce_command(args),
        "```",
    ]
    print("\n" + "\n".join(lines), flush=True)
    return 0


def _has_resvg() -> bool:
    try:
        import resvg_py  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
