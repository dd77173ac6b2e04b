"""HiVG on real icon sets: round-trip fidelity and sequence length against raw bytes and a byte-level BPE.

Segments are learned on the training icons of both sets (everything but the last ``--eval`` of each);
the held-out icons are measured:

- fidelity: the original (placed on the canvas as `normalize_svg` places it) and ``decode(encode(x))`` are
  rendered with resvg at 224 and 512 px on white; pixel IoU of the inked pixels, PSNR, and the fraction
  of icons whose ink lies within 1 px of the original's both ways at 224 px (the quantisation step);
- length per icon: UTF-8 bytes of the SVG text, a byte-level BPE (``tokenizers``) with the same total
  vocabulary as HiVG-with-segments trained on the same training texts (on the raw and on the normalised
  text), HiVG atomic ids, and atomic + segment ids; plus the same counts over geometry alone.

    .venv/bin/python benchmarks/hivg_tokenizer.py [--data ../shared/data/svg] [--merges 500] [--eval 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import maximum_filter

import zoo
from zoo.models.svg.hivg import SVGRepairWarning
from zoo.models.svg.normalize import normalize_svg
from zoo.models.svg.render import ink_iou, on_canvas, psnr, render_svg

SETS = ("mdi", "tabler_outline")


def within_one_pixel(a: np.ndarray, b: np.ndarray) -> bool:
    ink_a, ink_b = a.mean(-1) < 0.5, b.mean(-1) < 0.5
    grow_a, grow_b = maximum_filter(ink_a, size=3), maximum_filter(ink_b, size=3)
    return bool(np.all(grow_a >= ink_b) and np.all(grow_b >= ink_a))


def byte_bpe(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(texts, trainer)
    return bpe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "svg")
    )
    parser.add_argument("--merges", type=int, default=500)
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--eval", type=int, default=300, help="held-out icons per set")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not all((data / s / "icons.jsonl").is_file() for s in SETS):
        print(f"icon sets not found under {data} (expected {', '.join(SETS)}/icons.jsonl)")
        return 0
    warnings.simplefilter("ignore", SVGRepairWarning)
    train, held = [], {}
    for name in SETS:
        with open(data / name / "icons.jsonl", encoding="utf-8") as f:
            texts = [json.loads(line)["svg"] for line in f if line.strip()]
        train += texts[: -args.eval]
        held[name] = texts[-args.eval :]
    tok = zoo.create("hivg")
    start = time.perf_counter()
    stats = tok.train_segments(train, num_merges=args.merges, min_frequency=args.min_frequency)
    fit_seconds = time.perf_counter() - start
    normalized_train = [normalize_svg(t).text for t in train]
    raw_bpe = byte_bpe(train, tok.vocab_size)
    norm_bpe = byte_bpe(normalized_train, tok.vocab_size)

    print(f"# HiVG (config_224) on {len(train):,} training icons, {args.eval} held out per set\n")
    print(
        f"Segments: {stats['segments']} learned in {fit_seconds:.1f} s ({stats['icons']:,} icons, "
        f"{stats['skipped']} skipped); training-set geometry {stats['geometry_compression']:.2f}x shorter, "
        f"all ids {stats['compression']:.2f}x.\n"
    )
    print("| set | IoU 224 | PSNR 224 (dB) | IoU 512 | PSNR 512 (dB) | within 1 px | bytes | byte-BPE raw |"
          " byte-BPE normalised | atomic ids | atomic+segment ids | geometry atomic | geometry segmented |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, texts in held.items():
        rows = {k: [] for k in ("iou224", "psnr224", "iou512", "psnr512", "one", "bytes", "bpe", "bpe_n")}
        atomic_seqs = []
        for svg in texts:
            atomic = tok.encode_atomic(svg)
            atomic_seqs.append(atomic)
            decoded = tok.decode(tok.encode(svg), errors="strict")[0]
            placed = on_canvas(svg, 224)
            for size in (224, 512):
                a, b = render_svg(placed, size), render_svg(decoded, size)
                rows[f"iou{size}"].append(ink_iou(a, b))
                rows[f"psnr{size}"].append(min(psnr(a, b), 60.0))
                if size == 224:
                    rows["one"].append(within_one_pixel(a, b))
            rows["bytes"].append(len(svg.encode("utf-8")))
            rows["bpe"].append(len(raw_bpe.encode(svg).ids))
            rows["bpe_n"].append(len(norm_bpe.encode(normalize_svg(svg).text).ids))
        lengths = tok.length_stats(atomic_seqs)
        n = len(texts)
        mean = {k: float(np.mean(v)) for k, v in rows.items()}
        print(
            f"| {name} | {mean['iou224']:.3f} | {mean['psnr224']:.1f} | {mean['iou512']:.3f} | "
            f"{mean['psnr512']:.1f} | {100 * mean['one']:.0f} % | {mean['bytes']:.0f} | {mean['bpe']:.0f} | "
            f"{mean['bpe_n']:.0f} | {lengths['atomic_tokens'] / n:.0f} | {lengths['segment_tokens'] / n:.0f} | "
            f"{lengths['geometry_tokens'] / n:.0f} | {lengths['geometry_segmented'] / n:.0f} |"
        )
    print(
        "\nPSNR is capped at 60 dB per icon (identical renders). Byte-BPE vocabularies equal HiVG's "
        f"total ({tok.vocab_size:,} ids: 784 atomic + 257 text + {tok.num_segments} segments).\n"
    )
    print("Rerun: " + " ".join([".venv/bin/python", "benchmarks/hivg_tokenizer.py", *(argv or sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
