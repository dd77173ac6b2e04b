"""The data folders that ship with zoo: ``recipes/`` (training recipes) and ``model_cards/`` (card templates).

Both sit at the top of the repository. A wheel installs them inside the package as ``zoo/_recipes`` and
``zoo/_model_cards`` (pyproject.toml's package-dir), so a ``pip install`` user has them too; a checkout or
an editable install (which maps only Python packages) reads the repository's own folders.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

ShippedFolder = Literal["recipes", "model_cards"]


def shipped_folder(name: ShippedFolder) -> Traversable:
    """``zoo/_<name>`` of an installed wheel, else ``<name>/`` at the top of the checkout zoo runs from."""
    installed = resources.files("zoo") / f"_{name}"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / name
