"""`zoo bench`'s core and image suite: rates from known token layouts, metrics against known answers,
classic codecs at matched rates, the report's verdicts, and the command end to end."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.benchmarking import bench
from zoo.benchmarking.images import ImageSuite, cheapest_quality_at_least, compress, image_metrics
from zoo.benchmarking.rate import codebook_use, token_rate
from zoo.benchmarking.report import BenchReport, Metric, Row
from zoo.cli import main
from zoo.tokens import Tokens


def test_raw_rate_is_log2_of_the_codebooks_per_position() -> None:
    ids = torch.randint(0, 64, (3, 2, 4, 5))
    tokens = Tokens(ids=ids, grid=(4, 5), codebook_sizes=(64, 16))
    rate = token_rate([tokens])
    assert rate.items == 3 and rate.positions_per_item == 20
    assert rate.raw_bits == pytest.approx(20 * (6 + 4))


def test_entropy_rate_of_constant_and_uniform_ids() -> None:
    constant = Tokens(ids=torch.full((4, 8), 7), grid=(8,), codebook_sizes=(256,))
    assert token_rate([constant]).entropy_bits == 0
    uniform = Tokens(ids=torch.arange(256).reshape(4, 64), grid=(64,), codebook_sizes=(256,))
    assert token_rate([uniform]).entropy_bits == pytest.approx(64 * 8)
    use = codebook_use([uniform])
    assert use.used_fraction == (1.0,) and use.perplexity[0] == pytest.approx(256)


def test_padding_positions_are_not_counted() -> None:
    ids = torch.tensor([[1, 2, -1, -1], [3, 3, 3, -1]])
    tokens = Tokens(ids=ids, grid=(4,), codebook_sizes=(16,), lengths=torch.tensor([2, 3]))
    rate = token_rate([tokens])
    assert rate.positions_per_item == pytest.approx(2.5)
    assert rate.raw_bits == pytest.approx(2.5 * 4)


def test_continuous_latents_are_counted_at_16_bits() -> None:
    tokens = Tokens(latents=torch.randn(2, 16, 4, 4), grid=(4, 4))
    rate = token_rate([tokens])
    assert rate.continuous and rate.entropy_bits is None and rate.raw_bits == 16 * 16 * 16


def test_image_metrics_identity_and_a_known_error() -> None:
    x = torch.rand(3, 40, 48)
    same = image_metrics(x, x)
    assert math.isinf(same["PSNR"]) and same["SSIM"] == pytest.approx(1.0)
    assert math.isnan(same["MS-SSIM"])  # too small for five scales
    shifted = (x + 0.1).clamp(0, 1)
    mse = float(((shifted - x) ** 2).mean())
    assert image_metrics(x, shifted)["PSNR"] == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    big = torch.rand(3, 176, 180)
    assert image_metrics(big, big)["MS-SSIM"] == pytest.approx(1.0, abs=1e-4)


def test_classic_codecs_reach_the_requested_rate_at_their_cheapest_quality() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 64, 64)
    bits = 1.0 * 64 * 64
    for codec in ("JPEG", "WebP"):
        quality, decoded, size = cheapest_quality_at_least(image, codec, bits)
        assert 8 * size >= bits
        assert decoded.shape == image.shape
        if quality > 1:
            assert 8 * compress(image, codec, quality - 1)[1] < bits or quality == 100
    png, size = compress(image, "PNG", 0)
    assert torch.equal((png * 255).round(), (image * 255).round())
    assert size == len(_png_bytes(image))


def _png_bytes(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    arr = (image * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _report(rows: list[Row]) -> BenchReport:
    return BenchReport(
        model="m",
        modality="image",
        data="d",
        split="s",
        items=1,
        rate_unit="bits/pixel",
        metrics=[Metric("PSNR", True, "dB"), Metric("LPIPS", False)],
        rows=rows,
        command="zoo bench m",
    )


def test_verdicts_compare_with_the_cheapest_classic_setting_at_or_above_the_rate() -> None:
    learned = Row("tok", "learned", 0.5, {"PSNR": 30.0, "LPIPS": 0.2})
    rows = [
        learned,
        Row("A q1", "classic", 0.4, {"PSNR": 35.0, "LPIPS": 0.1}, family="A", setting="q1"),
        Row("A q2", "classic", 0.6, {"PSNR": 28.0, "LPIPS": 0.3}, family="A", setting="q2"),
        Row("A q3", "classic", 0.9, {"PSNR": 40.0, "LPIPS": 0.05}, family="A", setting="q3"),
        Row("B", "classic", 0.3, {"PSNR": 20.0}, family="B", setting="b"),
        Row("lossless", "reference", 8.0, {"PSNR": math.inf}, family="PNG"),
    ]
    report = _report(rows)
    assert report.matched(learned)["A"] is rows[2]
    assert report.matched(learned)["B"] is None and "PNG" not in report.matched(learned)
    verdicts = report.verdicts(learned)
    assert "tok wins" in verdicts[0] and "q2" in verdicts[0]
    assert "not compared" in verdicts[1]
    markdown = report.to_markdown()
    assert "| ∞ |" in markdown and "**tok**" in markdown and "zoo bench m" in markdown


def test_mixed_verdict_names_each_side() -> None:
    learned = Row("tok", "learned", 1.0, {"PSNR": 30.0, "LPIPS": 0.3})
    point = Row("A", "classic", 1.0, {"PSNR": 29.0, "LPIPS": 0.1}, family="A", setting="s")
    (verdict,) = _report([learned, point]).verdicts(learned)
    assert "mixed" in verdict and "better on PSNR" in verdict and "worse on LPIPS" in verdict


@pytest.fixture(scope="module")
def cifar_npz(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(128, 40, (6, 32, 32, 3)), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "test.npz"
    np.savez(path, x=x)
    return str(path)


def test_image_bench_end_to_end(cifar_npz: str, tmp_path: pytest.TempPathFactory) -> None:
    report = bench("vq16_tiny", cifar_npz, limit=4, out=tmp_path)
    learned = report.rows[0]
    model = zoo.create("vq16_tiny")
    # 32 px whole images, downsample 4: 8 x 8 ids of log2(codebook) bits over 1024 pixels
    assert learned.rate == pytest.approx(64 * math.log2(model.codebook_sizes[0]) / 1024)
    assert learned.entropy_rate is not None and learned.entropy_rate <= learned.rate + 1e-9
    assert learned.extra["whole_images"] is True and report.items == 4
    assert {"encode img/s", "decode img/s"} <= set(learned.speed)
    families = report.families()
    assert set(families) == {"JPEG", "WebP"}
    for family in families.values():
        matched = [r for r in family if r.setting.startswith("matched")]
        assert matched and matched[0].rate >= learned.rate
    data = json.loads((tmp_path / "vq16_tiny.json").read_text())
    assert data["rows"][0]["codec"] == "vq16_tiny" and data["verdicts"]["vq16_tiny"]
    assert "Codebook use of `vq16_tiny`" in (tmp_path / "vq16_tiny.md").read_text()
    assert (tmp_path / "vq16_tiny_rd.png").stat().st_size > 1000
    samples = Image.open(tmp_path / "vq16_tiny_samples.png")
    assert samples.height >= 3 * 256  # originals, tokenizer and WebP, each at least 256 px high


def test_fixed_resolution_models_are_measured_on_what_prepare_makes(cifar_npz: str) -> None:
    report = bench("restok_tiny", cifar_npz, limit=2, classic=False)
    assert report.rows[0].extra["whole_images"] is False or report.rows[0].setting == "whole images"
    assert report.rows[0].rate > 0


def test_control_row_is_the_untrained_architecture(cifar_npz: str, tmp_path: pytest.TempPathFactory) -> None:
    model = zoo.create("vq16_tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "trained")
    report = bench(str(tmp_path / "trained"), cifar_npz, limit=2, classic=False, control=True)
    kinds = [r.kind for r in report.rows]
    assert kinds == ["learned", "control"]
    assert report.rows[0].metrics != report.rows[1].metrics
    assert report.rows[0].extra["weights"].startswith("saved weights")


def test_cli_bench_prints_the_table_and_writes_files(
    cifar_npz: str, tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "vq16_tiny", cifar_npz, "--limit", "2", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| **vq16_tiny** |" in out and "Where `vq16_tiny` wins and loses" in out
    assert (tmp_path / "vq16_tiny.md").read_text().startswith("## `vq16_tiny`")
    assert main(["bench", "vq16_tiny", cifar_npz, "--limit", "0"]) == 2
    assert main(["bench", "vq16_tiny", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err


def test_image_suite_reads_a_folder(tmp_path: pytest.TempPathFactory) -> None:
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    items = ImageSuite().load_items(str(tmp_path), 2)
    assert [item.name for item in items.items] == ["0.png", "1.png"]


def test_random_weights_measure_a_paper_size_without_its_checkpoint(cifar_npz: str) -> None:
    """Offline, `zoo bench vq16` cannot fetch LlamaGen's checkpoint; --random-weights measures the paper
    architecture anyway (its speed does not depend on the weights), labelled so."""
    report = bench("vq16", cifar_npz, limit=1, classic=False, random_weights=True)
    row = report.rows[0]
    assert row.extra["weights"].startswith("random weights") and "--random-weights" in report.command
    assert row.rate == pytest.approx(4 * math.log2(16384) / 1024)  # 32 px: 2 x 2 ids of 14 bits
    assert row.speed["encode img/s"] > 0
    with pytest.raises(zoo.errors.ZooError, match="registered architecture"):
        bench("./not-registered", cifar_npz, random_weights=True)


def test_cards_keep_upstream_reported_metrics_apart_from_what_zoo_measured() -> None:
    from zoo.cards import render_card

    card = render_card(zoo.create("wavtokenizer_tiny"), metrics={"mel": 1.0})
    reported = card.split("<!-- upstream-metrics:begin -->")[1].split("<!-- upstream-metrics:end -->")[0]
    assert "`wavtokenizer_75.small_libritts` | UTMOS (LibriTTS test-clean) | 4.05" in reported
    assert "not measured by zoo" in reported
    assert "## Validation metrics (measured by zoo while training)" in card
    measured = card.split("<!-- zoo-bench:begin -->")[1].split("<!-- zoo-bench:end -->")[0]
    assert "wavtokenizer_tiny" in measured and "UTMOS" not in measured
