"""The SVG benchmark suite: rates from known token layouts, picture metrics on known pictures, the classic
text/DEFLATE/byte-BPE ladders, HiVG on real icons (skipped without ../shared/data)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from zoo.benchmarking.rate import token_rate
from zoo.benchmarking.report import BenchReport
from zoo.benchmarking.svg import PSNR_CAP, SVGItems, SVGSuite, minify_paths, picture_metrics, rasterise
from zoo.errors import ZooError
from zoo.tokenizer import Tokenizer
from zoo.tokens import Tokens

pytest.importorskip("resvg_py")

NS = 'xmlns="http://www.w3.org/2000/svg"'
CPU = torch.device("cpu")


def square(x: float, y: float = 4, side: float = 8) -> str:
    """A filled square on a 16-unit canvas: at 128 px every edge lies on a pixel boundary (x8)."""
    return f'<svg {NS} viewBox="0 0 16 16"><path d="M{x} {y}h{side}v{side}h-{side}z"/></svg>'


def codec(rewrite: Callable[[str], str] | None = None) -> ByteCodec:
    model = ByteCodec()
    if rewrite is not None:
        model.rewrite = rewrite
    return model


class ByteCodec(Tokenizer):
    """A stand-in SVG tokenizer: one id per UTF-8 byte (codebook 256), decoded through ``rewrite``."""

    modality = "svg"
    rewrite: Callable[[str], str] = staticmethod(lambda s: s)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (256,)

    def prepare(self, media: Any, *, path: Any = None) -> str:
        return media

    def encode(self, texts: Sequence[str]) -> Tokens:
        if any("refused" in t for t in texts):
            raise ValueError("this codec refuses icons marked 'refused'")
        rows = [list(t.encode("utf-8")) for t in texts]
        ids = torch.full((len(rows), max(map(len, rows))), -1, dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in rows])
        return self.make_tokens(ids=ids, grid=(ids.shape[1],), codebook_sizes=(256,), lengths=lengths)

    def decode(self, tokens: Tokens) -> list[str]:
        assert tokens.ids is not None and tokens.lengths is not None
        rows = [tokens.ids[b, : int(n)].tolist() for b, n in enumerate(tokens.lengths)]
        return [self.rewrite(bytes(r).decode("utf-8")) for r in rows]


def items_of(texts: list[str], sources: list[str] | None = None) -> SVGItems:
    from zoo.benchmarking.svg import Icon

    return SVGItems([Icon(f"t/{i}", t) for i, t in enumerate(texts)], "test", "val", sources=sources or [])


def test_identity_shift_and_garbage_give_the_expected_scores_and_exact_byte_rate() -> None:
    """Identity: IoU 1, PSNR at the cap; a square moved by half its side: IoU 1/3 and 10 log10(4) dB;
    undecodable output: validity 0, charged as a blank picture. 8 bits per byte, exactly."""
    texts = [square(2), square(4, 6), square(6, side=6)]
    items = items_of(texts)
    suite = SVGSuite()
    identity = suite.measure_learned(codec(), items, device=CPU, name="identity")
    mean_bytes = sum(len(t.encode()) for t in texts) / len(texts)
    assert identity.rate == pytest.approx(8 * mean_bytes)
    assert identity.metrics["tokens/icon"] == pytest.approx(mean_bytes)
    assert identity.metrics["IoU"] == 1.0 and identity.metrics["PSNR"] == PSNR_CAP
    assert identity.metrics["validity"] == 1.0
    assert identity.entropy_rate is not None and identity.entropy_rate < identity.rate
    assert {"encode icons/s", "decode icons/s"} <= set(identity.speed)
    assert identity.extra["vocab"] == [256] and 0 < identity.extra["codebook_used"][0] < 1

    moved = suite.measure_learned(
        codec(lambda s: s.replace('d="M2 ', 'd="M6 ')), items_of([square(2)]), device=CPU, name="shift"
    )
    assert moved.metrics["IoU"] == pytest.approx(1 / 3, abs=1e-6)
    assert moved.metrics["PSNR"] == pytest.approx(10 * math.log10(4), abs=1e-3)

    garbage = suite.measure_learned(
        codec(lambda s: s[: len(s) // 2]), items_of(texts), device=CPU, name="garbage"
    )
    assert garbage.metrics["validity"] == 0.0 and garbage.metrics["IoU"] == 0.0
    assert garbage.extra["invalid"] == 3

    refused = square(1).replace("<path", '<path class="refused"')
    partly = suite.measure_learned(codec(), items_of([square(2), refused, square(3)]), device=CPU, name="p")
    assert partly.metrics["validity"] == pytest.approx(2 / 3) and partly.extra["icons_encoded"] == 2
    assert partly.extra["failures"] == ["t/1: encode: this codec refuses icons marked 'refused'"]


def test_batches_and_single_items_agree() -> None:
    texts = [square(2), square(1, side=12), square(5, 5, 3)]
    suite = SVGSuite()
    batched = suite.measure_learned(codec(), items_of(texts), device=CPU, name="b")
    suite.batch_size = 1
    single = suite.measure_learned(codec(), items_of(texts), device=CPU, name="s")
    assert batched.rate == single.rate and batched.entropy_rate == pytest.approx(single.entropy_rate)
    assert batched.metrics == single.metrics


def test_pictures_and_path_minifying() -> None:
    picture, valid = rasterise(square(2), 128)
    assert valid and picture.shape == (128, 128, 3)
    assert (picture.mean(-1) < 0.5).sum() == 64 * 64
    blank, valid = rasterise("<svg><unclosed></svg>", 64)
    assert not valid and blank.min() == 1.0
    assert picture_metrics(blank, blank) == {"IoU": 1.0, "PSNR": PSNR_CAP}  # both empty: identical
    svg = f'<svg {NS} viewBox="0 0 24 24"><path id="x" d="M1.26 5.74L2 3a2.6 2.6 0 011.06 1z"/></svg>'
    assert 'd="M1.3 5.7L2 3a2.6 2.6 0 0 1 1.1 1z"' in minify_paths(svg, 1)
    assert 'id="x"' in minify_paths(svg, 0) and 'd="M1 6L2 3a3 3 0 0 1 1 1z"' in minify_paths(svg, 0)


@pytest.fixture
def icon_folder(tmp_path: Path) -> Path:
    """Twenty varied squares and triangles as .svg files (a train and a val split by name hash)."""
    folder = tmp_path / "icons"
    folder.mkdir()
    for k in range(20):
        shape = (
            square(k % 7 + 0.5, k % 5 + 1.25, 3 + k % 4)
            if k % 2
            else f'<svg {NS} viewBox="0 0 16 16"><path d="M{k % 6 + 0.5} 1.5L{15 - k % 3} {8.5 + k % 5}L2.5 14z"/></svg>'
        )
        (folder / f"icon{k:02d}.svg").write_text(shape)
    return folder


def test_classic_ladders_are_lossless_where_they_say_and_bracket_the_rate(
    icon_folder: Path, tmp_path: Path
) -> None:
    suite = SVGSuite(bpe_vocabs=(256, 300), cache_dir=tmp_path / "cache")
    items = suite.load_items(str(icon_folder), 10)
    assert 1 <= len(items.items) <= 10 and items.split.startswith("val")
    rows, skipped = suite.classic_rows(items, [1.0])  # cheaper than any classic point: the ladder extends
    assert skipped == []
    by = {(r.family, r.setting): r for r in rows}
    given = by["SVG text", "as given"]
    bytes_per_icon = sum(len(i.svg.encode()) for i in items.items) / len(items.items)
    assert given.rate == pytest.approx(8 * bytes_per_icon)
    bpe256 = by["byte BPE", "vocab 256"]
    assert bpe256.rate == pytest.approx(given.rate)  # byte-level BPE without merges: 8 bits per byte
    assert bpe256.metrics["tokens/icon"] == pytest.approx(bytes_per_icon)
    for row in (given, by["DEFLATE", "as given"], bpe256, by["byte BPE", "vocab 300"]):
        assert row.metrics["IoU"] == 1.0 and row.metrics["PSNR"] == PSNR_CAP and row.metrics["validity"] == 1
    assert by["byte BPE", "vocab 300"].rate < bpe256.rate and by["byte BPE", "vocab 300"].extra["lossless"]
    assert [r.extra["vocab_requested"] for r in rows if r.family == "byte BPE"] == [256, 300, 1200]
    coarse = by["SVG text", "paths at 0 decimals"]
    assert coarse.metrics["IoU"] < 1 and coarse.rate < given.rate
    # a byte-per-token tokenizer's rate is met exactly by the plain text and by byte BPE at vocab 256
    learned = SVGSuite().measure_learned(codec(), items, device=CPU, name="bytes")
    report = BenchReport("bytes", "svg", "t", "val", 2, "bits/icon", SVGSuite.metrics, [learned, *rows], "")
    matched = report.matched(learned)
    assert matched["SVG text"] is given and matched["byte BPE"] is bpe256
    # a learned rate between two ladder points gets a BPE point within 5 % above it, by bisecting the vocab
    middle = (bpe256.rate + by["byte BPE", "vocab 300"].rate) / 2
    matched_rows, _ = SVGSuite(bpe_vocabs=(256, 300), cache_dir=tmp_path / "cache").classic_rows(
        items, [middle]
    )
    closest = min(
        (r for r in matched_rows if r.family == "byte BPE" and r.rate >= middle), key=lambda r: r.rate
    )
    assert closest.setting.endswith("(matched)") and closest.rate <= 1.05 * middle
    # a smaller vocabulary is the larger one's first merges: the same as fitting it directly
    from zoo.benchmarking.svg import _truncated

    train = suite._train_texts(items)
    direct, _ = suite.bpe(train, 280)
    cut = _truncated(suite.bpe(train, 300)[0], 280)
    assert [direct.encode(i.svg).ids for i in items.items] == [cut.encode(i.svg).ids for i in items.items]
    # the second run reads the fitted BPEs from the cache
    again, _ = SVGSuite(bpe_vocabs=(256, 300), cache_dir=tmp_path / "cache").classic_rows(items, [1e9])
    bpe = [r for r in again if r.family == "byte BPE"]
    assert all(r.extra["cached"] for r in bpe) and len(bpe) == 2  # no extension above the ladder


def test_missing_bpe_package_or_train_split_is_reported_not_fatal(
    icon_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = SVGSuite(decimals=(1,))
    rows, skipped = suite.classic_rows(items_of([square(1)]), [100.0])  # no source: nothing to fit BPE on
    assert {r.family for r in rows} == {"SVG text", "DEFLATE"}
    assert skipped == ["byte BPE: the items come with no train split to fit it on"]
    items = suite.load_items(str(icon_folder), 3)
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    rows, skipped = suite.classic_rows(items, [100.0])
    assert {r.family for r in rows} == {"SVG text", "DEFLATE"}
    assert len(skipped) == 1 and "`tokenizers` package is not installed" in skipped[0]


def test_bad_data_gives_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(ZooError, match="no icon sets at .* pass DATA"):
        SVGSuite().load_items(None, 4)
    with pytest.raises(ZooError, match="no such file"):
        SVGSuite().load_items(str(tmp_path / "nothing"), 4)
    with pytest.raises(ZooError, match="no .svg files"):
        SVGSuite().load_items(str(tmp_path), 4)


def test_hivg_on_real_icons(shared_data: Path, tmp_path: Path) -> None:
    """HiVG's rate is its tokens at log2(vocab) bits; it draws the icons nearly as given; the samples
    picture holds originals, decodes and a text point."""
    suite = SVGSuite()
    items = suite.load_items(str(shared_data / "svg"), 4)
    assert {i.name.split("/")[0] for i in items.items} == {"mdi", "tabler_outline"}
    tok = zoo.create("hivg")
    row = suite.measure_learned(tok, items, device=CPU, name="hivg")
    tokens = [tok.encode([i.svg]) for i in items.items]
    expected = token_rate(tokens)
    assert row.rate == pytest.approx(expected.raw_bits)
    assert row.rate == pytest.approx(expected.positions_per_item * math.log2(tok.vocab_size))
    assert row.metrics["tokens/icon"] == pytest.approx(expected.positions_per_item)
    assert row.metrics["validity"] == 1.0 and 0.85 < row.metrics["IoU"] < 1
    assert 15 < row.metrics["PSNR"] < PSNR_CAP
    assert {"encode icons/s", "decode icons/s"} <= set(row.speed)
    from PIL import Image

    picture = suite.samples(tok, items, [], tmp_path / "samples.png", device=CPU)
    assert picture is not None and Image.open(picture).size[0] > 4 * 128
