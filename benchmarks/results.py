"""The results page: every tokenizer's tiny size trained briefly from its recipe, then ``zoo bench`` on its
modality's default data, beside the classic codecs, written to ``benchmarks/RESULTS.md`` with one markdown
and JSON file, rate–distortion plot and sample picture per model under ``benchmarks/results/``.

    python benchmarks/results.py                               # every tokenizer with a tiny recipe
    python benchmarks/results.py --models vq16_tiny --steps 300 --cards
    python benchmarks/results.py --paper                        # speed of the paper sizes (random weights)

``--steps 0`` measures seeded random weights (labelled so); ``--cards`` also records each table in the
model family's card (``model_cards/<family>.md``, section "Measured with zoo bench"), apart from the
upstream-reported metrics the card shows for converted checkpoints.
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

import zoo
from zoo.benchmarking import bench
from zoo.cards import write_card_section
from zoo.recipes import packaged_recipes

ROOT = Path(__file__).resolve().parents[1]
INTRO = (
    "Every tokenizer's tiny size, trained briefly on CPU from its recipe, measured by `zoo bench` beside "
    "the classic codecs of its modality on the same items. Tiny sizes are for tests and recipes, not "
    "for use: these numbers show what the command measures and how far a few hundred CPU steps get, "
    "not what the paper-size models reach. Each model's page has the whole table, where it wins and "
    "loses, a rate–distortion plot and sample reconstructions."
)


def tokenizers_with_tiny_recipes() -> list[str]:
    recipes = packaged_recipes()
    names = []
    for name in zoo.list_models("*_tiny"):
        if zoo.info(name)["modality"] != "generator" and name in recipes:
            names.append(name)
    return [*names, "hivg"]  # HiVG has no weights to train: measured as created (no learned segments)


def trained(name: str, steps: int, workdir: Path) -> str:
    """A folder with ``name`` trained ``steps`` steps from its packaged recipe and exported."""
    from zoo.training.cli import export, train

    run = workdir / f"{name}-run"
    train([name, "--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(run)])
    return str(export(run, workdir / name))


def summary_row(report: zoo.benchmarking.BenchReport, detail: str) -> str:
    ours = report.rows[0]
    metric = report.primary
    verdicts = []
    for family, point in report.matched(ours).items():
        if point is None:
            verdicts.append(f"{family}: none reaches the rate")
            continue
        ours_value, theirs = ours.metrics.get(metric.name), point.metrics.get(metric.name)
        if ours_value is None or theirs is None:
            continue
        better = ours_value > theirs if metric.higher_is_better else ours_value < theirs
        verdicts.append(f"{family} {theirs:.3g} ({'wins' if better else 'loses'})")
    entropy = "" if ours.entropy_rate is None else f"{ours.entropy_rate:.3g}"
    value = ours.metrics.get(metric.name, float("nan"))
    return (
        f"| [{report.model}]({detail}) | {ours.extra.get('weights', '')} | {report.data} ({report.items}) | "
        f"{ours.rate:.3g} {report.rate_unit} | {entropy} | {metric.name} {value:.3g} | {'; '.join(verdicts)} |"
    )


PAPER_SIZES = (
    "vq16",
    "kl16",
    "vqgan_mage",
    "tokenbridge",
    "retok",
    "karl",
    "seed",
    "restok",
    "wavtokenizer_75",
    "cat",
    "sqcodec",
    "biocodec",
    "tfm_tokenizer",
    "hivg",
)


def paper_speed(names: list[str], limit: int, command: str, page: Path) -> int:
    """Encode and decode speed and peak memory of paper sizes with seeded random weights (speed does not
    depend on the weights' values), recorded in the page's "Speed of paper sizes" section."""
    lines = [
        (
            f"Paper configurations with seeded random weights (quality columns would be meaningless and are left "
            f"out), {limit} items of each modality's default data, measured by `{command}` on "
            f"{torch.get_num_threads()} CPU thread(s):"
        ),
        "",
        "| model | parameters | items | encode | decode | peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    failures = 0
    for name in names:
        print(f"== {name} (paper size)", flush=True)
        try:
            report = bench(name, limit=limit, classic=False, command=command, random_weights=True)
        except Exception as error:  # noqa: BLE001 - reported in the table, the rest still run
            lines.append(f"| {name} | | | not measured: {type(error).__name__}: {error} | | |")
            failures += 1
            continue
        speed = report.rows[0].speed
        encode = ", ".join(
            f"{v:.3g} {k.removeprefix('encode ')}" for k, v in speed.items() if k.startswith("encode")
        )
        decode = ", ".join(
            f"{v:.3g} {k.removeprefix('decode ')}" for k, v in speed.items() if k.startswith("decode")
        )
        peak = f"{speed['peak MiB']:.0f}" if "peak MiB" in speed else ""
        params = zoo.info(name)["parameters"]
        lines.append(f"| {name} | {params / 1e6:.1f} M | {report.items} | {encode} | {decode} | {peak} |")
    lines += [
        "",
        (
            "Not listed: ReasoningCodec, whose paper size needs the Whisper and WavLM teachers from local folders. "
            "Peak MiB is what encode and decode add to the memory already resident (the model's weights are "
            "loaded before)."
        ),
    ]
    write_card_section(page, "paper-speed", "Speed of paper sizes", "\n".join(lines), before="Not measured")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", help="default: every tokenizer with a tiny recipe")
    parser.add_argument("--steps", type=int, default=300, help="training steps per model (0: random weights)")
    parser.add_argument("--limit", type=int, help="items per benchmark (default: each suite's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--page", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--cards", action="store_true", help="record each table in its family's model card")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--paper",
        nargs="*",
        help="measure the speed of these paper sizes instead (default list without names)",
    )
    parser.add_argument("--paper-limit", type=int, default=2, help="items per paper-size speed run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/results.py", *(sys.argv[1:] if argv is None else argv)])
    if args.paper is not None:
        return paper_speed(args.paper or list(PAPER_SIZES), args.paper_limit, command, Path(args.page))
    models = args.models or tokenizers_with_tiny_recipes()
    out = Path(args.out)
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            start = time.time()
            print(f"== {name}", flush=True)
            try:
                train_it = args.steps > 0 and name in packaged_recipes()
                model = trained(name, args.steps, Path(tmp)) if train_it else name
                report = bench(model, limit=args.limit, out=out, command=command)
            except Exception as error:  # noqa: BLE001 - one model's failure is reported, the page keeps the rest
                failures.append(f"{name}: {type(error).__name__}: {error}")
                print(f"   failed: {failures[-1]}", flush=True)
                continue
            if train_it:  # the export sat in a temporary folder: say how the weights were made instead
                weights = f"trained {args.steps} steps from recipes/{name}.yaml"
                report.rows[0].extra["weights"] = weights
                report.notes = [f"{name}: {weights}", *report.notes[1:]]
                report.write(out, name)
            rows.append(summary_row(report, f"results/{name}.md"))
            print(f"   {time.time() - start:.0f}s", flush=True)
            if args.cards:
                family = zoo.info(name)["family"]
                card = ROOT / "model_cards" / f"{family}.md"
                text = report.to_card("pictures and plots: benchmarks/RESULTS.md in the repository")
                write_card_section(card, "zoo-bench", "Measured with zoo bench", text)
    page = [
        "# Results",
        "",
        INTRO,
        "",
        f"Produced by `{command}` ({time.strftime('%Y-%m-%d')}, {torch.get_num_threads()} CPU threads).",
        "",
        "| model | weights | data (items) | raw rate | entropy rate | primary metric | classic codecs at >= its rate |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    if failures:
        page += ["", "Not measured:", "", *[f"- {line}" for line in failures]]
    previous = Path(args.page).read_text() if Path(args.page).is_file() else ""
    if "<!-- paper-speed:begin -->" in previous:  # kept from the last `--paper` run
        block = previous[previous.index("## Speed of paper sizes") :]
        page += ["", block[: block.index("<!-- paper-speed:end -->") + len("<!-- paper-speed:end -->")]]
    Path(args.page).write_text("\n".join(page) + "\n")
    (out / "index.json").write_text(json.dumps({"command": command, "failures": failures}, indent=2))
    print(f"wrote {args.page}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
