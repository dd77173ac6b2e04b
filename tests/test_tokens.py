"""Tokens: layout checks, batching, flat LM sequences and token files."""

from __future__ import annotations

import pytest
import torch

from zoo import Tokens
from zoo.errors import MediaError


def _grid_tokens(batch: int = 3) -> Tokens:
    return Tokens(
        ids=torch.randint(0, 16, (batch, 2, 3)),
        grid=(2, 3),
        codebook_sizes=(16,),
        meta={"image_size": [8, 12]},
    )


def _rvq_tokens(batch: int = 2) -> Tokens:
    ids = torch.stack(
        [torch.randint(0, 8, (batch, 5)), torch.randint(0, 4, (batch, 5))], dim=1
    )  # [B, K=2, T]
    return Tokens(ids=ids, grid=(5,), codebook_sizes=(8, 4), lengths=torch.tensor([5, 3]))


def test_layout_is_validated() -> None:
    with pytest.raises(ValueError, match="expected"):
        Tokens(ids=torch.zeros(2, 4, dtype=torch.long), grid=(2, 3), codebook_sizes=(16,))
    with pytest.raises(TypeError, match="int64"):
        Tokens(ids=torch.zeros(2, 2, 3, dtype=torch.int32), grid=(2, 3), codebook_sizes=(16,))
    with pytest.raises(ValueError, match="ids, latents"):
        Tokens(grid=(2,))


def test_facts() -> None:
    t = _rvq_tokens()
    assert (t.num_codebooks, t.num_positions, t.tokens_per_item, t.vocab_size) == (2, 5, 10, 12)
    assert t.bits_per_item == pytest.approx(5 * (3 + 2))


def test_indexing_and_cat_round_trip() -> None:
    t = _grid_tokens(4)
    parts = [t[i] for i in range(len(t))]
    assert all(len(p) == 1 for p in parts)
    assert Tokens.cat(parts).equal(t)
    assert t[1:3].ids.shape == (2, 2, 3)
    assert t[-1].equal(t[3])


@pytest.mark.parametrize("make", [_grid_tokens, _rvq_tokens])
def test_sequence_round_trip(make) -> None:
    t = make()
    seq = t.to_sequence()
    assert seq.shape == (len(t), t.tokens_per_item)
    back = Tokens.from_sequence(seq, grid=t.grid, codebook_sizes=t.codebook_sizes, meta=t.meta)
    if t.lengths is None:
        assert back.equal(t)
    else:
        assert torch.equal(back.lengths, t.lengths)
        valid = t.mask()
        assert torch.equal(back.ids.transpose(1, 2)[valid], t.ids.transpose(1, 2)[valid])


def test_sequence_offsets_codebooks_and_pads() -> None:
    t = _rvq_tokens()
    seq = t.to_sequence()
    # codebook 1 lives at offset 8 in the flat vocabulary; item 1 is padded past its length of 3
    assert torch.equal(seq[0, 1::2], t.ids[0, 1] + 8)
    assert (seq[1, 6:] == -1).all() and (seq[1, :6] >= 0).all()
    assert seq.max() < t.vocab_size


def test_from_sequence_rejects_bad_sequences() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        Tokens.from_sequence(torch.zeros(1, 7, dtype=torch.long), grid=(2, 3), codebook_sizes=(16,))
    with pytest.raises(ValueError, match="outside"):
        Tokens.from_sequence(torch.full((1, 6), 16), grid=(2, 3), codebook_sizes=(16,))
    with pytest.raises(ValueError, match="end"):
        Tokens.from_sequence(torch.tensor([[1, -1, 2, 3, 4, 5]]), grid=(2, 3), codebook_sizes=(16,))


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_file_round_trip(tmp_path, suffix) -> None:
    t = _rvq_tokens()
    t.model, t.revision = "vq16", "a" * 40
    t.latents = torch.randn(2, 3, 5)
    path = t.save(tmp_path / f"x{suffix}")
    back = Tokens.load(path)
    assert back.equal(t)
    assert (back.model, back.revision) == ("vq16", "a" * 40)


def test_bad_token_files_name_the_file(tmp_path) -> None:
    truncated = tmp_path / "cut.safetensors"
    _grid_tokens().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(MediaError, match="cut.safetensors.*not a readable token file"):
        Tokens.load(truncated)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(MediaError, match="foreign.safetensors.*no zoo.tokens header"):
        Tokens.load(foreign)
    with pytest.raises(MediaError, match="no such token file"):
        Tokens.load(tmp_path / "absent.npz")
    with pytest.raises(MediaError, match="must end in"):
        _grid_tokens().save(tmp_path / "x.pt")
    assert not list(tmp_path.glob(".x.pt*")), "a failed save must not leave temporary files"


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_side_tensors_follow_the_batch_and_the_file(tmp_path, suffix) -> None:
    gains = torch.rand(3, 4, dtype=torch.float64)
    t = Tokens(ids=torch.randint(0, 16, (3, 2, 3)), grid=(2, 3), codebook_sizes=(16,), side={"gain": gains})
    assert torch.equal(t[1].side["gain"], gains[1:2]) and torch.equal(t[1:].side["gain"], gains[1:])
    assert Tokens.cat([t[0], t[1:]]).equal(t)
    loaded = Tokens.load(t.save(tmp_path / f"t{suffix}"))
    assert loaded.equal(t) and loaded.side["gain"].dtype == torch.float64
    assert not loaded.equal(Tokens(ids=t.ids, grid=(2, 3), codebook_sizes=(16,)))
    with pytest.raises(ValueError, match="batch first"):
        Tokens(ids=t.ids, grid=(2, 3), codebook_sizes=(16,), side={"gain": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="identifier"):
        Tokens(ids=t.ids, grid=(2, 3), codebook_sizes=(16,), side={"ids": gains})
    with pytest.raises(ValueError, match="cannot concatenate"):
        Tokens.cat([t, Tokens(ids=t.ids, grid=(2, 3), codebook_sizes=(16,))])
