"""Long inputs without quadratic memory: a minute or two of audio through the tiny codecs stays under a
fixed ceiling (attention over every frame used to build ``T x T`` scores: 18 GB for a minute of
wavtokenizer_tiny, 5.7 GB for a minute of cat_tiny). Each run is its own process so its peak is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

# encode + decode in a child, which reports its own VmHWM peak (ru_maxrss would carry pytest's across exec)
from long_media import WORKER


@pytest.mark.parametrize(
    ("arch", "seconds", "ceiling_gib"), [("cat_tiny", 120, 1.5), ("wavtokenizer_tiny", 60, 1.5)]
)
def test_long_audio_encodes_and_decodes_under_a_memory_ceiling(
    arch: str, seconds: int, ceiling_gib: float
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, arch, str(seconds), "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_gib"]
    assert peak < ceiling_gib, f"{arch}: {seconds} s peaked at {peak:.2f} GiB (ceiling {ceiling_gib} GiB)"
