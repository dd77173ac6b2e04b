"""The SVG benchmark: what an SVG tokenizer (HiVG) keeps of an icon, and what it costs, against plain text.

Items are icons: by default the held-out (``val``) split of the bundle's Material Design and Tabler outline
sets, split by `zoo.data.svg.SVGCorpus`'s name hash at a 10 % fraction (the split ``zoo fit-segments``
trains away from). The tokenizer's rate is in bits per icon: its ids at ``log2(vocab)`` bits each (raw) and
at their unigram entropy on the items (`token_rate`); tokens per icon are a column of their own, since a
language model pays for sequence length too.

Quality is measured on pictures: the reference (the SVG as given, after the model's ``prepare``) and each
reconstruction are drawn by resvg with their viewBox fitted onto the same ``raster`` px square
(`zoo.models.svg.render.on_canvas`), on white. IoU (primary) is the Jaccard index of the inked pixels (mean
RGB below 0.5) through torchmetrics, 1 when both pictures are blank; PSNR is torchmetrics' on the RGB
pictures, capped at ``PSNR_CAP`` dB so that identical pictures (infinite PSNR) average to a number; validity
is the share of reconstructions that parse as SVG and render. An invalid reconstruction counts as a blank
canvas in IoU and PSNR, so it is charged, not dropped.

Classic codecs, on the same icons:

- *SVG text*: the UTF-8 bytes at 8 bits each of the text as given (lossless), of the zoo's normalised text
  (what HiVG tokenizes: one absolute path per shape on its 224 px canvas), and of the text with its path
  data rewritten at 2, 1 and 0 decimals (lossy: the "float precision" of SVG minifiers; on a 24-unit icon
  one decimal is about HiVG's integer grid on 224 px);
- *DEFLATE*: the same texts compressed (zlib level 9, raw DEFLATE: no gzip/zlib header counted, an
  ``.svgz`` file adds 18 bytes);
- *byte BPE*: a byte-level BPE (``tokenizers``) fitted on the text as given of the *train* split (at most
  ``max_train`` icons, cached on disk), each icon one word so merges may span anything, at vocabularies 256
  (the raw bytes), 1024, 4096 and 16384; each token at ``log2(vocab)`` bits, and at its unigram entropy on
  the items. It is lossless: the decode is compared with the original text, and drawn like every row.

Operating points: the text ladders are fixed. The BPE ladder adapts to ``rates``: the largest vocabulary is
fitted once and the smaller ones are its first merges (BPE training is greedy, so this is what fitting
them gives); for each learned rate, the vocabulary is bisected between the ladder's neighbours until a
point lies within `MATCH_TOLERANCE` above it (setting "vocab N (matched)"), and below the cheapest point
the vocabulary grows (x4, to 262144) while the trainer still fills it. So the report's verdict compares a
learned point with a BPE at nearly its rate. Above the text as given there is nothing honest to add: a
tokenizer that costs more bits than its input's plain bytes is reported as not compared.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import MediaError, ZooError
from ..io.svg import parse_svg
from ..tokenizer import Tokenizer
from ..tokens import Tokens
from .rate import codebook_summary, token_rate
from .report import Metric, Row
from .suite import Items, PeakMemory, Suite, Timer, shared_data

__all__ = ["Icon", "SVGItems", "SVGSuite", "minify_paths"]

PSNR_CAP = 100.0
VAL_FRACTION = 0.1  # SVGCorpus's default, the split the zoo's data modules use
DEFAULT_SETS = ("mdi", "tabler_outline")
BPE_VOCABS = (256, 1024, 4096, 16384)
BPE_MAX_VOCAB = 262144
DECIMALS = (2, 1, 0)
MATCH_TOLERANCE = 0.05  # a matched BPE point costs at most this much more than the learned rate
NORMALISED_CANVAS = 224  # HiVG config_224's canvas: what `normalize_svg` puts an icon on by default
_PATH_ATTRIBUTE = re.compile(r"""(?<![\w:.-])(d|points)(\s*=\s*)(["'])(.*?)\3""", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Icon:
    """One icon: a label (set and position in its split) and its SVG text."""

    name: str
    svg: str


@dataclass
class SVGItems(Items):
    """`Items` plus the sources of the icons, whose *train* split the byte BPE is fitted on."""

    sources: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- pictures
def rasterise(svg: str | None, size: int) -> tuple[np.ndarray, bool]:
    """``svg`` drawn on white with its viewBox fitted onto ``size`` px: (RGB ``[size, size, 3]``, valid).

    ``None`` or text that does not parse or render gives a blank canvas and ``valid`` False. Text without
    any canvas (no viewBox, no numeric size) is drawn as resvg places it."""
    from ..models.svg.render import on_canvas, render_svg

    blank = np.ones((size, size, 3), dtype=np.float32)
    if not isinstance(svg, str):
        return blank, False
    try:
        parse_svg(svg)
    except Exception:  # noqa: BLE001 - any failure to parse is an invalid reconstruction
        return blank, False
    try:
        placed = on_canvas(svg, size)
    except Exception:  # noqa: BLE001 - no canvas of its own: resvg's default viewport
        placed = svg
    try:
        return render_svg(placed, size), True
    except ImportError:
        raise
    except Exception:  # noqa: BLE001 - resvg refused it
        return blank, False


def picture_metrics(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """IoU of inked pixels and PSNR (capped at `PSNR_CAP`) of two pictures on white in ``[0, 1]``."""
    from torchmetrics.functional.classification import binary_jaccard_index
    from torchmetrics.functional.image import peak_signal_noise_ratio

    ref, est = torch.from_numpy(reference), torch.from_numpy(estimate)
    ink_ref, ink_est = (ref.mean(-1) < 0.5).long(), (est.mean(-1) < 0.5).long()
    iou = float(binary_jaccard_index(ink_est, ink_ref, zero_division=1.0))
    psnr = float(peak_signal_noise_ratio(est, ref, data_range=1.0))
    return {"IoU": iou, "PSNR": min(psnr, PSNR_CAP)}


# ---------------------------------------------------------------------------------------------- text codecs
def _round(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "", "-") else text


def _rewrite_path(d: str, decimals: int) -> str:
    from ..models.svg.pathdata import lex_path

    parts = []
    for letter, numbers in lex_path(d):
        values = []
        for k, value in enumerate(numbers):
            flag = letter in "Aa" and k % 7 in (3, 4)
            values.append(str(int(value)) if flag else _round(value, decimals))
        parts.append(letter + " ".join(values))
    return "".join(parts)


def minify_paths(svg: str, decimals: int) -> str:
    """``svg`` with every path ``d`` and polygon ``points`` rewritten at ``decimals`` decimals (minimal
    separators), the rest of the text unchanged; path data that does not lex is left as it was."""

    def replace(match: re.Match[str]) -> str:
        name, equals, quote, value = match.groups()
        try:
            if name == "d":
                value = _rewrite_path(value, decimals)
            else:
                value = " ".join(_round(float(n), decimals) for n in _NUMBER.findall(value))
        except MediaError:
            pass  # malformed path data stays as given
        return f"{name}{equals}{quote}{value}{quote}"

    return _PATH_ATTRIBUTE.sub(replace, svg)


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def _inflate(data: bytes) -> bytes:
    return zlib.decompress(data, -15)


def _truncated(tokenizer: Any, vocab: int) -> Any:
    """The byte-level BPE of ``vocab`` tokens inside a larger one: its first merges. BPE training is greedy,
    so this is the model that training at ``vocab`` gives (ids and merges keep their order)."""
    from tokenizers import Tokenizer as BPETokenizer

    data = json.loads(tokenizer.to_str())
    model = data["model"]
    alphabet = len(model["vocab"]) - len(model["merges"])
    keep = max(vocab, alphabet)
    model["vocab"] = {token: i for token, i in model["vocab"].items() if i < keep}
    model["merges"] = model["merges"][: keep - alphabet]
    return BPETokenizer.from_str(json.dumps(data))


def _unigram_bits(ids: list[list[int]], size: int) -> float:
    """Mean bits per item of ``ids`` at their pooled unigram entropy over ``size`` symbols."""
    flat = torch.tensor([i for row in ids for i in row], dtype=torch.long)
    if flat.numel() == 0:
        return 0.0
    counts = torch.bincount(flat, minlength=size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum()) * flat.numel() / len(ids)


# ---------------------------------------------------------------------------------------------- the suite
class SVGSuite(Suite):
    modality = "svg"
    rate_unit = "bits/icon"
    metrics: ClassVar[list[Metric]] = [
        Metric("IoU", True, "", 4),
        Metric("PSNR", True, "dB", 4),
        Metric("validity", True, "", 3),
        Metric("tokens/icon", False, "", 4),
    ]
    default_limit = 100
    batch_size = 32

    def __init__(
        self,
        raster: int = 128,
        *,
        bpe_vocabs: tuple[int, ...] = BPE_VOCABS,
        decimals: tuple[int, ...] = DECIMALS,
        max_train: int = 2000,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.raster = raster
        self.bpe_vocabs = tuple(bpe_vocabs)
        self.decimals = tuple(decimals)
        self.max_train = max_train
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else Path(base) / "zoo" / "bench" / "svg_bpe"
        )
        self._references: dict[str, np.ndarray] = {}
        self._bpe: dict[tuple[str, int], Any] = {}
        self.bpe_seconds: dict[int, float] = {}
        self.decoded: dict[str, str | None] = {}
        self.learned_rate: float | None = None

    # ------------------------------------------------------------------ items
    def load_items(self, data: str | None, limit: int | None) -> SVGItems:
        """The held-out split of ``data``: a ``.jsonl`` with an ``svg`` field, a folder of ``.svg`` files,
        or a folder of ``.jsonl`` sets (``../shared/data/svg``); ``None``: the bundle's Material Design and
        Tabler outline sets. ``limit`` (default `default_limit`) is shared evenly between sets, each taking
        its split's first icons in file order."""
        from ..data.svg import SVGCorpus

        limit = self.default_limit if limit is None else limit
        if limit < 1:
            raise ZooError(f"--limit {limit}: give a positive number of icons")
        if data is None:
            bundle = shared_data()
            root = (bundle or Path("../shared/data")) / "svg"
            sources = [root / name / "icons.jsonl" for name in DEFAULT_SETS]
            if bundle is None or not all(s.is_file() for s in sources):
                raise ZooError(
                    f"no icon sets at {root} (set ZOO_SHARED_DATA or pass DATA: a .jsonl with an 'svg' "
                    "field or a folder of .svg files)"
                )
            label = "mdi + tabler_outline"
        else:
            path = Path(data)
            if not path.exists():
                raise ZooError(f"{data}: no such file or folder (expected a .jsonl of icons or .svg files)")
            if path.is_dir() and not any(path.rglob("*.svg")):
                sources = sorted(path.rglob("*.jsonl"))
                if not sources:
                    raise ZooError(f"{data}: the folder holds no .svg files and no .jsonl icon sets")
            else:
                sources = [path]
            label = str(data)
        share = math.ceil(limit / len(sources))
        per_set: list[list[Icon]] = []
        for source in sources:
            corpus = SVGCorpus(source, "val", VAL_FRACTION)
            tag = source.parent.name if source.name == "icons.jsonl" else source.stem or source.name
            per_set.append([Icon(f"{tag}/{i}", text) for i, text in enumerate(corpus.texts[:share])])
        # round robin, so that any prefix (the samples, a smaller limit) mixes the sets
        icons = [s[i] for i in range(share) for s in per_set if i < len(s)][:limit]
        where = (
            f"icons: the held-out split (SVGCorpus 'val', {VAL_FRACTION:.0%} by name hash) of "
            f"{', '.join(str(s) for s in sources)}, up to the first {share} of each in file order, interleaved"
        )
        pictures = (
            f"pictures: reference and reconstruction drawn by resvg at {self.raster} x {self.raster} px, each "
            "viewBox fitted onto the square, on white; IoU of inked pixels (mean RGB < 0.5); PSNR capped at "
            f"{PSNR_CAP:g} dB (identical pictures); invalid reconstructions count as blank"
        )
        notes = [where, pictures]
        return SVGItems(icons, label, "val (held out)", notes, sources=[str(s) for s in sources])

    def _reference(self, icon: Icon, prepared: str | None = None) -> np.ndarray:
        text = icon.svg if prepared is None else prepared
        key = hashlib.sha1(text.encode("utf-8")).hexdigest()
        if key not in self._references:
            self._references[key] = rasterise(text, self.raster)[0]
        return self._references[key]

    def _scores(
        self, references: list[np.ndarray], originals: list[str], texts: list[str | None]
    ) -> tuple[dict[str, float], int]:
        """Mean IoU/PSNR/validity of ``texts`` against ``references`` (a text equal to its original reuses
        the reference picture: the same input to the same renderer)."""
        rows, valid = [], 0
        for reference, text, original in zip(references, texts, originals, strict=True):
            if text is not None and text == original:
                picture, ok = reference, True
            else:
                picture, ok = rasterise(text, self.raster)
            valid += ok
            rows.append(picture_metrics(reference, picture))
        n = len(rows)
        return {
            "IoU": sum(r["IoU"] for r in rows) / n,
            "PSNR": sum(r["PSNR"] for r in rows) / n,
            "validity": valid / n,
        }, valid

    # ------------------------------------------------------------------ learned
    def measure_learned(
        self, model: Tokenizer, items: Items, *, device: torch.device, name: str, kind: str = "learned"
    ) -> Row:
        """Encode and decode every icon in batches (`batch_size`; an item that fails in a batch is retried
        alone and, failing again, counted as invalid), through the model's ``prepare`` as ``zoo encode``
        does. The first batch is a warm-up left out of the throughput when there are several."""
        from tqdm import tqdm

        icons: list[Icon] = list(items.items)
        prepared: list[str | None] = []
        failures: list[str] = []
        for icon in icons:
            try:
                prepared.append(model.prepare(icon.svg, path=icon.name))
            except Exception as exc:  # noqa: BLE001 - one icon the model refuses never stops the run
                prepared.append(None)
                failures.append(f"{icon.name}: {exc}")
        decoded: list[str | None] = [None] * len(icons)
        batches: list[Tokens] = []
        repairs = 0
        encode_timer, decode_timer, warmup = Timer(), Timer(), Timer()
        timed = 0
        memory = PeakMemory(device)
        starts = list(range(0, len(icons), self.batch_size))
        with torch.inference_mode(), memory.measure(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for number, start in enumerate(
                tqdm(starts, desc=f"{name} encode/decode", unit="batch", leave=False)
            ):
                chunk = [
                    i
                    for i in range(start, min(start + self.batch_size, len(icons)))
                    if prepared[i] is not None
                ]
                if not chunk:
                    continue
                clock_in, clock_out = (
                    (warmup, warmup) if number == 0 and len(starts) > 1 else (encode_timer, decode_timer)
                )
                try:
                    with clock_in(device):
                        tokens = model.encode([prepared[i] for i in chunk])
                    with clock_out(device):
                        texts = list(model.decode(tokens))
                    if len(texts) != len(chunk):
                        raise ValueError(f"decode gave {len(texts)} texts for {len(chunk)} items")
                    groups = [(chunk, tokens, texts)]
                except Exception:  # noqa: BLE001 - retry one by one to find the item at fault
                    groups = []
                    for i in chunk:
                        try:
                            single = model.encode([prepared[i]])
                        except Exception as exc:  # noqa: BLE001
                            failures.append(f"{icons[i].name}: encode: {exc}")
                            continue
                        try:
                            text = next(iter(model.decode(single)))
                        except Exception as exc:  # noqa: BLE001
                            failures.append(f"{icons[i].name}: decode: {exc}")
                            text = None
                        groups.append(([i], single, [text]))
                for indices, tokens, texts in groups:
                    batches.append(tokens.to("cpu"))
                    for i, text in zip(indices, texts, strict=True):
                        decoded[i] = text if isinstance(text, str) else None
                if clock_in is encode_timer:
                    timed += len(chunk)
        repairs = sum(1 for w in caught if w.category.__name__ == "SVGRepairWarning")
        if not batches:
            raise ZooError(f"{name} encoded none of the {len(icons)} icons: {'; '.join(failures[:3])}")
        originals = [p if p is not None else icon.svg for p, icon in zip(prepared, icons, strict=True)]
        references = [self._reference(icon, p) for icon, p in zip(icons, prepared, strict=True)]
        metrics, valid = self._scores(references, originals, decoded)
        rate = token_rate(batches)
        # icons the model could not encode cost nothing here but are counted invalid (blank) above
        metrics["tokens/icon"] = rate.positions_per_item
        extra: dict[str, Any] = {
            "tokens_per_icon": rate.positions_per_item,
            "icons_encoded": rate.items,
            "invalid": len(icons) - valid,
            "repaired": repairs,
            "reference": "the SVG after the model's prepare (HiVG: the text as given; its encode normalises "
            "onto its canvas, so what normalising drops counts as loss)",
        }
        if failures:
            extra["failures"] = failures[:10]
        if batches[0].discrete:
            extra.update(vocab=list(batches[0].codebook_sizes), **codebook_summary(batches))
        else:
            extra["continuous"] = "latents counted at 16 bits per value"
        speed: dict[str, float] = {}
        if timed:
            speed["encode icons/s"] = timed / max(encode_timer.seconds, 1e-9)
            speed["decode icons/s"] = timed / max(decode_timer.seconds, 1e-9)
        if memory.peak_bytes is not None:
            speed["peak MiB"] = memory.peak_bytes / 2**20
        if kind == "learned":
            self.decoded = {icon.name: text for icon, text in zip(icons, decoded, strict=True)}
            self.learned_rate = rate.raw_bits
        table = getattr(model, "segment_table", None)  # HiVG: rows of -1 are segments not fitted
        segments = (
            int((table >= 0).any(-1).sum()) if isinstance(table, torch.Tensor) and table.ndim == 2 else None
        )
        return Row(
            name,
            kind,
            rate.raw_bits,
            metrics,
            setting=f"{segments} segments" if segments is not None else "",
            entropy_rate=rate.entropy_bits,
            speed=speed,
            extra=extra,
        )

    # ------------------------------------------------------------------ classic
    def classic_rows(self, items: Items, rates: list[float]) -> tuple[list[Row], list[str]]:
        """The text, DEFLATE and byte-BPE ladders of the module docstring on the same icons."""
        icons: list[Icon] = list(items.items)
        originals = [icon.svg for icon in icons]
        references = [self._reference(icon) for icon in icons]
        rows: list[Row] = []
        skipped: list[str] = []
        for setting, transform in self._text_variants(skipped):
            texts = []
            for icon in icons:
                try:
                    texts.append(transform(icon.svg))
                except Exception:  # noqa: BLE001 - an icon the transform refuses is an invalid output
                    texts.append(None)
            encoded = [t.encode("utf-8") if t is not None else b"" for t in texts]
            metrics, _ = self._scores(references, originals, texts)
            size = sum(map(len, encoded)) / len(icons)
            rows.append(
                Row(
                    "SVG text", "classic", 8 * size, {**metrics, "tokens/icon": size},
                    family="SVG text", setting=setting, extra={"bytes_per_icon": size},
                )
            )  # fmt: skip
            packed = [_deflate(b) for b in encoded]
            unpacked = [
                _inflate(p).decode("utf-8") if t is not None else None
                for p, t in zip(packed, texts, strict=True)
            ]
            if unpacked != texts:  # pragma: no cover - zlib is lossless
                raise AssertionError("DEFLATE did not round-trip")
            deflated = sum(map(len, packed)) / len(icons)
            rows.append(
                Row(
                    "DEFLATE", "classic", 8 * deflated, {**metrics, "tokens/icon": deflated},
                    family="DEFLATE", setting=setting, extra={"bytes_per_icon": deflated, "header": "none counted"},
                )
            )  # fmt: skip
        rows += self._bpe_rows(items, icons, references, originals, rates, skipped)
        return rows, skipped

    def _text_variants(self, skipped: list[str]) -> list[tuple[str, Callable[[str], str]]]:
        variants: list[tuple[str, Callable[[str], str]]] = [("as given", lambda s: s)]
        try:
            import svgelements  # noqa: F401

            from ..models.svg.normalize import normalize_svg

            variants.append(
                (
                    f"normalised ({NORMALISED_CANVAS} px canvas)",
                    lambda s: normalize_svg(s, canvas=NORMALISED_CANVAS).text,
                )
            )
        except ImportError:
            skipped.append("SVG text normalised: svgelements is not installed (pip install 'zoo[svg]')")
        variants += [(f"paths at {k} decimals", lambda s, k=k: minify_paths(s, k)) for k in self.decimals]
        return variants

    # ------------------------------------------------------------------ byte BPE
    def _train_texts(self, items: Items) -> list[str] | None:
        from ..data.svg import SVGCorpus

        sources = getattr(items, "sources", None)
        if not sources:
            return None
        share = math.ceil(self.max_train / len(sources))
        texts: list[str] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for source in sources:
                texts += SVGCorpus(source, "train", VAL_FRACTION).texts[:share]
        return texts[: self.max_train]

    def bpe(self, texts: list[str], vocab: int) -> tuple[Any, bool]:
        """A byte-level BPE of at most ``vocab`` tokens fitted on ``texts`` (each icon one word, merges may
        span anything), cached in memory and under `cache_dir`; returns it and whether it came from cache."""
        from tokenizers import Tokenizer as BPETokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:20]
        key = (digest, vocab)
        if key in self._bpe:
            return self._bpe[key], True
        file = self.cache_dir / f"{digest}_{vocab}.json"
        if file.is_file():
            try:
                self._bpe[key] = BPETokenizer.from_file(str(file))
                return self._bpe[key], True
            except Exception:  # noqa: BLE001, S110 - a damaged cache entry is retrained
                pass
        start = time.perf_counter()
        tokenizer = BPETokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            min_frequency=2,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        self.bpe_seconds[vocab] = time.perf_counter() - start
        try:
            from .._atomic import atomic_path

            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(file) as tmp:
                tokenizer.save(str(tmp))
        except OSError:
            pass  # an unwritable cache only costs time
        self._bpe[key] = tokenizer
        return tokenizer, False

    def _bpe_rows(
        self,
        items: Items,
        icons: list[Icon],
        references: list[np.ndarray],
        originals: list[str],
        rates: list[float],
        skipped: list[str],
    ) -> list[Row]:
        try:
            import tokenizers  # noqa: F401
        except ImportError:
            skipped.append("byte BPE: the `tokenizers` package is not installed (pip install tokenizers)")
            return []
        train = self._train_texts(items)
        if not train:
            skipped.append("byte BPE: the items come with no train split to fit it on")
            return []
        measured: dict[int, Row] = {}
        state: dict[str, Any] = {}

        def fit(vocab: int) -> None:
            state["full"], state["cached"] = self.bpe(train, vocab)
            state["requested"] = vocab

        def point(vocab: int, setting: str = "") -> Row:
            full = state["full"]
            tokenizer = full if vocab >= full.get_vocab_size() else _truncated(full, vocab)
            size = tokenizer.get_vocab_size()
            if size in measured:
                return measured[size]
            start = time.perf_counter()
            ids = [tokenizer.encode(icon.svg).ids for icon in icons]
            encode_seconds = time.perf_counter() - start
            texts = [tokenizer.decode(row) for row in ids]
            metrics, _ = self._scores(references, originals, texts)
            tokens = sum(map(len, ids)) / len(icons)
            measured[size] = Row(
                "byte BPE", "classic", tokens * max(math.log2(size), 1.0), {**metrics, "tokens/icon": tokens},
                family="byte BPE", setting=setting or f"vocab {size}", entropy_rate=_unigram_bits(ids, size),
                speed={"encode icons/s": len(icons) / max(encode_seconds, 1e-9)},
                extra={
                    "vocab_requested": vocab, "train_icons": len(train), "fitted_vocab": state["requested"],
                    "cached": state["cached"], "train_seconds": self.bpe_seconds.get(state["requested"]),
                    "lossless": texts == originals,
                },
            )  # fmt: skip
            return measured[size]

        ladder = sorted(set(self.bpe_vocabs))
        fit(ladder[-1])
        for vocab in ladder:
            point(vocab)
        finite = [r for r in rates if math.isfinite(r) and r > 0]
        target = min(finite, default=math.inf)
        # cheaper than the whole ladder: fit larger vocabularies while the trainer still fills them
        while (
            min(r.rate for r in measured.values()) > target
            and state["full"].get_vocab_size() >= state["requested"]
            and state["requested"] * 4 <= BPE_MAX_VOCAB
        ):
            fit(state["requested"] * 4)
            point(state["requested"])
        # a point just above each learned rate: bisect the vocabulary between the ladder's neighbours
        for rate in finite:
            for _ in range(8):
                above = [(v, r) for v, r in measured.items() if r.rate >= rate]
                below = [(v, r) for v, r in measured.items() if r.rate < rate]
                if not above or not below:
                    break
                small, cheapest = min(above, key=lambda p: p[1].rate)
                if cheapest.rate <= rate * (1 + MATCH_TOLERANCE):
                    break
                larger = [v for v, _ in below if v > small]
                if not larger:
                    break
                vocab = round(math.sqrt(small * min(larger)))
                if vocab in (small, min(larger)) or vocab in measured:
                    break
                point(vocab, f"vocab {vocab} (matched)")
        return list(measured.values())

    # ------------------------------------------------------------------ pictures
    def samples(
        self, model: Tokenizer, items: Items, classic: list[Row], path: Path, *, device: torch.device
    ) -> Path | None:
        """Up to eight icons (columns): the original, the tokenizer's decode, and the cheapest lossy text
        (paths at fewer decimals) at or above the tokenizer's rate, else the richest below it (rows), each
        drawn at 128 px or more; an invalid decode is drawn blank and marked."""
        from PIL import Image, ImageDraw

        from .._atomic import atomic_path

        icons: list[Icon] = list(items.items)[:8]
        if not icons:
            return None
        decoded = [self.decoded.get(icon.name) for icon in icons]
        if not self.decoded:  # measure_learned was not run on this suite: decode these few now
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                decoded = []
                for icon in icons:
                    try:
                        decoded.append(
                            next(iter(model.decode(model.encode([model.prepare(icon.svg, path=icon.name)]))))
                        )
                    except Exception:  # noqa: BLE001 - shown as blank
                        decoded.append(None)
        side = max(self.raster, 128)
        lines = [("original", [icon.svg for icon in icons]), (getattr(model, "arch", "tokenizer"), decoded)]
        lossy = sorted(
            (r for r in classic if r.family == "SVG text" and r.setting.startswith("paths at")),
            key=lambda r: r.rate,
        )
        rate = self.learned_rate if self.learned_rate is not None else 0.0
        # the cheapest lossy text at or above the tokenizer's rate, else the richest one below it
        shown = next((r for r in lossy if r.rate >= rate), lossy[-1] if lossy else None)
        if shown is not None:
            decimals = int(shown.setting.split()[2])
            label = f"SVG text, {shown.setting} ({shown.rate:.0f} bits/icon)"
            lines.append((label, [minify_paths(i.svg, decimals) for i in icons]))
        label_h, pad = 16, 4
        canvas = Image.new(
            "RGB", (pad + len(icons) * (side + pad), len(lines) * (side + label_h + pad) + pad), "white"
        )
        draw = ImageDraw.Draw(canvas)
        for r, (label, texts) in enumerate(lines):
            top = pad + r * (side + label_h + pad)
            draw.text((pad, top), label, fill="black")
            for c, text in enumerate(texts):
                picture, ok = rasterise(text, side)
                tile = Image.fromarray((picture * 255).round().astype(np.uint8))
                left = pad + c * (side + pad)
                canvas.paste(tile, (left, top + label_h))
                draw.rectangle(
                    (left, top + label_h, left + side - 1, top + label_h + side - 1), outline="#cccccc"
                )
                if not ok:
                    draw.text((left + 4, top + label_h + 4), "invalid", fill="red")
        with atomic_path(path) as tmp:
            canvas.save(tmp, format="PNG")
        return path
