"""Training recipes: finding one by file or by packaged name, and finding the data its relative paths name.

``zoo train vq16_tiny`` takes the recipe that ships with zoo (``recipes/vq16_tiny.yaml`` in the repository,
``zoo/_recipes`` in a wheel); ``zoo train path/to/recipe.yaml`` takes that file. Kept free of Lightning so
that ``zoo train --list`` and a wrong name answer at once.

A relative data path in a recipe (``data.init_args.path``, ``val_path``: a data folder or file, or a
token cache) means the same data wherever ``zoo train`` runs: it is looked up from the recipe's own folder,
then, for a recipe inside a ``recipes/`` folder (this repository's layout, whose recipes name
``../shared/data/...`` from the repository root), from the folder holding ``recipes/``, and last from the
current directory (where ``zoo cache -o caches/...`` wrote). Everything else relative in a recipe (the
run's ``runs/`` folder, ``cache_dir``, ``init_from``, tokenizer folders) is what the run writes or earlier
commands wrote in the current directory, and stays relative to it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ._shipped import shipped_folder
from .errors import ZooError

RECIPE_SUFFIXES = (".yaml", ".yml")


class RecipeError(ZooError, ValueError):
    """A recipe that cannot be found, or whose data is not where it says."""


def packaged_recipes() -> dict[str, Traversable]:
    """Every recipe that ships with zoo, by name (the file name without ``.yaml``)."""
    folder = shipped_folder("recipes")
    if not folder.is_dir():
        return {}
    found = {
        entry.name.rsplit(".", 1)[0]: entry for entry in folder.iterdir() if entry.name.endswith(".yaml")
    }
    return dict(sorted(found.items()))


def recipe_summary(recipe: Traversable, width: int = 100) -> str:
    """The first paragraph of the recipe's leading comment (what it trains, on what), cut to ``width``."""
    words: list[str] = []
    for line in recipe.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip() if line.startswith("#") else ""
        if not text:
            break
        words += text.split()
    summary = " ".join(words)
    if len(summary) <= width:
        return summary
    return summary[: summary.rfind(" ", 0, width - 1)].rstrip(",;:") + " …"


def recipe_listing() -> str:
    """``zoo train --list``: one packaged recipe a line, its name and what it trains."""
    recipes = packaged_recipes()
    if not recipes:
        return "no packaged recipes found (zoo is installed without its recipes/ folder)"
    width = max(map(len, recipes))
    return "\n".join(f"{name:<{width}}  {recipe_summary(path)}".rstrip() for name, path in recipes.items())


def find_recipe(name: str) -> Traversable:
    """A recipe file that exists, else the packaged recipe ``name`` (``vq16_tiny`` or ``vq16_tiny.yaml``).

    Raises ``RecipeError`` (one line: the closest packaged names, then all of them) when neither exists.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise RecipeError(f"recipe {name} is a folder, not a YAML file")
    recipes = packaged_recipes()
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    if os.sep not in name and "/" not in name and stem in recipes:
        return recipes[stem]
    close = difflib.get_close_matches(Path(stem).name, list(recipes), n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    listed = ", ".join(recipes) or "none (zoo is installed without its recipes/ folder)"
    looks_like_path = path.suffix in RECIPE_SUFFIXES or len(path.parts) > 1
    what = f"recipe file {name} not found" if looks_like_path else f"no recipe file or packaged recipe {name}"
    raise RecipeError(f"{what}; {hint}packaged recipes: {listed}")


def data_path_candidates(value: str, recipe: Path) -> list[Path]:
    """Where a recipe's data path ``value`` is looked for, first match wins (see the module docstring)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return [path]
    folder = recipe.resolve().parent
    bases = [folder, *([folder.parent] if folder.name == "recipes" else []), Path.cwd()]
    candidates: list[Path] = []
    for base in bases:
        candidate = Path(os.path.normpath(base / path))
        if candidate not in candidates:
            candidates.append(candidate)
    return candidates


def _overridden(overrides: Sequence[str], *options: str) -> bool:
    """Whether the command line sets any of ``options`` (``--a.b value`` or ``--a.b=value``)."""
    return any(arg == option or arg.startswith(option + "=") for arg in overrides for option in options)


def resolve_data_paths(
    config: dict[str, Any], recipe: Path, overrides: Sequence[str], *, require: bool
) -> list[str]:
    """Command-line overrides that point the recipe's relative data paths at the files they name.

    A path found from the current directory needs none (the recipe runs as written). With ``require``
    (a real run, not ``--print_config`` or ``--help``), a data path found nowhere raises ``RecipeError``
    naming the recipe key and every place tried; paths the command line sets are the user's and left alone.
    """
    data = config.get("data")
    if not isinstance(data, dict) or _overridden(overrides, "--data", "--data.class_path"):
        return []
    init_args = data.get("init_args")
    if not isinstance(init_args, dict):
        return []
    added: list[str] = []
    for key, value in init_args.items():
        if not (key == "path" or key.endswith("_path")) or not isinstance(value, str) or not value:
            continue
        if _overridden(overrides, f"--data.init_args.{key}", f"--data.{key}"):
            continue
        candidates = data_path_candidates(value, recipe)
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            if require:
                tried = ", ".join(map(str, candidates))
                raise RecipeError(
                    f"data.init_args.{key} {value} not found (tried {tried}); "
                    f"give the data with --data.init_args.{key} PATH"
                )
            continue
        as_written = Path(value).expanduser()
        if as_written.exists() and os.path.samefile(as_written, found):
            continue
        added += [f"--data.init_args.{key}", str(found)]
    return added
