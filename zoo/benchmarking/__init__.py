"""``zoo bench``: measure a tokenizer against classic codecs on the same items, in one run.

    report = zoo.bench("vq16_tiny", "skimage-val", out="results/")   # or a saved folder, or a model
    print(report.to_markdown())

Rates (raw and at the ids' empirical entropy), reconstruction metrics through torchmetrics, codebook use,
speed and peak memory for the tokenizer; the modality's classic codecs at settings that bracket its rate;
a markdown table, a JSON file, a rate–distortion plot and sample reconstructions as PNG.
"""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import ZooError
from ..model import untrained_copy
from ..tokenizer import Tokenizer
from .report import BenchReport, Metric, Row
from .suite import Items, Suite

__all__ = ["SUITES", "BenchReport", "Metric", "Row", "bench", "suite_for"]


def _suites() -> dict[str, type[Suite]]:
    from .images import ImageSuite

    suites: dict[str, type[Suite]] = {"image": ImageSuite}
    for modality, module, name in (
        ("audio", "audio", "AudioSuite"),
        ("eeg", "eeg", "EEGSuite"),
        ("svg", "svg", "SVGSuite"),
    ):
        try:
            imported = __import__(f"zoo.benchmarking.{module}", fromlist=[name])
        except ModuleNotFoundError as error:  # a suite module not present in this build
            if error.name != f"zoo.benchmarking.{module}":
                raise
            continue
        suites[modality] = getattr(imported, name)
    return suites


SUITES: dict[str, type[Suite]] = {}


def suite_for(modality: str) -> Suite:
    if not SUITES:
        SUITES.update(_suites())
    if modality not in SUITES:
        raise ZooError(
            f"zoo bench measures tokenizers of {', '.join(sorted(SUITES))}; not {modality!r} models"
        )
    return SUITES[modality]()


def load_for_bench(
    model: str | Path | Tokenizer, device: torch.device, *, random_weights: bool = False
) -> tuple[Tokenizer, str, str]:
    """The tokenizer, a display name and how its weights were obtained: published or saved weights through
    ``zoo.load``; a registered size without published weights, or any registered name with
    ``random_weights`` (speed does not depend on the weights' values), gets seeded random weights,
    labelled so."""
    import zoo

    if isinstance(model, Tokenizer):
        return model.to(device).eval(), getattr(model, "arch", type(model).__name__), "given model"
    name = str(model)
    arch = name.split(".")[0]
    if random_weights:
        if arch not in zoo.list_models():
            raise ZooError(f"--random-weights needs a registered architecture name, got {name!r}")
        torch.manual_seed(0)
        created = zoo.create(arch).to(device).eval()
        if not isinstance(created, Tokenizer):
            raise ZooError(f"{name} is a {created.modality} model; zoo bench measures tokenizers")
        return created, arch, "random weights (seed 0, asked for with --random-weights)"
    try:
        loaded = zoo.load(name, device=device)
        weights = f"saved weights ({name})" if Path(name).is_dir() else "published weights"
    except zoo.errors.UnknownModelError:
        if name not in zoo.list_models() and name.split(".")[0] not in zoo.list_models():
            raise
        torch.manual_seed(0)
        loaded = zoo.create(name.split(".")[0]).to(device).eval()
        learned = any(True for _ in loaded.parameters())
        weights = (
            "random weights (no published checkpoint; seed 0)"
            if learned
            else "as created (no published fitted state)"
        )
    if not isinstance(loaded, Tokenizer):
        raise ZooError(f"{name} is a {loaded.modality} model; zoo bench measures tokenizers")
    return loaded, getattr(loaded, "arch", None) or name if Path(name).is_dir() else name, weights


def bench(
    model: str | Path | Tokenizer,
    data: str | None = None,
    *,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    out: str | Path | None = None,
    classic: bool = True,
    control: bool = False,
    command: str | None = None,
    random_weights: bool = False,
) -> BenchReport:
    """Measure ``model`` on ``data`` (a path, or a keyword the modality's suite knows; ``None``: its default).

    ``classic``: also run the modality's classic codecs on the same items. ``control``: add the same
    architecture with random weights, so the table shows what training bought. ``out``: write
    ``<name>.md``, ``<name>.json``, ``<name>_rd.png`` and ``<name>_samples.png`` there.
    ``random_weights``: measure the registered architecture with seeded random weights (for speed, or
    where no checkpoint can be had), labelled so in the report.
    """
    device = torch.device(device)
    tokenizer, name, weights = load_for_bench(model, device, random_weights=random_weights)
    suite = suite_for(tokenizer.modality)
    items: Items = suite.load_items(data, limit)
    if not items.items:
        raise ZooError(f"no items to measure in {items.data}")
    controls = []
    notes = [f"{name}: {weights}"]
    if control and weights.startswith("random weights"):
        notes.append("no control row: the measured model itself has random weights")
        control = False
    if control:  # measured first: the suite keeps the last model's reconstructions for the samples
        untrained = untrained_copy(tokenizer).to(device)
        controls.append(
            suite.measure_learned(untrained, items, device=device, name=f"{name} (untrained)", kind="control")
        )
        controls[0].extra["weights"] = "random weights, seed 0"
    rows = [suite.measure_learned(tokenizer, items, device=device, name=name), *controls]
    rows[0].extra["weights"] = weights
    skipped: list[str] = []
    if classic:
        classic_rows, skipped = suite.classic_rows(items, [rows[0].rate])
        rows += classic_rows
    report = BenchReport(
        model=name,
        modality=tokenizer.modality,
        data=items.data,
        split=items.split,
        items=len(items.items),
        rate_unit=suite.rate_unit,
        metrics=list(suite.metrics),
        rows=rows,
        command=command or _command(model, data, limit, device, out, classic, control, random_weights),
        notes=notes + items.notes,  # suites may add notes while they measure
        skipped=skipped,
        environment=_environment(device),
    )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = name.replace("/", "_")
        picture = suite.samples(
            tokenizer,
            items,
            [r for r in rows if r.kind == "classic"],
            out / f"{stem}_samples.png",
            device=device,
        )
        if picture is not None:
            report.files["samples"] = str(picture)
        report.write(out, stem)
    return report


def _command(
    model: Any,
    data: str | None,
    limit: int | None,
    device: torch.device,
    out: Any,
    classic: bool,
    control: bool,
    random_weights: bool,
) -> str:
    parts = ["zoo", "bench", str(model)]
    if data:
        parts.append(str(data))
    if limit:
        parts += ["--limit", str(limit)]
    if device.type != "cpu":
        parts += ["--device", str(device)]
    if out is not None:
        parts += ["-o", str(out)]
    if not classic:
        parts.append("--no-classic")
    if control:
        parts.append("--control")
    if random_weights:
        parts.append("--random-weights")
    return shlex.join(parts)


def _environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
