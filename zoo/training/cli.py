"""``zoo train`` (LightningCLI over recipe YAML) and ``zoo export`` (checkpoint -> Hub-ready folder)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ZooError


def _default_precision() -> str:
    """bf16-mixed where the accelerator has it, full precision elsewhere."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def train(argv: Sequence[str]) -> int:
    """Run ``fit`` on a recipe: ``zoo train RECIPE [--section.key value ...] [--print_config]``.

    RECIPE is a YAML file or the name of a packaged recipe (``zoo train --list``). The resolved config is
    written as ``config.yaml`` into the run directory, beside ``checkpoints/``; ``--ckpt_path last``
    resumes the run from its last checkpoint.
    """
    from importlib import resources

    from ..recipes import RecipeError, find_recipe, recipe_listing

    argv = list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(TRAIN_USAGE)
        return 0
    if argv[:1] == ["--list"]:
        print(recipe_listing())
        return 0
    if not argv or argv[0].startswith("-"):
        print(TRAIN_USAGE, file=sys.stderr)
        return 2
    name, overrides = argv[0], argv[1:]
    try:
        found = find_recipe(name)
    except RecipeError as exc:
        print(f"zoo train: error: {exc}", file=sys.stderr)
        return 2
    with resources.as_file(found) as recipe_path:  # a real file for LightningCLI, even from a zipped install
        return _fit(name, str(recipe_path), overrides)


def _fit(name: str, recipe: str, overrides: list[str]) -> int:
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    from ..recipes import RecipeError, resolve_data_paths

    try:
        config = _read_recipe(recipe)
    except (yaml_error(), TypeError, UnicodeDecodeError) as exc:
        print(f"zoo train: {recipe} is not a valid recipe YAML ({str(exc).splitlines()[0]})", file=sys.stderr)
        return 2
    only_shows = any(a in ("-h", "--help") or a.startswith("--print_config") for a in overrides)
    try:
        data_paths = resolve_data_paths(config, Path(recipe), overrides, require=not only_shows)
    except RecipeError as exc:
        print(f"zoo train {name}: error: {exc}", file=sys.stderr)
        return 2
    # the data paths found from the recipe's folder go first, so that the command line still wins
    overrides = [*data_paths, *overrides, *_default_loggers(config, overrides)]
    try:
        LightningCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"use_distributed_sampler": False, "precision": _default_precision()},
            args=["fit", "--config", recipe, *overrides],
            auto_configure_optimizers=False,
        )
    except (ZooError, ValueError, TypeError, KeyError, OSError, ImportError) as exc:
        if os.environ.get("ZOO_TRACEBACK"):
            raise
        print(f"zoo train {name}: error: {_first_line(exc)} (ZOO_TRACEBACK=1 shows where)", file=sys.stderr)
        return 2
    return 0


TRAIN_USAGE = """usage: zoo train RECIPE.yaml|NAME [--section.key value ...] [--print_config] [--ckpt_path last]
       zoo train --list

Train from a recipe (LightningCLI): the YAML's model, data, trainer and optimizer sections, each
overridable on the command line, e.g. --trainer.max_steps 100 --data.init_args.path DATA.
NAME is a recipe that ships with zoo (zoo train vq16_tiny); --list shows them all.
A relative data path in a recipe (data.init_args.path, val_path) is looked up from the recipe's folder,
then, for a recipe in a recipes/ folder, from the folder above it, then from the current directory.
Other relative paths (runs/, cache_dir, init_from, tokenizer folders) are taken from the current directory.

  zoo train RECIPE.yaml --help          every option of that recipe's model, data and trainer
  zoo train RECIPE.yaml --print_config  the resolved config, without training
  zoo train RECIPE.yaml --ckpt_path last  resume the run from its last checkpoint"""


def yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


def _first_line(exc: BaseException) -> str:
    """The message that says what is wrong: the innermost cause, or the first of jsonargparse's listed
    errors (which wraps our own ``ValueError`` in "Does not validate against any of the Union subtypes")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc).strip()
    lines = text.splitlines()
    listed = [ln.strip()[2:] for ln in lines if ln.strip().startswith("- ") and "Expected a <class" not in ln]
    line = listed[0] if listed else (lines[0] if lines else "")
    return line if isinstance(exc, (ZooError, ValueError)) else f"{type(exc).__name__}: {line}"


def _option(overrides: Sequence[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` among command-line overrides (last wins)."""
    value = None
    for i, arg in enumerate(overrides):
        if arg == name and i + 1 < len(overrides):
            value = overrides[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _read_recipe(recipe: str) -> dict[str, Any]:
    """The recipe's sections, as a mapping (``TypeError`` when the YAML holds something else)."""
    import yaml

    config = yaml.safe_load(Path(recipe).read_text()) or {}
    if not isinstance(config, dict):
        raise TypeError(f"the top level is a {type(config).__name__}, not a mapping of sections")
    return config


def _default_loggers(config: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """CSV and TensorBoard logs written straight into the run directory, unless the recipe says otherwise.

    With ``version=""`` both loggers use ``default_root_dir`` itself as their log dir, so the run
    directory holds ``config.yaml``, ``metrics.csv``, TensorBoard events, ``checkpoints/`` and
    ``samples/`` side by side, and ``--ckpt_path last`` finds the same run again.
    """
    trainer = config.get("trainer") or {}
    if "logger" in trainer or any(a.startswith("--trainer.logger") for a in overrides):
        return []
    root = _option(overrides, "--trainer.default_root_dir") or trainer.get("default_root_dir") or "."
    loggers = [
        {"class_path": class_path, "init_args": {"save_dir": root, "name": "", "version": ""}}
        for class_path in (
            "zoo.training.csv_log.ResumableCSVLogger",  # a resumed run keeps its earlier metrics.csv rows
            "lightning.pytorch.loggers.TensorBoardLogger",
        )
    ]
    return ["--trainer.logger", json.dumps(loggers)]


def find_checkpoint(run: str | Path) -> Path:
    """A checkpoint file, or the newest ``last*.ckpt`` (else the newest ``.ckpt``) under a run directory.

    Lightning names a second "last" checkpoint ``last-v1.ckpt`` when ``last.ckpt`` exists (a run
    restarted without ``--ckpt_path last``), so the newest of them, not the first name, is the run's end.
    """
    run = Path(run)
    if run.is_file():
        return run
    last = [p for folder in (run / "checkpoints", run) for p in folder.glob("last*.ckpt") if p.is_file()]
    if last:
        return max(last, key=lambda p: (p.stat().st_mtime_ns, p.name))
    found = sorted(run.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise CheckpointError(f"{run}: no checkpoint (.ckpt) found in this run directory")
    return found[-1]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True``; refuse anything that needs pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated files, foreign pickles, ...
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err


def export(run: str | Path, out: str | Path, *, use_ema: bool = True) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + ``README.md`` for the model (tokenizer or
    generator) trained in ``run``.

    Takes the EMA weights when the run kept them (and ``use_ema``); drops the discriminator, loss
    networks and optimizer state. The model card records steps, validation metrics and losses.
    """
    from .._factory import create
    from ..hub import load_weights

    path = find_checkpoint(run)
    checkpoint = read_checkpoint(path)
    meta = checkpoint.get("zoo")
    if not meta:
        raise CheckpointError(f"{path}: not a zoo training checkpoint (no 'zoo' section)")
    module = meta.get("prefix", "tokenizer")
    prefix = "ema.module." if meta.get("ema") and use_ema else f"{module}."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path}: no weights under {prefix!r}")
    model = create(meta["arch"], **meta["config"])
    load_weights(model, state, source=str(path))
    notes = [f"{meta['steps']} training steps from `{path.name}`", f"losses {meta.get('losses')}"]
    if meta.get("gan"):
        notes.append(f"discriminator {meta['gan']}")
    if meta.get("perceptual_source"):
        notes.append(f"perceptual loss: {meta['perceptual_source']}")
    if prefix.startswith("ema"):
        notes.append("EMA weights")
    metrics = {k.removeprefix("val/"): round(v, 4) for k, v in meta.get("metrics", {}).items()}
    return model.eval().save_pretrained(out, metrics=metrics, training="; ".join(notes))
