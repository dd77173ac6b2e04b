"""Long media through every audio and EEG tokenizer's tiny size, each under a fixed memory ceiling: memory
must not grow with the input's length (issue 17).

- Ten minutes of audio. Attention over every frame used to build ``T x T`` scores (18 GB for one minute
  of wavtokenizer_tiny, 5.7 GB for one minute of cat_tiny) and the convolutional codecs held full-rate
  activations of the whole clip (3.3 GB for ten minutes of sqcodec_tiny). Ten minutes of 24 kHz float
  audio are 0.054 GiB.
- An hour of 64-channel EEG (about 35 GB when every window went through the model at once). Input and
  output are 0.21 GiB (BioCodec, 250 Hz) or 0.17 GiB (TFM, 200 Hz) each, BioCodec's ids 0.08 GiB.

A torch process starts at about 0.55 GiB. Each run is its own process (its peak, ``VmHWM``, is its own;
``ru_maxrss`` would carry pytest's across ``exec``); two run at a time, one thread each, longest first,
to keep the suite's wall time down (about 4-5 minutes for all six on two cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from long_media import WORKER

# (model, seconds of input, ceiling in GiB), longest run first
RUNS = [
    ("biocodec_tiny", 3600, 1.5),
    ("wavtokenizer_tiny", 600, 1.25),
    ("tfm_tokenizer_tiny", 3600, 1.2),
    ("sqcodec_tiny", 600, 1.25),
    ("reasoningcodec_tiny", 600, 1.25),
    ("cat_tiny", 600, 1.25),
]


def _run(arch: str, seconds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WORKER, arch, str(seconds), "1"],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(lambda run: _run(run[0], run[1]), RUNS)
        return {arch: result for (arch, _, _), result in zip(RUNS, done, strict=True)}


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "seconds", "ceiling_gib"), RUNS)
def test_long_media_encode_and_decode_under_a_memory_ceiling(
    arch: str, seconds: int, ceiling_gib: float, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    done = runs[arch]
    assert done.returncode == 0, done.stderr[-2000:]
    peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_gib"]
    assert peak < ceiling_gib, f"{arch}: {seconds} s peaked at {peak:.2f} GiB (ceiling {ceiling_gib} GiB)"
