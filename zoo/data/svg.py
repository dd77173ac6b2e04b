"""SVG corpora and their DataModule: items are SVG text (str), batches are lists of strings.

Web-scraped SVG can carry entity bombs or external entities, so every item is checked by
`zoo.io.parse_svg` (which refuses all entities) before it is handed out. Bad items are skipped
and reported once, each with its file (and line, for `.jsonl`), instead of stopping a run.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from torch.utils.data import Dataset

from zoo.data._common import Key, existing, find_files, hash_split, unpack
from zoo.data._module import ZooDataModule
from zoo.errors import MediaError
from zoo.io import parse_svg, read_svg

__all__ = ["SVGCorpus", "SVGDataModule"]


def _jsonl_items(path: Path) -> list[tuple[str, str | None, str]]:
    """(key, svg text, where) per non-blank line of a `.jsonl`; for a bad line, text None and the problem."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise MediaError(path, f"not UTF-8 text (invalid byte at offset {e.start})") from None
    items: list[tuple[str, str | None, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            items.append((str(number), None, f"{where}: not valid JSON ({e.msg})"))
            continue
        text = record.get("svg") if isinstance(record, dict) else None
        if not isinstance(text, str):
            items.append((str(number), None, f"{where}: no string field 'svg'"))
            continue
        name = record.get("name")
        items.append((str(number) if name is None else str(name), text, where))
    return items


class SVGCorpus(Dataset):
    """Validated SVG documents from a folder of `.svg` files (recursive) or a `.jsonl` with an "svg" field.

    `split` "train"/"val" keeps the items whose name (relative file path, or the jsonl "name"
    field, else the line number) hashes to that side; "all" keeps everything. Only the split's
    own items are read and validated. `skipped` lists the items refused, with the reason.
    """

    def __init__(self, path: str | os.PathLike[str], split: str = "all", val_fraction: float = 0.1) -> None:
        p = existing(path, "SVG folder or .jsonl")
        self.path = p
        if p.is_dir():
            files = find_files(p, {".svg"}, "SVG")
            keys = [f.relative_to(p).as_posix() for f in files]
            chosen = [files[i] for i in hash_split(keys, split, val_fraction)]
            texts, self.skipped = [], []
            for f in chosen:
                try:
                    texts.append(read_svg(f))
                except MediaError as e:
                    self.skipped.append(str(e))
            total = len(chosen)
        elif p.suffix.lower() == ".jsonl":
            items = _jsonl_items(p)
            chosen_items = [items[i] for i in hash_split([k for k, _, _ in items], split, val_fraction)]
            texts, self.skipped = [], []
            for _, text, where in chosen_items:
                if text is None:  # `where` is then the problem
                    self.skipped.append(where)
                    continue
                try:
                    parse_svg(text, where)
                    texts.append(text)
                except MediaError as e:
                    self.skipped.append(str(e))
            total = len(chosen_items)
        else:
            raise MediaError(p, "expected a folder of .svg files or a .jsonl file with an 'svg' field")
        if self.skipped:
            shown = "; ".join(self.skipped[:5]) + ("; ..." if len(self.skipped) > 5 else "")
            warnings.warn(
                f"{p}: skipped {len(self.skipped)} of {total} SVG items that failed validation: {shown}",
                stacklevel=2,
            )
        if total and not texts:
            raise MediaError(
                p, f"none of its {total} SVG items in split {split!r} is valid (see the warning)"
            )
        self.texts: list[str] = texts

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: Key) -> str:
        index, _ = unpack(key, len(self))
        return self.texts[index]


class SVGDataModule(ZooDataModule):
    """Batches of SVG text: lists of `batch_size` strings, for tokenizers that parse SVG themselves."""

    collate_fn = staticmethod(list)

    def __init__(
        self,
        path: str,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, limit)
        self.save_hyperparameters()
        self.path = path

    def _build(self) -> tuple[Dataset, Dataset]:
        return SVGCorpus(self.path, "train", self.val_fraction), SVGCorpus(
            self.path, "val", self.val_fraction
        )
