"""A benchmark's result: rows of (codec, rate, metrics, speed), written as markdown, JSON and a rate–distortion plot.

Every learned row is compared with each classic codec family at the operating point closest to its rate
from above (the classic codec gets at least as many bits), metric by metric, so the table says where the
tokenizer wins and where it loses instead of leaving the reader to line numbers up.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_path

__all__ = ["BenchReport", "Metric", "Row"]


@dataclass(frozen=True)
class Metric:
    """How to read a metric: its column name, whether larger is better, and its unit."""

    name: str
    higher_is_better: bool = True
    unit: str = ""
    digits: int = 3


@dataclass
class Row:
    """One codec at one operating point on the benchmark's items.

    ``rate`` is in the report's ``rate_unit`` (bits per pixel, kbit/s, ...); ``entropy_rate`` the same at
    the ids' empirical entropy (learned, discrete rows). ``kind``: ``learned``, ``control`` (the same
    architecture untrained), ``classic`` (a lossy codec the verdicts compare with) or ``reference`` (a
    lossless rate shown for scale, not compared); ``family`` groups a classic codec's operating points.
    """

    codec: str
    kind: str
    rate: float
    metrics: dict[str, float]
    family: str = ""
    setting: str = ""
    entropy_rate: float | None = None
    speed: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchReport:
    """Everything one ``zoo bench`` run measured, and how to rerun it."""

    model: str
    modality: str
    data: str
    split: str
    items: int
    rate_unit: str
    metrics: list[Metric]
    rows: list[Row]
    command: str
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ comparisons
    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    def families(self) -> dict[str, list[Row]]:
        """Classic rows by codec family, each sorted by rate."""
        out: dict[str, list[Row]] = {}
        for row in self.rows:
            if row.kind == "classic":  # "reference" rows (lossless) are shown, not compared
                out.setdefault(row.family or row.codec, []).append(row)
        return {k: sorted(v, key=lambda r: r.rate) for k, v in out.items()}

    def matched(self, row: Row) -> dict[str, Row | None]:
        """Per classic family, its cheapest point at or above ``row``'s rate (``None``: none reaches it)."""
        return {
            family: next((p for p in points if p.rate >= row.rate * (1 - 1e-9)), None)
            for family, points in self.families().items()
        }

    def verdicts(self, row: Row) -> list[str]:
        """One sentence per classic family: where ``row`` wins and loses at a matched or higher rate."""
        lines = []
        for family, point in self.matched(row).items():
            if point is None:
                top = self.families()[family][-1]
                lines.append(
                    f"{family}: no setting reaches {row.rate:.4g} {self.rate_unit} "
                    f"(highest {top.rate:.4g} at {top.setting}); not compared"
                )
                continue
            wins, losses = [], []
            for metric in self.metrics:
                ours, theirs = row.metrics.get(metric.name), point.metrics.get(metric.name)
                if ours is None or theirs is None or not (math.isfinite(ours) and math.isfinite(theirs)):
                    continue
                if ours == theirs:  # a tie is neither
                    continue
                better = ours > theirs if metric.higher_is_better else ours < theirs
                (wins if better else losses).append(
                    f"{metric.name} {ours:.{metric.digits}g} vs {theirs:.{metric.digits}g}"
                )
            verdict = "wins" if wins and not losses else "loses" if losses and not wins else "mixed"
            detail = "; ".join(
                part
                for part in (
                    f"better on {', '.join(wins)}" if wins else "",
                    f"worse on {', '.join(losses)}" if losses else "",
                )
                if part
            )
            lines.append(
                f"{family} at {point.setting} ({point.rate:.4g} {self.rate_unit}, "
                f"{point.rate / row.rate:.2f}x the rate): {row.codec} {verdict} — {detail}"
            )
        return lines

    # ------------------------------------------------------------------ writing
    def to_markdown(self) -> str:
        names = [m.name + (f" ({m.unit})" if m.unit else "") for m in self.metrics]
        arrows = ["↑" if m.higher_is_better else "↓" for m in self.metrics]
        head = ["codec", "kind", "setting", f"rate ({self.rate_unit})", f"entropy rate ({self.rate_unit})"]
        head += [f"{n} {a}" for n, a in zip(names, arrows, strict=True)]
        speed_keys = sorted({k for r in self.rows for k in r.speed})
        head += speed_keys
        lines = [
            f"## `{self.model}` on {self.data} ({self.split}, {self.items} items)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        order = {"learned": 0, "control": 1, "classic": 2, "reference": 3}
        for row in sorted(self.rows, key=lambda r: (order.get(r.kind, 3), r.family, r.rate)):
            cells = [
                f"**{row.codec}**" if row.kind == "learned" else row.codec,
                row.kind,
                row.setting,
                f"{row.rate:.4g}",
                "" if row.entropy_rate is None else f"{row.entropy_rate:.4g}",
            ]
            for metric in self.metrics:
                value = row.metrics.get(metric.name)
                cells.append(_cell(value, metric.digits))
            cells += [f"{row.speed[k]:.3g}" if k in row.speed else "" for k in speed_keys]
            lines.append("| " + " | ".join(cells) + " |")
        for row in self.rows:
            if row.kind != "learned":
                continue
            title = (
                f"**Where `{row.codec}` wins and loses** (each classic codec at its cheapest "
                "setting with at least the tokenizer's raw rate):"
            )
            lines += ["", title, ""]
            lines += [f"- {line}" for line in self.verdicts(row)] or ["- no classic codec was measured"]
        for row in self.rows:
            if row.kind in ("learned", "control") and "perplexity" in row.extra:
                used = ", ".join(f"{u:.1%}" for u in row.extra.get("codebook_used", []))
                perplexity = ", ".join(f"{p:.4g}" for p in row.extra["perplexity"])
                lines += [
                    "",
                    f"Codebook use of `{row.codec}` (per codebook): {used} of the codes; perplexity {perplexity}.",
                ]
        if self.notes:
            lines += ["", *[f"- {note}" for note in self.notes]]
        if self.skipped:
            lines += ["", "Not measured: " + "; ".join(self.skipped)]
        if self.files.get("plot"):
            lines += ["", f"![rate–distortion]({Path(self.files['plot']).name})"]
        if self.files.get("samples"):
            lines += ["", f"![reconstructions]({Path(self.files['samples']).name})"]
        lines += ["", "Rerun:", "", "```", self.command, "```", ""]
        return "\n".join(lines)

    def to_card(self, pictures: str = "") -> str:
        """The report as a model card section: what was measured on which data and split, by which command,
        then the table and verdicts (pictures, which a card cannot embed portably, are named by ``pictures``)."""
        table = self.to_markdown().split("\n", 2)[2]  # without the heading
        table = table.split("\n![")[0].split("\nRerun:")[0].rstrip()
        weights = self.rows[0].extra.get("weights", "")
        where = f" ({pictures})" if pictures else ""
        return (
            f"`{self.model}`, {weights}, on {self.data} ({self.split}, {self.items} items), measured by "
            f"`{self.command}`{where}:\n\n{table}"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdicts"] = {row.codec: self.verdicts(row) for row in self.rows if row.kind == "learned"}
        return data

    def write(self, out: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Write ``<stem>.md``, ``<stem>.json`` and ``<stem>_rd.png`` (when matplotlib is installed) into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or self.model.replace("/", "_")
        paths: dict[str, Path] = {}
        plot = plot_rate_distortion(self, out / f"{stem}_rd.png")
        if plot is not None:
            paths["plot"] = plot
            self.files["plot"] = str(plot)
        with atomic_path(out / f"{stem}.json") as tmp:
            Path(tmp).write_text(json.dumps(self.to_json(), indent=2, default=str))
        paths["json"] = out / f"{stem}.json"
        with atomic_path(out / f"{stem}.md") as tmp:
            Path(tmp).write_text(self.to_markdown())
        paths["markdown"] = out / f"{stem}.md"
        return paths


def _cell(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}g}"


def plot_rate_distortion(report: BenchReport, path: Path) -> Path | None:
    """Rate (x) against the primary metric (y): a curve per classic family, a marker per learned row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report.skipped.append("the rate–distortion plot (install matplotlib: pip install 'zoo[bench]')")
        return None
    metric = report.primary
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for family, points in report.families().items():
        xs = [p.rate for p in points if metric.name in p.metrics]
        ys = [p.metrics[metric.name] for p in points if metric.name in p.metrics]
        ax.plot(xs, ys, marker="o", markersize=3, label=family)
    for row in report.rows:
        if row.kind in ("learned", "control") and metric.name in row.metrics:
            marker = "*" if row.kind == "learned" else "x"
            ax.scatter(
                [row.rate], [row.metrics[metric.name]], marker=marker, s=140, zorder=5, label=row.codec
            )
            if row.entropy_rate is not None:
                ax.scatter(
                    [row.entropy_rate],
                    [row.metrics[metric.name]],
                    marker="*",
                    s=80,
                    facecolors="none",
                    edgecolors="k",
                    zorder=5,
                    label=f"{row.codec} at its entropy",
                )
    ax.set_xlabel(f"rate ({report.rate_unit})")
    ax.set_ylabel(metric.name + (f" ({metric.unit})" if metric.unit else ""))
    ax.set_title(f"{report.model} on {report.data} ({report.items} items)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
