"""Test-wide setup: an isolated Hugging Face cache, a loopback Hub, real data when it is present.

huggingface_hub reads HF_HOME and friends when it is imported, so they are set here, before any test
module imports it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Triton reads this when it is imported: run kernel tests on CPU tensors through its interpreter.
os.environ.setdefault("TRITON_INTERPRET", "1")
_HF_HOME = tempfile.mkdtemp(prefix="zoo-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_HOME, "hub")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_TOKEN"] = "hf_dummy"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_ENDPOINT", None)

import numpy as np
import pytest
import torch
from hub_server import HubServer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def hub_server() -> HubServer:
    server = HubServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The loopback Hub, with zoo pointed at it for this test."""
    monkeypatch.setenv("ZOO_HF_ENDPOINT", hub_server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub_server.clear_log()
    return hub_server


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data bundle not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> dict[str, tuple[torch.Tensor, int]]:
    """Real speech at its stored rates: codec2's 8 kHz and pocketsphinx's 16 kHz recordings."""
    from zoo.io.audio import read_audio

    return {
        "8k": read_audio(shared_data / "audio/codec2/big_dog.wav"),
        "16k": read_audio(shared_data / "audio/pocketsphinx/cards/002.wav"),
    }


def _photo_crops(size: int) -> torch.Tensor:
    """Real photographs shipped inside scikit-image, centre-cropped and resized: [N, 3, size, size] in [0, 1]."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for photo in photos:
        x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float()[None] / 255
        side = min(x.shape[-2:])
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        x = x[..., top : top + side, left : left + side]
        out.append(torch.nn.functional.interpolate(x, size=(size, size), mode="area"))
    return torch.cat(out)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """Four real photos at 32x32, for tiny image models."""
    return _photo_crops(32)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    spin-waits make each small op up to 100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
