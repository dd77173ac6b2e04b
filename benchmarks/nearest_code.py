"""Benchmark nearest-code search (the VQ assignment step): time and peak memory of three implementations.

Methods: ``zoo`` (``zoo.kernels.nearest_code``: Triton on CUDA, chunked PyTorch on CPU), ``cdist``
(``torch.cdist(x, codebook).argmin(1)``, the obvious baseline that materialises ``N x K``) and ``vqp``
(vector-quantize-pytorch's ``VectorQuantize`` in eval mode, the usual third-party layer).

Every measurement runs in a worker subprocess (this file with ``--_worker``) speaking JSON lines, so a
timeout or an out-of-memory failure costs one cell of the table, not the run:

* time: one first call (warmup, and the call whose memory is measured on CUDA), then ``--repeats``
  timed calls (fewer once ``--time-budget`` seconds are spent); the median is reported. CPU calls are
  timed with ``time.perf_counter``; CUDA calls with CUDA events around each call, synchronised.
* memory on CPU: a fresh worker per measurement. Once the inputs (and the method's state) exist and
  the method has run on a tiny 64 x 64 problem (thread pools, library code pages), the kernel's RSS
  high-water mark is reset (``/proc/self/clear_refs``) and ``ru_maxrss`` read; after the first and
  the timed calls it is read again. The growth is the process high-water mark above the inputs:
  outputs, temporaries and allocator overhead included, page granular (glibc keeps freed blocks under
  32 MB in its heap, so small configs read high). An address-space limit (``--max-gb`` above the
  current size) turns a bad estimate into an ``oom`` cell instead of a visit from the OOM killer.
* memory on CUDA: one worker reused across measurements (restarted after a timeout or an error);
  ``max_memory_allocated`` over the first and the timed calls, after ``reset_peak_memory_stats``,
  minus ``memory_allocated`` before the first call (PyTorch's allocator only).

Configs whose estimated peak exceeds ``--max-gb`` are skipped per method. Run from the repository root:
``python benchmarks/nearest_code.py --quick`` for a smoke test, no options for the full grid.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

METHODS = ("zoo", "cdist", "vqp")
GRID_N, GRID_K, GRID_D = (4096, 65536), (1024, 16384, 65536), (8, 64, 256)
QUICK_N, QUICK_K, QUICK_D = (4096,), (1024,), (8, 64)
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
ITEMSIZE = {"fp32": 4, "bf16": 2}
CHECK_ROWS = 4096  # ids of the first rows come back from every worker, to compare methods with zoo
BUDGET_FRACTION = 0.75
TARGET_N, TARGET_K = 65536, 16384
GB = 1e9

Result = dict[str, Any]


# --------------------------------------------------------------------------------------------------------
# Worker side: runs in a subprocess, imports torch, answers one JSON request per line.
# --------------------------------------------------------------------------------------------------------


def _make_inputs(req: Result) -> tuple[Any, Any]:
    """Seeded on the CPU and then moved, so every method and device sees the same ``x`` and codebook."""
    import torch

    gen = torch.Generator().manual_seed(req["seed"])
    dtype = getattr(torch, DTYPES[req["dtype"]])
    x = torch.randn(req["N"], req["D"], generator=gen).to(req["device"], dtype)
    codebook = torch.randn(req["K"], req["D"], generator=gen).to(req["device"], dtype)
    return x, codebook


def _make_vqp(codebook: Any) -> Any:
    """An eval-mode ``VectorQuantize`` whose codebook is ours (its buffers stay fp32: it upcasts inputs)."""
    from vector_quantize_pytorch import VectorQuantize

    k, d = codebook.shape
    vq = VectorQuantize(dim=d, codebook_size=k).to(codebook.device).eval()
    vq.codebook = codebook.float()  # the property setter copies into vq._codebook.embed [1, K, D]
    return vq


def _build_method(name: str, x: Any, codebook: Any) -> Callable[[], Any]:
    """A zero-argument call returning int64 ids ``[N]``; setup (imports, module state) happens here."""
    import torch

    if name == "zoo":
        from zoo.kernels import nearest_code

        return lambda: nearest_code(x, codebook)[0]
    if name == "cdist":
        return lambda: torch.cdist(x, codebook).argmin(1)
    if name == "vqp":
        vq, batch = _make_vqp(codebook), x[None]
        return lambda: vq(batch)[1][0]
    raise ValueError(f"unknown method {name!r}")


def _proc_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_rss_peak() -> bool:
    """Reset the RSS high-water mark that ``ru_maxrss`` reports, so that earlier peaks do not hide ours."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _limit_address_space(extra_bytes: int) -> None:
    """Cap virtual memory at its current size plus ``extra_bytes``: a wrong estimate fails in-process."""
    vm_kb = _proc_kb("VmSize")
    if vm_kb is not None:
        limit = vm_kb * 1024 + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _matmul_peak_tflops(dtype_name: str, size: int = 8192, iters: int = 10) -> float:
    """Achieved square-matmul throughput in the benchmark dtype: the roofline the kernel is held to."""
    import torch

    dtype = getattr(torch, DTYPES[dtype_name])
    a = torch.randn(size, size, device="cuda").to(dtype)
    b = torch.randn(size, size, device="cuda").to(dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * size**3 / best / 1e12


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _op_info(req: Result) -> Result:
    """Environment facts for the header, the CUDA memory budget and roofline, and a vqp sanity check."""
    import importlib.metadata

    import torch
    import zoo.kernels

    if req.get("threads"):
        torch.set_num_threads(req["threads"])
    cuda = req["device"] == "cuda"
    info: Result = {
        "status": "ok",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if cuda else _cpu_model(),
        "zoo_backend": "triton" if zoo.kernels.use_triton(torch.empty(1, device=req["device"])) else "torch",
        "zoo_chunk_elements": zoo.kernels.default_chunk_rows(1),
    }
    if cuda:
        info["free_bytes"], info["total_bytes"] = torch.cuda.mem_get_info()
        info["allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        info["peak_tflops"] = _matmul_peak_tflops(req["dtype"])
    try:
        info["vqp_version"] = importlib.metadata.version("vector-quantize-pytorch")
        small = dict(req, N=512, K=256, D=16, seed=1)
        x, codebook = _make_inputs(small)
        with torch.no_grad():
            ours = zoo.kernels.nearest_code(x, codebook, backend="torch")[0]  # the exact reference
            theirs = _build_method("vqp", x, codebook)()
        info["vqp_check_agree"] = (ours == theirs).float().mean().item()
    except Exception as exc:  # noqa: BLE001 - missing package or an API change: the vqp column is skipped
        info["vqp_version"] = None
        info["vqp_error"] = f"{type(exc).__name__}: {exc}"
    return info


def _op_measure(req: Result) -> Result:
    """First call (warmup + peak memory) then timed repeats of one method on one config."""
    import torch

    if req.get("threads"):
        torch.set_num_threads(req["threads"])
    torch.set_grad_enabled(False)
    cuda = req["device"] == "cuda"
    x, codebook = _make_inputs(req)
    call = _build_method(req["method"], x, codebook)
    res: Result = {"status": "ok"}

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        ids = call()
        torch.cuda.synchronize()
        res["first_call_s"] = time.perf_counter() - t0
        res["first_call_peak_bytes"] = torch.cuda.max_memory_allocated() - before
    else:
        # Run the method once on a tiny problem: thread pools, lazily loaded library code (file-backed pages
        # count in RSS) and one-time setup are then in the baseline; no buffer of the real size is.
        tiny = dict(req, N=64, K=64, seed=req["seed"] + 1)
        _build_method(req["method"], *_make_inputs(tiny))()
        res["hwm_reset"] = _reset_rss_peak()
        before = _maxrss_bytes()
        res["baseline_rss_bytes"] = before
        if req.get("limit_bytes"):
            _limit_address_space(req["limit_bytes"])
        t0 = time.perf_counter()
        ids = call()
        res["first_call_s"] = time.perf_counter() - t0
        res["first_call_peak_bytes"] = _maxrss_bytes() - before
    res["ids_head"] = ids[:CHECK_ROWS].tolist()
    del ids

    times: list[float] = []
    for _ in range(req["repeats"]):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            out = call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            out = call()
            times.append(time.perf_counter() - t0)
        del out
        if sum(times) > req["time_budget"]:
            break
    # The high-water mark over the first and the timed calls, as ru_maxrss cannot tell them apart.
    res["peak_bytes"] = (torch.cuda.max_memory_allocated() if cuda else _maxrss_bytes()) - before
    res["times_s"] = times
    res["time_s"] = statistics.median(times) if times else res["first_call_s"]
    return res


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def worker_main() -> None:
    """Answer JSON requests from stdin; anything else written to stdout by libraries goes to stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    ops = {"info": _op_info, "measure": _op_measure}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            res = ops[req["op"]](req)
        except Exception as exc:  # noqa: BLE001 - any failure is one cell of the table, not a crash
            res = {"status": "oom" if _is_oom(exc) else "error", "error": f"{type(exc).__name__}: {exc}"}
            if req.get("device") == "cuda":
                import torch

                try:
                    torch.cuda.empty_cache()
                except RuntimeError:  # a sticky CUDA error: the parent replaces this worker
                    pass
        out.write(json.dumps(res) + "\n")


# --------------------------------------------------------------------------------------------------------
# Parent side: plans the grid, drives workers, prints the table.
# --------------------------------------------------------------------------------------------------------


class Worker:
    """A ``--_worker`` subprocess; ``ask`` waits at most ``timeout`` seconds, then kills it."""

    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, req: Result, timeout: float) -> Result:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.close(kill=True)
            return {"status": "timeout", "error": f"no answer within {timeout:.0f} s"}
        except BrokenPipeError:
            line = None
        if line is None:
            rc = self.proc.wait()
            status = "oom" if rc in (-9, 137) else "error"  # SIGKILL: most likely the kernel OOM killer
            return {"status": status, "error": f"worker exited with {rc}: {self.stderr_tail()}"}
        return json.loads(line)

    def stderr_tail(self, chars: int = 400) -> str:
        self.log.seek(0)
        return " ".join(self.log.read()[-chars:].split())

    def close(self, kill: bool = False) -> None:
        if self.alive():
            if kill:
                self.proc.kill()
            else:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def mem_available_bytes() -> int:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux); falls back to total physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_bytes(method: str, n: int, k: int, d: int, chunk_elements: int) -> int:
    """Rough peak of one call above its inputs, deliberately on the high side: used only to skip configs.

    zoo (CPU path; the Triton kernel needs less): two fp32 ``rows x K`` distance blocks, as the previous
    chunk's block is alive while the next one is computed. cdist: the ``N x K`` distances plus one copy
    (fp32 even for bf16, to be safe). vqp: it upcasts to fp32 and holds the negated distances, an int64
    one-hot and its fp32 copy at once: 16 bytes per pair measured, 20 assumed.
    """
    if method == "zoo":
        rows = min(n, max(1, chunk_elements // k))
        return 2 * rows * k * 4 + rows * d * 4 + k * (d + 1) * 4 + n * 12
    if method == "cdist":
        return 2 * n * k * 4 + (n + k) * (d + 2) * 4 + n * 8
    if method == "vqp":
        return 20 * n * k + 2 * n * d * 4 + 3 * k * d * 4 + n * 8
    raise ValueError(method)


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def cell(res: Result | None, key: str) -> str:
    """A table cell: the value, or why there is none."""
    if res is None:
        return "—"
    status = res["status"]
    if status == "ok":
        return fmt_time(res["time_s"]) if key == "time_s" else fmt_bytes(res["peak_bytes"])
    if status == "skip":
        return f"skip (~{res['est_bytes'] / GB:.1f} GB)"
    return status


def ratio(num: Result | None, den: Result | None, key: str) -> str:
    if not (num and den and num["status"] == "ok" and den["status"] == "ok"):
        return "—"
    if den[key] <= 0:
        return "inf" if num[key] > 0 else "—"
    return f"{num[key] / den[key]:.3g}x"


def reproduce_command(args: argparse.Namespace, max_gb: float) -> str:
    """The command line, every option spelled out with its resolved value, that reruns this table."""
    parts = ["python", "benchmarks/nearest_code.py", "--device", args.device, "--dtype", args.dtype]
    if args.quick:
        parts.append("--quick")
    else:
        for flag, values, default in (
            ("--N", args.N, GRID_N),
            ("--K", args.K, GRID_K),
            ("--D", args.D, GRID_D),
        ):
            if values and tuple(values) != default:
                parts += [flag, *map(str, values)]
    parts += ["--methods", ",".join(args.methods), "--repeats", str(args.repeats)]
    parts += [
        "--time-budget",
        f"{args.time_budget:g}",
        "--max-gb",
        f"{max_gb:.1f}",
        "--timeout",
        f"{args.timeout:g}",
    ]
    parts += ["--seed", str(args.seed)]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    if args.json:
        parts += ["--json", args.json]
    return shlex.join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    p.add_argument("--quick", action="store_true", help=f"smoke grid N{QUICK_N} K{QUICK_K} D{QUICK_D}")
    p.add_argument("--N", type=int, nargs="+", help=f"rows of x (default {GRID_N})")
    p.add_argument("--K", type=int, nargs="+", help=f"codebook sizes (default {GRID_K})")
    p.add_argument("--D", type=int, nargs="+", help=f"code dimensions (default {GRID_D})")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of zoo,cdist,vqp")
    p.add_argument("--repeats", type=int, default=None, help="timed calls after the first (5 CPU, 20 CUDA)")
    p.add_argument("--time-budget", type=float, default=30.0, help="stop timed repeats after this many s")
    p.add_argument("--max-gb", type=float, default=None, help="skip a method whose estimated peak is larger")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement (incl. startup)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in the workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(METHODS)
    if unknown or not args.methods:
        p.error(f"--methods takes a subset of {','.join(METHODS)}, got {sorted(unknown) or 'nothing'}")
    return args


def progress(total: int) -> Any:
    """tqdm on stderr when installed, plain lines otherwise."""
    try:
        from tqdm import tqdm

        return tqdm(total=total, file=sys.stderr, dynamic_ncols=True)
    except ImportError:

        class Plain:
            def __init__(self) -> None:
                self.n = 0

            def set_description(self, text: str) -> None:
                print(f"[{self.n + 1}/{total}] {text}", file=sys.stderr, flush=True)

            def update(self, k: int = 1) -> None:
                self.n += k

            def write(self, text: str) -> None:
                print(text, file=sys.stderr, flush=True)

            def close(self) -> None:
                pass

        return Plain()


def target_lines(
    device: str, rows: dict[tuple[int, int, int], dict[str, Result]], ds: Sequence[int]
) -> list[str]:
    """Pass/fail of the goals the kernel was written for, on the configs that define them."""

    def ok(res: Result | None) -> bool:
        return bool(res and res["status"] == "ok")

    if not any(key[:2] == (TARGET_N, TARGET_K) for key in rows):
        return [f"- N={TARGET_N}, K={TARGET_K} is not in this grid"]
    lines = []
    for d in ds:
        cfg = rows.get((TARGET_N, TARGET_K, d))
        zoo, cdist = (cfg or {}).get("zoo"), (cfg or {}).get("cdist")
        where = f"N={TARGET_N}, K={TARGET_K}, D={d}"
        need_cdist = device == "cpu" or d == 8
        if not (ok(zoo) and (ok(cdist) or not need_cdist)):
            lines.append(
                f"- {where}: not measured (zoo {cell(zoo, 'time_s')}, cdist {cell(cdist, 'time_s')})"
            )
            continue
        assert zoo is not None
        speed = cdist["time_s"] / zoo["time_s"] if cdist and ok(cdist) else float("nan")
        if device == "cpu":
            mem = cdist["peak_bytes"] / zoo["peak_bytes"] if zoo["peak_bytes"] > 0 else float("inf")
            lines.append(
                f"- {where}: zoo peak >= 10x lower than cdist: {'PASS' if mem >= 10 else 'FAIL'} "
                f"({mem:.3g}x); "
                f"zoo time <= cdist time: {'PASS' if speed >= 1 else 'FAIL'} (cdist/zoo {speed:.3g}x)"
            )
        else:
            parts = []
            if d == 8:
                parts.append(
                    f"zoo >= 5x faster than cdist: {'PASS' if speed >= 5 else 'FAIL'} ({speed:.3g}x)"
                )
            if d >= 64 and "roofline" in zoo:
                r = zoo["roofline"]
                parts.append(
                    f"zoo within 2x of the matmul roofline: {'PASS' if r <= 2 else 'FAIL'} ({r:.3g}x)"
                )
            if parts:
                lines.append(f"- {where}: " + "; ".join(parts))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args._worker:
        worker_main()
        return 0
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device == "cuda"
    if args.repeats is None:
        args.repeats = 20 if cuda else 5
    ns = QUICK_N if args.quick else tuple(args.N or GRID_N)
    ks = QUICK_K if args.quick else tuple(args.K or GRID_K)
    ds = QUICK_D if args.quick else tuple(args.D or GRID_D)

    load_start = os.getloadavg()
    worker = Worker()
    info = worker.ask(
        {"op": "info", "device": args.device, "dtype": args.dtype, "threads": args.threads}, 300
    )
    if info["status"] != "ok":
        print(f"cannot start a worker on {args.device}: {info.get('error')}", file=sys.stderr)
        worker.close(kill=True)
        return 1
    if not cuda:
        worker.close()  # CPU measurements each get a fresh process, for a clean ru_maxrss
    avail = info["free_bytes"] if cuda else mem_available_bytes()
    max_gb = args.max_gb if args.max_gb is not None else BUDGET_FRACTION * avail / GB
    notes: list[str] = []
    methods = list(args.methods)
    if "vqp" in methods and info.get("vqp_version") is None:
        notes.append(f"vqp skipped: vector-quantize-pytorch unavailable ({info.get('vqp_error')})")
    elif "vqp" in methods and info["vqp_check_agree"] < 0.99:
        notes.append(f"WARNING: vqp and zoo ids agree on only {info['vqp_check_agree']:.1%} of a small case")

    configs = [(n, k, d) for n in ns for k in ks for d in ds]
    rows: dict[tuple[int, int, int], dict[str, Result]] = {}
    records: list[Result] = []
    bar = progress(len(configs) * len(methods))
    for n, k, d in configs:
        row = rows.setdefault((n, k, d), {})
        for method in methods:
            bar.set_description(f"{method} N={n} K={k} D={d}")
            inputs = (n + k) * d * ITEMSIZE[args.dtype]
            est = estimate_bytes(method, n, k, d, info["zoo_chunk_elements"])
            if method == "vqp" and info.get("vqp_version") is None:
                res: Result = {"status": "n/a", "error": info.get("vqp_error")}
            elif est + inputs > max_gb * GB:
                res = {"status": "skip"}
            else:
                req = {
                    "op": "measure", "method": method, "N": n, "K": k, "D": d, "device": args.device,
                    "dtype": args.dtype, "repeats": args.repeats, "time_budget": args.time_budget,
                    "threads": args.threads, "seed": args.seed,
                    "limit_bytes": None if cuda else int(max_gb * GB) + inputs,
                }  # fmt: skip
                if not worker.alive():
                    worker = Worker()
                res = worker.ask(req, args.timeout)
                if not cuda or res["status"] != "ok":  # CUDA errors can be sticky: start afresh
                    worker.close(kill=res["status"] == "timeout")
            res.update(method=method, N=n, K=k, D=d, est_bytes=est)
            if res["status"] not in ("ok", "skip", "n/a"):
                bar.write(f"{method} N={n} K={k} D={d}: {res['status']}: {res.get('error')}")
            row[method] = res
            bar.update(1)
        zoo_ids = row.get("zoo", {}).get("ids_head")
        for method, res in row.items():
            if res["status"] == "ok" and zoo_ids is not None and method != "zoo":
                theirs = res["ids_head"]
                res["agree_with_zoo"] = sum(a == b for a, b in zip(zoo_ids, theirs)) / len(theirs)
            if cuda and method == "zoo" and res["status"] == "ok":
                res["roofline_s"] = 2 * n * k * d / (info["peak_tflops"] * 1e12)
                res["roofline"] = res["time_s"] / res["roofline_s"]
        for res in row.values():
            records.append({key: val for key, val in res.items() if key != "ids_head"})
    bar.close()
    if worker.alive():
        worker.close()

    # ---- report ----
    threads = info["threads"]
    header = (
        f"device: {info['device_name']} ({args.device}) | torch {info['torch']} | dtype {args.dtype} | "
        f"threads {threads} | zoo backend {info['zoo_backend']} | vqp {info.get('vqp_version') or 'n/a'} | "
        f"memory budget {max_gb:.1f} GB | load avg at start {load_start[0]:.2f}"
    )
    if cuda:
        header += f" | matmul peak {info['peak_tflops']:.1f} TFLOP/s (allow_tf32={info['allow_tf32']})"
    cols = ["N", "K", "D", "zoo time", "cdist time", "vqp time", "zoo peak", "cdist peak", "vqp peak"]
    cols += ["cdist/zoo time", "cdist/zoo mem", "vqp/zoo time", "vqp/zoo mem"]
    if cuda:
        cols.append("zoo/roofline")
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for (n, k, d), row in rows.items():
        z, c, v = row.get("zoo"), row.get("cdist"), row.get("vqp")
        cells = [str(n), str(k), str(d)]
        cells += [cell(r, "time_s") for r in (z, c, v)] + [cell(r, "peak_bytes") for r in (z, c, v)]
        cells += [
            ratio(c, z, "time_s"),
            ratio(c, z, "peak_bytes"),
            ratio(v, z, "time_s"),
            ratio(v, z, "peak_bytes"),
        ]
        if cuda:
            cells.append(f"{z['roofline']:.2f}x" if z and "roofline" in z else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if cuda:
        lines.append(
            "time: median of CUDA-event-timed calls after one warmup call; peak: max_memory_allocated over "
            "all calls - memory_allocated before them (PyTorch allocator). roofline = 2*N*K*D / matmul peak."
        )
    else:
        lines.append(
            "time: median wall time (perf_counter) of the calls after one warmup call; peak: growth of the "
            "process RSS high-water mark (ru_maxrss, reset after the inputs were allocated) over all calls, "
            "one fresh process per cell."
        )
    for method in ("cdist", "vqp"):
        agree = [r["agree_with_zoo"] for r in records if r["method"] == method and "agree_with_zoo" in r]
        if agree:
            lines.append(f"ids agreeing with zoo (first {CHECK_ROWS} rows): {method} min {min(agree):.2%}")
    if "vqp_check_agree" in info:
        lines.append(
            f"vqp codebook check (N=512, K=256, D=16): {info['vqp_check_agree']:.2%} ids agree with zoo"
        )
    lines += [f"note: {note}" for note in notes]
    if "zoo" in methods and "cdist" in methods:
        targets = target_lines(args.device, rows, ds)
        if targets:
            lines += ["", "targets:", *targets]
    command = reproduce_command(args, max_gb)
    lines += ["", f"reproduce: {command}"]
    print("\n".join(lines))

    if args.json:
        meta = {**info, "args": vars(args), "max_gb": max_gb, "command": command}
        meta.update(loadavg_start=load_start, loadavg_end=os.getloadavg(), time=time.strftime("%FT%T%z"))
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
