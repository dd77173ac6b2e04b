"""Media that lies about itself: a WAV file whose header promises more audio than it holds is refused by
name, not encoded as if it were the whole recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from zoo.errors import MediaError
from zoo.io import read_audio


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_truncated_wav_is_refused(tmp_path: Path, subtype: str) -> None:
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.sin(np.arange(16000) / 10).astype(np.float32) * 0.3, 16000, subtype=subtype)
    wav, rate = read_audio(whole)
    assert wav.shape == (1, 16000) and rate == 16000
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    assert sf.info(cut).frames < 16000  # libsndfile alone would read the half that is there
    with pytest.raises(MediaError, match=r"cut.wav.*truncated: its header promises \d+ bytes"):
        read_audio(cut)


def test_a_wav_with_trailing_chunks_or_a_streaming_header_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros(800, np.float32), 8000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data += b"LIST" + (4).to_bytes(4, "little") + b"INFO"  # metadata after the audio
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert read_audio(path)[0].shape == (1, 800)
    index = bytes(data).index(b"data")
    data[index + 4 : index + 8] = (0xFFFFFFFF).to_bytes(
        4, "little"
    )  # a writer that never finished the header
    path.write_bytes(bytes(data[: index + 8 + 1600]))
    assert read_audio(path)[0].shape[1] > 0
