"""A recipe's relative data paths name the same files from any working directory: they are looked up from
the recipe's folder, then (for a recipe in a ``recipes/`` folder) the folder above it, then the current
directory; a path found nowhere is one line naming the recipe key and every place tried."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from zoo.cli import main
from zoo.recipes import RecipeError, data_path_candidates, resolve_data_paths

ROOT = Path(__file__).resolve().parents[1]
SHARED_FSDD = "../shared/data/audio/fsdd/fsdd.npz"


def _project(tmp_path: Path, data_path: str) -> Path:
    """``proj/recipes/tiny.yaml``: vq16_tiny's recipe reading ``data_path``, beside ``proj/photos``."""
    photos = tmp_path / "proj" / "photos"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    recipe = tmp_path / "proj" / "recipes" / "tiny.yaml"
    recipe.parent.mkdir()
    text = (ROOT / "recipes" / "vq16_tiny.yaml").read_text()
    assert "    path: null\n" in text
    recipe.write_text(text.replace("    path: null\n", f"    path: {data_path}\n"))
    return recipe


def _config(path: str, **more: str) -> dict:
    return {"data": {"class_path": "zoo.data.ImageDataModule", "init_args": {"path": path, **more}}}


def test_a_recipe_runs_from_another_directory_with_its_data_and_writes_runs_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _project(tmp_path, "../photos")  # written from the project root, as the repository's recipes
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code = main(
        [
            "train",
            str(recipe),
            "--trainer.max_steps",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.limit_val_batches",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--data.init_args.batch_size",
            "4",
        ]
    )
    assert code == 0
    run = elsewhere / "runs" / "vq16_tiny"  # outputs stay relative to the current directory
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["init_args"]["path"] == str(tmp_path / "proj" / "photos")


def test_a_missing_data_path_is_one_line_naming_the_key_and_every_place_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _project(tmp_path, "../no_photos")
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(recipe), "--trainer.max_steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    tried = [tmp_path / "proj" / "no_photos", tmp_path / "no_photos"]  # recipes/.., then the cwd
    assert "\n" not in err and "Traceback" not in err, err
    assert "data.init_args.path ../no_photos not found" in err and all(str(p) in err for p in tried), err
    assert not (tmp_path / "runs").exists()  # refused before Lightning started a run


def test_lookup_order_recipe_folder_then_project_root_then_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = tmp_path / "proj" / "recipes" / "r.yaml"
    recipe.parent.mkdir(parents=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert data_path_candidates("d", recipe) == [recipe.parent / "d", tmp_path / "proj" / "d", cwd / "d"]
    assert data_path_candidates("/abs/d", recipe) == [Path("/abs/d")]
    loose = tmp_path / "loose" / "r.yaml"  # not in a recipes/ folder: no project root above it
    assert data_path_candidates("d", loose) == [loose.parent / "d", cwd / "d"]

    (cwd / "d").mkdir()
    assert resolve_data_paths(_config("d"), recipe, [], require=True) == []  # found as written: unchanged
    (tmp_path / "proj" / "d").mkdir()  # the project root's copy now comes first
    assert resolve_data_paths(_config("d"), recipe, [], require=True) == [
        "--data.init_args.path",
        str(tmp_path / "proj" / "d"),
    ]
    (recipe.parent / "v").mkdir()
    assert resolve_data_paths(_config("d", val_path="v"), recipe, [], require=True)[-2:] == [
        "--data.init_args.val_path",
        str(recipe.parent / "v"),
    ]


def test_paths_the_command_line_gives_and_shows_without_running_are_not_checked(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    missing = _config("nowhere")
    assert resolve_data_paths(missing, recipe, ["--data.init_args.path", "/data/x"], require=True) == []
    assert resolve_data_paths(missing, recipe, ["--data.init_args.path=/data/x"], require=True) == []
    assert resolve_data_paths(missing, recipe, [], require=False) == []  # --print_config, --help
    assert resolve_data_paths(_config(None), recipe, [], require=True) == []  # built-in data
    with pytest.raises(RecipeError, match=r"data.init_args.path /nowhere/x not found \(tried /nowhere/x\)"):
        resolve_data_paths(_config("/nowhere/x"), recipe, [], require=True)


def test_repository_recipes_find_the_shared_data_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = (ROOT / SHARED_FSDD).resolve()
    if not shared.is_file():
        pytest.skip(f"{SHARED_FSDD} is not here")
    recipe = ROOT / "recipes" / "cat_tiny.yaml"
    config = yaml.safe_load(recipe.read_text())
    assert config["data"]["init_args"]["path"] == SHARED_FSDD
    monkeypatch.chdir(tmp_path)
    key, found = resolve_data_paths(config, recipe, [], require=True)
    # the same file, whether ../shared is a folder or (as in some checkouts) a symlink to one
    assert key == "--data.init_args.path" and Path(found).is_absolute() and Path(found).resolve() == shared
    monkeypatch.chdir(ROOT)  # from the repository root the recipe runs exactly as written
    assert resolve_data_paths(config, recipe, [], require=True) == []
