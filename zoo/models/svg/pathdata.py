"""Path data read by the SVG grammar, strictly: every number, flag and command, or a clear error.

Both the normaliser (which must not let a geometry library skip what it cannot read) and HiVG's
atomic tokenization read ``d`` through this.
"""

from __future__ import annotations

import math
import re

from ...errors import MediaError

__all__ = ["NUMBER", "lex_path"]

NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_FLAG = re.compile(r"[01]")
_COMMAND = re.compile(r"[MmLlHhVvCcSsQqTtAaZz]")
_SPACE = re.compile(r"[\s,]*")


def lex_path(d: str, where: object = None) -> list[tuple[str, list[float]]]:
    """Path data -> ``[(command letter, numbers)]`` by the SVG grammar (arc flags are single digits,
    so ``a1 1 0 01.5 2`` reads as flags 0 and 1, then 1.5); anything else is a `MediaError`."""
    out: list[tuple[str, list[float]]] = []
    i, n = _SPACE.match(d, 0).end(), len(d)
    command = None
    while i < n:
        m = _COMMAND.match(d, i)
        if m:
            command = m.group()
            out.append((command, []))
            i = _SPACE.match(d, m.end()).end()
            continue
        if command is None or command in "Zz":
            raise MediaError(
                where, f"path data has a number without a command at offset {i}: {d[i : i + 20]!r}"
            )
        numbers = out[-1][1]
        position = len(numbers) % 7 if command in "Aa" else -1
        m = (_FLAG if position in (3, 4) else NUMBER).match(d, i)
        if not m:
            raise MediaError(where, f"path data is malformed at offset {i}: {d[i : i + 20]!r}")
        value = float(m.group())
        if not math.isfinite(value):
            raise MediaError(where, f"path data has a non-finite number {m.group()!r}")
        numbers.append(value)
        i = _SPACE.match(d, m.end()).end()
    return out
