"""Saving, loading and publishing models: ``config.json`` + ``model.safetensors`` + ``README.md``.

`load` accepts a registry name (``"vq16"``, ``"vq16.llamagen_in1k"``), a Hub repo id (``"org/repo"``,
``"hf-hub:org/repo@rev"``) or a local directory (``"local-dir:/path"`` or a plain path). Weights are
loaded strictly: missing, unexpected, mis-shaped or non-finite tensors are errors, never ignored.

The Hub endpoint is resolved at call time (``ZOO_HF_ENDPOINT``, then ``HF_ENDPOINT``, then
huggingface_hub's default) and ``HF_HUB_OFFLINE`` is honoured at call time, so both can be changed
after import.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from ._atomic import atomic_path, atomic_write_text
from ._registry import (
    PretrainedCfg,
    get_entry,
    get_pretrained_cfg,
    is_model,
    split_model_name_tag,
    with_revision,
)
from .errors import CheckpointError, HubError, UnknownModelError
from .model import ZooModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
_REPO_ID = re.compile(r"^[\w\-.]{1,96}/[\w\-.]{1,96}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("ZOO_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip(
        "/"
    )


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------------------------- saving
def model_config(model: ZooModel) -> dict[str, Any]:
    """The ``config.json`` payload: enough to rebuild the model, plus facts for readers of the repo."""
    if not model.arch:
        raise ValueError(f"{type(model).__name__} has no registry name; create it with zoo.create(...)")
    return {
        "architecture": model.arch,
        "zoo_version": __version__,
        "modality": model.modality,
        "model_args": model.config,
        "input_spec": model.input_spec,
        "token_layout": model.token_layout(),
    }


def save_pretrained(
    model: ZooModel, save_directory: str | Path, *, card: bool = True, **card_kwargs: Any
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (unless ``card=False``) a model card, atomically."""
    from safetensors.torch import save_model

    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model_config(model)
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt", "zoo.architecture": model.arch or ""})
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    if card:
        from .cards import render_card

        atomic_write_text(directory / CARD_NAME, render_card(model, **card_kwargs))
    return directory


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    branch: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a saved model folder as one commit; returns the commit sha.

    The folder is checked first (its config builds a model whose every tensor the weights file holds,
    whole and with the right shape), so a truncated or foreign file is refused before anything is sent.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    folder = Path(folder)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HubError(f"invalid repo id {repo_id!r}: {str(exc).splitlines()[0]}") from None
    config = verify_folder(folder)
    api = HfApi(endpoint=hub_endpoint(), token=token)
    try:
        api.create_repo(repo_id, exist_ok=True, private=private)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            revision=branch,
            commit_message=commit_message
            or f"Upload {config.get('architecture', 'model')} with zoo {__version__}",
        )
    except Exception as exc:
        raise HubError(
            f"push of {folder} to {hub_endpoint()}/{repo_id} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return str(info.oid)


def verify_folder(folder: Path) -> dict[str, Any]:
    """A saved model folder's config, after checking that its weights file is whole and fits the config."""
    from safetensors import safe_open

    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / required).is_file():
            raise HubError(f"{folder} has no {required}; write it with save_pretrained or `zoo export` first")
    config = read_config(folder / CONFIG_NAME)
    with torch.device("meta"):
        expected = {
            k: tuple(v.shape)
            for k, v in build_from_config(config, str(folder / CONFIG_NAME)).state_dict().items()
        }
    weights = folder / WEIGHTS_NAME
    try:
        with safe_open(str(weights), framework="pt") as fh:
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:
        raise CheckpointError(
            f"{weights}: not a readable safetensors file ({type(exc).__name__}: {exc})"
        ) from exc
    missing = sorted(set(expected) - set(found))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or wrong:
        problems = [f"missing {missing[:5]}" if missing else "", f"wrong shapes {wrong[:5]}" if wrong else ""]
        raise CheckpointError(
            f"{weights} does not fit {config['architecture']}: " + "; ".join(p for p in problems if p)
        )
    return config


def push_to_hub(model: ZooModel, repo_id: str, **kwargs: Any) -> str:
    card_kwargs = kwargs.pop("card_kwargs", {})
    with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
        save_pretrained(model, tmp, **card_kwargs)
        return push_folder(tmp, repo_id, **kwargs)


# ---------------------------------------------------------------------------------------------- reading
def read_config(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a config file")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except PermissionError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointError(f"{path}: not a zoo config (no 'architecture' field)")
    return config


def read_state_dict(
    path: Path, checkpoint_key: str | tuple[str | None, ...] | None = None
) -> dict[str, torch.Tensor]:
    """Read weights from safetensors, or from a pickle checkpoint with ``weights_only=True``.

    ``checkpoint_key`` picks the state dict inside the file; with alternatives the first one present
    wins (``None``: the file itself). Upstream training scripts often store their argparse namespace
    beside the weights; that one harmless class is allowed, nothing else.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as exc:  # safetensors and the unpickler raise assorted types
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if checkpoint_key is not None:
        wanted = checkpoint_key if isinstance(checkpoint_key, tuple) else (checkpoint_key,)
        found = [k for k in wanted if k is None or (isinstance(state, Mapping) and k in state)]
        if not found:
            keys = list(state)[:10] if isinstance(state, Mapping) else type(state).__name__
            named = " or ".join(repr(k) for k in wanted)
            raise CheckpointError(f"{path}: has no {named} entry (found {keys})")
        state = state if found[0] is None else state[found[0]]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not hold a flat state dict of tensors")
    return dict(state)


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly, explaining every mismatch at once."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:8])}{more}")
    if problems:
        raise CheckpointError(f"{source} does not match {type(model).__name__}: " + "; ".join(problems))
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: tensor {key!r} contains NaN or infinite values")
    model.load_state_dict(state_dict, strict=True)


def build_from_config(config: Mapping[str, Any], source: str) -> ZooModel:
    arch = config["architecture"]
    if not isinstance(arch, str):
        raise CheckpointError(f"{source}: 'architecture' must be a model name, got {arch!r}")
    try:
        entry = get_entry(arch)
    except UnknownModelError:
        raise CheckpointError(
            f"{source} names unknown architecture {arch!r}; this zoo version ({__version__}) cannot build it"
        ) from None
    args = config.get("model_args", {})
    if not isinstance(args, Mapping):
        raise CheckpointError(
            f"{source}: 'model_args' must be a mapping of constructor arguments, got {args!r}"
        )
    try:
        model = entry.fn(**args)
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, RuntimeError) as exc:
        # a wrong type or value in model_args fails somewhere inside the constructor: say where it came from
        raise CheckpointError(
            f"{source}: model_args do not fit {arch!r} ({type(exc).__name__}: {exc})"
        ) from exc
    return model


# ---------------------------------------------------------------------------------------------- Hub download
@dataclass
class _Fetched:
    path: Path
    commit: str | None


def _commit_of(path: Path) -> str | None:
    """Hub cache paths are ``.../snapshots/<sha>/<file>``."""
    for part in reversed(path.parts):
        if _SHA.match(part):
            return part
    return None


def download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | None = None,
    local_files_only: bool | None = None,
) -> _Fetched:
    """`hf_hub_download` with the endpoint and offline mode read now, and errors that say what to do."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    offline = offline_mode() if local_files_only is None else local_files_only
    where = f"{repo_id}@{revision or 'main'}"
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=offline,
            endpoint=hub_endpoint(),
            library_name="zoo",
            library_version=__version__,
        )
    except hf_errors.RevisionNotFoundError:
        raise HubError(
            f"revision {revision!r} not found in Hub repo {repo_id!r} ({hub_endpoint()})"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise HubError(
            f"Hub repo {repo_id!r} not found at {hub_endpoint()} (check the name; private repos need HF_TOKEN)"
        ) from None
    except hf_errors.LocalEntryNotFoundError:
        reason = "offline mode (HF_HUB_OFFLINE) is on" if offline else "the Hub could not be reached"
        raise HubError(
            f"{filename} of {where} is not in the local cache and {reason}; download it once while online"
        ) from None
    except hf_errors.EntryNotFoundError:
        raise HubError(f"Hub repo {where} has no file {filename!r}") from None
    except hf_errors.HfHubHTTPError as exc:
        raise HubError(f"Hub request for {filename} of {where} failed: {exc}") from exc
    path = Path(path)
    return _Fetched(path=path, commit=_commit_of(path))


# ---------------------------------------------------------------------------------------------- load
def _finish(model: ZooModel, device: Any, dtype: Any, source: str, revision: str | None) -> ZooModel:
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    object.__setattr__(model, "source", source)
    object.__setattr__(model, "revision", revision)
    return model


def _load_directory(directory: Path) -> ZooModel:
    config = read_config(directory / CONFIG_NAME)
    model = build_from_config(config, str(directory / CONFIG_NAME))
    load_weights(model, read_state_dict(directory / WEIGHTS_NAME), str(directory / WEIGHTS_NAME))
    return model


def _load_repo(repo_id: str, revision: str | None, **dl: Any) -> tuple[ZooModel, str | None]:
    config_file = download(repo_id, CONFIG_NAME, revision=revision, **dl)
    # Pin the weights to the commit the config came from, so a concurrent push cannot mix them.
    weights = download(repo_id, WEIGHTS_NAME, revision=config_file.commit or revision, **dl)
    config = read_config(config_file.path)
    source = f"{repo_id}@{config_file.commit or revision or 'main'}"
    model = build_from_config(config, f"{source}/{CONFIG_NAME}")
    load_weights(model, read_state_dict(weights.path), f"{source}/{WEIGHTS_NAME}")
    return model, config_file.commit


def _load_registered(name: str, revision: str | None, **dl: Any) -> tuple[ZooModel, str, str | None]:
    full, cfg = get_pretrained_cfg(name)
    cfg = with_revision(cfg, revision)
    if not cfg.hf_hub_id:
        raise HubError(
            f"{full} is not hosted on the Hugging Face Hub ({cfg.description or 'no description'}). "
            f"Download {cfg.filename or 'the checkpoint'} by hand, then "
            f"zoo.load_upstream({full!r}, <that file>).save_pretrained(<dir>) and zoo.load(<dir>)."
        )
    if cfg.is_upstream_format:
        return _load_upstream(full, cfg, **dl)
    model, commit = _load_repo(cfg.hf_hub_id, cfg.revision, **dl)
    return model, full, commit


SHARD_INDEX_SUFFIX = ".safetensors.index.json"


def read_shard_index(path: Path) -> list[str]:
    """The shard files a ``*.safetensors.index.json`` lists in its ``weight_map``, in first-use order."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path}: not a safetensors shard index (no 'weight_map')")
    shards = list(dict.fromkeys(weight_map.values()))
    bad = [s for s in shards if not isinstance(s, str) or not s.endswith(".safetensors") or ".." in s]
    if bad:
        raise CheckpointError(f"{path}: weight_map names files that are not safetensors shards: {bad[:3]}")
    return shards


def _read_sharded(
    repo_id: str, filename: str, index: _Fetched, source: str, **dl: Any
) -> dict[str, torch.Tensor]:
    """Download every shard an index lists (pinned to the index's commit, beside the index in the repo)
    and merge their tensors; each key the index maps must be in a shard, and no key in two."""
    shards = read_shard_index(index.path)
    weight_map = json.loads(index.path.read_text(encoding="utf-8"))["weight_map"]
    folder = filename.rpartition("/")[0]
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        try:
            path = download(
                repo_id, f"{folder}/{shard}" if folder else shard, revision=index.commit, **dl
            ).path
        except HubError as exc:
            raise HubError(f"shard {shard!r} listed in {source} could not be fetched: {exc}") from exc
        part = read_state_dict(path)
        repeated = sorted(set(part) & set(state))
        if repeated:
            raise CheckpointError(f"{source}: shard {shard} repeats keys {repeated[:5]}")
        state.update(part)
    unplaced = sorted(k for k in weight_map if k not in state)
    if unplaced:
        raise CheckpointError(f"{source}: keys the index lists are in none of its shards: {unplaced[:5]}")
    return state


def _load_upstream(full: str, cfg: PretrainedCfg, **dl: Any) -> tuple[ZooModel, str, str | None]:
    """Build the registered architecture and load an upstream checkpoint through its converter."""
    fetched = download(cfg.hf_hub_id, cfg.filename, revision=cfg.revision, **dl)
    source = f"{cfg.hf_hub_id}@{fetched.commit or cfg.revision or 'main'}/{cfg.filename}"
    if cfg.filename.endswith(SHARD_INDEX_SUFFIX):
        upstream = _read_sharded(cfg.hf_hub_id, cfg.filename, fetched, source, **dl)
    else:
        upstream = read_state_dict(fetched.path, cfg.checkpoint_key)
    return _convert_upstream(full, cfg, upstream, source), full, fetched.commit


def _convert_upstream(
    full: str,
    cfg: PretrainedCfg,
    upstream: Mapping[str, torch.Tensor],
    source: str,
    arch: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ZooModel:
    """``arch`` (default: the tag's own) built with ``overrides``, loaded strictly through ``cfg.converter``."""
    entry = get_entry(arch or split_model_name_tag(full)[0])
    model = entry.fn(**{**cfg.model_args, **dict(overrides or {})})
    module = __import__(get_entry(split_model_name_tag(full)[0]).module, fromlist=[str(cfg.converter)])
    converter = getattr(module, str(cfg.converter), None)
    if converter is None:
        raise CheckpointError(f"{module.__name__} has no converter {cfg.converter!r} for {full}")
    try:
        state = converter(upstream, model)
    except KeyError as exc:
        raise CheckpointError(f"{source}: not the upstream layout {full} expects (missing {exc})") from exc
    load_weights(model, state, source)
    return model


def load_upstream(
    name: str, path: str | os.PathLike[str], *, arch: str | None = None, **overrides: Any
) -> ZooModel:
    """Convert an upstream checkpoint file that was downloaded by hand, for weights that are not on the
    Hub (Google Drive, a GitHub repository) or were fetched some other way.

    ``name`` is the registered ``arch.tag`` whose converter and checkpoint key apply (``"retok.sb256_e250"``,
    ``"biocodec.tueg"``); ``arch`` builds another size of the same family (a tiny one in tests) and
    ``overrides`` are constructor arguments (TFM-ZooModel's ``window_samples=2000`` for 10 s
    checkpoints). The model comes back in eval mode; ``save_pretrained(dir)`` makes it a zoo model that
    ``zoo.load(dir)`` loads anywhere. A ``*.safetensors.index.json`` reads the shards beside it.
    """
    full, cfg = get_pretrained_cfg(name)
    if not cfg.converter:
        raise ValueError(f"{full} is in the zoo's own format; load it with zoo.load({full!r})")
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (download {cfg.filename} for {full} first)")
    if file.name.endswith(SHARD_INDEX_SUFFIX):
        upstream: dict[str, torch.Tensor] = {}
        for shard in read_shard_index(file):
            upstream.update(read_state_dict(file.parent / shard))
    else:
        upstream = read_state_dict(file, cfg.checkpoint_key)
    model = _convert_upstream(full, cfg, upstream, str(file), arch, overrides)
    return _finish(model, None, None, f"{full} ({file.name})", None)


def _parse(name_or_path: str | os.PathLike[str]) -> tuple[str, str, str | None]:
    """Classify into ("dir", path, None), ("repo", repo_id, rev) or ("registry", name, None)."""
    text = os.fspath(name_or_path)
    if text.startswith("local-dir:"):
        return "dir", text[len("local-dir:") :], None
    if text.startswith(("hf-hub:", "hf_hub:")):
        repo, _, rev = text.split(":", 1)[1].partition("@")
        return "repo", repo, rev or None
    # a bare registry name means the registry even when a folder of that name sits in the working
    # directory (say ./vq16_tiny from `zoo export`); write ./vq16_tiny or local-dir:vq16_tiny for the folder
    if "/" not in text and os.sep not in text and (is_model(text) or is_model(split_model_name_tag(text)[0])):
        if Path(text).is_dir():
            warnings.warn(
                f"{text!r} is a registered model name; loading it from the registry, not from the folder "
                f"./{text} (write ./{text} or local-dir:{text} for the folder)",
                stacklevel=3,
            )
        return "registry", text, None
    if Path(text).is_dir():
        return "dir", text, None
    repo, _, rev = text.partition("@")
    if _REPO_ID.match(repo) and not Path(text).exists():
        return "repo", repo, rev or None
    if "/" in text or os.sep in text:
        raise HubError(f"{text}: no such directory, and not a Hub repo id of the form 'org/name'")
    get_entry(split_model_name_tag(text)[0])  # raises UnknownModelError with suggestions
    raise AssertionError("unreachable")


def load(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    token: str | None = None,
    local_files_only: bool | None = None,
) -> ZooModel:
    """Load a pretrained model by registry name, Hub repo id or local directory, in eval mode."""
    kind, target, parsed_rev = _parse(name_or_path)
    revision = revision or parsed_rev
    dl = {"cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    if kind == "dir":
        if revision:
            raise ValueError("a local directory has no revisions")
        directory = Path(target)
        if not directory.is_dir():
            raise HubError(f"{directory}: no such directory")
        return _finish(_load_directory(directory), device, dtype, str(directory), None)
    if kind == "repo":
        model, commit = _load_repo(target, revision, **dl)
        return _finish(model, device, dtype, target, commit or revision)
    model, full, commit = _load_registered(target, revision, **dl)
    return _finish(model, device, dtype, full, commit or revision)
