"""HiVG: hierarchical SVG tokenization (atomic tokens, then "structure segment" tokens).

Paper: "HiVG: Hierarchical SVG Tokenization ...", arXiv:2604.05072. Upstream: ximinng/HiVG @ 2ada95d
(``hivg_tokenizer/tokenizer.py``, ``detokenizer.py``, ``bpe.py``, ``configs/``).

Level 1 (atomic): the SVG is walked element by element; each known element gives an open token, its
attributes as text (``fill=#000000``), its children, a close token. Path geometry (``d``, and ``points``
of polygons and polylines) becomes command and coordinate tokens: every moveto an absolute
``<cmd_M><P_x><P_y>``, every other command its relative form with ``<d_N>`` offsets, rounded to integers
against the *rounded* current point (so rounding error never accumulates) and clamped to the ranges
(``P``: 0..234, ``d``: -234..234 for config_224). Arcs carry radii and rotation as text and their flags as
tokens. Level 2 (segments): a BPE over complete commands (`zoo.models.svg.segments`).

Ids: ``[0, num_atomic)`` are HiVG's atomic tokens in ``tokens.yaml`` order (`zoo.models.svg.vocab`), so
they map one to one onto HiVG-tokenized data; ``num_text`` = 257 text ids follow (the UTF-8 bytes of an
attribute or number, then an end-of-text id: HiVG leaves these to the language model's own BPE); then
``num_segments`` segment ids ``<SEG_k>``, learned by `HiVG.train_segments` and saved with the model.

Input: HiVG expects SVGs already on its canvas and ships no code for it; ``encode`` normalises by default
(`zoo.models.svg.normalize`: viewBox, transforms, shapes to paths, styles resolved; what is not geometry
is listed in a warning). ``normalize=False`` tokenizes the document as it is, as HiVG does.

Deliberate differences from HiVG's code (none changes the tokens of a canvas-normalised icon): path data
is read with the SVG grammar (arc flags written without separators, ``+`` signs), where HiVG's regex
misreads them; the root's ``viewBox``, ``width``, ``height`` come in that order (HiVG iterates a set,
whose order changes from run to run); ``<image>``, which has no token, is left out with a warning;
segments are expanded before detokenising (HiVG's inference drops them); and detokenising repairs, with
a warning, or rejects (``errors="strict"``) what a model may emit: incomplete commands, stray
parameters, unbalanced or unknown elements, unterminated text. Out-of-range ids are always an error.
"""

from __future__ import annotations

import math
import re
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..._factory import build
from ..._registry import register_model
from ...errors import MediaError
from ...io.svg import SVG_NAMESPACE, parse_svg
from ...tokenizer import Tokenizer, TokenizerOutput
from ...tokens import Tokens
from .normalize import normalize_svg
from .pathdata import NUMBER as _NUMBER
from .pathdata import lex_path
from .segments import SegmentTrie, train_segment_bpe
from .vocab import COMMANDS, ELEMENTS, atomic_tokens

__all__ = ["HiVG", "SVGRepairWarning"]

NUM_TEXT = 257  # 256 byte ids + end of text
PARAMS = {c.letter: c.params for c in COMMANDS} | {c.letter.lower(): c.params for c in COMMANDS}
# Parameter kinds of the emitted form of each command: P absolute position, d offset, t text, f flag.
_KINDS = {
    "M": "PP", "m": "dd", "L": "PP", "l": "dd", "H": "P", "h": "d", "V": "P", "v": "d",
    "C": "PPPPPP", "c": "dddddd", "S": "PPPP", "s": "dddd", "Q": "PPPP", "q": "dddd",
    "T": "PP", "t": "dd", "A": "tttffPP", "a": "tttffdd", "Z": "", "z": "",
}  # fmt: skip
_CHILDLESS = {"rect", "circle", "ellipse", "line", "use", "stop", "image"}


class SVGRepairWarning(UserWarning):
    """Detokenising changed an id sequence to make valid SVG (see `HiVG.decode`)."""


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


class HiVG(Tokenizer):
    """HiVG's two-level SVG tokenizer: atomic ids in HiVG's order, text ids, learned segment ids.

    Args:
        coord_range: largest absolute position ``<P_N>`` (234: a 224 px canvas plus a margin).
        relative_range: largest offset ``<d_N>`` magnitude.
        canvas: side of the square canvas ``encode`` normalises onto.
        num_segments, segment_width: shape of the saved segment table (set by `train_segments`).
        max_chars, max_depth, max_elements: limits that refuse hostile input (`normalize_svg`).
    """

    modality = "svg"
    trained_by = "zoo fit-segments"  # no gradient training: segments are fitted on a corpus

    def __init__(
        self,
        *,
        coord_range: int = 234,
        relative_range: int = 234,
        canvas: int = 224,
        num_segments: int = 0,
        segment_width: int = 0,
        max_chars: int = 4_000_000,
        max_depth: int = 128,
        max_elements: int = 20_000,
    ) -> None:
        super().__init__()
        if canvas > coord_range:
            raise ValueError(f"canvas {canvas} does not fit the coordinate range 0..{coord_range}")
        self.coord_range, self.relative_range, self.canvas = coord_range, relative_range, canvas
        self.limits = {"max_chars": max_chars, "max_depth": max_depth, "max_elements": max_elements}
        self.atomic = atomic_tokens(coord_range, relative_range)
        self.atomic_ids = {t: i for i, t in enumerate(self.atomic)}
        self.num_atomic = len(self.atomic)
        self.text_offset = self.num_atomic
        self.text_end = self.text_offset + 256
        self.segment_offset = self.text_offset + NUM_TEXT
        self._p0 = self.atomic_ids["<P_0>"]
        self._d0 = self.atomic_ids["<d_0>"]
        self.register_buffer("segment_table", torch.full((num_segments, segment_width), -1, dtype=torch.long))
        self._trie: SegmentTrie | None = None

    # ------------------------------------------------------------------ spec
    @property
    def num_text(self) -> int:
        return NUM_TEXT

    @property
    def num_segments(self) -> int:
        return self.segment_table.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.segment_offset + self.num_segments

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.vocab_size,)

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"format": "SVG text", "canvas": self.canvas, "coord_range": self.coord_range}

    def token_layout(self) -> dict[str, Any]:
        return {
            "tokens_per_item": "variable (one SVG per sequence)",
            "codebook_sizes": list(self.codebook_sizes),
            "atomic": f"0..{self.num_atomic - 1} (HiVG's tokens.yaml order)",
            "text": f"{self.text_offset}..{self.segment_offset - 1} (UTF-8 bytes, then end of text)",
            "segments": f"{self.segment_offset}..{self.vocab_size - 1}"
            if self.num_segments
            else "none learned",
            "canvas": self.canvas,
        }

    def forward(self, x: Any) -> TokenizerOutput:  # pragma: no cover - nothing to train by gradient
        raise NotImplementedError("HiVG has no network to train; fit its segments with train_segments()")

    # ------------------------------------------------------------------ token strings
    def _coord(self, kind: str, value: int) -> int:
        if kind == "P":
            return self._p0 + max(0, min(self.coord_range, value))
        return self._d0 + max(-self.relative_range, min(self.relative_range, value))

    def _text(self, text: str) -> list[int]:
        return [self.text_offset + b for b in text.encode("utf-8")] + [self.text_end]

    def strings_to_ids(self, strings: Sequence[str]) -> list[int]:
        """HiVG token strings (special tokens, ``<SEG_k>``, attribute and number text) -> ids."""
        ids: list[int] = []
        for s in strings:
            if s in self.atomic_ids:
                ids.append(self.atomic_ids[s])
            elif (
                s.startswith("<SEG_")
                and s.endswith(">")
                and s[5:-1].isdigit()
                and int(s[5:-1]) < self.num_segments
            ):
                ids.append(self.segment_offset + int(s[5:-1]))
            elif s.startswith("<") and s.endswith(">"):
                raise ValueError(f"{s!r} is not a token of this HiVG vocabulary")
            else:
                ids.extend(self._text(s))
        return ids

    def ids_to_strings(self, ids: Sequence[int]) -> list[str]:
        """Ids -> HiVG token strings, segments expanded and each text run joined into one string."""
        self._check_range(ids)
        strings: list[str] = []
        run: list[int] = []
        for i in self.expand_segments(ids):
            if self.text_offset <= i < self.text_end:
                run.append(i - self.text_offset)
                continue
            if run or i == self.text_end:
                strings.append(bytes(run).decode("utf-8", errors="replace"))
                run = []
                if i == self.text_end:
                    continue
            strings.append(self.atomic[i])
        if run:
            strings.append(bytes(run).decode("utf-8", errors="replace"))
        return strings

    def _check_range(self, ids: Sequence[int]) -> None:
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} lie outside this HiVG vocabulary [0, {self.vocab_size})")

    # ------------------------------------------------------------------ level 1: SVG -> atomic ids
    def _path_ids(self, d: str, where: object) -> list[int]:
        """HiVG's path rules on lexed path data (see the module docstring)."""
        out: list[int] = []
        cmd = self.atomic_ids
        x = y = sx = sy = 0.0
        for letter, nums in lex_path(d, where):
            step = PARAMS[letter]
            if letter in "Zz":
                out.append(cmd["<cmd_z>"])
                x, y = sx, sy
                continue
            relative = letter.islower()
            if letter in "Mm":
                if len(nums) < 2:
                    continue
                ax, ay = (x + nums[0], y + nums[1]) if relative else (nums[0], nums[1])
                qx, qy = max(0, min(self.coord_range, round(ax))), max(0, min(self.coord_range, round(ay)))
                out += [cmd["<cmd_M>"], self._p0 + qx, self._p0 + qy]
                x, y = sx, sy = float(qx), float(qy)
                nums, letter, step = nums[2:], ("l" if relative else "L"), 2
            for k in range(0, len(nums) - step + 1, step):
                group = nums[k : k + step]
                lower = letter.lower()
                if lower == "a":
                    dx, dy = self._delta(group[5], x, relative), self._delta(group[6], y, relative)
                    out.append(cmd["<cmd_a>"])
                    for value in group[:3]:
                        out += self._text(str(round(value)))
                    out += [cmd[f"<large_{int(group[3])}>"], cmd[f"<sweep_{int(group[4])}>"]]
                    out += [self._d0 + dx, self._d0 + dy]
                    x, y = x + dx, y + dy
                    continue
                if lower == "h":
                    dx = self._delta(group[0], x, relative)
                    out += [cmd["<cmd_h>"], self._d0 + dx]
                    x += dx
                    continue
                if lower == "v":
                    dy = self._delta(group[0], y, relative)
                    out += [cmd["<cmd_v>"], self._d0 + dy]
                    y += dy
                    continue
                deltas = [self._delta(v, x if j % 2 == 0 else y, relative) for j, v in enumerate(group)]
                out.append(cmd[f"<cmd_{lower}>"])
                out += [self._d0 + v for v in deltas]
                x, y = x + deltas[-2], y + deltas[-1]
        return out

    def _delta(self, value: float, current: float, relative: bool) -> int:
        delta = round(value) if relative else round(value - current)
        return max(-self.relative_range, min(self.relative_range, delta))

    def _points_ids(self, points: str, closed: bool, where: object) -> list[int]:
        numbers = [float(m.group()) for m in _NUMBER.finditer(points)]
        if any(not math.isfinite(v) for v in numbers):
            raise MediaError(where, "points has a non-finite number")
        if len(numbers) < 2:
            return []
        d = "M " + " ".join(f"{numbers[i]!r} {numbers[i + 1]!r}" for i in range(0, len(numbers) - 1, 2))
        return self._path_ids(d + (" z" if closed else ""), where)

    def _element_ids(self, root: ET.Element, where: object, dropped: dict[str, int]) -> list[int]:
        out: list[int] = []
        stack: list[tuple[ET.Element, bool]] = [(root, False)]
        while stack:
            element, closing = stack.pop()
            tag = _local(element.tag)
            if closing:
                out.append(self.atomic_ids[f"</{tag}>"])
                continue
            if tag == "image" or tag not in ELEMENTS:
                if tag == "image":
                    dropped["image"] = dropped.get("image", 0) + 1
                stack.extend((child, False) for child in reversed(list(element)))
                continue
            out.append(self.atomic_ids[f"<{tag}>"])
            if tag == "svg":
                for key in ("viewBox", "width", "height"):
                    if key in element.attrib:
                        out += self._text(f"{key}={element.attrib[key]}")
            elif tag == "style":
                if element.text and element.text.strip():
                    out += self._text(f"css={element.text.strip()}")
            elif tag != "defs":
                skip = {"path": "d", "polygon": "points", "polyline": "points"}.get(tag)
                for key, value in element.attrib.items():
                    if _local(key) != skip:
                        out += self._text(f"{_local(key)}={value}")
                if tag == "path" and "d" in element.attrib:
                    out += self._path_ids(element.attrib["d"], where)
                elif tag in ("polygon", "polyline") and "points" in element.attrib:
                    out += self._points_ids(element.attrib["points"], tag == "polygon", where)
                elif tag == "text" and element.text and element.text.strip():
                    out += self._text(f"text={element.text.strip()}")
            stack.append((element, True))
            if tag not in ("style", "text") and tag not in _CHILDLESS:
                stack.extend((child, False) for child in reversed(list(element)))
        return out

    def encode_atomic(self, svg: str, *, normalize: bool = True, path: object = None) -> list[int]:
        """One SVG -> atomic and text ids (no segments). ``normalize`` puts it on the canvas first."""
        dropped: dict[str, int] = {}
        if normalize:
            normalized = normalize_svg(svg, canvas=self.canvas, path=path, **self.limits)
            svg, dropped = normalized.text, dict(normalized.dropped)
        elif len(svg) > self.limits["max_chars"]:
            raise MediaError(
                path, f"is {len(svg):,} characters long, over the limit of {self.limits['max_chars']:,}"
            )
        ids = self._element_ids(parse_svg(svg, path), path, dropped)
        if dropped:
            shown = ", ".join(f"{k} x{v}" for k, v in sorted(dropped.items()))
            where = f"{path}: " if path is not None else ""
            warnings.warn(
                f"{where}left out what HiVG has no tokens for: {shown}", SVGRepairWarning, stacklevel=3
            )
        return ids

    def encode_strings(self, svg: str, *, normalize: bool = True) -> list[str]:
        """One SVG -> HiVG's atomic token strings (what HiVG feeds its language model)."""
        return self.ids_to_strings(self.encode_atomic(svg, normalize=normalize))

    # ------------------------------------------------------------------ level 2: segments
    def _trie_or_none(self) -> SegmentTrie | None:
        if self._trie is None and self.num_segments:
            self._trie = SegmentTrie([[int(i) for i in row if i >= 0] for row in self.segment_table.tolist()])
        return self._trie

    def _is_command(self, i: int) -> bool:
        return self.atomic_ids["<cmd_M>"] <= i <= self.atomic_ids["<cmd_z>"]

    def apply_segments(self, ids: Sequence[int]) -> list[int]:
        """Atomic ids -> ids with segments, by greedy longest match at each command (HiVG's encoding) and at
        each text token (attribute segments)."""
        trie = self._trie_or_none()
        if trie is None:
            return list(ids)
        out, i, n = [], 0, len(ids)
        while i < n:
            text_start = self.text_offset <= ids[i] <= self.text_end and (
                i == 0 or not self.text_offset <= ids[i - 1] < self.text_end
            )
            if self._is_command(ids[i]) or text_start:
                match = trie.longest(ids, i)
                if match is not None:
                    out.append(self.segment_offset + match[0])
                    i += match[1]
                    continue
            out.append(ids[i])
            i += 1
        return out

    def expand_segments(self, ids: Sequence[int]) -> list[int]:
        """Ids with segments -> atomic and text ids (exactly what `apply_segments` replaced)."""
        table = self.segment_table
        out: list[int] = []
        for i in ids:
            i = int(i)
            if i >= self.segment_offset:
                out += [int(v) for v in table[i - self.segment_offset].tolist() if v >= 0]
            else:
                out.append(i)
        return out

    def atomic_length(self, ids: Sequence[int]) -> int:
        return len(self.expand_segments(ids))

    def _command_runs(self, ids: Sequence[int]) -> list[list[tuple[int, ...]]]:
        """Runs of consecutive complete commands (one run per stretch of path data): BPE's training units."""
        runs: list[list[tuple[int, ...]]] = []
        run: list[tuple[int, ...]] = []
        i, n = 0, len(ids)
        while i < n:
            end = self._command_end(ids, i) if self._is_command(ids[i]) else None
            if end is None:
                if run:
                    runs.append(run)
                    run = []
                i += 1
                continue
            run.append(tuple(ids[i:end]))
            i = end
        if run:
            runs.append(run)
        return runs

    def _command_end(self, ids: Sequence[int], start: int) -> int | None:
        """End (exclusive) of the complete command at ``start``, or None if it is incomplete."""
        letter = self.atomic[ids[start]][5:-1]
        i = start + 1
        for kind in _KINDS[letter]:
            if kind == "t":
                while i < len(ids) and self.text_offset <= ids[i] < self.text_end:
                    i += 1
                if i >= len(ids) or ids[i] != self.text_end:
                    return None
                i += 1
                continue
            if i >= len(ids) or self._kind(ids[i]) != kind:
                return None
            i += 1
        return i

    def _text_tokens(self, ids: Sequence[int]) -> list[tuple[int, ...]]:
        """The complete text tokens (bytes then end of text) outside path commands: attribute strings."""
        out, i, n = [], 0, len(ids)
        while i < n:
            if self._is_command(ids[i]):
                end = self._command_end(ids, i)
                i = end if end is not None else i + 1
                continue
            if self.text_offset <= ids[i] < self.text_end:
                j = i
                while j < n and self.text_offset <= ids[j] < self.text_end:
                    j += 1
                if j < n and ids[j] == self.text_end:
                    out.append(tuple(ids[i : j + 1]))
                i = j + 1
                continue
            i += 1
        return out

    def _kind(self, i: int) -> str:
        token = self.atomic[i] if i < self.num_atomic else ""
        if token.startswith("<P_"):
            return "P"
        if token.startswith("<d_"):
            return "d"
        if token.startswith(("<large_", "<sweep_")):
            return "f"
        return "?"

    def train_segments(
        self,
        corpus: Iterable[str],
        num_merges: int = 500,
        min_frequency: int = 2,
        *,
        promote_single: bool = True,
        attribute_segments: int = 64,
        normalize: bool = True,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Learn the segment vocabulary from SVG texts (replacing any learned before); saved with the model.

        ``num_merges`` command segments as HiVG learns them (with the two fixes, see
        `zoo.models.svg.segments`; ``promote_single=False`` gives HiVG's pair-only merges), then up to
        ``attribute_segments`` of the most frequent attribute strings (``stroke-linecap=round``) as segments
        of their own, which HiVG leaves to its language model's BPE; 0 gives HiVG's vocabulary exactly.

        Returns statistics: icons used and skipped, segments learned, atomic and segment-level lengths.
        """
        from tqdm import tqdm

        sequences: list[list[int]] = []
        skipped = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SVGRepairWarning)
            for text in tqdm(corpus, desc="hivg: atomic tokens", disable=not progress):
                try:
                    sequences.append(self.encode_atomic(text, normalize=normalize))
                except (MediaError, ValueError):
                    skipped += 1
        runs = [run for ids in sequences for run in self._command_runs(ids)]
        learned = train_segment_bpe(
            runs, num_merges=num_merges, min_frequency=min_frequency, promote_single=promote_single
        )
        texts: Counter[tuple[int, ...]] = Counter()
        for ids in sequences:
            texts.update(self._text_tokens(ids))
        learned += [(t, c) for t, c in texts.most_common(attribute_segments) if c >= min_frequency]
        width = max((len(ids) for ids, _ in learned), default=0)
        table = torch.full((len(learned), width), -1, dtype=torch.long)
        for k, (ids, _) in enumerate(learned):
            table[k, : len(ids)] = torch.tensor(ids)
        self.segment_table = table.to(self.segment_table.device)
        self._trie = None
        self.update_config(num_segments=len(learned), segment_width=width)
        return {
            "icons": len(sequences),
            "skipped": skipped,
            "segments": len(learned),
            **self.length_stats(sequences),
        }

    def length_stats(self, sequences: Iterable[Sequence[int]]) -> dict[str, float]:
        """Sequence lengths before and after segments, over all ids and over geometry alone (command,
        coordinate and flag ids, what HiVG's 2.76x compression counts; text ids excluded)."""
        atomic = segmented = geometry = geometry_segmented = 0
        for ids in sequences:
            with_segments = self.apply_segments(ids)
            atomic, segmented = atomic + len(ids), segmented + len(with_segments)
            geometry += sum(1 for i in ids if i < self.text_offset and not self._is_structure(i))
            geometry_segmented += sum(
                1
                for i in with_segments
                if (i < self.text_offset and not self._is_structure(i))
                or (
                    i >= self.segment_offset
                    and self._is_command(int(self.segment_table[i - self.segment_offset, 0]))
                )
            )
        return {
            "atomic_tokens": atomic,
            "segment_tokens": segmented,
            "compression": atomic / max(segmented, 1),
            "geometry_tokens": geometry,
            "geometry_segmented": geometry_segmented,
            "geometry_compression": geometry / max(geometry_segmented, 1),
        }

    def _is_structure(self, i: int) -> bool:
        return i < 2 * len(ELEMENTS)

    def load_hivg_segments(self, path: str | Path) -> int:
        """Adopt the segments of a HiVG ``bpe`` JSON file (``segments: [{id, tokens, frequency}]``)."""
        import json

        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("coord_range", self.coord_range) != self.coord_range:
            raise ValueError(f"{path}: coord_range {data.get('coord_range')} differs from {self.coord_range}")
        rows = [self.strings_to_ids(seg["tokens"]) for seg in sorted(data["segments"], key=lambda s: s["id"])]
        width = max((len(r) for r in rows), default=0)
        table = torch.full((len(rows), width), -1, dtype=torch.long)
        for k, row in enumerate(rows):
            table[k, : len(row)] = torch.tensor(row)
        self.segment_table, self._trie = table, None
        self.update_config(num_segments=len(rows), segment_width=width)
        return len(rows)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        key = prefix + "segment_table"
        if key in state_dict:  # a saved table of another shape replaces the empty one
            self.segment_table = torch.empty_like(state_dict[key])
            self._trie = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ Tokenizer API
    def prepare(self, media: Any, *, path: str | Path | None = None) -> str:
        if not isinstance(media, str):
            raise MediaError(path, f"expected SVG text, got {type(media).__name__}")
        return media

    def encode(self, svg: str | Sequence[str], *, normalize: bool = True) -> Tokens:
        """SVG text (or a list of them) -> ids ``[B, L]`` (atomic, text and segment ids; -1 pads) and
        ``lengths [B]``."""
        texts = [svg] if isinstance(svg, str) else list(svg)
        rows = [self.apply_segments(self.encode_atomic(t, normalize=normalize)) for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), -1, dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        return self.make_tokens(
            ids=ids,
            grid=(width,),
            codebook_sizes=self.codebook_sizes,
            lengths=torch.tensor([len(r) for r in rows], dtype=torch.long),
            meta={"normalized": normalize, "canvas": self.canvas},
        )

    def finish(self, decoded: list[str], tokens: Tokens) -> str:
        return decoded[0]

    def decode(self, tokens: Tokens | Sequence[int] | torch.Tensor, errors: str = "repair") -> list[str]:
        """Ids -> SVG texts, one per item. ``errors="repair"`` fixes what a model may emit (incomplete commands
        and stray parameters dropped, unbalanced elements closed, stray closers and unknown text dropped,
        unterminated text ended) and says what it changed in an `SVGRepairWarning`; ``"strict"`` raises a
        ValueError instead. Ids outside the vocabulary are always an error."""
        if errors not in ("repair", "strict"):
            raise ValueError(f"errors must be 'repair' or 'strict', got {errors!r}")
        if isinstance(tokens, Tokens):
            if tokens.ids is None or tokens.codebook_sizes != self.codebook_sizes:
                raise ValueError(
                    f"HiVG decodes ids over {self.vocab_size} tokens; got codebooks {tokens.codebook_sizes} "
                    f"(a tokenizer with other segments made them?)"
                )
            ids = tokens.ids
            lengths = (
                tokens.lengths.tolist() if tokens.lengths is not None else [ids.shape[-1]] * ids.shape[0]
            )
            rows = [ids[b, : lengths[b]].tolist() for b in range(ids.shape[0])]
        else:
            data = torch.as_tensor(tokens)
            rows = [data.tolist()] if data.ndim == 1 else [r[r >= 0].tolist() for r in data]
        return [self.detokenize(row, errors=errors) for row in rows]

    # ------------------------------------------------------------------ detokenising
    def detokenize(self, ids: Sequence[int], errors: str = "repair") -> str:
        """One id sequence -> SVG text (see `decode`)."""
        self._check_range(ids)
        flat = self.expand_segments(ids)
        problems: list[str] = []

        def problem(message: str) -> None:
            if errors == "strict":
                raise ValueError(f"cannot detokenise: {message}")
            problems.append(message)

        root = ET.Element("svg")
        stack: list[ET.Element] = []
        d_parts: dict[int, list[str]] = {}
        i, n = 0, len(flat)
        while i < n:
            t = flat[i]
            if self.text_offset <= t <= self.text_end:
                j = i
                while j < n and self.text_offset <= flat[j] < self.text_end:
                    j += 1
                text = bytes(v - self.text_offset for v in flat[i:j]).decode("utf-8", errors="replace")
                if j >= n or flat[j] != self.text_end:
                    problem(f"text {text[:30]!r} at {i} has no end-of-text id")
                    j -= 1
                i = j + 1
                self._attribute(stack, text, i, problem)
                continue
            token = self.atomic[t]
            if self._is_command(t):
                end = self._command_end(flat, i)
                if end is None:
                    problem(f"incomplete {token} at {i}")
                    i += 1
                    while i < n and self._kind(flat[i]) != "?" and not self._is_command(flat[i]):
                        i += 1  # its parameters go with it
                    continue
                if not stack or _local(stack[-1].tag) not in ("path", "polygon", "polyline"):
                    problem(f"{token} at {i} outside a path")
                    i = end
                    continue
                d_parts.setdefault(id(stack[-1]), []).append(self._command_text(flat[i:end]))
                i = end
                continue
            if self._kind(t) != "?":
                problem(f"stray parameter {token} at {i}")
                i += 1
                continue
            name = token[2:-1] if token.startswith("</") else token[1:-1]
            if token.startswith("</"):
                names = [_local(e.tag) for e in stack]
                if name not in names:
                    problem(f"{token} at {i} closes nothing")
                else:
                    while _local(stack[-1].tag) != name:
                        problem(f"<{_local(stack[-1].tag)}> closed by {token} at {i}")
                        stack.pop()
                    stack.pop()
                i += 1
                continue
            if name == "svg" and not stack and len(root.attrib) == 0 and len(root) == 0:
                stack.append(root)
            else:
                if not stack:
                    problem(f"{token} at {i} outside <svg>")
                    stack.append(root)
                child = ET.SubElement(stack[-1], name)
                stack.append(child)
            i += 1
        for element in reversed(stack):
            problem(f"<{_local(element.tag)}> left open")
        for element in root.iter():
            parts = d_parts.get(id(element))
            if not parts:
                continue
            tag = _local(element.tag)
            if tag == "path":
                element.set("d", " ".join(parts))
            else:
                element.set("points", self._points_text(parts, tag == "polygon"))
        root.set("xmlns", SVG_NAMESPACE)
        for element in root.iter():
            css = element.attrib.pop("css", None)
            if css is not None and _local(element.tag) == "style":
                element.text = css
            text = element.attrib.pop("text", None)
            if text is not None and _local(element.tag) == "text":
                element.text = text
        if problems:
            warnings.warn(
                "HiVG repaired the sequence: "
                + "; ".join(problems[:10])
                + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""),
                SVGRepairWarning,
                stacklevel=3,
            )
        svg = ET.tostring(root, encoding="unicode")
        parse_svg(svg)
        return svg

    def _attribute(self, stack: list[ET.Element], text: str, at: int, problem: Any) -> None:
        key, eq, value = text.partition("=")
        if not stack:
            problem(f"text {text[:30]!r} at {at} outside any element")
            return
        if not eq or not re.fullmatch(r"[A-Za-z_][\w:.-]*", key):
            problem(f"text {text[:30]!r} at {at} is not an attribute")
            return
        element = stack[-1]
        if key in element.attrib:
            problem(f"attribute {key!r} repeated at {at}; the last value is kept")
        element.set(key, value)

    def _command_text(self, ids: Sequence[int]) -> str:
        letter = self.atomic[ids[0]][5:-1]
        parts = [letter]
        i = 1
        for kind in _KINDS[letter]:
            if kind == "t":
                j = i
                while ids[j] != self.text_end:
                    j += 1
                parts.append(bytes(v - self.text_offset for v in ids[i:j]).decode("utf-8", errors="replace"))
                i = j + 1
                continue
            token = self.atomic[ids[i]]
            parts.append(token[3:-1] if kind in "Pd" else token[-2])
            i += 1
        return " ".join(parts)

    @staticmethod
    def _points_text(parts: list[str], closed: bool) -> str:
        """Polygon/polyline commands (``M`` then ``l``) back to absolute ``points``."""
        points: list[tuple[float, float]] = []
        x = y = 0.0
        for part in parts:
            fields = part.split()
            letter, values = fields[0], [float(v) for v in fields[1:]]
            if letter in "ML" and len(values) == 2:
                x, y = values
            elif letter in "ml" and len(values) == 2:
                x, y = x + values[0], y + values[1]
            else:
                continue
            points.append((x, y))
        return " ".join(f"{px:g},{py:g}" for px, py in points)


# ---------------------------------------------------------------------------------------------- registry
@register_model(modality="svg", family="hivg")
def hivg(**kwargs: Any) -> HiVG:
    """HiVG config_224: 784 atomic tokens on a 224 px canvas (positions 0..234, offsets -234..234), plus segments."""
    return build(HiVG, "hivg", {}, kwargs)


@register_model(modality="svg", family="hivg", size="784")
def hivg_784(**kwargs: Any) -> HiVG:
    """HiVG config_784: positions 0..794 and offsets -794..794 on a 784 px canvas."""
    return build(HiVG, "hivg_784", {"coord_range": 794, "relative_range": 794, "canvas": 784}, kwargs)


@register_model(modality="svg", family="hivg", size="1008")
def hivg_1008(**kwargs: Any) -> HiVG:
    """HiVG config_1008: positions 0..1008 and offsets -1008..1008 on a 998 px canvas.

    The config's comment says 1024 px, which its range cannot hold; the canvas keeps the 10-unit margin the
    other two configs have."""
    return build(HiVG, "hivg_1008", {"coord_range": 1008, "relative_range": 1008, "canvas": 998}, kwargs)
