"""Loading and publishing under a user's mistakes: a damaged config or weights file, an invalid repo id
or an unreachable Hub each give one clear error (and `zoo push` sends nothing it would have to take back)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from zoo.cli import main
from zoo.errors import CheckpointError, HubError


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "vq"
    zoo.create("vq16_tiny").save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: {**c, "architecture": 3}, "'architecture' must be a model name"),
        (lambda c: {**c, "model_args": [1, 2]}, "'model_args' must be a mapping"),
        (
            lambda c: {**c, "model_args": {**c["model_args"], "codebook_size": "many"}},
            "model_args do not fit",
        ),
        (lambda c: {**c, "model_args": {**c["model_args"], "channel_mult": None}}, "model_args do not fit"),
    ],
)
def test_a_bad_config_is_one_clear_error(saved: Path, change, message) -> None:
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps(change(config)))
    with pytest.raises(CheckpointError, match=message):
        zoo.load(saved)


def test_a_config_that_is_a_folder_is_named(saved: Path) -> None:
    (saved / "config.json").unlink()
    (saved / "config.json").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        zoo.load(saved)


def test_push_refuses_truncated_weights_before_sending_anything(hub, saved: Path, capsys) -> None:
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["push", str(saved), "tester/truncated"]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    assert not [r for r in hub.requests if "tester/truncated" in str(r)]


def test_push_refuses_weights_that_do_not_fit_the_config(hub, saved: Path, tmp_path: Path) -> None:
    zoo.create("vq16_tiny", codebook_size=128).save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "model.safetensors").replace(saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="wrong shapes"):
        zoo.hub.push_folder(saved, "tester/mismatch")


def test_push_with_an_invalid_repo_id_or_no_hub_is_one_line(saved: Path, monkeypatch, capsys) -> None:
    assert main(["push", str(saved), "not a/valid//id"]) == 2
    assert "invalid repo id" in capsys.readouterr().err
    monkeypatch.setenv("ZOO_HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(HubError, match="failed"):
        zoo.hub.push_folder(saved, "tester/unreachable")


def test_a_tiny_size_without_weights_says_how_to_get_them() -> None:
    from zoo.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match=r"zoo train vq16_tiny; zoo export runs/vq16_tiny"):
        zoo.load("vq16_tiny")


def test_a_folder_named_like_a_model_does_not_shadow_the_registry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    zoo.create("kl16_tiny").save_pretrained(tmp_path / "vq16")  # a folder called like a registered model
    with pytest.warns(UserWarning, match="loading it from the registry"):
        kind = zoo.hub._parse("vq16")
    assert kind == ("registry", "vq16", None)
    assert zoo.load("./vq16").arch == "kl16_tiny" and zoo.load("local-dir:vq16").arch == "kl16_tiny"


def test_info_and_cards_describe_the_tiny_size_itself(tmp_path: Path) -> None:
    assert "4x downsampling" in zoo.info("vq16_tiny")["summary"]
    zoo.create("vq16_tiny").save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert 'zoo.load("path/to/this/folder")' in card and 'zoo.load("vq16_tiny")' not in card
