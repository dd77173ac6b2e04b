"""Run upstream's own code and the zoo side by side on the same real files and report how far apart they are.

    python benchmarks/upstream_parity.py vq16 --upstream ~/src/LlamaGen

builds upstream's network from your checkout of the upstream repository (the registry records the commit
the zoo was checked against; the command says whether your checkout is at it), gives it seeded random
weights, loads the same weights into the zoo model *through the zoo's converter*, then runs upstream's
official preprocessing and entry point and the zoo's documented path (``zoo.io`` reader, ``prepare``,
``encode``, ``decode``) on each real file. It prints, per file, the percentage of equal ids, the largest
latent and decode differences, and the time ratio, plus the upstream files it imported. Nothing from
upstream is copied into the zoo: the adapter imports upstream's modules from your checkout.

``--list`` shows the models with an adapter; ``--card`` writes the result table into the model's card
(``model_cards/<card>.md``) with the upstream commit, ``--json PATH`` saves the rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from parity import adapter_class, available
from parity.common import DEFAULT_DATA, REPO_ROOT, Row, checkout_commit, compare, recorded_commit, timed

from zoo.cards import write_card_section


def parse_options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else format(value, spec)


def percent(value: float | None) -> str:
    """``"100.00 %"``, or ``"-"`` where neither side has ids (continuous generators and tokenizers)."""
    return "-" if value is None else f"{value:.2f} %"


def table(rows: list[Row], columns: tuple[str, str] = ("latent", "decode")) -> str:
    lines = [
        (
            f"| file | ids equal | ids shape | max {columns[0]} diff | max {columns[1]} diff | upstream s | "
            "zoo s | zoo/upstream time | note |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.file} | {percent(r.ids_equal)} | {r.ids_shape or '-'} | {fmt(r.latent_diff, '.2e')} | "
            f"{fmt(r.decode_diff, '.2e')} | {r.upstream_s:.3f} | {r.zoo_s:.3f} | {r.time_ratio:.2f} | {r.note} |"
        )
    return "\n".join(lines)


def summary(rows: list[Row]) -> dict[str, float | None]:
    ids = [r.ids_equal for r in rows if r.ids_equal is not None]
    lat = [r.latent_diff for r in rows if r.latent_diff is not None]
    dec = [r.decode_diff for r in rows if r.decode_diff is not None]
    return {
        "files": len(rows),
        "min_ids_equal": min(ids) if ids else None,
        "max_latent_diff": max(lat) if lat else None,
        "max_decode_diff": max(dec) if dec else None,
        "time_ratio": sum(r.zoo_s for r in rows) / max(sum(r.upstream_s for r in rows), 1e-9),
    }


def write_card(card: Path, text: str) -> None:
    write_card_section(card, "upstream-parity", "Upstream parity", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="zoo model with an adapter (see --list)")
    parser.add_argument("--upstream", type=Path, help="your checkout of the upstream repository")
    parser.add_argument("--list", action="store_true", help="list the models with an adapter and exit")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (real files)")
    parser.add_argument("--files", type=Path, nargs="*", help="real files to run instead of the defaults")
    parser.add_argument("--limit", type=int, default=5, help="files taken from --data (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the rows and the summary here")
    parser.add_argument("--card", action="store_true", help="record the result in the model card")
    args = parser.parse_args(argv)

    if args.list or not args.model:
        for name in available():
            cls = adapter_class(name)
            print(f"{name:16s} {cls.tag:32s} {cls.description}")
        return 0
    if args.upstream is None or not args.upstream.is_dir():
        raise SystemExit(f"--upstream must be a checkout of the upstream repository, got {args.upstream}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)

    import zoo

    cls = adapter_class(args.model)
    adapter = cls(args.upstream, seed=args.seed, options=parse_options(args.option))
    # a model without weights (HiVG) has no registry tag: its adapter names the upstream commit itself
    upstream_ref = zoo.get_pretrained_cfg(cls.tag)[1].upstream if cls.tag else cls.upstream_ref
    recorded = recorded_commit(upstream_ref)
    found = checkout_commit(args.upstream)
    print(f"model {cls.model} ({cls.tag}); upstream {upstream_ref}")
    if found is None:
        print(
            f"checkout {args.upstream}: not a git work tree, so its commit is unknown (recorded: {recorded})"
        )
    elif recorded and not found.startswith(recorded):
        print(f"WARNING: checkout is at {found[:12]}, the zoo was checked against {recorded}")
    else:
        print(f"checkout at {found[:12]} (recorded: {recorded})")

    upstream_model, zoo_model = adapter.build()
    files = args.files or adapter.files(args.data, args.limit)
    adapter.before_runs(files)
    rows = []
    for path in files:
        up, up_s = timed(lambda path=path: adapter.run_upstream(upstream_model, path))
        ours, zoo_s = timed(lambda path=path: adapter.run_zoo(zoo_model, path))
        rows.append(compare(path, up, up_s, ours, zoo_s, cls.relative))
        r = rows[-1]
        print(
            f"  {path.name}: ids equal {percent(r.ids_equal)}, {cls.columns[0]} {fmt(r.latent_diff, '.1e')}, "
            f"{cls.columns[1]} {fmt(r.decode_diff, '.1e')}",
            flush=True,
        )

    imported = adapter.imported_files()
    command = "python benchmarks/upstream_parity.py " + shlex.join(
        [args.model, "--upstream", "PATH", *(part for o in args.option for part in ("--option", o))]
    )
    result = summary(rows)
    text = "\n".join(
        [
            (
                f"Upstream {upstream_ref} (checkout commit: {found[:12] if found else 'unverified, not a git work tree'}), "
                f"random weights (seed {args.seed}) loaded through the zoo's converter, CPU "
                f"({platform.machine()}, {args.threads} threads), torch {torch.__version__}. "
                f"Upstream files imported: {', '.join(f'`{f}`' for f in imported) or 'none recorded'}."
            ),
            "",
            table(rows, cls.columns),
            "",
            f"Rerun: `{command}`",
        ]
    )
    print()
    print(text)
    print()
    print(
        f"summary: {result['files']} files, min ids equal {percent(result['min_ids_equal'])}, "
        f"max {cls.columns[0]} diff {fmt(result['max_latent_diff'], '.2e')}, "
        f"max {cls.columns[1]} diff {fmt(result['max_decode_diff'], '.2e')}, "
        f"zoo/upstream time {result['time_ratio']:.2f}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"model": args.model, "summary": result, "rows": [r.__dict__ for r in rows]}, indent=1)
        )
    if args.card:
        card = REPO_ROOT / "model_cards" / f"{cls.card or args.model}.md"
        write_card(card, text)
        print(f"wrote the result into {card.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
