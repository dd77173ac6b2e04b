"""`Tokens`: what every tokenizer's ``encode`` returns and its ``decode`` takes.

A `Tokens` holds discrete ids and/or continuous latents for a batch, plus the layout needed to decode
them without the original input: the token grid, the codebook sizes, per-item lengths for
variable-length tokenizers, and free-form metadata (input size, sample rate, levels). It saves to a
single file (safetensors or npz) that records the model and revision that produced it, and flattens
to a language-model sequence and back.

Id layout: ``[B, *grid]`` for one codebook, ``[B, K, *grid]`` for ``K`` codebooks (audiocraft's
``[B, K, T]``). Latents: ``[B, C, *grid]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._atomic import atomic_path
from .errors import MediaError

FORMAT_VERSION = 1
PAD_ID = -1
_TENSOR_FIELDS = ("ids", "latents", "lengths")


# meta fields the decoders read, and what a valid value is: a damaged or edited token file is refused
# when it is made or loaded, not decoded into a wrong length or a wrong rate.
_POSITIVE_INT_META = ("num_samples", "window_samples", "window_stride")
_POSITIVE_NUMBER_META = ("sample_rate", "scale_factor")


def _check_meta(meta: dict[str, Any]) -> None:
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a mapping, got {type(meta).__name__}")
    for key in _POSITIVE_INT_META:
        value = meta.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"meta[{key!r}] must be a positive integer, got {value!r}")
    for key in _POSITIVE_NUMBER_META:
        value = meta.get(key, 1)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"meta[{key!r}] must be a positive number, got {value!r}")


@dataclass
class Tokens:
    """A batch of tokens with the layout needed to decode them.

    Args:
        ids: discrete ids, ``[B, *grid]`` (one codebook) or ``[B, K, *grid]`` (``K`` codebooks).
        latents: continuous latents ``[B, C, *grid]``.
        grid: the per-item token grid, e.g. ``(16, 16)`` for an image or ``(T,)`` for audio.
        codebook_sizes: one size per codebook; empty for purely continuous tokens.
        lengths: valid number of positions per item (``[B]``) for variable-length tokenizers; positions
            past it are padding.
        meta: JSON-serialisable facts the decoder needs (input size, sample rate, levels, ...).
        side: per-item tensors (batch first) the decoder needs besides ids and latents, such as the
            per-channel gains an EEG tokenizer normalises away or a second token stream at another rate;
            they are sliced, concatenated, moved and saved with the rest.
        model, revision: which model (registry name, repo id or path) and revision produced them.
    """

    ids: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    grid: tuple[int, ...] = ()
    codebook_sizes: tuple[int, ...] = ()
    lengths: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    side: dict[str, torch.Tensor] = field(default_factory=dict)
    model: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.ids is None and self.latents is None:
            raise ValueError("Tokens need ids, latents, or both")
        self.grid = tuple(int(g) for g in self.grid)
        self.codebook_sizes = tuple(int(c) for c in self.codebook_sizes)
        if self.ids is not None:
            if self.ids.dtype != torch.long:
                raise TypeError(f"ids must be int64, got {self.ids.dtype}")
            if not self.codebook_sizes:
                raise ValueError("discrete ids need codebook_sizes")
            expected = (self.num_codebooks, *self.grid) if self.num_codebooks > 1 else self.grid
            if tuple(self.ids.shape[1:]) != expected:
                raise ValueError(
                    f"ids have shape {tuple(self.ids.shape)}, expected [B, {', '.join(map(str, expected))}]"
                )
        if self.latents is not None and tuple(self.latents.shape[2:]) != self.grid:
            raise ValueError(f"latents have shape {tuple(self.latents.shape)}, expected [B, C, {self.grid}]")
        if self.ids is not None and self.latents is not None and len(self.ids) != len(self.latents):
            raise ValueError("ids and latents have different batch sizes")
        if self.lengths is not None and tuple(self.lengths.shape) != (len(self),):
            raise ValueError(f"lengths must have shape [{len(self)}], got {tuple(self.lengths.shape)}")
        if any(g < 0 for g in self.grid) or any(c <= 0 for c in self.codebook_sizes):
            raise ValueError(
                f"grid {self.grid} and codebook sizes {self.codebook_sizes} must be non-negative"
            )
        _check_meta(self.meta)
        self.side = dict(self.side)
        for name, value in self.side.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise ValueError(f"side tensor {name!r} holds NaN or infinite values")
            if not name.isidentifier() or name in _TENSOR_FIELDS:
                raise ValueError(
                    f"side tensor name {name!r} must be an identifier other than {_TENSOR_FIELDS}"
                )
            if value.ndim == 0 or len(value) != len(self):
                raise ValueError(
                    f"side tensor {name!r} has shape {tuple(value.shape)}; it must be batch first ({len(self)} items)"
                )

    # ------------------------------------------------------------------ layout facts
    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def discrete(self) -> bool:
        return self.ids is not None

    @property
    def num_positions(self) -> int:
        """Positions in the grid of one item (each carries one id per codebook)."""
        return math.prod(self.grid)

    @property
    def tokens_per_item(self) -> int:
        """Discrete tokens per item at full length: positions x codebooks."""
        return self.num_positions * max(self.num_codebooks, 1)

    @property
    def vocab_size(self) -> int:
        """Size of the flat LM vocabulary: codebooks get disjoint id ranges."""
        return sum(self.codebook_sizes)

    @property
    def bits_per_item(self) -> float:
        """Bits needed to store one full-length item's ids."""
        return self.num_positions * sum(math.log2(c) for c in self.codebook_sizes)

    def __len__(self) -> int:
        tensor = self.ids if self.ids is not None else self.latents
        assert tensor is not None
        return int(tensor.shape[0])

    @property
    def device(self) -> torch.device:
        tensor = self.ids if self.ids is not None else self.latents
        assert tensor is not None
        return tensor.device

    # ------------------------------------------------------------------ batch handling
    def __getitem__(self, index: int | slice) -> Tokens:
        """Select items, keeping the batch dimension (``tokens[2]`` is a batch of one)."""
        sel = slice(index, index + 1 if index != -1 else None) if isinstance(index, int) else index
        pick = lambda t: None if t is None else t[sel]
        return replace(
            self,
            ids=pick(self.ids),
            latents=pick(self.latents),
            lengths=pick(self.lengths),
            side={k: v[sel] for k, v in self.side.items()},
        )

    @classmethod
    def cat(cls, items: Sequence[Tokens]) -> Tokens:
        """Concatenate batches with identical layout."""
        if not items:
            raise ValueError("nothing to concatenate")
        first = items[0]
        for other in items[1:]:
            if (other.grid, other.codebook_sizes, set(other.side)) != (
                first.grid,
                first.codebook_sizes,
                set(first.side),
            ):
                raise ValueError(
                    f"cannot concatenate tokens with layouts {first.grid}/{first.codebook_sizes}/{sorted(first.side)} "
                    f"and {other.grid}/{other.codebook_sizes}/{sorted(other.side)}"
                )
        join = lambda name: (
            None if getattr(first, name) is None else torch.cat([getattr(t, name) for t in items])
        )
        side = {k: torch.cat([t.side[k] for t in items]) for k in first.side}
        return replace(first, ids=join("ids"), latents=join("latents"), lengths=join("lengths"), side=side)

    def to(self, device: torch.device | str) -> Tokens:
        move = lambda t: None if t is None else t.to(device)
        return replace(
            self,
            ids=move(self.ids),
            latents=move(self.latents),
            lengths=move(self.lengths),
            side={k: v.to(device) for k, v in self.side.items()},
        )

    def mask(self) -> torch.Tensor:
        """Boolean ``[B, num_positions]``: True where a position is valid (all True without lengths)."""
        positions = torch.arange(self.num_positions, device=self.device)
        if self.lengths is None:
            return positions.expand(len(self), -1) >= 0
        return positions[None, :] < self.lengths[:, None]

    # ------------------------------------------------------------------ flat LM sequences
    def to_sequence(self) -> torch.Tensor:
        """Flatten ids to ``[B, L]`` for a language model.

        Positions are taken in raster order; with ``K`` codebooks the ``K`` ids of a position are
        adjacent and codebook ``k`` is offset by the sizes of codebooks ``0..k-1``, so one vocabulary of
        ``vocab_size`` entries covers them all. Padding past ``lengths`` is ``-1``.
        """
        if self.ids is None:
            raise ValueError("continuous tokens have no id sequence")
        batch = len(self)
        if self.num_codebooks == 1:
            seq = self.ids.reshape(batch, self.num_positions, 1)
        else:
            seq = self.ids.reshape(batch, self.num_codebooks, self.num_positions).transpose(1, 2)
        offsets = torch.tensor([0, *np.cumsum(self.codebook_sizes)[:-1]], device=seq.device, dtype=torch.long)
        seq = seq + offsets
        seq = seq.masked_fill(~self.mask()[:, :, None], PAD_ID)
        return seq.reshape(batch, -1)

    @classmethod
    def from_sequence(
        cls,
        seq: torch.Tensor,
        *,
        grid: Sequence[int],
        codebook_sizes: Sequence[int],
        meta: dict[str, Any] | None = None,
        model: str | None = None,
        revision: str | None = None,
    ) -> Tokens:
        """Invert `to_sequence`. Trailing ``-1`` padding becomes per-item ``lengths``."""
        sizes = tuple(int(c) for c in codebook_sizes)
        grid = tuple(int(g) for g in grid)
        k, positions = len(sizes), math.prod(grid)
        if seq.ndim != 2 or seq.shape[1] != positions * k:
            raise ValueError(
                f"sequence of shape {tuple(seq.shape)} does not fit grid {grid} with {k} codebooks"
            )
        seq = seq.long().reshape(len(seq), positions, k)
        valid = seq[..., 0] != PAD_ID
        lengths = valid.sum(1)
        if not bool((valid == (torch.arange(positions, device=seq.device)[None] < lengths[:, None])).all()):
            raise ValueError("padding (-1) may only appear at the end of a sequence")
        offsets = torch.tensor([0, *np.cumsum(sizes)[:-1]], device=seq.device, dtype=torch.long)
        ids = torch.where(valid[..., None], seq - offsets, torch.zeros_like(seq))
        limits = torch.tensor(sizes, device=seq.device)
        if bool(((ids < 0) | (ids >= limits)).any()):
            raise ValueError("sequence holds ids outside their codebook's range")
        ids = ids.transpose(1, 2).reshape(len(seq), *(((k,) if k > 1 else ()) + grid))
        full = bool((lengths == positions).all())
        return cls(
            ids=ids,
            grid=grid,
            codebook_sizes=sizes,
            lengths=None if full else lengths,
            meta=dict(meta or {}),
            model=model,
            revision=revision,
        )

    # ------------------------------------------------------------------ files
    def _header(self) -> dict[str, Any]:
        return {
            "format": "zoo.tokens",
            "version": FORMAT_VERSION,
            "grid": list(self.grid),
            "codebook_sizes": list(self.codebook_sizes),
            "meta": self.meta,
            "model": self.model,
            "revision": self.revision,
        }

    def _tensors(self) -> dict[str, torch.Tensor]:
        named = {"ids": self.ids, "latents": self.latents, "lengths": self.lengths}
        named.update({f"side.{k}": v for k, v in self.side.items()})
        return {k: v.detach().cpu().contiguous() for k, v in named.items() if v is not None}

    def save(self, path: str | Path) -> Path:
        """Write to ``.safetensors`` or ``.npz`` (chosen by suffix), atomically."""
        path = Path(path)
        header = json.dumps(self._header())
        with atomic_path(path) as tmp:
            if path.suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file(self._tensors(), str(tmp), metadata={"zoo.tokens": header})
            elif path.suffix == ".npz":
                arrays = {k: v.numpy() for k, v in self._tensors().items()}
                with open(tmp, "wb") as fh:
                    np.savez(fh, header=np.array(header), **arrays)
            else:
                raise MediaError(path, "token files must end in .safetensors or .npz")
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Tokens:
        """Read a token file written by `save`; a damaged or foreign file raises `MediaError`."""
        path = Path(path)
        if not path.is_file():
            raise MediaError(path, "no such token file")
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as fh:
                    meta = fh.metadata() or {}
                    tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
                raw = meta.get("zoo.tokens")
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    raw = str(data["header"]) if "header" in data.files else None
                    tensors = {k: torch.from_numpy(data[k].copy()) for k in data.files if k != "header"}
            else:
                raise MediaError(path, "token files must end in .safetensors or .npz")
        except MediaError:
            raise
        except Exception as exc:  # safetensors, numpy and zipfile each raise their own types
            raise MediaError(path, f"not a readable token file ({type(exc).__name__}: {exc})") from exc
        if raw is None:
            raise MediaError(path, "has no zoo.tokens header; it was not written by Tokens.save")
        try:
            header = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise MediaError(path, f"token header is not valid JSON ({exc})") from exc
        version = header.get("version", 0) if isinstance(header, dict) else None
        if (
            not isinstance(header, dict)
            or header.get("format") != "zoo.tokens"
            or isinstance(version, bool)
            or not isinstance(version, int)
            or version > FORMAT_VERSION
        ):
            if not isinstance(header, dict):
                raise MediaError(path, "token header is not a JSON object")
            raise MediaError(
                path, f"unsupported token file format {header.get('format')!r} v{header.get('version')}"
            )
        try:
            return cls(
                ids=tensors.get("ids"),
                latents=tensors.get("latents"),
                lengths=tensors.get("lengths"),
                side={k.removeprefix("side."): v for k, v in tensors.items() if k.startswith("side.")},
                grid=tuple(header["grid"]),
                codebook_sizes=tuple(header["codebook_sizes"]),
                meta=header.get("meta") or {},
                model=header.get("model"),
                revision=header.get("revision"),
            ).to(device)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise MediaError(path, f"inconsistent token file: {exc}") from exc

    def equal(self, other: Tokens) -> bool:
        """Exact equality of layout and contents (latents compared exactly too)."""
        same = lambda a, b: (
            (a is None and b is None)
            or (
                a is not None and b is not None and a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu()))
            )
        )
        return (
            (self.grid, self.codebook_sizes, self.meta) == (other.grid, other.codebook_sizes, other.meta)
            and same(self.ids, other.ids)
            and same(self.latents, other.latents)
            and same(self.lengths, other.lengths)
            and set(self.side) == set(other.side)
            and all(same(v, other.side[k]) for k, v in self.side.items())
        )
