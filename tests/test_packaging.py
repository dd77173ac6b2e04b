"""The explicit package list in pyproject.toml must cover every package directory (kernels included)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_and_kernels_install_under_zoo() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "zoo").rglob("__init__.py")}
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert config["package-dir"] == {"zoo.kernels": "kernels"} and "zoo.kernels" in listed
    import zoo.kernels

    assert Path(zoo.kernels.__file__).resolve() == ROOT / "kernels" / "__init__.py"
