"""The README's main job runs end to end (a few steps only; the full run is `make demo`)."""

from __future__ import annotations

import torch

import zoo
from zoo.demo import jpeg_at_or_above, jpeg_scan_at_or_above, main, psnr
from zoo.io import read_image


def test_demo_runs_end_to_end(tmp_path, capsys) -> None:
    # Three steps cannot beat JPEG, so the exit status is 1; the full run is `make demo`.
    assert main(["--steps", "3", "--out", str(tmp_path)]) in (0, 1)
    out = capsys.readouterr().out
    assert "vq16_tiny" in out and "JPEG" in out and "bits/pixel" in out
    run = tmp_path / "run"
    assert {"config.yaml", "hparams.yaml", "checkpoints"} <= {p.name for p in run.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())  # TensorBoard log
    model = zoo.load(tmp_path / "model")
    assert model.arch == "vq16_tiny"
    assert "3 training steps" in (tmp_path / "model" / "README.md").read_text()
    picture = read_image(tmp_path / "side_by_side.png")
    assert picture.shape == (3, 96, 256)  # 8 originals above their reconstructions and JPEG's


def test_jpeg_scan_rate_leaves_out_the_headers(photos) -> None:
    _, whole_rate, whole_quality = jpeg_at_or_above(photos[0], 0.5)
    scan_decoded, scan_rate, scan_quality = jpeg_scan_at_or_above(photos[0], 0.5)
    # Headers alone put a 32x32 JPEG above 0.5 bpp; without them a higher quality is needed.
    assert whole_quality == 1 and whole_rate > 3.0
    assert scan_rate >= 0.5 and scan_quality > whole_quality
    assert 10 < psnr(scan_decoded, photos[0]) < 60


def test_jpeg_baseline_meets_the_rate_and_psnr_is_sane(photos) -> None:
    decoded, rate, quality = jpeg_at_or_above(photos[0], 2.0)
    assert rate >= 2.0 and 1 <= quality <= 100
    assert psnr(photos[0], photos[0]) > 100
    assert 10 < psnr(decoded, photos[0]) < 60
    assert psnr(torch.zeros(3, 4, 4), torch.ones(3, 4, 4)) == 0.0
