"""SVG corpora as token id sequences for language models, with HiVG's length curriculum.

An SVG tokenizer is a parser (HiVG normalises every icon with ``svgelements``), so encoding a corpus
costs far more than a training step on its ids. `tokenize_texts` encodes a split once; `SVGTokenDataModule`
keeps the sequences in memory and, given ``cache_dir``, on disk, keyed by the tokenizer's fingerprint
and the split's text, so a rerun with the same tokenizer and data skips encoding.

Sequences longer than ``max_length`` ids are dropped (a warning says how many and which items of which
split): a causal model sized for ``max_length`` positions cannot score them.

Curriculum (HiVG trains short icons first): stage ``k`` admits the training items whose *atomic* length
(segments expanded, so learned segments do not reorder the stages) is at most the ``stage_quantiles[k]``
quantile of the training split; the stages before the last last ``stage_steps[k]`` batches each, the last
one the rest of training. `CurriculumBatchSampler` draws every batch from a function of the batch number
alone, so a run resumed from a checkpoint (the DataModule saves that number) sees the same batches.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo._atomic import atomic_path
from zoo.data._common import mix_seed, rank_and_world
from zoo.data._module import ZooDataModule
from zoo.tokens import PAD_ID

__all__ = [
    "CurriculumBatchSampler",
    "SVGTokenDataModule",
    "TokenSequences",
    "collate_sequences",
    "learn_segments",
    "tokenize_texts",
]

log = logging.getLogger(__name__)
CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Encoding


def tokenize_texts(
    tokenizer: Any, texts: Sequence[str], *, batch_size: int = 64
) -> tuple[list[list[int]], list[int], list[tuple[int, str]]]:
    """Encode SVG texts: ``(ids per text, atomic length per text, failures [(index, reason)])``.

    A text the tokenizer refuses gets an empty id list and a failure entry instead of stopping the corpus.
    Warnings the tokenizer raises per icon (parts it cannot represent) are counted into one.
    """
    sequences: list[list[int]] = []
    failures: list[tuple[int, str]] = []
    caught: list[str] = []

    def encode(chunk: Sequence[str]) -> list[list[int]]:
        tokens = tokenizer.encode(list(chunk))
        lengths = (
            tokens.lengths.tolist() if tokens.lengths is not None else [tokens.ids.shape[1]] * len(chunk)
        )
        return [row[:n] for row, n in zip(tokens.ids.tolist(), lengths, strict=True)]

    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            try:
                sequences += encode(chunk)
                continue
            except (ValueError, TypeError, RuntimeError, OSError) as exc:  # find the culprit(s) one by one
                if len(chunk) == 1:
                    failures.append((start, f"{type(exc).__name__}: {exc}"))
                    sequences.append([])
                    continue
            for i, text in enumerate(chunk):
                try:
                    sequences += encode([text])
                except (ValueError, TypeError, RuntimeError, OSError) as exc:
                    failures.append((start + i, f"{type(exc).__name__}: {exc}"))
                    sequences.append([])
        caught = [str(w.message) for w in recorded]
    if caught:
        warnings.warn(
            f"{len(caught)} tokenizer warning(s) while encoding {len(texts)} SVG texts, e.g.: {caught[0]}",
            stacklevel=2,
        )
    atomic = getattr(tokenizer, "atomic_length", None)
    atomic_lengths = [int(atomic(s)) if atomic is not None and s else len(s) for s in sequences]
    return sequences, atomic_lengths, failures


def _fingerprint(tokenizer: Any) -> str:
    """The tokenizer's identity for cache keys: arch, config, state and vocabulary size."""
    from zoo import __version__
    from zoo.data.token_cache import tokenizer_fingerprint

    extra = f"{__version__}|{getattr(tokenizer, 'vocab_size', None)}|{tokenizer.codebook_sizes}"
    return hashlib.sha256((tokenizer_fingerprint(tokenizer) + extra).encode()).hexdigest()


def _texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(hashlib.sha256(text.encode("utf-8")).digest())
    return h.hexdigest()


def cached_tokenize(
    tokenizer: Any, texts: Sequence[str], cache_dir: str | Path | None
) -> tuple[list[list[int]], list[int], list[tuple[int, str]]]:
    """`tokenize_texts`, read from or written to ``cache_dir`` (one safetensors file per tokenizer and text set)."""
    if cache_dir is None:
        return tokenize_texts(tokenizer, texts)
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(
        f"{CACHE_VERSION}|{_fingerprint(tokenizer)}|{_texts_digest(texts)}".encode()
    ).hexdigest()
    path = Path(cache_dir) / f"svg-tokens-{key[:24]}.safetensors"
    if path.is_file():
        stored = load_file(path)
        flat, offsets = stored["ids"].long(), stored["offsets"].tolist()
        sequences = [flat[a:b].tolist() for a, b in itertools.pairwise(offsets)]
        failed = stored["failed"].tolist()
        return (
            sequences,
            stored["atomic_lengths"].tolist(),
            [(i, "failed to encode (cached)") for i in failed],
        )
    sequences, atomic_lengths, failures = tokenize_texts(tokenizer, texts)
    offsets = [0]
    for seq in sequences:
        offsets.append(offsets[-1] + len(seq))
    tensors = {
        "ids": torch.tensor([i for seq in sequences for i in seq], dtype=torch.int32),
        "offsets": torch.tensor(offsets, dtype=torch.int64),
        "atomic_lengths": torch.tensor(atomic_lengths, dtype=torch.int64),
        "failed": torch.tensor([i for i, _ in failures], dtype=torch.int64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return sequences, atomic_lengths, failures


def learn_segments(
    corpus: str | Path,
    output: str | Path,
    *,
    tokenizer: str = "hivg",
    num_merges: int = 500,
    min_frequency: int = 2,
    val_fraction: float = 0.05,
    limit: int | None = None,
) -> Path:
    """Learn HiVG segment tokens on the training split of an SVG corpus and save the tokenizer to ``output``.

    Only the training split is used (as `SVGTokenDataModule` splits it with the same ``val_fraction``),
    so held-out icons stay unseen (as ``zoo fit-segments ... --split train`` does). ``limit``
    takes the first that many training icons. Point a recipe's ``tokenizer`` (model and data) at ``output``.
    """
    from zoo.data.svg import SVGCorpus
    from zoo.models.generators.hivg_lm import resolve_tokenizer

    tok = resolve_tokenizer(tokenizer)
    texts = SVGCorpus(corpus, "train", val_fraction).texts[:limit]
    stats = tok.train_segments(texts, num_merges=num_merges, min_frequency=min_frequency)
    log.info(
        "learned %d segments on %d icons (%d skipped)", stats["segments"], stats["icons"], stats["skipped"]
    )
    return Path(tok.save_pretrained(output))


# --------------------------------------------------------------------------------------------------
# Datasets, batches and the curriculum


class TokenSequences(Dataset):
    """Token id sequences in memory; item ``i`` is ``(ids [L] int64, atomic length)``."""

    def __init__(self, sequences: Sequence[Sequence[int]], atomic_lengths: Sequence[int]) -> None:
        if len(sequences) != len(atomic_lengths):
            raise ValueError("one atomic length per sequence")
        self.sequences = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
        self.atomic_lengths = torch.as_tensor(list(atomic_lengths), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.sequences[index], int(self.atomic_lengths[index])


def collate_sequences(items: Sequence[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """``{"ids" [B, L] padded with -1, "lengths", "atomic_lengths", "labels" (zeros: unconditional)}``."""
    longest = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), longest), PAD_ID, dtype=torch.long)
    for i, (seq, _) in enumerate(items):
        ids[i, : len(seq)] = seq
    return {
        "ids": ids,
        "lengths": torch.tensor([len(seq) for seq, _ in items], dtype=torch.long),
        "atomic_lengths": torch.tensor([n for _, n in items], dtype=torch.long),
        "labels": torch.zeros(len(items), dtype=torch.long),
    }


def stage_limits(atomic_lengths: torch.Tensor, quantiles: Sequence[float]) -> list[int]:
    """The atomic-length ceiling of each stage: the training split's ``quantiles`` (the last is its maximum
    when the last quantile is 1)."""
    values = atomic_lengths.float()
    return [int(torch.quantile(values, float(q), interpolation="higher")) for q in quantiles]


class CurriculumBatchSampler(Sampler[list[int]]):
    """Batches of indices whose pool grows with the batch number: stage ``k`` draws only items with
    atomic length ``<= limits[k]``, for ``stage_steps[k]`` batches (the last stage forever).

    Batch ``s`` of stage ``k`` (``j`` batches into it) is slice ``[j B, (j + 1) B)`` of an endless stream of
    permutations of that stage's pool, each drawn from ``(seed, k, pass)``; so any batch follows from its
    number alone and ``step`` is all a resume needs. Under data parallelism every rank computes the global
    batch of ``B * world`` and takes its own interleaved slice.
    """

    def __init__(
        self,
        atomic_lengths: torch.Tensor,
        limits: Sequence[int],
        stage_steps: Sequence[int],
        batch_size: int,
        seed: int = 0,
    ) -> None:
        if len(stage_steps) != len(limits) - 1:
            raise ValueError(
                f"{len(limits)} stages need {len(limits) - 1} stage_steps, got {list(stage_steps)}"
            )
        self.lengths = torch.as_tensor(atomic_lengths, dtype=torch.long)
        self.limits, self.stage_steps = [int(x) for x in limits], [int(x) for x in stage_steps]
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.pools = [torch.nonzero(self.lengths <= limit)[:, 0] for limit in self.limits]
        for k, pool in enumerate(self.pools):
            if len(pool) == 0:
                raise ValueError(f"curriculum stage {k} (atomic length <= {self.limits[k]}) admits no item")
        self.step = 0
        self._perm: tuple[tuple[int, int], torch.Tensor] | None = None

    def stage(self, step: int) -> int:
        """The stage of batch number ``step``."""
        for k, steps in enumerate(self.stage_steps):
            if step < steps:
                return k
            step -= steps
        return len(self.limits) - 1

    def max_atomic_length(self, step: int) -> int:
        return self.limits[self.stage(step)]

    def _permutation(self, stage: int, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != (stage, epoch):
            g = torch.Generator().manual_seed(mix_seed(self.seed, stage, epoch))
            pool = self.pools[stage]
            self._perm = ((stage, epoch), pool[torch.randperm(len(pool), generator=g)])
        return self._perm[1]

    def batch(self, step: int) -> list[int]:
        """This rank's indices of batch number ``step``."""
        rank, world = rank_and_world()
        stage = self.stage(step)
        within = step - sum(self.stage_steps[:stage])
        size, n = self.batch_size * world, len(self.pools[stage])
        out = []
        for i in range(within * size, (within + 1) * size):
            out.append(int(self._permutation(stage, i // n)[i % n]))
        return out[rank::world]

    def __len__(self) -> int:
        world = rank_and_world()[1]
        return max(1, -(-len(self.lengths) // (self.batch_size * world)))

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(len(self)):
            batch = self.batch(self.step)
            self.step += 1
            yield batch


class SVGTokenDataModule(ZooDataModule):
    """Token id sequences of an SVG corpus for an SVG language model, with a length curriculum.

    Args:
        path: SVG folder or ``.jsonl`` with an ``"svg"`` field (see `SVGCorpus`).
        tokenizer: registry name (``"hivg"``) or saved tokenizer directory (e.g. with learned segments).
        max_length: sequences with more ids are dropped from both splits (and reported).
        batch_size, num_workers, val_fraction, seed, limit: as every zoo DataModule.
        cache_dir: keep the encoded splits here (``None``: in memory only).
        stage_quantiles: atomic-length quantile of the training split admitted by each stage, rising to 1.
        stage_steps: batches spent in each stage but the last (``len(stage_quantiles) - 1`` numbers).
    """

    collate_fn = staticmethod(collate_sequences)

    def __init__(
        self,
        path: str,
        tokenizer: str = "hivg",
        max_length: int = 1024,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.05,
        seed: int = 0,
        limit: int | None = None,
        cache_dir: str | None = None,
        stage_quantiles: Sequence[float] = (1.0,),
        stage_steps: Sequence[int] = (),
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, limit)
        self.save_hyperparameters()
        quantiles = [float(q) for q in stage_quantiles]
        if not quantiles or any(b <= a for a, b in itertools.pairwise(quantiles)):
            raise ValueError(f"stage_quantiles must rise strictly, got {quantiles}")
        if not (0 < quantiles[0] and quantiles[-1] == 1.0):
            raise ValueError(f"stage_quantiles must lie in (0, 1] and end at 1, got {quantiles}")
        if len(stage_steps) != len(quantiles) - 1 or any(int(s) < 1 for s in stage_steps):
            raise ValueError(
                f"stage_steps needs {len(quantiles) - 1} positive batch counts (one per stage but the last), "
                f"got {list(stage_steps)}"
            )
        if int(max_length) < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.path, self.tokenizer_source, self.max_length = path, tokenizer, int(max_length)
        self.cache_dir = cache_dir
        self.stage_quantiles, self.stage_steps = quantiles, [int(s) for s in stage_steps]
        self._tokenizer: Any = None
        self.sampler: CurriculumBatchSampler | None = None
        self.dropped: dict[str, list[int]] = {}
        self.failed: dict[str, list[int]] = {}
        self.limits: list[int] = []
        self._resume_step = 0

    # ------------------------------------------------------------------ tokenizer
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from zoo.models.generators.hivg_lm import resolve_tokenizer

            self._tokenizer = resolve_tokenizer(self.tokenizer_source)
        return self._tokenizer

    @property
    def cache_index(self) -> dict[str, Any]:
        """What `GeneratorModule.on_fit_start` checks the generator against, and the tokenizer it records."""
        return {"tokenizer": self.tokenizer_source, "codebook_sizes": list(self.tokenizer.codebook_sizes)}

    # ------------------------------------------------------------------ splits
    def _split(self, split: str) -> TokenSequences:
        from zoo.data.svg import SVGCorpus

        texts = SVGCorpus(self.path, split, self.val_fraction).texts
        if self.limit is not None and self.limit < len(texts):  # spread as Subsample does, before encoding
            texts = [texts[i * len(texts) // self.limit] for i in range(self.limit)]
        sequences, atomic, failures = cached_tokenize(self.tokenizer, texts, self.cache_dir)
        failed = {i for i, _ in failures}
        if failures:
            warnings.warn(
                f"{self.path} ({split}): {len(failures)} of {len(texts)} icons failed to encode and are left "
                f"out, e.g. item {failures[0][0]}: {failures[0][1]}",
                stacklevel=2,
            )
        long = [i for i, s in enumerate(sequences) if len(s) > self.max_length and i not in failed]
        if long:
            lengths = sorted(len(sequences[i]) for i in long)
            warnings.warn(
                f"{self.path} ({split}): dropped {len(long)} of {len(texts)} icons longer than max_length "
                f"{self.max_length} ids ({lengths[0]}..{lengths[-1]} ids; items {long[:10]}"
                f"{' ...' if len(long) > 10 else ''} of the split, in SVGTokenDataModule.dropped[{split!r}])",
                stacklevel=2,
            )
        self.dropped[split], self.failed[split] = long, sorted(failed)
        left_out = failed | set(long)
        keep = [i for i in range(len(sequences)) if i not in left_out]
        return TokenSequences([sequences[i] for i in keep], [atomic[i] for i in keep])

    def _build(self) -> tuple[Dataset, Dataset]:
        return self._split("train"), self._split("val")

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        super().setup(stage)
        train = self.train_dataset
        lengths = torch.tensor([train[i][1] for i in range(len(train))], dtype=torch.long)  # type: ignore[arg-type]
        self.limits = stage_limits(lengths, self.stage_quantiles)
        self.sampler = CurriculumBatchSampler(
            lengths, self.limits, self.stage_steps, self.batch_size, self.seed
        )
        self.sampler.step = self._resume_step
        if len(self.limits) > 1:
            log.info(
                "curriculum: atomic length <= %s for %s batches, then all (<= %d)",
                self.limits[:-1],
                self.stage_steps,
                self.limits[-1],
            )

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        options = self._loader_options()
        options.pop("batch_size")
        return DataLoader(self.train_dataset, batch_sampler=self.sampler, **options)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        """The batch number the curriculum has reached, saved in Lightning checkpoints."""
        return {"curriculum_step": self.sampler.step if self.sampler is not None else self._resume_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_step = int(state.get("curriculum_step", 0))
        if self.sampler is not None:
            self.sampler.step = self._resume_step
