"""Peak memory and time of encode + decode on long inputs, per tokenizer, to see whether memory is flat in
the input's length (issue 17): each (model, length) runs in its own process, whose peak resident memory is
read from ``/proc/self/status`` (``VmHWM``: that process's own high-water mark).

    python benchmarks/long_media.py                                   # tiny audio codecs at 60 s and 600 s
    python benchmarks/long_media.py --models cat_tiny --seconds 30 120 600

Random weights and random input (memory and time do not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys

WORKER = """
import json, sys, time, torch, zoo
torch.set_num_threads(int(sys.argv[3]))
model = zoo.create(sys.argv[1]).eval()
seconds = float(sys.argv[2])
if model.modality == "eeg":
    x = torch.randn(1, 64, int(model.sample_rate * seconds)) * 20
else:
    x = torch.randn(1, model.channels, int(model.sample_rate * seconds)) * 0.1
start = time.perf_counter()
with torch.inference_mode():
    tokens = model.encode(x)
    y = model.decode(tokens)
elapsed = time.perf_counter() - start
assert y.shape == x.shape, (tuple(y.shape), tuple(x.shape))
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_gib": peak / 2**20, "seconds": elapsed, "input_gib": x.numel() * 4 / 2**30}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["cat_tiny", "wavtokenizer_tiny", "reasoningcodec_tiny", "sqcodec_tiny"],
    )
    parser.add_argument("--seconds", nargs="+", type=float, default=[60.0, 600.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--timeout", type=int, default=1800, help="seconds per run before it is reported as such"
    )
    args = parser.parse_args(argv)

    print("| model | input (s) | input (GiB) | peak (GiB) | encode + decode (s) |")
    print("|---|---|---|---|---|")
    for model in args.models:
        for seconds in args.seconds:
            try:
                done = subprocess.run(
                    [sys.executable, "-c", WORKER, model, str(seconds), str(args.threads)],
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                print(f"| {model} | {seconds:g} | - | - | over {args.timeout} s |", flush=True)
                continue
            if done.returncode != 0:
                reason = (
                    "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip().splitlines()[-1]
                )
                print(f"| {model} | {seconds:g} | - | - | failed: {reason} |", flush=True)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {model} | {seconds:g} | {row['input_gib']:.3f} | {row['peak_gib']:.2f} | {row['seconds']:.1f} |",
                flush=True,
            )
    print(f"\nRerun: python benchmarks/long_media.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
