"""Token caches: a dataset encoded once by a tokenizer, so that generators train without re-encoding.

LlamaGen (``extract_codes_c2i.py``, with ``--ten-crop``) and MAR (``main_cache.py``) both encode
ImageNet once and train their generators from the stored codes: the tokenizer is frozen, so encoding
it again every epoch only costs time. `build_token_cache` does the same for any zoo image tokenizer
and `TokenCache` / `TokenCacheDataModule` serve the result to a training loop.

A cache folder holds

- ``shard-00000.safetensors``, ... : shard k holds items ``[k * shard_size, (k + 1) * shard_size)``:
  ``ids`` ``[n, V, *grid]`` (``[n, V, K, *grid]`` with K codebooks; int16 when every codebook has
  fewer than 32,768 codes, else int32) for discrete tokenizers, or ``latents`` and ``latent_std``
  ``[n, V, C, *grid]`` float32 for continuous ones (the scaled posterior mean and standard deviation;
  ``latent_std`` only when the tokenizer's ``encode`` takes ``posterior=True``), plus ``labels`` and
  ``index`` int64 ``[n]`` (class label and index in the source dataset). V is the number of views
  of each item. Each shard's metadata repeats the cache's settings, so a shard cannot be mixed into
  another cache by mistake.
- ``index.json`` (written last): the settings, the token layout, the class names and every shard's
  item count and SHA-256.

Views: "none" (the item), "flip" (the item and its mirror image: MAR's moments + flipped moments,
and LlamaGen's default), "ten_crop" (LlamaGen's ``--ten-crop --crop-range 1.1``: a square of
``int(1.1 * resolution)``, then the four corner crops and the centre crop of ``resolution``, then
the same on the mirrored square). Training draws one view per item and epoch, and for latents a
fresh posterior sample ``mean + std * N(0, I)``, as MAR's cached training does.

Building is resumable: every shard is written atomically, a rerun keeps the shards that are there
and encodes only the missing ones, and a folder written with other settings or another tokenizer
is refused. With several devices one process per device encodes every world-th missing shard.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import inspect
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from zoo._atomic import atomic_path, atomic_write_text
from zoo.data._common import Key, Subsample, hash_split, randint, unpack
from zoo.data._module import ZooDataModule
from zoo.errors import MediaError

__all__ = ["INDEX_NAME", "VIEWS", "TokenCache", "TokenCacheDataModule", "build_token_cache", "make_views"]

FORMAT = "zoo.token_cache"
VERSION = 1
INDEX_NAME = "index.json"
VIEWS = {"none": 1, "flip": 2, "ten_crop": 10}
CROP_RANGE = 1.1  # LlamaGen's --crop-range default
_META_KEY = "zoo.token_cache"
# Settings every shard records; a rerun must match them all to reuse a shard.
_SETTING_KEYS = (
    "format",
    "version",
    "tokenizer_arch",
    "tokenizer_fingerprint",
    "kind",
    "posterior",
    "views",
    "num_views",
    "resolution",
    "num_items",
    "shard_size",
    "num_classes",
    "class_names",
    "dataset",
)
# Settings recorded only when on, so caches written before they existed keep their settings.
_OPTIONAL_SETTING_KEYS = ("pivot",)
# Facts about the tokens that follow from the settings, read back from the shards.
_LAYOUT_KEYS = ("grid", "codebook_sizes", "latent_channels", "scale_factor", "dtype")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


# --------------------------------------------------------------------------------------------------
# Views


def center_crop_arr(x: torch.Tensor, size: int) -> torch.Tensor:
    """ADM's ``center_crop_arr``, which LlamaGen's and MAR's caches both use: on the 8-bit image, halve
    with PIL's BOX filter while the shorter side is at least ``2 * size``, resize it to ``size`` with
    PIL's BICUBIC, and crop the centre square. ``x`` is ``[C, H, W]`` in [0, 1] (8-bit pixels / 255, as
    every zoo image reader gives them), and so is the result."""
    from PIL import Image

    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    while min(*image.size) >= 2 * size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = size / min(*image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    array = np.asarray(image)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    array = array[top : top + size, left : left + size]
    out = torch.from_numpy(np.array(array)).float() / 255
    return out[None] if out.ndim == 2 else out.permute(2, 0, 1)


def _five_crops(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """torchvision's `five_crop` order and centre rounding: top-left, top-right, bottom-left, bottom-right, centre."""
    h, w = x.shape[-2:]
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return [
        x[..., :size, :size],
        x[..., :size, w - size :],
        x[..., h - size :, :size],
        x[..., h - size :, w - size :],
        x[..., top : top + size, left : left + size],
    ]


def make_views(x: torch.Tensor, views: str, resolution: int) -> torch.Tensor:
    """The views of one image ``[C, H, W]`` in [0, 1] that a cache stores: ``[V, C, resolution, resolution]``.

    "none" and "flip" take ADM's `center_crop_arr` at `resolution`, as MAR's cache does; "flip" adds
    the mirror image. "ten_crop" takes `center_crop_arr` at ``int(1.1 * resolution)`` and then
    torchvision's ten crops of it, as LlamaGen's ``extract_codes_c2i.py --ten-crop`` does.
    """
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
    if x.ndim != 3:
        raise ValueError(f"expected an image [C, H, W], got shape {tuple(x.shape)}")
    if views == "ten_crop":
        crop = int(resolution * CROP_RANGE)
        square = center_crop_arr(x, crop)
        out = _five_crops(square, resolution) + _five_crops(square.flip(-1), resolution)
    else:
        out = [center_crop_arr(x, resolution)]
        if views == "flip":
            out.append(out[0].flip(-1))
    return torch.stack(out).contiguous()


# --------------------------------------------------------------------------------------------------
# Datasets as the cache sees them


def _unwrap(dataset: Any, index: int) -> tuple[Any, int]:
    """The innermost dataset and index behind `Subsample`/`Subset` wrappers that have no labels."""
    while not hasattr(dataset, "label"):
        if isinstance(dataset, Subsample):  # mirrors Subsample.__getitem__'s even spread
            index, dataset = index * len(dataset.dataset) // len(dataset), dataset.dataset
        elif isinstance(dataset, Subset):
            index, dataset = int(dataset.indices[index]), dataset.dataset
        else:
            break
    return dataset, index


def _class_names(dataset: Any) -> list[str]:
    inner, _ = _unwrap(dataset, 0)
    return [str(c) for c in getattr(inner, "class_names", ["0"])]


def describe_dataset(dataset: Any) -> str:
    """A stable description of what `dataset` holds, so a cache of other data is not resumed into."""
    if isinstance(dataset, Subsample):
        return f"{describe_dataset(dataset.dataset)}[limit={dataset.limit}]"
    if isinstance(dataset, Subset):
        digest = hashlib.sha256(json.dumps(list(map(int, dataset.indices))).encode()).hexdigest()[:16]
        return f"{describe_dataset(dataset.dataset)}[subset {len(dataset.indices)} items {digest}]"
    parts = []
    for attr in ("root", "path", "photos"):
        if getattr(dataset, attr, None) is not None:
            value = getattr(dataset, attr)
            parts.append(str(Path(value).resolve()) if isinstance(value, (str, Path)) else str(value))
            break
    parts.append(f"{len(dataset)} items")
    members = getattr(dataset, "files", None) or getattr(dataset, "_items", None)
    if members is not None:
        text = "\n".join(str(m.relative_to(dataset.root) if hasattr(dataset, "root") else m) for m in members)
        parts.append(f"items {hashlib.sha256(text.encode()).hexdigest()[:16]}")
    for attr in ("channels", "resolution", "crops_per_photo", "seed"):
        if getattr(dataset, attr, None) is not None:
            parts.append(f"{attr}={getattr(dataset, attr)}")
    return f"{type(dataset).__name__}({', '.join(parts)})"


class _ItemViews(Dataset):
    """Item i of a dataset as (views [V, C, r, r], label, source index): what one shard row stores."""

    def __init__(self, dataset: Dataset, views: str, resolution: int) -> None:
        self.dataset, self.views, self.resolution = dataset, views, resolution

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x = self.dataset[i]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"dataset item {i} is a {type(x).__name__}, expected an image tensor [C, H, W]")
        inner, j = _unwrap(self.dataset, i)
        label = int(inner.label(j)) if hasattr(inner, "label") else 0
        return make_views(x.float(), self.views, self.resolution), label, j


# --------------------------------------------------------------------------------------------------
# Tokenizer identity


def tokenizer_fingerprint(tokenizer: torch.nn.Module) -> str:
    """SHA-256 of the architecture, config and every state tensor (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps([getattr(tokenizer, "arch", None), getattr(tokenizer, "config", None)]).encode())
    for name, value in tokenizer.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _takes_posterior(tokenizer: Any) -> bool:
    try:
        return "posterior" in inspect.signature(tokenizer.encode).parameters
    except (TypeError, ValueError):
        return False


def _portable(tokenizer: torch.nn.Module) -> dict[str, Any]:
    """What a spawned process needs to rebuild the tokenizer: registry name, config and CPU weights."""
    if getattr(tokenizer, "arch", None) and hasattr(tokenizer, "config"):
        state = {k: v.detach().cpu() for k, v in tokenizer.state_dict().items()}
        return {"arch": tokenizer.arch, "config": tokenizer.config, "state": state}
    return {"module": copy.deepcopy(tokenizer).cpu()}


def _rebuild(payload: dict[str, Any]) -> torch.nn.Module:
    if "module" in payload:
        return payload["module"]
    from zoo.hub import build_from_config

    model = build_from_config(
        {"architecture": payload["arch"], "model_args": payload["config"]}, "token cache worker"
    )
    model.load_state_dict(payload["state"], strict=True)
    return model


# --------------------------------------------------------------------------------------------------
# Shard files


def read_shard_header(path: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """(metadata, tensor entries) of a safetensors file, checking that its size matches the header.

    Read by hand rather than through safetensors so that a missing, truncated or foreign file gives a
    `MediaError` naming it.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > size - 8:
                raise MediaError(path, f"truncated or not a safetensors file ({size} bytes)")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise MediaError(path, "shard file is missing") from None
    except OSError as e:
        raise MediaError(path, f"cannot read the shard ({e})") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MediaError(path, f"not a safetensors file: its header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise MediaError(path, "not a safetensors file: its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    try:
        end = max((int(t["data_offsets"][1]) for t in header.values()), default=0)
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise MediaError(path, f"malformed safetensors header ({e})") from e
    if 8 + n + end != size:
        raise MediaError(path, f"truncated or damaged: {size} bytes, its header describes {8 + n + end}")
    return meta, header


def _shard_info(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(settings, layout, placement, tensor entries) recorded in a shard."""
    meta, tensors = read_shard_header(path)
    try:
        record = json.loads(meta[_META_KEY])
        return record["settings"], record["layout"], record["shard"], tensors
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise MediaError(
            path, f"is not a zoo token cache shard (no valid {_META_KEY!r} metadata: {e})"
        ) from e


def _settings_of(record: dict[str, Any]) -> dict[str, Any]:
    """The settings a shard or index records, optional ones only when on."""
    out = {k: record.get(k) for k in _SETTING_KEYS}
    out.update({k: record[k] for k in _OPTIONAL_SETTING_KEYS if record.get(k)})
    return out


def _differences(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    def short(v: Any) -> str:
        text = json.dumps(v)
        return text if len(text) <= 80 else text[:77] + "..."

    keys = [k for k in (*_SETTING_KEYS, *_OPTIONAL_SETTING_KEYS) if ours.get(k) != theirs.get(k)]
    return "; ".join(f"{k}: {short(theirs.get(k))} there, {short(ours.get(k))} now" for k in keys)


def _ids_dtype(codebook_sizes: Sequence[int]) -> torch.dtype:
    return torch.int16 if max(codebook_sizes) < 32768 else torch.int32


def _encode_shard(
    tokenizer: Any,
    items: _ItemViews,
    k: int,
    settings: dict[str, Any],
    out_dir: Path,
    batch_size: int,
    num_workers: int,
    bar: Any,
) -> None:
    """Encode shard k (every view of every item in it) and write it atomically."""
    start = k * settings["shard_size"]
    stop = min(start + settings["shard_size"], settings["num_items"])
    views = settings["num_views"]
    loader = DataLoader(
        Subset(items, range(start, stop)), batch_size=max(1, batch_size // views), num_workers=num_workers
    )
    device = next(iter(tokenizer.parameters()), torch.empty(0)).device
    codes: dict[str, list[torch.Tensor]] = {}
    labels, indices = [], []
    layout: dict[str, Any] = {}
    for images, label, index in loader:
        n = len(images)
        for chunk in images.flatten(0, 1).split(batch_size):
            with torch.inference_mode():
                x = chunk.to(device)
                tokens = tokenizer.encode(x, posterior=True) if settings["posterior"] else tokenizer.encode(x)
            if settings["kind"] == "ids":
                if tokens.ids is None:
                    raise ValueError(f"{settings['tokenizer_arch']} is discrete but encode() gave no ids")
                codes.setdefault("ids", []).append(tokens.ids.cpu())
            else:
                if tokens.latents is None:
                    raise ValueError(
                        f"{settings['tokenizer_arch']} is continuous but encode() gave no latents"
                    )
                codes.setdefault("latents", []).append(tokens.latents.float().cpu())
                if settings["posterior"]:
                    codes.setdefault("latent_std", []).append(tokens.side["latent_std"].float().cpu())
                if settings.get("pivot"):
                    # Hi-MAR's pivots: the same tokenizer on the view bicubic-downsampled 2x
                    # (main_cache.py's F.interpolate, no antialiasing).
                    with torch.inference_mode():
                        small = torch.nn.functional.interpolate(
                            x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bicubic"
                        )
                        piv = (
                            tokenizer.encode(small, posterior=True)
                            if settings["posterior"]
                            else tokenizer.encode(small)
                        )
                    codes.setdefault("pivot_mean", []).append(piv.latents.float().cpu())
                    if settings["posterior"]:
                        codes.setdefault("pivot_std", []).append(piv.side["latent_std"].float().cpu())
            if not layout:
                layout = {
                    "grid": list(tokens.grid),
                    "codebook_sizes": list(tokens.codebook_sizes),
                    "latent_channels": None if tokens.latents is None else int(tokens.latents.shape[1]),
                    "scale_factor": tokens.meta.get("scale_factor")
                    if settings["kind"] == "latents"
                    else None,
                    "dtype": str(_ids_dtype(tokens.codebook_sizes)).removeprefix("torch.")
                    if settings["kind"] == "ids"
                    else "float32",
                }
        labels.append(label)
        indices.append(index)
        bar.update(n)
    tensors = {}
    for name, parts in codes.items():
        stacked = torch.cat(parts)
        stacked = stacked.reshape(stop - start, views, *stacked.shape[1:])
        tensors[name] = stacked.to(_ids_dtype(layout["codebook_sizes"])) if name == "ids" else stacked
    tensors["labels"] = torch.cat(labels).long()
    tensors["index"] = torch.cat(indices).long()
    # One metadata entry: safetensors writes several in hash order, which would make equal shards
    # differ byte for byte between runs.
    record = {
        "settings": settings,
        "layout": layout,
        "shard": {"index": k, "start": start, "items": stop - start},
    }
    metadata = {_META_KEY: json.dumps(record, sort_keys=True)}
    from safetensors.torch import save_file

    with atomic_path(out_dir / shard_name(k)) as tmp:
        save_file({name: t.contiguous() for name, t in tensors.items()}, str(tmp), metadata=metadata)


def _progress(
    total: int, initial: int, enabled: bool, desc: str = "cache", position: int | None = None
) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="item",
        file=sys.stderr,
        disable=not enabled,
        position=position,
        dynamic_ncols=True,
    )


def _num_shards(settings: dict[str, Any]) -> int:
    return -(-settings["num_items"] // settings["shard_size"])


def _scan(out_dir: Path, settings: dict[str, Any]) -> list[int]:
    """Shards still to encode; refuses a folder that holds a cache with other settings."""
    index_file = out_dir / INDEX_NAME
    if index_file.is_file():
        try:
            old = json.loads(index_file.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = None  # rewritten below; the shards decide
        if isinstance(old, dict) and old.get("format") == FORMAT:
            theirs = _settings_of(old)
            if theirs != settings:
                raise MediaError(
                    index_file,
                    f"holds a token cache with other settings ({_differences(settings, theirs)}); "
                    "write to another folder, or delete this one",
                )
    count = _num_shards(settings)
    missing = []
    present = {p.name for p in out_dir.glob("shard-*.safetensors")}
    extra = sorted(present - {shard_name(k) for k in range(count)})
    if extra:
        raise MediaError(
            out_dir / extra[0],
            f"belongs to a cache of more items than {settings['num_items']}; write to another folder",
        )
    for k in range(count):
        path = out_dir / shard_name(k)
        if path.name not in present:
            missing.append(k)
            continue
        try:
            theirs, _, placement, _ = _shard_info(path)
        except MediaError as e:
            warnings.warn(f"{e}; encoding it again", stacklevel=3)
            missing.append(k)
            continue
        if _settings_of(theirs) != settings:
            raise MediaError(
                path,
                f"was written with other settings or another tokenizer ({_differences(settings, theirs)}); "
                "write to another folder, or delete this one",
            )
        if placement.get("start") != k * settings["shard_size"]:
            raise MediaError(
                path, f"holds items from {placement.get('start')}, expected {k * settings['shard_size']}"
            )
    return missing


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_index(out_dir: Path, settings: dict[str, Any], about: dict[str, Any]) -> dict[str, Any]:
    """Check every shard against `settings`, then write index.json atomically."""
    shards, layout = [], None
    for k in range(_num_shards(settings)):
        path = out_dir / shard_name(k)
        theirs, shard_layout, placement, _ = _shard_info(path)
        if _settings_of(theirs) != settings:
            raise MediaError(path, f"was written with other settings ({_differences(settings, theirs)})")
        if layout is None:
            layout = shard_layout
        elif shard_layout != layout:
            raise MediaError(path, f"token layout {shard_layout} differs from shard 0's {layout}")
        shards.append({"file": path.name, "items": int(placement["items"]), "sha256": _sha256(path)})
    assert layout is not None
    index = {
        "format": FORMAT,
        "version": VERSION,
        **about,
        "tokenizer_arch": settings["tokenizer_arch"],
        "tokenizer_fingerprint": settings["tokenizer_fingerprint"],
        "kind": settings["kind"],
        **{k: layout[k] for k in _LAYOUT_KEYS},
        "posterior": settings["posterior"],
        "views": settings["views"],
        "num_views": settings["num_views"],
        "resolution": settings["resolution"],
        "num_items": settings["num_items"],
        "num_classes": settings["num_classes"],
        "class_names": settings["class_names"],
        "shard_size": settings["shard_size"],
        "shards": shards,
        "dataset": settings["dataset"],
        **{k: settings[k] for k in _OPTIONAL_SETTING_KEYS if settings.get(k)},
    }
    atomic_write_text(out_dir / INDEX_NAME, json.dumps(index, indent=2) + "\n")
    return index


def _worker(
    rank: int,
    world: int,
    init_file: str,
    devices: list[str],
    payload: dict[str, Any],
    items: _ItemViews,
    missing: list[int],
    settings: dict[str, Any],
    about: dict[str, Any],
    out_dir: str,
    batch_size: int,
    num_workers: int,
    progress: bool,
    threads: int,
) -> None:
    """One rank of a multi-device build: encode every world-th missing shard; rank 0 writes the index."""
    import torch.distributed as dist

    device = torch.device(devices[rank])
    # Only a barrier crosses processes: NCCL when every rank has its own GPU, gloo otherwise (CPU
    # ranks, or several ranks sharing a GPU, which NCCL refuses).
    cuda = [torch.device(d) for d in devices if torch.device(d).type == "cuda"]
    distinct = len({d.index if d.index is not None else 0 for d in cuda}) == len(devices)
    backend = "nccl" if len(cuda) == len(devices) and distinct else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(threads)
    dist.init_process_group(
        backend,
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(hours=2),
    )
    try:
        tokenizer = _rebuild(payload).to(device).eval()
        if tokenizer_fingerprint(tokenizer) != settings["tokenizer_fingerprint"]:
            raise RuntimeError("the tokenizer rebuilt in a worker process differs from the one given")
        mine = missing[rank::world]
        total = sum(
            min(settings["shard_size"], settings["num_items"] - k * settings["shard_size"]) for k in mine
        )
        with _progress(total, 0, progress, f"cache rank {rank}", rank) as bar:
            for k in mine:
                _encode_shard(tokenizer, items, k, settings, Path(out_dir), batch_size, num_workers, bar)
        dist.barrier()
        if rank == 0:
            _write_index(Path(out_dir), settings, about)
    finally:
        dist.destroy_process_group()


def build_token_cache(
    tokenizer: Any,
    dataset: Dataset,
    out_dir: str | os.PathLike[str],
    *,
    views: str = "none",
    resolution: int | None = None,
    batch_size: int = 64,
    shard_size: int = 4096,
    tokenizer_source: str | None = None,
    devices: Sequence[str | torch.device] | None = None,
    progress: bool = True,
    num_workers: int = 0,
    pivot: bool = False,
) -> Path:
    """Encode every item of `dataset` with `tokenizer` into a sharded cache in `out_dir`; returns the folder.

    `dataset` yields images ``[C, H, W]`` in [0, 1] (any size: each is resized to `resolution`,
    default the tokenizer's) and, to label them, has ``label(i)`` and ``class_names`` (as the
    datasets in `zoo.data.image` do; ``Subsample``/``Subset`` wrappers are looked through, and a
    dataset without labels is all class 0). `views` is "none", "flip" or "ten_crop" (see the module
    docstring). `batch_size` counts images per ``encode`` call, views included; `num_workers` decodes
    images in DataLoader workers. A continuous tokenizer whose ``encode`` takes ``posterior=True``
    stores its posterior's mean and standard deviation. `pivot` (continuous tokenizers) also stores
    ``pivot_mean``/``pivot_std``: the same tokenizer on each view bicubic-downsampled 2x, the
    low-resolution pivots Hi-MAR generates first; items then carry ``"pivot"`` too.

    A rerun into the same folder keeps the shards already there and encodes only the missing ones;
    a folder written with other settings or another tokenizer (by weights, not by name) raises a
    `MediaError`. With several `devices` one spawned process per device encodes every world-th
    missing shard (the tokenizer travels as registry name, config and weights); with one device
    the tokenizer is moved there, and with none it stays where it is. Encoding runs in eval mode
    under ``torch.inference_mode()``, so the cache is the same whoever builds it.
    """
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
    if int(batch_size) < 1 or int(shard_size) < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}")
    if getattr(tokenizer, "modality", "image") != "image":
        raise ValueError(
            f"token caches hold image tokens; {tokenizer.arch} is an {tokenizer.modality} tokenizer"
        )
    resolution = int(resolution or getattr(tokenizer, "resolution", 0) or 0)
    if resolution < 1:
        raise ValueError("pass resolution: the tokenizer does not name a native one")
    n = len(dataset)  # type: ignore[arg-type]
    if n < 1:
        raise ValueError("the dataset is empty: nothing to cache")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    discrete = bool(getattr(tokenizer, "codebook_sizes", ()))
    class_names = _class_names(dataset)
    settings = {
        "format": FORMAT,
        "version": VERSION,
        "tokenizer_arch": getattr(tokenizer, "arch", None) or type(tokenizer).__name__,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "kind": "ids" if discrete else "latents",
        "posterior": (not discrete) and _takes_posterior(tokenizer),
        "views": views,
        "num_views": VIEWS[views],
        "resolution": resolution,
        "num_items": n,
        "shard_size": int(shard_size),
        "num_classes": len(class_names),
        "class_names": class_names,
        "dataset": describe_dataset(dataset),
    }
    if pivot:
        if discrete:
            raise ValueError("pivot=True needs a continuous tokenizer (Hi-MAR's pivots are latents)")
        settings["pivot"] = True
    about = {
        "tokenizer": tokenizer_source or getattr(tokenizer, "source", None) or settings["tokenizer_arch"],
        "tokenizer_revision": getattr(tokenizer, "revision", None),
    }
    missing = _scan(out, settings)
    items = _ItemViews(dataset, views, resolution)
    devices = [str(d) for d in devices] if devices else []
    done = n - sum(min(int(shard_size), n - k * int(shard_size)) for k in missing)
    if len(devices) > 1 and missing:
        import torch.multiprocessing as mp

        world = min(len(devices), len(missing))
        with tempfile.TemporaryDirectory(prefix="zoo-cache-") as tmp:
            mp.start_processes(
                _worker,
                args=(
                    world,
                    str(Path(tmp) / "init"),
                    devices[:world],
                    _portable(tokenizer),
                    items,
                    missing,
                    settings,
                    about,
                    str(out),
                    int(batch_size),
                    int(num_workers),
                    progress,
                    max(1, torch.get_num_threads() // world),
                ),
                nprocs=world,
                join=True,
                start_method="spawn",
            )
        return out
    was_training = tokenizer.training
    if len(devices) == 1:
        tokenizer.to(devices[0])
    tokenizer.eval()
    try:
        with _progress(n, done, progress) as bar:
            for k in missing:
                _encode_shard(tokenizer, items, k, settings, out, int(batch_size), int(num_workers), bar)
    finally:
        tokenizer.train(was_training)
    _write_index(out, settings, about)
    return out


# --------------------------------------------------------------------------------------------------
# Reading


def read_index(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``index.json`` of a cache folder (or the file itself), checked to be a zoo token cache."""
    p = Path(path).expanduser()
    index_file = p / INDEX_NAME if p.is_dir() or not p.suffix else p
    try:
        index = json.loads(index_file.read_text("utf-8"))
    except FileNotFoundError:
        raise MediaError(
            index_file,
            "token cache index is missing (build the cache with `zoo cache TOKENIZER DATA -o DIR`)",
        ) from None
    except OSError as e:
        raise MediaError(index_file, f"cannot read the token cache index ({e})") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MediaError(index_file, f"token cache index is not valid JSON ({e})") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise MediaError(
            index_file, f"is not a zoo token cache index (format {found!r}, expected {FORMAT!r})"
        )
    if int(index.get("version", 0)) > VERSION:
        raise MediaError(
            index_file, f"cache format version {index['version']} is newer than this zoo reads ({VERSION})"
        )
    needed = set(_SETTING_KEYS) | set(_LAYOUT_KEYS) | {"shards"}
    if needed - set(index):
        raise MediaError(index_file, f"token cache index lacks {sorted(needed - set(index))}")
    return index


class TokenCache(Dataset):
    """A token cache folder as a dataset of ``{"ids": [*grid]}`` or ``{"latents": [C, *grid]}`` plus ``"labels"``.

    Each access draws one of the item's views (uniformly) and, for latents with a stored standard
    deviation and `sample_posterior`, a posterior sample ``mean + std * N(0, I)``: from the key's
    seed (``(index, seed)``, as `SeededSampler` hands out; the view is drawn first, when there are
    several, then the noise) or torch's global RNG for a plain index. `view` fixes the view instead; ``sample_posterior=False``
    gives the mean. `items` restricts the cache to those positions (a split).

    The index and every shard header are checked at construction (a missing, truncated or foreign
    shard, or counts that disagree, raise a `MediaError` naming the file); the tensors are
    memory-mapped per process on first use and read one row at a time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        view: int | None = None,
        sample_posterior: bool = True,
        items: Sequence[int] | None = None,
    ) -> None:
        p = Path(path).expanduser()
        self.root = p if p.is_dir() or not p.suffix else p.parent
        index_file = self.root / INDEX_NAME
        self._index = read_index(index_file)
        idx = self._index
        self._settings = _settings_of(idx)
        size, total, views = int(idx["shard_size"]), int(idx["num_items"]), int(idx["num_views"])
        shards = idx["shards"]
        if len(shards) != _num_shards(self._settings) or sum(int(s["items"]) for s in shards) != total:
            raise MediaError(
                index_file,
                f"lists {len(shards)} shards of {sum(int(s['items']) for s in shards)} items "
                f"for {total} items in shards of {size}",
            )
        tensor_names = (
            ["ids"] if idx["kind"] == "ids" else ["latents"] + (["latent_std"] if idx["posterior"] else [])
        )
        if idx.get("pivot"):
            tensor_names += ["pivot_mean"] + (["pivot_std"] if idx["posterior"] else [])
        self._files: list[Path] = []
        for k, entry in enumerate(shards):
            file = self.root / entry["file"]
            expected = min(size, total - k * size)
            if int(entry["items"]) != expected:
                raise MediaError(
                    index_file, f"shard {entry['file']} has {entry['items']} items, expected {expected}"
                )
            settings, _, placement, tensors = _shard_info(file)
            if _settings_of(settings) != self._settings:
                raise MediaError(
                    file, f"does not belong to this cache ({_differences(self._settings, settings)})"
                )
            for name in [*tensor_names, "labels", "index"]:
                shape = tensors.get(name, {}).get("shape")
                lead = [expected] if name in ("labels", "index") else [expected, views]
                if (
                    shape is None
                    or list(shape[: len(lead)]) != lead
                    or int(placement.get("items", -1)) != expected
                ):
                    raise MediaError(
                        file, f"tensor {name!r} has shape {shape}, expected {lead} + the token grid"
                    )
            self._files.append(file)
        if view is not None and not 0 <= int(view) < views:
            raise ValueError(f"view must be in [0, {views}), got {view}")
        self.view = None if view is None else int(view)
        self.sample_posterior = bool(sample_posterior) and bool(idx["posterior"])
        self._items: Sequence[int] = range(total) if items is None else list(items)
        self._open: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}  # memory maps are reopened in each worker

    def select(
        self, items: Sequence[int], *, view: int | None = None, sample_posterior: bool = True
    ) -> TokenCache:
        """The same cache restricted to positions `items` (a split), without checking the shards again."""
        out = copy.copy(self)
        out._items = [self._items[i] for i in items]
        out.view = None if view is None else int(view)
        out.sample_posterior = bool(sample_posterior) and bool(self._index["posterior"])
        out._open = {}
        return out

    def __len__(self) -> int:
        return len(self._items)

    # ------------------------------------------------------------------ facts
    @property
    def index(self) -> dict[str, Any]:
        """The parsed ``index.json``."""
        return self._index

    @property
    def kind(self) -> str:
        """ "ids" (discrete tokenizer) or "latents" (continuous)."""
        return self._index["kind"]

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self._index["grid"])

    @property
    def num_views(self) -> int:
        return int(self._index["num_views"])

    @property
    def num_classes(self) -> int:
        return int(self._index["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self._index["class_names"])

    # ------------------------------------------------------------------ items
    def _shard(self, k: int) -> Any:
        handle = self._open.get(k)
        if handle is None:
            from safetensors import safe_open

            try:
                handle = self._open[k] = safe_open(str(self._files[k]), "pt")
            except Exception as e:  # safetensors raises its own error type for damaged files
                raise MediaError(self._files[k], f"cannot open the shard ({e})") from e
        return handle

    def _locate(self, index: int) -> tuple[Any, int]:
        k, row = divmod(self._items[index], int(self._index["shard_size"]))
        return self._shard(k), row

    def label(self, index: int) -> int:
        shard, row = self._locate(unpack(index, len(self))[0])
        return int(shard.get_slice("labels")[row])

    def dataset_indices(self) -> list[int]:
        """Each item's index in the dataset the cache was built from, in cache order (reads every shard)."""
        out: list[int] = []
        for k in range(len(self._files)):
            out += self._shard(k).get_slice("index")[:].tolist()
        return [out[i] for i in self._items]

    def __getitem__(self, key: Key) -> dict[str, torch.Tensor]:
        index, generator = unpack(key, len(self))
        shard, row = self._locate(index)
        v = self.view if self.view is not None else randint(self.num_views, generator)
        label = torch.tensor(int(shard.get_slice("labels")[row]), dtype=torch.long)
        if self.kind == "ids":
            return {"ids": shard.get_slice("ids")[row, v].long(), "labels": label}
        latents = shard.get_slice("latents")[row, v].float()
        if self.sample_posterior:
            std = shard.get_slice("latent_std")[row, v].float()
            latents = latents + std * torch.randn(latents.shape, generator=generator)
        item = {"latents": latents, "labels": label}
        if self._index.get("pivot"):
            pivot = shard.get_slice("pivot_mean")[row, v].float()
            if self.sample_posterior:
                std = shard.get_slice("pivot_std")[row, v].float()
                pivot = pivot + std * torch.randn(pivot.shape, generator=generator)
            item["pivot"] = pivot
        return item


def _check_compatible(train: dict[str, Any], val: dict[str, Any], where: Path) -> None:
    keys = ("tokenizer_fingerprint", "kind", "grid", "codebook_sizes", "latent_channels", "scale_factor")
    diff = [k for k in keys if train.get(k) != val.get(k)]
    if diff:
        raise MediaError(
            where, f"validation cache has other tokens than the training cache ({', '.join(diff)} differ)"
        )


class TokenCacheDataModule(ZooDataModule):
    """Batches ``{"ids": [B, *grid]}`` or ``{"latents": [B, C, *grid]}`` plus ``"labels"`` [B] from a token cache.

    Training draws a view per item and epoch and, for latents with `sample_posterior`, a fresh
    posterior sample, all from the per-item seeds of `SeededSampler`, so a resumed run or any number
    of workers sees the same batches. Validation uses view 0 and the posterior mean: `val_path`
    names a second cache (of the same tokenizer), otherwise `val_fraction` of the items go to
    validation by a hash of their dataset index (zero: no validation). `cache_index` is the
    training cache's ``index.json`` after `setup`, for a generator to check the token layout.
    """

    def __init__(
        self,
        path: str,
        batch_size: int = 256,
        num_workers: int = 0,
        val_path: str | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
        limit: int | None = None,
        sample_posterior: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, limit)
        self.save_hyperparameters()
        self.path, self.val_path = path, val_path
        self.sample_posterior = bool(sample_posterior)
        self.cache_index: dict[str, Any] | None = None

    def _build(self) -> tuple[Dataset, Dataset]:
        full = TokenCache(self.path, sample_posterior=self.sample_posterior)
        self.cache_index = full.index
        if self.val_path is not None:
            val = TokenCache(self.val_path, view=0, sample_posterior=False)
            _check_compatible(full.index, val.index, val.root / INDEX_NAME)
            return full, val
        if self.val_fraction == 0:
            return full, full.select([], view=0, sample_posterior=False)
        keys = [str(i) for i in full.dataset_indices()]
        return (
            full.select(hash_split(keys, "train", self.val_fraction), sample_posterior=self.sample_posterior),
            full.select(hash_split(keys, "val", self.val_fraction), view=0, sample_posterior=False),
        )
