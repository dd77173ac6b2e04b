"""The README's main job runs end to end (a few steps only; the full run is `make demo`)."""

from __future__ import annotations

import torch

import zoo
from zoo.demo import jpeg_at_or_above, main, psnr
from zoo.io import read_image


def test_demo_runs_end_to_end(tmp_path, capsys) -> None:
    assert main(["--steps", "3", "--batch-size", "4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vq16_tiny" in out and "JPEG" in out and "bits/pixel" in out
    model = zoo.load(tmp_path / "model")
    assert model.arch == "vq16_tiny"
    picture = read_image(tmp_path / "side_by_side.png")
    assert picture.shape == (3, 64, 256)  # 8 originals above their 8 reconstructions


def test_jpeg_baseline_meets_the_rate_and_psnr_is_sane(photos) -> None:
    decoded, rate, quality = jpeg_at_or_above(photos[0], 2.0)
    assert rate >= 2.0 and 1 <= quality <= 100
    assert psnr(photos[0], photos[0]) > 100
    assert 10 < psnr(decoded, photos[0]) < 60
    assert psnr(torch.zeros(3, 4, 4), torch.ones(3, 4, 4)) == 0.0
