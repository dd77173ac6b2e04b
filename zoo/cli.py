"""The ``zoo`` command: a thin layer over the Python API.

    zoo list [PATTERN] [--modality M] [--pretrained]
    zoo info NAME [--json]
    zoo encode MODEL INPUTS... -o OUT_DIR        (token files, one per input)
    zoo decode MODEL TOKENS... -o OUT_DIR        (media files, one per token file)
    zoo card MODEL_OR_DIR [-o README.md]
    zoo push DIR REPO_ID [--branch B] [--private] [-m MESSAGE]
    zoo train RECIPE.yaml|NAME [--section.key value ...] [--print_config] [--ckpt_path last]
    zoo train --list
    zoo export RUN_DIR_OR_CKPT -o DIR [--no-ema]
    zoo sample GENERATOR [--labels 1,2] [--n 4] [--cfg 2.0] [--seed 0] -o OUT_DIR   (PNGs, or .svg files)
    zoo fit-levels TOKENIZER DATA -o OUT_DIR       (TokenBridge: per-channel PTQ ranges)
    zoo fit-segments TOKENIZER CORPUS -o OUT_DIR [--merges 500] [--min-frequency 2] [--split train]
                                        (HiVG: the segment vocabulary, from SVG files or .jsonl)
    zoo cache TOKENIZER DATA -o OUT_DIR [--views none|flip|ten_crop] [--devices cpu,cpu|cuda:0,cuda:1|N]
                                        (an image dataset encoded once into a token cache)

Over many files a bad one is reported and skipped; the others' outputs are kept and the exit status
is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import ZooError

DEFAULT_SUFFIX = {"image": ".png", "audio": ".wav", "eeg": ".npz", "svg": ".svg"}
TOKEN_SUFFIX = ".tokens.safetensors"


def expand_inputs(patterns: Iterable[str], suffixes: Iterable[str] | None = None) -> list[Path]:
    """Expand globs and directories (recursively, filtered by ``suffixes``) in the order given."""
    wanted = {s.lower() for s in suffixes} if suffixes else None
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
            if not matches:
                found.append(Path(pattern))  # reported later as a missing input
            found.extend(matches)
        elif Path(pattern).is_dir():
            found.extend(
                p
                for p in sorted(Path(pattern).rglob("*"))
                if p.is_file()
                and (
                    wanted is None or "".join(p.suffixes[-2:]).lower() in wanted or p.suffix.lower() in wanted
                )
            )
        else:
            found.append(Path(pattern))
    unique: dict[Path, None] = dict.fromkeys(found)
    return list(unique)


def _output_name(path: Path, used: set[str], suffix: str) -> str:
    stem = path.name.removesuffix(TOKEN_SUFFIX) if path.name.endswith(TOKEN_SUFFIX) else path.stem
    name, n = f"{stem}{suffix}", 1
    while name in used:
        name, n = f"{stem}-{n}{suffix}", n + 1
    used.add(name)
    return name


def _output_dir(text: str) -> Path:
    """``-o``: a directory, created when missing; a file of that name is a user error, not a traceback."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ZooError(f"-o {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"-o {out}: cannot create the output directory ({exc.strerror or exc})") from exc
    return out


def _check_device(device: str | None) -> None:
    """``--device``: refuse a device this machine does not have before loading anything."""
    if not device:
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ZooError(f"--device {device}: not a device name ({exc})") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ZooError(f"--device {device}: no CUDA GPU is available on this machine")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ZooError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ZooError(f"--device {device}: MPS is not available on this machine")


def _claim_output(target: Path, args: argparse.Namespace) -> bool:
    """Whether to write ``target``: ``False`` to skip it (``--skip-existing``); an existing file without
    ``--overwrite`` is an error, so two runs into one folder never silently replace each other's files."""
    if not target.exists():
        return True
    if getattr(args, "skip_existing", False):
        return False
    if getattr(args, "overwrite", False):
        return True
    raise ZooError(f"{target} already exists (pass --overwrite to replace it or --skip-existing to keep it)")


def _check_token_source(tokens: Any, model: Any, force: bool) -> None:
    """Refuse tokens made by other weights than ``model``'s: they would decode to plausible garbage.

    ``zoo encode`` records the architecture and a fingerprint of the weights in each token file; files
    from the Python API or older versions carry only the producing model's name, which is then compared
    by architecture and codebooks (what ``decode`` checks itself).
    """
    if force:
        return
    made_by = f"{tokens.model or 'an unnamed model'}" + (f"@{tokens.revision}" if tokens.revision else "")
    using = f"{getattr(model, 'source', None) or model.arch}" + (
        f"@{model.revision}" if getattr(model, "revision", None) else ""
    )
    arch = tokens.meta.get("arch")
    if arch is not None and arch != model.arch:
        raise ZooError(
            f"tokens were made by {made_by} ({arch}), not by {using} ({model.arch}); "
            "decode them with the model that encoded them, or pass --force"
        )
    weights = tokens.meta.get("weights")
    if weights is not None and weights != model.weights_fingerprint():
        raise ZooError(
            f"tokens were made by {made_by} with other weights than {using}'s (fingerprint {weights} vs "
            f"{model.weights_fingerprint()}); decode them with the model that encoded them, or pass --force"
        )


def _progress(items: Sequence[Path], desc: str) -> Iterable[Path]:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="file", file=sys.stderr, disable=len(items) < 2 or None)


def _report(
    failures: list[tuple[Path, str]], done: int, what: str, *, skipped: int = 0, interrupted: bool = False
) -> int:
    for path, problem in failures:
        print(f"skipped {path}: {problem}", file=sys.stderr)
    kept = f", {skipped} kept as they were (--skip-existing)" if skipped else ""
    stop = "; interrupted, the files listed as done are complete" if interrupted else ""
    print(f"{what} {done} file(s), {len(failures)} failed{kept}{stop}", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if failures else 0


def _problem(path: Path, exc: BaseException) -> str:
    """One line for a failed file: the message without the path it already names, and the error type
    where the message alone would not say what went wrong (an out-of-memory, a bad zip)."""
    text = str(exc).removeprefix(f"{path}: ").strip().splitlines()
    line = text[0] if text else ""
    if isinstance(exc, (ZooError, ValueError, OSError)) and line:
        return line
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def cmd_list(args: argparse.Namespace) -> int:
    from . import list_models

    for name in list_models(args.pattern, modality=args.modality, pretrained=args.pretrained):
        print(name)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from . import info

    facts = info(args.name)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"{facts['name']}  ({facts['modality']}, {facts['size']} size)  {facts['summary']}")
    print(f"  class       {facts['class']}")
    print(f"  parameters  {facts['parameters']:,}")
    print(f"  sizes       {', '.join(facts['sizes'])}")
    print(f"  input       {json.dumps(facts['input'])}")
    print(f"  tokens      {json.dumps(facts['tokens'])}")
    for name, cfg in facts["pretrained"].items():
        print(f"  pretrained  {name}: {cfg['hf_hub_id']}/{cfg['file']} @ {cfg['revision']} [{cfg['format']}]")
        print(f"              licence {cfg['license']}, paper {cfg['paper']}, code {cfg['upstream']}")
    return 0


def _load(args: argparse.Namespace) -> Any:
    from . import create, load
    from ._registry import get_entry, is_model

    name = str(args.model)
    if getattr(args, "revision", None) and Path(name).is_dir():
        raise ZooError(f"--revision {args.revision}: {name} is a local folder, which has no revisions")
    if is_model(name) and not get_entry(name).pretrained:
        import torch

        with torch.device("meta"):  # a probe: nothing allocated for models that need weights
            usable_untrained = getattr(create(name), "trained_by", None)
        if usable_untrained:  # HiVG's atomic level works untrained: the registry name builds it
            model = create(name).eval()
            return model.to(args.device) if args.device else model
    model = load(args.model, revision=args.revision, device=args.device)
    if model.modality == "generator":
        raise ZooError(
            f"{args.model} is a generator: `zoo sample` draws from it, and its tokenizer "
            f"({model.tokenizer_name}) encodes and decodes"
        )
    return model


def cmd_encode(args: argparse.Namespace) -> int:
    import torch

    from .io import SUFFIXES as MEDIA_SUFFIXES
    from .io import read_media

    resolution = _parse_resolution(args.resolution)
    channels = _parse_channels(args.channels)
    _check_device(args.device)
    out = _output_dir(args.output)
    model = _load(args)
    if channels and model.modality != "eeg":
        raise ZooError(f"--channels picks EEG channels; {args.model} is a {model.modality} model")
    if (args.resolution is not None or args.resize) and model.modality != "image":
        raise ZooError(f"--resolution and --resize size images; {args.model} is a {model.modality} model")
    if args.max_pixels is not None and (model.modality != "image" or args.max_pixels < 0):
        raise ZooError(
            f"--max-pixels {args.max_pixels}: the largest image (width x height) to read, 0 for no limit"
        )
    if args.sample_rate is not None and (model.modality != "eeg" or args.sample_rate <= 0):
        raise ZooError(
            f"--sample-rate {args.sample_rate:g}: gives the positive rate of EEG arrays (.npy/.npz)"
        )
    files = expand_inputs(args.inputs, MEDIA_SUFFIXES.get(model.modality))
    if not files:
        raise ZooError(f"no input files found in {' '.join(args.inputs)}")
    failures: list[tuple[Path, str]] = []
    used: set[str] = set()
    done = skipped = 0
    options: dict[str, Any] = {}
    if model.modality == "image":
        options["resolution"] = resolution
        if args.resize:
            import inspect

            if "resize" not in inspect.signature(model.prepare).parameters:
                raise ZooError(f"--resize: {args.model} has one fixed preprocessing (see its card)")
            options["resize"] = args.resize
        # 8-bit files stay uint8 until prepare has shrunk them: a float copy is 12 bytes a pixel
        reader = {"mode": "RGB" if model.in_channels == 3 else "L", "keep_uint8": True}
        if args.max_pixels is not None:
            reader["max_pixels"] = args.max_pixels or None
    else:
        reader = {}
    if channels:
        options["channels"] = channels
    fingerprint = model.weights_fingerprint()
    interrupted = False
    try:
        for path in _progress(files, "encode"):
            try:
                target = out / _output_name(path, used, TOKEN_SUFFIX)
                if not _claim_output(target, args):
                    skipped += 1
                    continue
                if not path.is_file():
                    raise ZooError(f"{path}: no such file")
                accepted = MEDIA_SUFFIXES.get(model.modality, frozenset())
                if path.suffix.lower() not in accepted:
                    raise ZooError(
                        f"{path}: {args.model} model ({model.modality}) reads "
                        f"{' '.join(sorted(accepted))} files, not {path.suffix or 'files without a suffix'}"
                    )
                per_file = dict(reader)
                if model.modality == "eeg" and path.suffix.lower() in (".npy", ".npz") and args.sample_rate:
                    per_file["sample_rate"] = args.sample_rate  # arrays store no rate of their own
                if channels and path.suffix.lower() in (".edf", ".bdf"):
                    per_file["channel_names"] = channels  # read just these, other-rate signals resampled
                media = read_media(path, modality=model.modality, **per_file)
                x = model.prepare(media, path=path, **options)
                x = x.to(model.device) if isinstance(x, torch.Tensor) else x  # SVG tokenizers take text
                with torch.inference_mode():
                    tokens = model.encode(x)
                tokens.meta.update(model.media_meta(media, **options))
                tokens.meta.update(source_file=path.name, arch=model.arch, weights=fingerprint)
                tokens.save(target)
                done += 1
            except Exception as exc:  # noqa: BLE001 (one bad file, or one the model cannot take, never costs the batch)
                failures.append((path, _problem(path, exc)))
    except KeyboardInterrupt:
        interrupted = True
    return _report(failures, done, "encoded", skipped=skipped, interrupted=interrupted)


def _parse_resolution(text: str | None) -> int | None:
    """``--resolution``: a positive size, or ``native`` (``None``); unset means the model's (``0``)."""
    if text is None:
        return 0
    if text == "native":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ZooError(f"--resolution {text}: expected a positive integer or 'native'") from None
    if value <= 0:
        raise ZooError(f"--resolution {text}: must be a positive number of pixels")
    return value


def _parse_channels(text: str | None) -> list[str] | None:
    """``--channels``: names in order, each once."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise ZooError(f"--channels {text!r}: no channel names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ZooError(f"--channels names {', '.join(repeated)} more than once")
    return names


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    from .io import write_media
    from .tokens import Tokens

    _check_device(args.device)
    out = _output_dir(args.output)
    model = _load(args)
    suffix = args.suffix or DEFAULT_SUFFIX[model.modality]
    files = expand_inputs(args.tokens, [TOKEN_SUFFIX, ".safetensors", ".npz"])
    if not files:
        raise ZooError(f"no token files found in {' '.join(args.tokens)}")
    failures: list[tuple[Path, str]] = []
    used: set[str] = set()
    done = skipped = 0
    interrupted = False
    try:
        for path in _progress(files, "decode"):
            try:
                tokens = Tokens.load(path, device=model.device)
                _check_token_source(tokens, model, args.force)
                names = [
                    _output_name(path, used, suffix)
                    if len(tokens) == 1
                    else _output_name(
                        path.with_name(f"{path.name.removesuffix(TOKEN_SUFFIX)}-{i}"), used, suffix
                    )
                    for i in range(len(tokens))
                ]
                wanted = [_claim_output(out / name, args) for name in names]
                if not any(wanted):
                    skipped += 1
                    continue
                for i, name in enumerate(names):
                    if not wanted[i]:
                        continue
                    item = tokens[i]
                    with torch.inference_mode():
                        media = model.finish(model.decode(item), item)
                    write_media(out / name, media, modality=model.modality)
                done += 1
            except Exception as exc:  # noqa: BLE001 (one bad file, or one the model cannot take, never costs the batch)
                failures.append((path, _problem(path, exc)))
    except KeyboardInterrupt:
        interrupted = True
    taken = getattr(model, "last_decode_path", None)  # models with several decoders (SEED) name theirs
    if taken:
        print(f"decoded through {taken}", file=sys.stderr)
    return _report(failures, done, "decoded", skipped=skipped, interrupted=interrupted)


def cmd_card(args: argparse.Namespace) -> int:
    import torch

    from ._factory import create
    from .cards import render_card
    from .hub import CONFIG_NAME, build_from_config, read_config

    target = Path(args.model)
    with torch.device("meta"):
        if target.is_dir():
            model = build_from_config(read_config(target / CONFIG_NAME), str(target / CONFIG_NAME))
        else:
            model = create(args.model)
    text = render_card(model, repo_id=args.repo_id)
    if args.output:
        from ._atomic import atomic_write_text

        atomic_write_text(args.output, text)
    else:
        print(text)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .hub import hub_endpoint, push_folder

    sha = push_folder(
        args.directory, args.repo_id, branch=args.branch, private=args.private, commit_message=args.message
    )
    print(f"pushed {args.directory} to {hub_endpoint()}/{args.repo_id} at commit {sha}")
    return 0


def cmd_list_recipes(args: argparse.Namespace) -> int:
    """``zoo train --list``, answered without importing Lightning."""
    from .recipes import recipe_listing

    print(recipe_listing())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .training.cli import export

    out = export(args.run, args.output, use_ema=not args.no_ema)
    print(f"exported {args.run} to {out} (config.json, model.safetensors, README.md)")
    if args.bench is not None:
        from .benchmarking import bench
        from .cards import write_card_section

        if args.bench_limit is not None and args.bench_limit < 1:
            raise ZooError(f"--bench-limit must be a positive number of items, got {args.bench_limit}")
        report = bench(out, args.bench or None, limit=args.bench_limit, out=Path(out) / "bench")
        pictures = "bench/: the table as JSON, a rate-distortion plot and sample reconstructions"
        write_card_section(
            Path(out) / "README.md", "zoo-bench", "Measured with zoo bench", report.to_card(pictures)
        )
        print(f"measured it with zoo bench: {out}/README.md, {out}/bench/")
    return 0


def _devices(text: str | None) -> list[str] | None:
    """``--devices``: a comma-separated list of device names, or a count of GPUs (CPUs without any)."""
    if not text:
        return None
    if text.strip().isdigit():
        import torch

        count = int(text)
        if count < 1:
            raise ValueError(f"--devices needs at least one device, got {text!r}")
        return [f"cuda:{i}" for i in range(count)] if torch.cuda.is_available() else ["cpu"] * count
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise ValueError(f"--devices: no device names in {text!r}")
    return names


def _cache_dataset(args: argparse.Namespace, channels: int) -> Any:
    """The image dataset `zoo cache` encodes: stored size (the cache resizes), no augmentation."""
    from .data._common import Subsample
    from .data.image import CifarNpz, FashionMnistIdx, ImageFolder, detect_image_format

    fmt = detect_image_format(args.data) if args.format == "auto" else args.format
    path = Path(args.data)
    if fmt == "folder":
        dataset = ImageFolder(path, None, False, args.split or "all", 0.1, channels)
    elif fmt == "npz":
        split = args.split or ("train" if path.is_dir() else "all")
        dataset = CifarNpz(path, split, None, False, channels)
    else:
        dataset = FashionMnistIdx(path, args.split or "train", None, False, channels)
    return dataset if args.limit is None else Subsample(dataset, args.limit)


def cmd_cache(args: argparse.Namespace) -> int:
    from .data.token_cache import build_token_cache, read_index

    try:
        model = _load(argparse.Namespace(model=args.tokenizer, revision=args.revision, device=None))
        if model.modality != "image":
            raise ValueError(
                f"{args.tokenizer} is an {model.modality} tokenizer; zoo cache takes image tokenizers"
            )
        dataset = _cache_dataset(args, model.in_channels)
        out = build_token_cache(
            model,
            dataset,
            args.output,
            views=args.views,
            resolution=args.resolution,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            devices=_devices(args.devices),
            pivot=args.pivot,
            num_workers=args.num_workers,
        )
        index = read_index(out)
    except ZooError:
        raise  # main() reports it
    except (ValueError, OSError) as exc:
        print(f"zoo cache: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"cached {index['num_items']} items x {index['num_views']} views ({index['kind']}, grid "
        f"{'x'.join(map(str, index['grid']))}) in {len(index['shards'])} shard(s) to {out}"
    )
    return 0


def cmd_fit_levels(args: argparse.Namespace) -> int:
    """Fit a PTQ tokenizer's per-channel ranges on a dataset, streaming, and save the result."""
    import torch
    from tqdm.auto import tqdm

    from .data.token_cache import make_views

    model = _load(argparse.Namespace(model=args.tokenizer, revision=args.revision, device=args.device))
    if not hasattr(model, "fit_levels"):
        raise ZooError(
            f"{args.tokenizer} ({model.arch}) has no post-training levels to fit; it is not a PTQ tokenizer"
        )
    try:
        dataset = _cache_dataset(args, model.in_channels)
    except (ValueError, OSError) as exc:
        raise ZooError(str(exc)) from exc
    resolution = args.resolution or model.resolution
    starts = range(0, len(dataset), args.batch_size)

    def batches():
        for start in tqdm(
            starts, desc="fit-levels", unit="batch", file=sys.stderr, disable=len(starts) < 2 or None
        ):
            items = range(start, min(start + args.batch_size, len(dataset)))
            yield torch.stack([make_views(dataset[i], "none", resolution)[0] for i in items])

    with torch.inference_mode():
        model.fit_levels(batches(), sample=args.sample)
    model.save_pretrained(args.output)
    low, high = model.ptq.low.cpu(), model.ptq.high.cpu()
    print(
        f"fitted {model.latent_channels} channel ranges on {len(dataset)} image(s) "
        f"(centres {low.add(high).div(2).min():.3g}..{low.add(high).div(2).max():.3g}, "
        f"half-widths {high.sub(low).div(2).min():.3g}..{high.sub(low).div(2).max():.3g}); saved to {args.output}"
    )
    return 0


def cmd_fit_segments(args: argparse.Namespace) -> int:
    """Learn an SVG tokenizer's segment vocabulary on a corpus and save the tokenizer."""
    from .data.svg import SVGCorpus

    model = _load(argparse.Namespace(model=args.tokenizer, revision=args.revision, device=None))
    if not hasattr(model, "train_segments"):
        raise ZooError(f"{args.tokenizer} ({model.arch}) has no segment vocabulary to fit")
    try:  # --split train keeps held-out icons unseen, as SVGTokenDataModule splits the same corpus
        corpus = SVGCorpus(args.corpus, args.split, args.val_fraction if args.split == "train" else 0.0)
    except (ValueError, OSError) as exc:
        raise ZooError(str(exc)) from exc
    texts = [corpus[i] for i in range(len(corpus) if args.limit is None else min(args.limit, len(corpus)))]
    stats = model.train_segments(
        texts, num_merges=args.merges, min_frequency=args.min_frequency, progress=True
    )
    model.save_pretrained(args.output)
    print(
        f"learned {stats['segments']} segments on {stats['icons']} SVG(s) ({stats['skipped']} skipped); "
        f"geometry ids {stats['geometry_tokens']:,} -> {stats['geometry_segmented']:,} "
        f"({stats['geometry_compression']:.2f}x), all ids {stats['compression']:.2f}x; saved to {args.output}"
    )
    return 0


def _parse_labels(text: str) -> list[int]:
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ZooError(f"--labels must be comma-separated class indices, got {text!r}") from None
    if not labels:
        raise ZooError("--labels names no class")
    return labels


def cmd_sample(args: argparse.Namespace) -> int:
    """Sample ``n`` items per label, decode them with the generator's tokenizer, write PNGs and a grid
    (``.svg`` files, no grid, when the tokenizer is an SVG tokenizer)."""
    import torch
    from tqdm.auto import tqdm

    from . import load
    from .errors import MediaError
    from .generator import Generator
    from .io import write_image, write_svg
    from .tokens import Tokens
    from .training.samples import image_grid

    generator = load(args.generator, revision=args.revision, device=args.device)
    if not isinstance(generator, Generator):
        raise ZooError(
            f"{args.generator} is a {generator.modality} tokenizer, not a generator; use zoo encode/decode"
        )
    try:
        tokenizer = generator.load_tokenizer(args.tokenizer, device=args.device)
        generator.labels(_parse_labels(args.labels))
    except ValueError as exc:
        raise ZooError(str(exc)) from exc
    labels = [label for label in _parse_labels(args.labels) for _ in range(args.n)]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    options = {"cfg": args.cfg, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    if args.steps is not None:
        options["steps"] = args.steps
    svg = getattr(tokenizer, "modality", None) == "svg"
    images, batches, failures = [], [], []
    starts = list(range(0, len(labels), args.batch_size))
    for b, start in enumerate(
        tqdm(starts, desc="sample", unit="batch", file=sys.stderr, disable=len(starts) < 2 or None)
    ):
        chunk = labels[start : start + args.batch_size]
        seed = None if args.seed is None else args.seed + b
        with torch.inference_mode():
            tokens = generator.sample(chunk, seed=seed, progress=len(starts) == 1, **options)
            decoded = tokenizer.decode(tokens.to(tokenizer.device))
            if not svg:
                decoded = decoded.float().clamp(0, 1).cpu()
        batches.append(tokens.to("cpu"))
        for i, (label, item) in enumerate(zip(chunk, decoded, strict=True)):
            name = f"class{label:04d}_{(start + i) % args.n:03d}"
            if not svg:
                write_image(out / f"{name}.png", item)
                continue
            try:
                write_svg(out / f"{name}.svg", item)
            except MediaError as exc:  # a sample the repairing decoder could not make valid
                failures.append((out / f"{name}.svg", str(exc)))
        if not svg:
            images.append(decoded)
    if images:
        write_image(out / "grid.png", image_grid(torch.cat(images), columns=args.n))
    Tokens.cat(batches).save(out / "samples.tokens.safetensors")
    kind, files = ("SVG", ".svg files") if svg else ("image", "grid.png")
    print(
        f"sampled {len(labels)} {kind}(s) from {args.generator} into {out} ({files}, samples.tokens.safetensors)",
        file=sys.stderr,
    )
    for path, problem in failures:
        print(f"not written {path}: {problem}", file=sys.stderr)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="zoo", description="Multimodal tokenizer model zoo.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", help="glob, e.g. 'vq*'")
    p.add_argument("--modality", choices=["image", "audio", "eeg", "svg", "generator"])
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="facts about a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    for name, func, help_text in (
        ("encode", cmd_encode, "media files -> token files"),
        ("decode", cmd_decode, "token files -> media files"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model", help="registry name, Hub repo id or local directory")
        p.add_argument(
            "tokens" if name == "decode" else "inputs", nargs="+", help="files, directories or globs"
        )
        p.add_argument("-o", "--output", required=True, help="output directory")
        p.add_argument("--revision", help="Hub revision (branch, tag or commit sha)")
        p.add_argument("--device", default=None, help="e.g. cpu, cuda")
        existing = p.add_mutually_exclusive_group()
        existing.add_argument("--overwrite", action="store_true", help="replace output files that exist")
        existing.add_argument(
            "--skip-existing", action="store_true", help="keep output files that exist (resume a batch)"
        )
        if name == "encode":
            p.add_argument(
                "--resolution",
                default=None,
                help="image size after resize + centre crop (default: the model's), or 'native'",
            )
            p.add_argument(
                "--resize",
                choices=["adm", "bicubic", "torchvision"],
                help="image resize before the centre crop (default: the model's upstream pipeline, see its card)",
            )
            p.add_argument("--channels", help="EEG: comma-separated channel names to keep, in that order")
            p.add_argument(
                "--sample-rate", type=float, help="EEG: the rate (Hz) of .npy/.npz arrays, which store none"
            )
            p.add_argument(
                "--max-pixels",
                type=int,
                help="images: refuse files with more pixels than this, from their header "
                "(default 268435456 = 16384 x 16384; 0: no limit)",
            )
        else:
            p.add_argument("--suffix", help="output file suffix (default by modality, e.g. .png)")
            p.add_argument(
                "--force", action="store_true", help="decode tokens that another model or other weights made"
            )
        p.set_defaults(func=func)

    p = sub.add_parser("card", help="render a model card")
    p.add_argument("model", help="registry name or a saved model directory")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--repo-id", help="repo id to show in the usage example")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("push", help="upload a saved model directory to the Hub")
    p.add_argument("directory")
    p.add_argument("repo_id")
    p.add_argument("--branch")
    p.add_argument("--private", action="store_true")
    p.add_argument("-m", "--message")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "train",
        help="train from a recipe YAML or a packaged recipe's name (zoo train --list; zoo train NAME --help)",
    )
    p.add_argument("--list", action="store_true", help="list the recipes that ship with zoo")
    p.set_defaults(func=cmd_list_recipes)  # `zoo train --list` only: anything else goes to LightningCLI

    p = sub.add_parser("export", help="checkpoint of a training run -> Hub-ready folder")
    p.add_argument("run", help="run directory (uses checkpoints/last.ckpt) or a .ckpt file")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA was kept")
    p.add_argument(
        "--bench",
        nargs="?",
        const="",
        metavar="DATA",
        help="then measure the export with zoo bench (on DATA, or the modality's default) and put the table "
        "in its README.md",
    )
    p.add_argument("--bench-limit", type=int, help="items for --bench")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("cache", help="encode an image dataset once into a token cache for generators")
    p.add_argument("tokenizer", help="registry name, Hub repo id or local directory")
    p.add_argument(
        "data", help="image folder (class subfolders), CIFAR .npz or folder, Fashion-MNIST idx folder"
    )
    p.add_argument("-o", "--output", required=True, help="cache folder (a rerun resumes it)")
    p.add_argument("--views", choices=["none", "flip", "ten_crop"], default="none")
    p.add_argument("--resolution", type=int, help="image size (default: the tokenizer's)")
    p.add_argument(
        "--split",
        choices=["train", "test", "all"],
        help="default: all of a folder or .npz file, the train file of a CIFAR or idx folder",
    )
    p.add_argument("--format", choices=["auto", "folder", "npz", "idx"], default="auto")
    p.add_argument("--batch-size", type=int, default=64, help="images per encode call, views included")
    p.add_argument("--shard-size", type=int, default=4096, help="items per shard file")
    p.add_argument("--limit", type=int, help="cache only this many items, spread over the dataset")
    p.add_argument("--devices", help="cpu,cpu or cuda:0,cuda:1 (one process each), or a GPU count")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding images")
    p.add_argument("--revision", help="Hub revision of the tokenizer")
    p.add_argument(
        "--pivot", action="store_true", help="also store the latents of the 2x-downsampled views (Hi-MAR)"
    )
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("sample", help="images (or SVGs) from a generator, decoded by its tokenizer")
    p.add_argument("generator", help="registry name, Hub repo id or local directory")
    p.add_argument(
        "--labels", default="0", help="comma-separated class indices, e.g. 1,2,3 (unconditional models: 0)"
    )
    p.add_argument("--n", type=int, default=1, help="samples per label")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1: none)")
    p.add_argument("--steps", type=int, help="sampling steps per entity (flow generators)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="batch b uses seed + b")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tokenizer", help="decode with this tokenizer instead of the one the generator names")
    p.add_argument("--revision", help="Hub revision of the generator")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("fit-levels", help="fit a PTQ tokenizer's per-channel ranges on images (TokenBridge)")
    p.add_argument("tokenizer", help="registry name, Hub repo id or local directory")
    p.add_argument("data", help="image folder, CIFAR .npz or folder, Fashion-MNIST idx folder")
    p.add_argument("-o", "--output", required=True, help="directory for the fitted tokenizer")
    p.add_argument("--resolution", type=int, help="image size (default: the tokenizer's)")
    p.add_argument("--split", choices=["train", "test", "all"])
    p.add_argument("--format", choices=["auto", "folder", "npz", "idx"], default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="use only this many images, spread over the dataset")
    p.add_argument("--sample", action="store_true", help="fit on posterior samples instead of means")
    p.add_argument("--revision", help="Hub revision of the tokenizer")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda")
    p.set_defaults(func=cmd_fit_levels)

    p = sub.add_parser("fit-segments", help="learn an SVG tokenizer's segment vocabulary (HiVG)")
    p.add_argument("tokenizer", help="registry name, Hub repo id or local directory")
    p.add_argument("corpus", help="folder of .svg files or a .jsonl with an 'svg' field")
    p.add_argument("-o", "--output", required=True, help="directory for the fitted tokenizer")
    p.add_argument("--merges", type=int, default=500, help="segments to learn at most")
    p.add_argument("--min-frequency", type=int, default=2, help="stop when no candidate is this frequent")
    p.add_argument("--limit", type=int, help="use only the first this many SVGs")
    p.add_argument(
        "--split", choices=["all", "train"], default="all", help="train: leave the validation split out"
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.05, help="with --split train: as the recipe's data"
    )
    p.add_argument("--revision", help="Hub revision of the tokenizer")
    p.set_defaults(func=cmd_fit_segments)

    p = sub.add_parser(
        "bench",
        help="measure a tokenizer against classic codecs: rate, quality, speed (markdown, JSON, plots)",
    )
    p.add_argument("model", help="registry name, Hub repo id or saved model directory")
    p.add_argument(
        "data",
        nargs="?",
        help="items to measure: a folder or dataset file, or a keyword (images: skimage-val, skimage, "
        "cifar10); default: the modality's default set",
    )
    p.add_argument("--limit", type=int, help="measure at most this many items")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("-o", "--output", help="write <model>.md, .json, _rd.png and _samples.png here")
    p.add_argument("--no-classic", action="store_true", help="skip the classic codecs")
    p.add_argument("--control", action="store_true", help="add the same architecture untrained")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="measure the registered architecture with seeded random weights (speed; no checkpoint needed)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    p.set_defaults(func=cmd_bench)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .benchmarking import bench

    if args.limit is not None and args.limit < 1:
        raise ZooError(f"--limit must be a positive number of items, got {args.limit}")
    _check_device(args.device)
    report = bench(
        args.model,
        args.data,
        limit=args.limit,
        device=args.device,
        out=args.output,
        classic=not args.no_classic,
        control=args.control,
        random_weights=args.random_weights,
    )
    print(json.dumps(report.to_json(), indent=2, default=str) if args.json else report.to_markdown())
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and argv[1:] != ["--list"]:  # the rest belongs to LightningCLI's parser
        from .training.cli import train

        return train(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:
        print(f"zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `zoo info x | head`: the reader had enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if not exc.filename:
            raise
        # a read-only or missing output location: the user's to fix, not a bug
        print(f"zoo {args.command}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
