"""HiVG's atomic SVG tokenization against ximinng/HiVG @ 2ada95d, on real icons.

HiVG has no weights: the comparison is of the token sequences. Upstream's official tokenization of a raw
SVG file is the one ``docs/segment_training.md`` ("Tokenizing raw SVG") and ``hivg_metric/compute_metrics.py``
run: read the file's text, ``hivg_tokenizer.SVGTokenizer(coord_range=234).tokenize(text)`` (config_224).
Its token strings become ids with upstream's own vocabulary order (``hivg_tokenizer/tokens.py::
build_svg_tokens(234, 234)``, which must equal the zoo's) and the zoo's text convention (each attribute or
number string as UTF-8 byte ids plus an end-of-text id; HiVG leaves text to the language model's BPE).

Upstream emits the root's ``viewBox``/``width``/``height`` attributes in the iteration order of a Python
set, which changes from run to run; the adapter puts them in the zoo's fixed order before comparing
(nothing else is reordered).

The zoo's default ``encode`` first puts the SVG on HiVG's 224 px canvas (`zoo.models.svg.normalize`),
which upstream leaves to the user (its data is already on the canvas; it ships no code for it). So on a
raw 24 px icon the default ids differ by design; ``--option normalize=0`` tokenizes the document as it
is, as upstream does, and must give the same ids. ``--option canvas=1`` instead writes the icons already
normalised onto the canvas (what HiVG's training data looks like), where the zoo's default and upstream
both tokenize the same canvas document.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import torch

from .common import Adapter, Output

ICON_SETS = ("mdi", "tabler_outline")
ROOT_ORDER = ("viewBox", "width", "height")  # the zoo's fixed order of the root's attributes


class HiVGAdapter(Adapter):
    model = "hivg"
    tag = ""  # no weights, so no registry tag
    upstream_ref = "https://github.com/ximinng/HiVG @ 2ada95d"
    card = "hivg"
    modality = "svg"
    upstream_files = ("hivg_tokenizer/tokenizer.py", "hivg_tokenizer/tokens.py")
    description = (
        "atomic SVG tokens on real icons (--option normalize=0: no canvas normalisation, as upstream)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.normalize = self.options.get("normalize", "1") not in ("0", "false", "")
        self.canvas = self.options.get("canvas", "0") not in ("0", "false", "")
        self.vocab: dict[str, int] = {}

    def build(self) -> tuple[Any, Any]:
        import zoo

        with self.imports():
            from hivg_tokenizer.tokenizer import SVGTokenizer
            from hivg_tokenizer.tokens import build_svg_tokens
        ours = zoo.create("hivg")
        theirs = build_svg_tokens(234, 234)
        if list(theirs) != list(ours.atomic):
            raise SystemExit("upstream's atomic vocabulary differs from the zoo's (order or content)")
        self.vocab = {token: i for i, token in enumerate(theirs)}
        self.text_offset, self.text_end = ours.text_offset, ours.text_end
        return SVGTokenizer(coord_range=234), ours

    def files(self, data: Path, limit: int) -> list[Path]:
        """``limit`` icons, alternating between the two icon sets and spread evenly over each, written
        once as SVG files (``--option canvas=1``: already normalised onto HiVG's canvas)."""
        from zoo.models.svg.normalize import normalize_svg

        folder = Path.home() / ".cache" / "zoo" / ("parity_svg_canvas" if self.canvas else "parity_svg")
        folder.mkdir(parents=True, exist_ok=True)
        per_set = [(limit + len(ICON_SETS) - 1 - i) // len(ICON_SETS) for i in range(len(ICON_SETS))]
        columns: list[list[Path]] = []
        for name, count in zip(ICON_SETS, per_set, strict=True):
            source = data / "svg" / name / "icons.jsonl"
            if not source.exists():
                raise SystemExit(f"no icons at {source}; pass --data or --files")
            icons = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
            step = max(1, len(icons) // max(count, 1))
            column = []
            for icon in icons[::step][:count]:
                path = folder / f"{name}_{icon['name']}.svg"
                if not path.exists():
                    text = normalize_svg(icon["svg"]).text if self.canvas else icon["svg"]
                    path.write_text(text, encoding="utf-8")
                column.append(path)
            columns.append(column)
        # interleave the sets, so that a small limit sees both
        return [p for row in itertools.zip_longest(*columns) for p in row if p is not None]

    def _ids(self, strings: list[str]) -> torch.Tensor:
        ids: list[int] = []
        for s in strings:
            if s in self.vocab:
                ids.append(self.vocab[s])
            else:
                ids += [self.text_offset + b for b in s.encode("utf-8")] + [self.text_end]
        return torch.tensor(ids, dtype=torch.long)

    def run_upstream(self, tokenizer: Any, path: Path) -> Output:
        strings = tokenizer.tokenize(path.read_text(encoding="utf-8"))
        # the root's attribute strings follow "<svg>"; order them as the zoo does (upstream: set order)
        end = 1
        while end < len(strings) and "=" in strings[end] and not strings[end].startswith("<"):
            end += 1
        root = sorted(
            strings[1:end],
            key=lambda s: (
                ROOT_ORDER.index(s.split("=")[0]) if s.split("=")[0] in ROOT_ORDER else len(ROOT_ORDER)
            ),
        )
        return Output(ids=self._ids([*strings[:1], *root, *strings[end:]]))

    def run_zoo(self, model: Any, path: Path) -> Output:
        from zoo.io import read_media

        svg = model.prepare(read_media(path, modality="svg"), path=path)
        tokens = model.encode(svg, normalize=self.normalize)
        return Output(ids=tokens.ids[0, : int(tokens.lengths[0])])


ADAPTERS = {"hivg": HiVGAdapter}
