"""What ships: the explicit package list covers every package, and a built wheel carries the recipes and
model cards, so that a ``pip install`` user can ``zoo train vq16_tiny`` and gets each family's own card."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))
CARDS = sorted(p.name for p in (ROOT / "model_cards").glob("*.md"))


def test_every_package_is_listed_and_kernels_install_under_zoo() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "zoo").rglob("__init__.py")}
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert config["package-dir"] == {
        "zoo.kernels": "kernels",
        "zoo._recipes": "recipes",
        "zoo._model_cards": "model_cards",
    }
    assert set(config["package-dir"]) <= listed
    import zoo.kernels

    assert Path(zoo.kernels.__file__).resolve() == ROOT / "kernels" / "__init__.py"


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel setuptools builds from a copy of the sources (about 2 s; the checkout stays untouched)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("zoo", "kernels", "recipes", "model_cards"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta; print(build_meta.build_wheel('../dist'))"],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return work / "dist" / done.stdout.split()[-1]


def test_built_wheel_ships_every_recipe_and_model_card(built_wheel: Path) -> None:
    names = zipfile.ZipFile(built_wheel).namelist()
    assert sorted(n.removeprefix("zoo/_recipes/") for n in names if n.startswith("zoo/_recipes/")) == RECIPES
    cards = sorted(n.removeprefix("zoo/_model_cards/") for n in names if n.startswith("zoo/_model_cards/"))
    assert cards == CARDS
    assert "zoo/kernels/__init__.py" in names and "zoo/py.typed" in names


INSTALLED_CHECK = """
import contextlib, io, json
import torch
import zoo
from zoo._factory import create
from zoo.cards import render_card, template_path
from zoo.cli import main
from zoo.recipes import find_recipe
with torch.device("meta"):
    card = render_card(create("vq16_tiny"))
listing = io.StringIO()
with contextlib.redirect_stdout(listing):
    code = main(["train", "--list"])
print(json.dumps({
    "zoo": zoo.__file__,
    "recipe": str(find_recipe("vq16_tiny")),
    "template": str(template_path("vq16")),
    "card": card,
    "list": [code, listing.getvalue()],
}))
"""


def test_installed_wheel_resolves_recipes_and_family_cards_from_the_package(
    built_wheel: Path, tmp_path: Path
) -> None:
    """The wheel unpacked as site-packages would hold it, imported from a folder with no checkout."""
    site = tmp_path / "site"
    zipfile.ZipFile(built_wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install's finder
    done = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["zoo"]).parent == site / "zoo"
    assert Path(found["recipe"]) == site / "zoo" / "_recipes" / "vq16_tiny.yaml"
    assert Path(found["template"]) == site / "zoo" / "_model_cards" / "vq16.md"
    assert _family_only_line("vq16") in found["card"]
    code, listing = found["list"]
    assert code == 0 and [line.split()[0] for line in listing.splitlines()] == [n[:-5] for n in RECIPES]


def _family_only_line(family: str) -> str:
    """A plain line of the family's card template that the generic default.md lacks."""
    default = (ROOT / "model_cards" / "default.md").read_text().splitlines()
    for line in (ROOT / "model_cards" / f"{family}.md").read_text().splitlines():
        if line.strip() and "{" not in line and "}" not in line and line not in default:
            return line
    raise AssertionError(f"model_cards/{family}.md has no line of its own")


def test_cards_use_the_family_template_and_never_a_silent_generic_one(monkeypatch, tmp_path: Path) -> None:
    import torch

    import zoo.cards
    from zoo._factory import create
    from zoo.cards import render_card

    with torch.device("meta"):
        model = create("vq16_tiny")
    assert _family_only_line("vq16") in render_card(model)
    monkeypatch.setattr(zoo.cards, "shipped_folder", lambda name: tmp_path)  # an install without its cards
    with pytest.raises(ZooError, match="no card template for 'vq16' nor default.md"):
        render_card(model)


def test_recipe_names_resolve_from_the_package(monkeypatch, tmp_path: Path, capsys) -> None:
    from zoo._shipped import shipped_folder
    from zoo.recipes import RecipeError, find_recipe

    monkeypatch.chdir(tmp_path)  # no recipes/ here: names come from the package
    packaged = shipped_folder("recipes") / "vq16_tiny.yaml"
    assert find_recipe("vq16_tiny") == packaged and find_recipe("vq16_tiny.yaml") == packaged
    own = tmp_path / "vq16_tiny.yaml"
    own.write_text("trainer: {}\n")
    assert Path(find_recipe("vq16_tiny.yaml")).resolve() == own  # a file that exists is taken as given
    with pytest.raises(RecipeError, match="did you mean vq16_tiny"):
        find_recipe("vq16_tinny")
    with pytest.raises(RecipeError, match="recipe file recipes/vq16_tiny.yaml not found"):
        find_recipe("recipes/vq16_tiny.yaml")  # a path is a path: no fallback to the package

    assert main(["train", "no_such_recipe"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no recipe file or packaged recipe no_such_recipe" in err
    assert all(name.removesuffix(".yaml") in err for name in RECIPES)

    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [n[:-5] for n in RECIPES]
    assert "VQ-16 at its tiny size" in out


def test_train_by_name_prints_the_packaged_recipe(monkeypatch, tmp_path: Path, capsys) -> None:
    from zoo.training.cli import train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        train(["vq16_tiny", "--print_config"])
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model: vq16_tiny" in printed and "default_root_dir: runs/vq16_tiny" in printed
