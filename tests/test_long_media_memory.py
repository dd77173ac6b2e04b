"""Long inputs without quadratic memory: a minute or two of audio through the tiny codecs stays under a
fixed ceiling (attention over every frame used to build ``T x T`` scores: 18 GB for a minute of
wavtokenizer_tiny, 5.7 GB for a minute of cat_tiny). Each run is its own process so its peak is its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

# the peak is read from VmHWM (this process's own address space); ru_maxrss would carry over the high-water
# mark of the pytest process that forked it
SCRIPT = """
import sys, torch, zoo
torch.set_num_threads(1)
model = zoo.create(sys.argv[1]).eval()
x = torch.randn(1, model.channels, int(model.sample_rate * float(sys.argv[2]))) * 0.1
with torch.inference_mode():
    tokens = model.encode(x)
    y = model.decode(tokens)
assert y.shape == x.shape, (y.shape, x.shape)
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kib / 2**20)
"""


@pytest.mark.parametrize(
    ("arch", "seconds", "ceiling_gib"), [("cat_tiny", 120, 1.5), ("wavtokenizer_tiny", 60, 1.5)]
)
def test_long_audio_encodes_and_decodes_under_a_memory_ceiling(
    arch: str, seconds: int, ceiling_gib: float
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, arch, str(seconds)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak = float(done.stdout.strip().splitlines()[-1])
    assert peak < ceiling_gib, f"{arch}: {seconds} s peaked at {peak:.2f} GiB (ceiling {ceiling_gib} GiB)"
