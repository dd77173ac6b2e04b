"""HiVG's second level: "structure segments", a BPE over complete path commands.

A unit is one complete command with its parameters (a tuple of ids). Within each run of consecutive
commands of one element, the most frequent adjacent pair of units is merged into a new unit, repeatedly,
as HiVG does; each merged unit is a segment token. Two fixes to HiVG's trainer:

- pair counting restarts at every element boundary, so no merge is spent on a pair that straddles two
  paths and can never match when encoding;
- single-command promotion: a frequent command on its own becomes a segment too (HiVG's merges only
  ever join two units, so a segment always spans at least two commands). At every step the most
  frequent candidate wins, a pair or a single command, by its current count.

Training deduplicates runs (a corpus of icons repeats many), keeps pair counts and a pair -> runs index,
and rewrites only the runs a merge touches, so 10k icons train in seconds. Encoding is HiVG's greedy
longest match, through a trie: at each command, the longest segment that matches from there is taken.
Expanding segments gives the atomic ids back exactly.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

__all__ = ["SegmentTrie", "train_segment_bpe"]

Unit = tuple[int, ...]


def train_segment_bpe(
    runs: Iterable[Sequence[Unit]],
    *,
    num_merges: int,
    min_frequency: int = 2,
    promote_single: bool = True,
) -> list[tuple[Unit, int]]:
    """Learn up to ``num_merges`` segments from ``runs`` (each a list of complete commands, one run per
    element) and return them as ``(ids, count)`` in creation order. Stops when no candidate reaches
    ``min_frequency``. ``promote_single=False`` gives HiVG's pair-only merges."""
    run_counts: Counter[tuple[Unit, ...]] = Counter(tuple(run) for run in runs if run)
    unit_ids: dict[Unit, int] = {}
    units: list[Unit] = []

    def unit_id(unit: Unit) -> int:
        if unit not in unit_ids:
            unit_ids[unit] = len(units)
            units.append(unit)
        return unit_ids[unit]

    words: list[list[int]] = []
    freqs: list[int] = []
    for run, count in run_counts.items():
        words.append([unit_id(u) for u in run])
        freqs.append(count)
    base = len(units)
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    unit_counts: Counter[int] = Counter()
    for w, (word, count) in enumerate(zip(words, freqs, strict=True)):
        for u in word:
            unit_counts[u] += count
        for pair in itertools.pairwise(word):
            pair_counts[pair] += count
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)
    single_heap = [(-unit_counts[u], u) for u in range(base) if len(units[u]) > 1]
    heapq.heapify(single_heap)
    promoted: set[int] = set()
    segments: list[tuple[Unit, int]] = []
    is_segment: set[int] = set()

    def best_pair() -> tuple[int, tuple[int, int]] | None:
        while heap:
            negative, pair = heap[0]
            if pair_counts.get(pair, 0) == -negative and -negative > 0:
                return -negative, pair
            heapq.heappop(heap)  # stale: the pair's count changed since it was pushed
            if pair_counts.get(pair, 0) > 0 and pair_counts[pair] != -negative:
                heapq.heappush(heap, (-pair_counts[pair], pair))
        return None

    def best_single() -> tuple[int, int] | None:
        while single_heap:
            negative, u = single_heap[0]
            if u not in promoted and unit_counts[u] == -negative:
                return -negative, u
            heapq.heappop(single_heap)
        return None

    while len(segments) < num_merges:
        pair = best_pair()
        single = best_single() if promote_single else None
        if single is not None and single[0] >= min_frequency and (pair is None or single[0] > pair[0]):
            promoted.add(single[1])
            if single[1] not in is_segment:
                is_segment.add(single[1])
                segments.append((units[single[1]], single[0]))
            continue
        if pair is None or pair[0] < min_frequency:
            break
        count, (a, b) = pair
        merged = unit_id(units[a] + units[b])
        if merged not in is_segment:
            is_segment.add(merged)
            segments.append((units[merged], count))
        for w in list(where.pop((a, b), ())):
            word, f = words[w], freqs[w]
            for p in itertools.pairwise(word):
                pair_counts[p] -= f
            for u in word:
                unit_counts[u] -= f
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[w] = out
            for u in out:
                unit_counts[u] += f
            for u in set(word):
                if u < base and u not in promoted and len(units[u]) > 1:
                    heapq.heappush(single_heap, (-unit_counts[u], u))
            for p in itertools.pairwise(out):
                pair_counts[p] += f
                where[p].add(w)
                heapq.heappush(heap, (-pair_counts[p], p))
        pair_counts.pop((a, b), None)
    return segments


class SegmentTrie:
    """Greedy longest match of id tuples (segments) against a sequence, from given start positions."""

    def __init__(self, segments: Sequence[Sequence[int]]) -> None:
        self.root: dict = {}
        for index, ids in enumerate(segments):
            node = self.root
            for token in ids:
                node = node.setdefault(token, {})
            node.setdefault(None, index)  # the first segment with these ids keeps them

    def longest(self, ids: Sequence[int], start: int) -> tuple[int, int] | None:
        """``(segment index, length)`` of the longest segment equal to ``ids[start:start + length]``."""
        node, best, i = self.root, None, start
        while i < len(ids) and ids[i] in node:
            node = node[ids[i]]
            i += 1
            if None in node:
                best = (node[None], i - start)
        return best
