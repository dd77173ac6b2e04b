"""One prepared GPU check: fused kernels on CUDA, the nearest-code targets, bf16 training, paper-size throughput.

GPU time is short when a machine is lent, so this runs the most important measurements first, each step
in its own subprocess with its own time limit (a hang or an out-of-memory error costs one step, not the
run), and writes ``<out>/<step>.json`` as soon as a step ends and ``<out>/summary.md`` after every step:

1. ``kernels``: the Triton kernel tests on CUDA tensors (``tests/test_kernels.py`` with
   ``ZOO_KERNEL_DEVICE=cuda``: every kernel against the exact PyTorch path, fp32/fp16/bf16, l2 and
   cosine, near-ties judged by distance);
2. ``nearest``: ``benchmarks/nearest_code.py`` at N=65536, K in {16384, 65536}, D in {8, 64, 256}
   against ``torch.cdist`` + argmin and vector-quantize-pytorch, with its roofline column and targets
   (at least 5x cdist's speed at N=65536, K=16384, D=8; within 2x of the matmul roofline for D >= 64);
3. ``train_tiny``: 20 bf16-mixed training steps of every tiny tokenizer recipe (loss finite and falling);
4. ``paper_step``: one bf16 training step of each paper-size tokenizer at batch 1 with random weights,
   where it fits (step time, peak memory);
5. ``throughput``: encode and decode throughput of every paper-size tokenizer with random weights in
   fp32, bf16 and under ``torch.compile`` (items or media-seconds per second, peak memory).

``--dry-run`` runs the same logic on the CPU at tiny sizes (kernels under ``TRITON_INTERPRET=1`` on a
subset), which is what the test suite checks. Run from the repository root after the README's install:

    .venv/bin/python benchmarks/gpu_check.py -o results/gpu_check            # on a CUDA machine, < 8 min
    .venv/bin/python benchmarks/gpu_check.py --dry-run -o /tmp/gpu_check     # logic check on the CPU
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Step name -> (seconds allowed on the GPU, seconds allowed in a dry run), in order of importance.
STEPS: dict[str, tuple[int, int]] = {
    "kernels": (120, 240),
    "nearest": (150, 120),
    "train_tiny": (120, 240),
    "paper_step": (60, 120),
    "throughput": (90, 120),
}
DRY_RECIPES = ("vq16_tiny",)
DRY_MODELS = ("vq16_tiny", "biocodec_tiny")


# ------------------------------------------------------------------------------------------------ helpers
def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Exit code (124 on timeout), combined output and seconds of a command."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        return done.returncode, done.stdout + done.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return 124, text, time.perf_counter() - start


def models_of_size(paper: bool, dry: bool) -> list[str]:
    import zoo

    if dry:
        return list(DRY_MODELS)
    names = []
    for name in zoo.list_models():
        facts = zoo.info(name)
        if facts["modality"] in ("generator", "svg") or (facts["size"] == "tiny") == paper:
            continue
        names.append(name)
    return names


def example(model: Any, device: Any, *, seconds: float = 1.0, training: bool = False) -> Any:
    """A random input of the model's native size: an image, ``seconds`` of audio, or EEG windows."""
    import torch

    if model.modality == "image":
        r = model.resolution
        return torch.rand(1, model.in_channels, r, r, device=device)
    if model.modality == "audio":
        n = int(model.sample_rate * seconds)
        n -= n % model.hop_length
        return 0.1 * torch.randn(1, model.channels, n, device=device)
    if model.modality == "eeg":
        if training:
            return torch.randn(1, 1, model.window_samples, device=device)
        return 20 * torch.randn(1, 4, 2 * model.window_samples, device=device)
    raise ValueError(f"no example input for modality {model.modality}")


def media_seconds(model: Any, x: Any) -> float:
    if model.modality in ("audio", "eeg"):
        return x.shape[-1] / float(model.sample_rate)
    return 1.0


def peak_mb(device: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def timed(fn: Callable[[], Any], device: Any, repeats: int) -> float:
    import torch

    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


# -------------------------------------------------------------------------------------------------- steps
def step_kernels(out: Path, dry: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "tests/test_kernels.py", "-q", "-p", "no:cacheprovider"]
    env = {"ZOO_KERNEL_DEVICE": "cpu" if dry else "cuda"}
    if dry:
        env["TRITON_INTERPRET"] = "1"
        cmd += ["-k", "fsq or lfq or round_half"]
    code, text, seconds = run(cmd, STEPS["kernels"][dry] - 10, env)
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", text)}
    return {
        "status": "ok" if code == 0 and counts.get("passed") else "failed",
        "device": env["ZOO_KERNEL_DEVICE"],
        "seconds": round(seconds, 1),
        **counts,
        "tail": text[-1500:],
    }


def step_nearest(out: Path, dry: bool) -> dict[str, Any]:
    path = out / "nearest_code_raw.json"
    if dry:
        grid = [
            "--device",
            "cpu",
            "--N",
            "1024",
            "--K",
            "256",
            "--D",
            "8",
            "--methods",
            "zoo,cdist",
            "--repeats",
            "1",
        ]
    else:
        grid = ["--device", "cuda", "--N", "65536", "--K", "16384", "65536", "--D", "8", "64", "256"]
        grid += ["--time-budget", "8", "--timeout", "60"]
    cmd = [sys.executable, "benchmarks/nearest_code.py", *grid, "--json", str(path)]
    code, text, seconds = run(cmd, STEPS["nearest"][dry] - 10)
    table = [line for line in text.splitlines() if line.startswith("|")]
    targets = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    return {
        "status": "ok" if code == 0 else "failed",
        "seconds": round(seconds, 1),
        "table": table,
        "targets": targets,
        "targets_hold": bool(targets)
        and not any("FAIL" in t for t in targets)
        and any("PASS" in t for t in targets),
        "tail": "" if code == 0 else text[-1500:],
    }


def step_train_tiny(out: Path, dry: bool) -> dict[str, Any]:
    import lightning as L
    import torch
    import yaml

    from zoo.training import TokenizerModule

    device = "cpu" if dry else "gpu"
    steps = 10 if dry else 20
    rows = []
    recipes = sorted((ROOT / "recipes").glob("*_tiny.yaml"))
    if dry:
        recipes = [r for r in recipes if r.stem in DRY_RECIPES]
    for recipe in recipes:
        config = yaml.safe_load(recipe.read_text())
        model_cfg, data_cfg = config["model"], config.get("data", {})
        row: dict[str, Any] = {"recipe": recipe.stem}
        if not model_cfg["class_path"].endswith("TokenizerModule"):
            rows.append({**row, "status": "skipped: a generator recipe needs a token cache"})
            continue
        try:
            module = TokenizerModule(**{**model_cfg["init_args"], "sample_every": 0, "ema_decay": None})
            data_class = _import(data_cfg["class_path"])
            data = data_class(**{**data_cfg.get("init_args", {}), "batch_size": 8})

            class Losses(L.Callback):
                def __init__(self) -> None:
                    self.values: list[float] = []

                def on_train_batch_end(self, trainer: Any, *_: Any) -> None:
                    # Reconstruction terms only: adversarial terms need not fall in a few steps.
                    metrics = trainer.callback_metrics
                    terms = [float(v) for k, v in metrics.items() if k.startswith("train/rec/")]
                    self.values.append(sum(terms) if terms else float(metrics.get("train/loss", math.nan)))

            losses = Losses()
            trainer = L.Trainer(
                accelerator=device,
                devices=1,
                precision="bf16-mixed",
                max_steps=steps,
                limit_val_batches=0,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[losses],
                default_root_dir=str(out / "runs"),
            )
            start = time.perf_counter()
            trainer.fit(module, datamodule=data)
            values = losses.values
            third = max(1, len(values) // 3)
            first, last = sum(values[:third]) / third, sum(values[-third:]) / third
            finite = all(math.isfinite(v) for v in values)
            row.update(
                status="ok" if finite and last < first else "failed",
                first_loss=round(first, 4),
                last_loss=round(last, 4),
                finite=finite,
                seconds=round(time.perf_counter() - start, 1),
            )
        except Exception as exc:  # noqa: BLE001 - one recipe's failure is a row, not the end of the step
            row.update(status=f"error: {type(exc).__name__}: {str(exc)[:200]}")
        rows.append(row)
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    ok = all(r["status"] == "ok" or r["status"].startswith("skipped") for r in rows)
    return {"status": "ok" if ok else "failed", "rows": rows}


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def _device(dry: bool) -> Any:
    import torch

    return torch.device("cpu" if dry or not torch.cuda.is_available() else "cuda")


def train_once(model: Any, x: Any, optimizer: Any, dtype: Any) -> float:
    """One optimizer step on the model's own losses plus L1 to the input (what the trainer adds)."""
    import torch

    with torch.autocast(x.device.type, dtype=dtype):
        output = model.training_output(x, 0)
        loss = sum(output.losses.values())
        if output.recon is not None:
            target = x if output.target is None else output.target
            loss = loss + torch.nn.functional.l1_loss(output.recon.float(), target.float())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss)


def step_paper_step(out: Path, dry: bool) -> dict[str, Any]:
    import torch

    import zoo

    device = _device(dry)
    dtype = torch.bfloat16
    rows = []
    for name in models_of_size(paper=True, dry=dry):
        row: dict[str, Any] = {"model": name}
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            model = zoo.create(name).to(device).train()
            x = example(model, device, training=True)
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=1e-5)

            seconds = timed(
                functools.partial(train_once, model, x, optimizer, dtype), device, 1 if dry else 3
            )
            row.update(
                status="ok", step_s=round(seconds, 4), peak_mb=peak_mb(device), params=model.num_parameters()
            )
            del model, optimizer
        except torch.cuda.OutOfMemoryError:
            row.update(status="skipped: out of memory at batch 1")
        except Exception as exc:  # noqa: BLE001 - e.g. frozen teachers that need user weights
            row.update(status=f"skipped: {type(exc).__name__}: {str(exc)[:160]}")
        rows.append(row)
    return {"status": "ok", "device": str(device), "rows": rows}


def step_throughput(out: Path, dry: bool) -> dict[str, Any]:
    import torch

    import zoo

    device = _device(dry)
    rows = []
    modes = ("fp32",) if dry else ("fp32", "bf16", "compile")
    for name in models_of_size(paper=True, dry=dry):
        for mode in modes:
            row: dict[str, Any] = {"model": name, "mode": mode}
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                model = zoo.create(name).to(device).eval()
                x = example(model, device, seconds=1.0 if dry else 10.0)
                encode, decode = model.encode, model.decode
                if mode == "compile":
                    encode, decode = torch.compile(model.encode), torch.compile(model.decode)
                autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16")
                with torch.inference_mode(), autocast:
                    tokens = encode(x)
                    enc = timed(lambda: encode(x), device, repeats=1 if dry else 5)  # noqa: B023
                    dec = timed(lambda: decode(tokens), device, repeats=1 if dry else 5)  # noqa: B023
                seconds_of_media = media_seconds(model, x)
                unit = "items/s" if model.modality == "image" else "media-s/s"
                row.update(
                    status="ok",
                    unit=unit,
                    encode=round(seconds_of_media / enc, 2),
                    decode=round(seconds_of_media / dec, 2),
                    peak_mb=peak_mb(device),
                )
                del model
            except torch.cuda.OutOfMemoryError:
                row.update(status="skipped: out of memory")
            except Exception as exc:  # noqa: BLE001 - compile or a missing frozen part fails one row
                row.update(status=f"skipped: {type(exc).__name__}: {str(exc)[:160]}")
            rows.append(row)
    return {"status": "ok", "device": str(device), "rows": rows}


STEP_FUNCTIONS: dict[str, Callable[[Path, bool], dict[str, Any]]] = {
    "kernels": step_kernels,
    "nearest": step_nearest,
    "train_tiny": step_train_tiny,
    "paper_step": step_paper_step,
    "throughput": step_throughput,
}


# ---------------------------------------------------------------------------------------------- reporting
def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["# GPU check", ""]
    for name, result in results.items():
        lines += [f"## {name}: {result.get('status')} ({result.get('seconds', '?')} s)", ""]
        if name == "kernels":
            counts = ", ".join(f"{result.get(k, 0)} {k}" for k in ("passed", "failed", "skipped", "error"))
            lines += [f"Kernel tests on {result.get('device')}: {counts}.", ""]
        elif name == "nearest":
            lines += [*result.get("table", []), ""]
            lines += [f"- {t}" for t in result.get("targets", [])] + [""]
        elif result.get("rows"):
            keys = list(dict.fromkeys(k for row in result["rows"] for k in row))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in result["rows"]]
            lines.append("")
        if result.get("error"):
            lines += [f"error: {result['error']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "-o", "--out", default="results/gpu_check", help="folder for the JSON files and summary.md"
    )
    parser.add_argument("--dry-run", action="store_true", help="the same logic on the CPU at tiny sizes")
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}"
    )
    parser.add_argument("--_step", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args._step:  # worker: one step, its JSON written by the worker itself
        start = time.perf_counter()
        result = STEP_FUNCTIONS[args._step](out, args.dry_run)
        result["seconds"] = round(time.perf_counter() - start, 1)
        write_json(out / f"{args._step}.json", result)
        return 0
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {list(STEPS)}")
    results: dict[str, dict[str, Any]] = {}
    for name in steps:
        limit = STEPS[name][args.dry_run]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_step", name, "-o", str(out)]
        if args.dry_run:
            cmd.append("--dry-run")
        print(f"[gpu_check] {name} (limit {limit} s)", flush=True)
        code, text, seconds = run(cmd, limit)
        path = out / f"{name}.json"
        if path.is_file() and code == 0:
            results[name] = json.loads(path.read_text(encoding="utf-8"))
        else:
            reason = "timed out" if code == 124 else f"exit {code}"
            results[name] = {
                "status": f"failed ({reason})",
                "seconds": round(seconds, 1),
                "error": text[-1500:],
            }
            write_json(path, results[name])
        (out / "summary.md").write_text(markdown(results), encoding="utf-8")
        print(f"[gpu_check] {name}: {results[name]['status']} in {seconds:.0f} s", flush=True)
    print(f"[gpu_check] wrote {out}/summary.md and one JSON per step")
    return 0 if all(str(r.get("status")) == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
