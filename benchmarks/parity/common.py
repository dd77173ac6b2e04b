"""What the parity adapters share: importing upstream code from a checkout (and recording which of its files
were imported), seeded random weights, the real files of ``../shared/data``, and the comparison itself.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"


@dataclass
class Output:
    """What one side produced for one file. ``ids`` are compared for equality, ``latent`` and ``decoded``
    by their largest absolute difference; a side leaves out what its model does not have."""

    ids: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    decoded: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # further id streams, compared as ids


@dataclass
class Row:
    file: str
    ids_equal: float | None  # percent, None when neither side has ids
    ids_shape: str
    latent_diff: float | None
    decode_diff: float | None
    upstream_s: float
    zoo_s: float
    note: str = ""

    @property
    def time_ratio(self) -> float:
        return self.zoo_s / max(self.upstream_s, 1e-9)


class Adapter:
    """One model's side-by-side run. Subclasses set the class attributes and implement the four methods.

    ``build`` imports upstream's modules through :func:`upstream_imports`, builds upstream's network with
    seeded random weights, and returns it with the zoo model that the zoo's own converter made from
    upstream's state dict (so a converter bug shows up as a difference). ``run_upstream`` follows
    upstream's official script for one file (its reader, resize, normalisation, padding, entry point);
    ``run_zoo`` follows the zoo's documented path (``zoo.io`` reader, ``prepare``, ``encode``, ``decode``).
    """

    model: str = ""  # zoo architecture checked at its paper configuration
    tag: str = ""  # registry tag whose converter and recorded upstream commit are used
    upstream_ref: str = ""  # "repository @ commit" for a model without a registry tag (no weights)
    card: str = ""  # model card (model_cards/<card>.md) that records the result
    modality: str = "image"
    # files of the checkout this adapter expects to import (the command prints what was imported)
    upstream_files: tuple[str, ...] = ()
    description: str = ""

    stubs: tuple[str, ...] = ()  # training-only modules upstream imports at top level (see upstream_imports)
    # what ``Output.latent`` and ``Output.decoded`` hold, for the table's headers
    columns: tuple[str, str] = ("latent", "decode")
    # report that column's difference relative to upstream's largest magnitude (for outputs whose scale
    # random weights make arbitrary, e.g. a diffusion sampler's latents)
    relative: tuple[bool, bool] = (False, False)

    def __init__(self, upstream: Path, *, seed: int = 0, options: dict[str, Any] | None = None) -> None:
        self.upstream = upstream
        self.seed = seed
        self.options = options or {}
        self.log = ImportLog(upstream)

    def imports(self) -> contextlib.AbstractContextManager[ImportLog]:
        """``with self.imports(): import upstream_module`` -- the checkout first on ``sys.path``."""
        return upstream_imports(self.upstream, stubs=self.stubs, log=self.log)

    def imported_files(self) -> list[str]:
        self.log.scan()
        return sorted(self.log.files)

    def build(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def files(self, data: Path, limit: int) -> list[Path]:
        return real_files(self.modality, data, limit)

    def before_runs(self, files: Sequence[Path]) -> None:
        """Work both sides share (a generator's tokenization), done once before the timed runs."""

    def run_upstream(self, upstream_model: Any, path: Path) -> Output:
        raise NotImplementedError

    def run_zoo(self, zoo_model: Any, path: Path) -> Output:
        raise NotImplementedError


class GeneratorAdapter(Adapter):
    """A generator's side-by-side run. A generator reads tokens, not media, so each real file is first
    tokenized by the zoo's paper-size tokenizer for that generator (``substrate``, seeded random weights;
    the tokenizers have their own adapters) and both sides get the same ids or latents and the same class
    label (from the file name). ``Output.latent`` is then the teacher-forced output on those tokens
    (logits, predicted velocity or noise: what training reads), ``Output.ids`` the ids of a seeded sample
    under upstream's sampling script's settings (``extra`` holds samples under further settings), and
    ``Output.decoded`` a continuous generator's sampled latents.
    """

    substrate: str = ""  # zoo tokenizer whose paper-size tokens the generator models
    num_classes: int = 1000
    columns = ("teacher-forced output", "sampled latents")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tokenizer: Any = None
        self._tokens: dict[Path, Any] = {}

    @property
    def tokenizer(self) -> Any:
        """The substrate at paper size with seeded random weights, built on first use."""
        if self._tokenizer is None:
            import zoo

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + 1)
                self._tokenizer = zoo.create(self.substrate).eval()
        return self._tokenizer

    def tokens(self, path: Path) -> Any:
        """The substrate's :class:`~zoo.tokens.Tokens` for ``path`` (the zoo's documented path), computed
        once per file."""
        if path not in self._tokens:
            from zoo.io import read_media

            model = self.tokenizer
            with torch.no_grad():
                media = read_media(path, modality=model.modality)
                self._tokens[path] = model.encode(model.prepare(media, path=path))
        return self._tokens[path]

    def before_runs(self, files: Sequence[Path]) -> None:
        for path in files:  # tokenized up front, so neither side's time includes the shared tokenizer
            self.tokens(path)

    def label(self, path: Path) -> int:
        """A class label fixed by the file name, the same on both sides."""
        return zlib.crc32(path.name.encode()) % self.num_classes

    def option_int(self, key: str, default: int) -> int:
        return int(self.options.get(key, default))


# ---------------------------------------------------------------------------------------------- imports
class ImportLog:
    """Files under the checkout that were imported while it was active, relative to the checkout."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.files: set[str] = set()

    def scan(self) -> None:
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not path:
                continue
            with contextlib.suppress(ValueError, OSError):
                self.files.add(str(Path(path).resolve().relative_to(self.root)))


@contextlib.contextmanager
def upstream_imports(
    root: Path, *, stubs: Sequence[str] = (), log: ImportLog | None = None, keep: bool = True
) -> Iterator[ImportLog]:
    """Make ``root`` importable first on ``sys.path`` for the duration, and record the files it imported.

    ``stubs`` names modules that upstream imports at top level for training-only work (loggers, dataset
    tools) and that this environment may lack: each is replaced by an empty module only when it cannot be
    imported, so nothing a forward pass uses is ever stubbed silently (a stub that is used raises).
    With ``keep`` (the default) the checkout stays importable afterwards, for upstream code that imports
    lazily inside ``forward``; ``keep=False`` drops its modules from ``sys.modules`` and its path, so two
    checkouts whose packages share names (``models``, ``modules``, ``utils``) do not see each other's code.
    """
    root = root.resolve()
    log = log or ImportLog(root)
    added = []
    for name in stubs:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = _Stub(name)
            added.append(name)
    sys.path.insert(0, str(root))
    before = set(sys.modules)
    try:
        yield log
    finally:
        log.scan()
        if not keep:
            sys.path.remove(str(root))
            for name in set(sys.modules) - before:
                path = getattr(sys.modules[name], "__file__", None) or ""
                if path and str(Path(path).resolve()).startswith(str(root)):
                    del sys.modules[name]
            for name in added:
                sys.modules.pop(name, None)


class _Stub(types.ModuleType):
    """An importable stand-in for a training-only dependency; any use of it raises."""

    __path__: ClassVar[list[str]] = []  # a package, so ``from stub.sub import x`` resolves to another stub

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        sub = f"{self.__name__}.{attr}"
        if sub not in sys.modules:
            sys.modules[sub] = _StubAttr(sub)
        return sys.modules[sub]


class _StubAttr(_Stub):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.__name__} is a stub standing in for a missing training-only dependency")

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)


def checkout_commit(root: Path) -> str | None:
    """The checkout's HEAD commit, or ``None`` when it is not a git work tree."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def recorded_commit(upstream_field: str | None) -> str | None:
    """The commit in a registry ``upstream`` string (``"https://github.com/x/y @ abc1234 ..."``)."""
    match = re.search(r"@\s*([0-9a-f]{7,40})\b", upstream_field or "")
    return match.group(1) if match else None


@contextlib.contextmanager
def training_without_dropout(net: nn.Module, zeroed: Iterable[tuple[Any, str]] = ()) -> Iterator[None]:
    """Train mode (upstream's teacher-forced branch is chosen by ``self.training``) with every
    ``nn.Dropout`` and each ``(object, attribute)`` of ``zeroed`` (class-label dropout probabilities,
    attention dropouts kept as floats) at zero; the modes and values come back afterwards."""
    saved = [(m, "p", m.p) for m in net.modules() if isinstance(m, nn.Dropout)]
    saved += [(obj, name, getattr(obj, name)) for obj, name in zeroed]
    was_training = net.training
    try:
        for obj, name, _ in saved:
            setattr(obj, name, 0.0)
        net.train()
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        net.train(was_training)


@contextlib.contextmanager
def cuda_calls_on_cpu() -> Iterator[None]:
    """``tensor.cuda()`` and ``module.cuda()`` return their object unchanged for the duration: upstream
    scripts that move new tensors to the GPU run on the CPU, and nothing else changes."""
    saved = torch.Tensor.cuda, nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda = saved  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------- weights
def randomize(module: nn.Module, seed: int, *, std: float = 0.02) -> nn.Module:
    """Give every floating parameter seeded values: its own init perturbed by ``std``-scaled noise.

    Upstream inits zero some layers (residual outputs, biases), which would hide half the network from
    the comparison; noise on every parameter makes each one matter. Norm weights stay near one.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p) * std)
    return module


def through_converter(
    tag: str, checkpoint: dict[str, Any], *, arch: str | None = None, **overrides: Any
) -> Any:
    """Save ``checkpoint`` (upstream's file layout, e.g. ``{"model": state_dict}``) with ``torch.save`` and
    load it with ``zoo.load_upstream(tag, file)``: the path a user's downloaded checkpoint takes."""
    import tempfile

    import zoo

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "upstream_checkpoint.pt"
        torch.save(checkpoint, file)
        return zoo.load_upstream(tag, file, arch=arch, **overrides).eval()


def state_dict_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state dict, as a checkpoint file would hold it."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------- files
IMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def real_files(modality: str, data: Path, limit: int) -> list[Path]:
    """Real files of ``modality`` to run: photos from scikit-image's wheel (written as PNG once) for
    images, ``data``'s speech for audio and its EEG recordings for EEG."""
    if modality == "image":
        return skimage_photo_files(limit)
    if modality == "audio":
        found = sorted((data / "audio" / "pocketsphinx").rglob("*.wav")) + sorted(
            (data / "audio" / "codec2").rglob("*.wav")
        )
    elif modality == "eeg":
        root = data / "eeg"
        found = sorted(
            p for p in root.rglob("*") if p.suffix.lower() in {".set", ".edf", ".bdf", ".vhdr", ".fif"}
        )
    else:
        raise ValueError(f"no default files for {modality}; pass --files")
    if not found:
        raise SystemExit(f"no {modality} files under {data}; pass --data or --files")
    return found[:limit]


def skimage_photo_files(limit: int) -> list[Path]:
    """scikit-image's photos as PNG files in a cache folder, so both sides read the same bytes."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    folder = Path.home() / ".cache" / "zoo" / "parity_photos"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in IMAGE_PHOTOS[:limit]:
        path = folder / f"{name}.png"
        if not path.exists():
            array = getattr(skdata, name)()
            if array.ndim == 2:
                array = np.stack([array] * 3, axis=-1)
            Image.fromarray(np.ascontiguousarray(array[..., :3])).save(path)
        out.append(path)
    return out


# ---------------------------------------------------------------------------------------------- compare
def timed(fn: Callable[[], Output]) -> tuple[Output, float]:
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    return out, time.perf_counter() - start


def max_diff(
    a: torch.Tensor | None, b: torch.Tensor | None, *, relative: bool = False
) -> tuple[float | None, str]:
    """Largest absolute difference, or with ``relative`` that divided by ``a``'s largest magnitude."""
    if a is None or b is None:
        return None, ""
    if a.shape != b.shape:
        if a.numel() == b.numel():
            b = b.reshape(a.shape)
        else:
            return float("inf"), f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = float((a.double() - b.double()).abs().max())
    if relative:
        scale = float(a.double().abs().max())
        return diff / max(scale, 1e-30), f"relative to upstream's largest value {scale:.3g}"
    return diff, ""


def ids_equal(a: torch.Tensor | None, b: torch.Tensor | None) -> tuple[float | None, str, str]:
    """Percent of equal ids, the shape, and a note when the shapes differ (0 % then)."""
    if a is None and b is None:
        return None, "", ""
    if a is None or b is None:
        return 0.0, "", "only one side has ids"
    if a.shape != b.shape:
        if a.numel() == b.numel():
            b = b.reshape(a.shape)
        else:
            return 0.0, f"{tuple(a.shape)} vs {tuple(b.shape)}", "id shapes differ"
    return 100.0 * float((a.long() == b.long()).double().mean()), "x".join(map(str, a.shape)), ""


def compare(
    path: Path,
    up: Output,
    up_s: float,
    ours: Output,
    zoo_s: float,
    relative: tuple[bool, bool] = (False, False),
) -> Row:
    equal, shape, note = ids_equal(up.ids, ours.ids)
    notes = [note] if note else []
    for key in sorted(set(up.extra) | set(ours.extra)):
        e, _, n = ids_equal(up.extra.get(key), ours.extra.get(key))
        notes.append(f"{key} ids {e:.2f} %" + (f" ({n})" if n else ""))
        equal = e if equal is None else min(equal, e)
    latent, n1 = max_diff(up.latent, ours.latent, relative=relative[0])
    decoded, n2 = max_diff(up.decoded, ours.decoded, relative=relative[1])
    notes += [f"latent {n1}" if n1 else "", f"decode {n2}" if n2 else ""]
    return Row(path.name, equal, shape, latent, decoded, up_s, zoo_s, "; ".join(n for n in notes if n))
