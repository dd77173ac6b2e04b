"""The README's main job runs end to end (a few steps only; the full run is `make demo`)."""

from __future__ import annotations

from PIL import Image

import zoo
from zoo.cli import main as zoo_main
from zoo.demo import main


def test_demo_runs_end_to_end(tmp_path, capsys) -> None:
    assert main(["--steps", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vq16_tiny" in out and "JPEG" in out and "WebP" in out and "bits/pixel" in out
    assert "vs WebP at" in out and ("loses by" in out or "wins by" in out)
    run = tmp_path / "run"
    assert {"config.yaml", "hparams.yaml", "checkpoints"} <= {p.name for p in run.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())  # TensorBoard log
    model = zoo.load(tmp_path / "model")
    assert model.arch == "vq16_tiny"
    assert "3 training steps" in (tmp_path / "model" / "README.md").read_text()
    bench = tmp_path / "bench"
    assert (bench / "vq16_tiny.md").is_file() and (bench / "vq16_tiny_rd.png").is_file()
    picture = Image.open(bench / "vq16_tiny_samples.png")
    # the two whole held-out photos: originals, the tokenizer and WebP, each at least 256 px high
    assert picture.height >= 3 * 256 and picture.width >= 2 * 256

    # `zoo export --bench` measures the export and puts its own table in its card, in place of the
    # family's tiny-recipe table that the card template carries
    again = tmp_path / "again"
    assert (
        zoo_main(["export", str(run), "-o", str(again), "--bench", "skimage-val", "--bench-limit", "1"]) == 0
    )
    card = (again / "README.md").read_text()
    assert card.count("<!-- zoo-bench:begin -->") == 1
    section = card.split("<!-- zoo-bench:begin -->")[1].split("<!-- zoo-bench:end -->")[0]
    assert "saved weights" in section and "1 items" in section and "trained 200 steps" not in section
    assert (again / "bench" / "vq16_tiny_rd.png").is_file()
