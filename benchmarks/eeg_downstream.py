"""EEG tokenizers downstream: stimulus-locked vs random windows of one recording, classified from tokens and
from the raw signal, plus reconstruction quality and codebook usage of the held-out test span.

    python benchmarks/eeg_downstream.py                                   # tiny tokenizers, trained here
    python benchmarks/eeg_downstream.py --tokenizers runs/export_dir biocodec --steps 0

Tokenizers are registry names (``*_tiny`` ones are trained here with their recipe's loss and optimiser
for ``--steps`` on the recording's training span only, never the test span) or saved model directories /
pretrained ``arch.tag`` names (used as they are). Beside each trained or given tokenizer an untrained
control row scores the same architecture with random weights (``--control-seed``) through the same
heads, so the table shows what training adds. Each row carries a 95 % Wilson interval of its accuracy
from the test-set size (the test sets are balanced, so it is the balanced accuracy's too). The tables
are printed and written, with every number, to ``--out``/eeg_downstream.json, beside a PNG of original
vs reconstructed channels per tokenizer.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

import zoo
from zoo.evaluation.eeg import (
    evaluate_raw,
    evaluate_tokenizer,
    stimulus_locked_task,
    summarise_runs,
    untrained_copy,
)
from zoo.io import EEGRecording, read_eeg, write_eeg, write_image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORDING = ROOT.parent / "shared" / "data" / "eeg" / "eeglab" / "eeglab_data.set"
DEFAULT_TOKENIZERS = ("biocodec_tiny", "tfm_tokenizer_tiny")


def train_tiny(name: str, recording: EEGRecording, test_start: int, steps: int, seed: int) -> torch.nn.Module:
    """Train a registered tokenizer with its recipe's objective on the samples before ``test_start``."""
    import lightning as L

    from zoo.data import EEGDataModule
    from zoo.training import TokenizerModule

    recipe = yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text())
    model_args = {**recipe["model"]["init_args"], "sample_every": 0}
    data_args = dict(recipe["data"]["init_args"])
    with tempfile.TemporaryDirectory() as tmp:
        train_part = EEGRecording(
            recording.data[:, :test_start], recording.sample_rate, recording.channel_names
        )
        write_eeg(Path(tmp) / "train.npz", train_part)
        data_args.update(path=str(Path(tmp) / "train.npz"), val_fraction=0.0, num_workers=0)
        L.seed_everything(seed, verbose=False)
        module = TokenizerModule(**model_args)
        trainer = L.Trainer(
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            default_root_dir=tmp,
            accelerator="cpu",
        )
        trainer.fit(module, datamodule=EEGDataModule(**data_args))
    return module.evaluated_tokenizer().eval()


def load_tokenizer(spec: str, recording: EEGRecording, test_start: int, steps: int, seed: int):
    if Path(spec).exists() or spec not in zoo.list_models():
        return zoo.load(spec).eval(), "given weights"
    if steps <= 0 or not (ROOT / "recipes" / f"{spec}.yaml").exists():
        return zoo.create(spec).eval(), "untrained"
    start = time.perf_counter()
    model = train_tiny(spec, recording, test_start, steps, seed)
    return model, f"trained {steps} steps here ({time.perf_counter() - start:.0f} s)"


def waveform_image(
    original: torch.Tensor, recon: torch.Tensor, rate: float, channels: int = 4
) -> torch.Tensor:
    """Original (dark blue) and reconstruction (orange) of the first channels over 4 s, one panel each."""
    width, height = 800, 90
    length = min(original.shape[-1], round(4 * rate))
    panels = []
    for c in range(min(channels, original.shape[0])):
        image = torch.ones(3, height, width)
        pair = torch.stack([original[c, :length], recon[c, :length]]).float()
        lo, hi = pair.min(), pair.max()
        rows = ((hi - pair) / (hi - lo).clamp_min(1e-6) * (height - 5) + 2).round().long()
        cols = torch.linspace(0, width - 1, length).round().long()
        for trace, colour in ((rows[0], (0.1, 0.2, 0.55)), (rows[1], (0.95, 0.5, 0.1))):
            for i in range(length - 1):  # vertical segments join consecutive samples
                a, b = sorted((int(trace[i]), int(trace[i + 1])))
                for x in range(int(cols[i]), int(cols[i + 1]) + 1):
                    image[:, a : b + 1, x] = torch.tensor(colour)[:, None]
        image[:, -1] = 0.7
        panels.append(image)
    return torch.cat(panels, dim=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recording", default=str(DEFAULT_RECORDING), help="EEG file with events")
    parser.add_argument("--labels", nargs="+", default=["square"], help="stimulus event labels")
    parser.add_argument("--tokenizers", nargs="*", default=None, help="registry names or model dirs")
    parser.add_argument("--steps", type=int, default=300, help="training steps for registered tiny models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="task and classifier seeds")
    parser.add_argument("--window", type=float, default=1.0, help="window length in seconds")
    parser.add_argument("--offset", type=float, default=0.0, help="window start after the event, seconds")
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--time-bins", type=int, default=4, help="time bins of the linear probes")
    parser.add_argument("--out", default=str(ROOT / "runs" / "eeg_downstream"), help="folder for the PNGs")
    parser.add_argument("--heads", nargs="+", default=["linear", "transformer"], help="classifier heads")
    parser.add_argument("--control-seed", type=int, default=0, help="seed of the untrained control weights")
    parser.add_argument("--no-control", action="store_true", help="leave out the untrained control rows")
    parser.add_argument("--markdown", default=None, help="also write the tables to this markdown file")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    heads = tuple(args.heads)

    names = args.tokenizers
    if names is None:
        available = zoo.list_models(modality="eeg")
        names = [n for n in DEFAULT_TOKENIZERS if n in available]
        missing = [n for n in DEFAULT_TOKENIZERS if n not in available]
        if missing:
            print(f"not registered (skipped): {', '.join(missing)}")

    recording = read_eeg(args.recording)
    tasks = [
        stimulus_locked_task(
            recording,
            args.labels,
            window_seconds=args.window,
            offset_seconds=args.offset,
            test_fraction=args.test_fraction,
            seed=s,
        )
        for s in args.seeds
    ]
    counts = tasks[0].counts()
    test_windows = counts["test_stimulus"] + counts["test_random"]
    print(
        f"{args.recording}: {recording.data.shape[0]} ch x {recording.data.shape[1]} @ {recording.sample_rate:g} Hz; "
        f"task {counts} ({args.window:g}-s windows, test span from sample {tasks[0].test_start})"
    )

    def over_tasks(evaluate, weights: str) -> list[dict]:
        """Each head over the seeds (each seed: new random windows and classifier): mean, spread, and the
        Wilson interval of the mean for one seed's test-set size."""
        per_seed = [evaluate(task, seed) for seed, task in zip(args.seeds, tasks, strict=True)]
        rows = []
        for i, row in enumerate(per_seed[0]):
            runs = [run for seed_rows in per_seed for run in seed_rows[i]["runs"]]
            summary = summarise_runs(runs, row["test_windows"])
            rows.append(
                {"model": row["model"], "weights": weights, "classifier": row["classifier"], **summary}
            )
        return rows

    start = time.perf_counter()
    rows = over_tasks(
        lambda task, seed: evaluate_raw(
            recording, task, time_bins=args.time_bins, seeds=(seed,), heads=heads
        ),
        "-",
    )
    print(f"raw baselines: {time.perf_counter() - start:.0f} s")
    recon_rows = []
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        model, how = load_tokenizer(name, recording, tasks[0].test_start, args.steps, args.seeds[0])
        variants = [(name, model, how)]
        if how != "untrained" and not args.no_control:
            control = f"random init (seed {args.control_seed})"
            variants.append((f"{name} untrained", untrained_copy(model, args.control_seed), control))
        for label, tokenizer, weights in variants:
            start = time.perf_counter()
            results = {}

            def run(task, seed, tokenizer=tokenizer, label=label, results=results):
                out = evaluate_tokenizer(
                    tokenizer,
                    recording,
                    task,
                    name=label,
                    time_bins=args.time_bins,
                    seeds=(seed,),
                    heads=heads,
                )
                results.setdefault("first", out)
                return out["rows"]

            rows += over_tasks(run, weights)
            first = results["first"]
            png = out_dir / f"{Path(label).name.replace(' ', '_')}_reconstruction.png"
            write_image(png, waveform_image(first["original"], first["reconstructed"], first["sample_rate"]))
            recon_rows.append(
                {
                    "tokenizer": label,
                    "weights": weights,
                    "reconstruction": first["reconstruction"],
                    "usage": first["usage"],
                    "png": str(png),
                }
            )
            print(f"{label}: {weights}; evaluated in {time.perf_counter() - start:.0f} s")

    rerun = "python " + " ".join(
        shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    )
    table: list[str] = []  # the printed tables, also written to --markdown
    table.append(
        f"\nClassification of the test span ({test_windows} windows, balanced; chance = 0.5 / 0.0): balanced "
        f"accuracy as mean ± std over {len(args.seeds)} seed(s), and its 95 % Wilson interval for "
        f"{test_windows} test windows\n"
    )
    table.append(
        f"| {'model':<44} | {'weights':<30} | {'classifier':<11} | balanced acc. | 95 % CI (Wilson) | kappa |"
    )
    table.append(f"|{'-' * 46}|{'-' * 32}|{'-' * 13}|---------------|------------------|-------|")
    for r in rows:
        acc = f"{r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_std']:.3f}"
        ci = f"{r['ci_low']:.3f} – {r['ci_high']:.3f}"
        table.append(
            f"| {r['model']:<44} | {r['weights']:<30} | {r['classifier']:<11} | {acc:<13} | {ci:<16} | {r['kappa']:.3f} |"
        )
    if recon_rows:
        bands = list(recon_rows[0]["reconstruction"]["band_power_error"])
        table.append(
            "\nReconstruction of the test span (relative band-power error per band) and codebook usage\n"
        )
        table.append(
            "| tokenizer | weights | NMSE | Pearson | " + " | ".join(bands) + " | codes used | perplexity |"
        )
        table.append("|---|---|---|---|" + "---|" * len(bands) + "---|---|")
        for r in recon_rows:
            rec, usage = r["reconstruction"], r["usage"]
            errors = " | ".join(f"{rec['band_power_error'][b]:.3f}" for b in bands)
            used = "/".join(f"{u:.2f}" for u in usage["usage"])
            perplexity = "/".join(f"{p:.1f}" for p in usage["perplexity"])
            table.append(
                f"| {r['tokenizer']} | {r['weights']} | {rec['nmse']:.3f} | {rec['pearson']:.3f} | {errors} | "
                f"{used} | {perplexity} |"
            )
    print("\n".join(table))
    if recon_rows:
        print("\nPNGs: " + ", ".join(r["png"] for r in recon_rows))
    report = {
        "command": rerun,
        "recording": args.recording,
        "task": {
            "labels": args.labels,
            "window_seconds": args.window,
            "offset_seconds": args.offset,
            "test_fraction": args.test_fraction,
            "test_start_sample": tasks[0].test_start,
            "counts": counts,
            "seeds": args.seeds,
        },
        "interval": "95 % Wilson score interval of the mean accuracy over the seeds, n = one seed's test windows",
        "classification": rows,
        "reconstruction": recon_rows,
    }
    json_path = out_dir / "eeg_downstream.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {json_path}")
    if args.markdown:
        header = [
            "# EEG downstream: stimulus-locked vs random windows",
            "",
            f"Written by `benchmarks/eeg_downstream.py` on {time.strftime('%Y-%m-%d')} (every number, per "
            "seed too, in the `eeg_downstream.json` it writes to `--out`). Recording `"
            + Path(args.recording).name
            + f"` ({recording.data.shape[0]} channels at {recording.sample_rate:g} Hz), task {counts}: the "
            f"last {args.test_fraction:g} of the recording is the test span, and the tokenizers trained here "
            "saw only the training span. Untrained rows are the same architectures with random weights, "
            "through the same heads: training helps only where a trained row's interval clears its "
            "untrained row.",
            "",
            "```bash",
            rerun,
            "```",
        ]
        Path(args.markdown).write_text("\n".join(header + table) + "\n")
        print(f"markdown: {args.markdown}")
    print(f"\nrerun: {rerun}")


if __name__ == "__main__":
    main()
