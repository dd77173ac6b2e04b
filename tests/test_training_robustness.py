"""`zoo train` and `zoo export` under a user's mistakes: one line and a non-zero exit, never a traceback;
the newest "last" checkpoint is the one exported."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from zoo.cli import main
from zoo.training.cli import find_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "vq16_tiny.yaml"


def test_train_help_exits_zero_and_explains_recipes(capsys) -> None:
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "zoo train RECIPE.yaml" in out and "--ckpt_path last" in out
    assert main(["train"]) == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text + "\n  - : [\n", "not a valid recipe YAML"),
        (lambda text: "- just\n- a list\n", "not a mapping of sections"),
        (lambda text: text.replace("model: vq16_tiny", "model: vq16_tinny"), "vq16_tinny"),
        (lambda text: text.replace("l1: 1.0", "l7: 1.0"), "l7"),
        (lambda text: text.replace("lr: 5.0e-4", "lr: -1.0"), "learning rate: -1.0"),
        (lambda text: text.replace("batch_size: 16", "batch_size: 0"), "batch_size"),
        (lambda text: text.replace("path: null", "path: /nonexistent/images"), "/nonexistent/images"),
    ],
)
def test_recipe_mistakes_are_one_line(tmp_path: Path, capsys, edit, message) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(edit(RECIPE.read_text()))
    code = main(
        ["train", str(recipe), "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err[-2000:]


def test_export_takes_the_newest_last_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"x": 1}, folder / "last.ckpt")
    torch.save({"x": 2}, folder / "epoch=0-step=3.ckpt")
    time.sleep(0.01)
    torch.save({"x": 3}, folder / "last-v1.ckpt")  # a restarted run's end
    assert find_checkpoint(tmp_path / "run").name == "last-v1.ckpt"
    os.utime(folder / "last.ckpt")  # now last.ckpt is the newer one
    assert find_checkpoint(tmp_path / "run").name == "last.ckpt"
    shutil.rmtree(folder)
    folder.mkdir()
    torch.save({"x": 4}, folder / "epoch=0-step=3.ckpt")
    assert find_checkpoint(tmp_path / "run").name == "epoch=0-step=3.ckpt"
