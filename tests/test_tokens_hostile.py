"""Token files edited or damaged by hand: any header a user (or a bug) can write is either a valid
``Tokens`` or one ``MediaError`` naming the file, never a traceback from inside a decoder or a silently
wrong length. Property-based over the header's fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import zoo
from zoo.errors import MediaError
from zoo.tokens import Tokens

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


def write(path: Path, header: dict, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path), metadata={"zoo.tokens": json.dumps(header, allow_nan=True)})
    return path


def valid_header() -> dict:
    return {
        "format": "zoo.tokens",
        "version": 1,
        "grid": [4],
        "codebook_sizes": [64],
        "meta": {"num_samples": 96, "sample_rate": 24000},
        "model": "x",
        "revision": None,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(
        ["grid", "codebook_sizes", "meta", "num_samples", "sample_rate", "window_stride", "version"]
    ),
    value=JSON_VALUES,
)
def test_any_header_value_loads_or_is_one_media_error(tmp_path: Path, field: str, value: object) -> None:
    header = valid_header()
    if field in ("num_samples", "sample_rate", "window_stride"):
        header["meta"][field] = value
    else:
        header[field] = value
    path = write(tmp_path / "t.tokens.safetensors", header, {"ids": torch.zeros(1, 4, dtype=torch.long)})
    try:
        tokens = Tokens.load(path)
    except MediaError as exc:
        assert str(path) in str(exc)
        return
    # what loads is consistent: the fields the decoders read are usable as they are
    for key in ("num_samples", "window_stride"):
        if key in tokens.meta:
            assert isinstance(tokens.meta[key], int) and tokens.meta[key] > 0
    if "sample_rate" in tokens.meta:
        assert float(tokens.meta["sample_rate"]) > 0
    assert all(g >= 0 for g in tokens.grid) and all(c > 0 for c in tokens.codebook_sizes)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"num_samples": -5}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
        ({"window_stride": 0}, "window_stride"),
        ({"sample_rate": float("nan")}, "sample_rate"),
    ],
)
def test_tampered_metadata_is_refused_by_name(tmp_path: Path, meta: dict, message: str) -> None:
    header = valid_header()
    header["meta"].update(meta)
    path = write(tmp_path / "t.tokens.safetensors", header, {"ids": torch.zeros(1, 4, dtype=torch.long)})
    with pytest.raises(MediaError, match=message):
        Tokens.load(path)


def test_non_finite_side_tensors_are_refused(tmp_path: Path) -> None:
    header = valid_header()
    tensors = {"ids": torch.zeros(1, 4, dtype=torch.long), "side.gain": torch.tensor([[float("inf")]])}
    with pytest.raises(MediaError, match="gain"):
        Tokens.load(write(tmp_path / "t.tokens.safetensors", header, tensors))


def test_a_valid_file_still_decodes(tmp_path: Path) -> None:
    model = zoo.create("wavtokenizer_tiny").eval()
    tokens = model.encode(torch.randn(1, 1, 1000) * 0.1)
    tokens.save(tmp_path / "a.tokens.safetensors")
    again = Tokens.load(tmp_path / "a.tokens.safetensors")
    assert again.equal(tokens) and model.decode(again).shape[-1] == 1000


def test_an_out_of_range_id_is_named_with_the_codebook_size() -> None:
    model = zoo.create("vq16_tiny").eval()
    tokens = model.encode(torch.rand(1, 3, 32, 32))
    tokens.ids[0, 2, 3] = 300
    with pytest.raises(
        ValueError, match=r"1 id\(s\) outside the codebook of 256 codes, e.g. 300 at \(0, 2, 3\)"
    ):
        model.decode(tokens)
    tokens.ids[0, 2, 3] = -1
    with pytest.raises(ValueError, match="-1 is padding"):
        model.decode(tokens)


@pytest.mark.parametrize("arch", ["biocodec_tiny", "tfm_tokenizer_tiny"])
def test_eeg_tokens_without_their_gains_are_refused(arch: str) -> None:
    model = zoo.create(arch).eval()
    tokens = model.encode(torch.randn(1, 2, model.window_samples) * 30)
    assert model.decode(tokens).shape == (1, 2, model.window_samples)
    stripped = Tokens(
        ids=tokens.ids,
        grid=tokens.grid,
        codebook_sizes=tokens.codebook_sizes,
        meta=tokens.meta,
        side={"offset": tokens.side["offset"]},
    )
    with pytest.raises(ValueError, match="carry no 'gain'"):
        model.decode(stripped)
    negative = Tokens(
        ids=tokens.ids,
        grid=tokens.grid,
        codebook_sizes=tokens.codebook_sizes,
        meta=tokens.meta,
        side={"offset": tokens.side["offset"], "gain": -tokens.side["gain"]},
    )
    with pytest.raises(ValueError, match="must be positive"):
        model.decode(negative)
