"""The EEG tokenizer contract shared by BioCodec and TFM-Tokenizer: windows and their reassembly,
per-channel gains, any montage, channel selection, resampling and bad-channel errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.errors import MediaError
from zoo.io import EEGRecording, read_eeg
from zoo.io.eeg import bad_channels
from zoo.tokenizer import EEGTokenizer


class HoldQuantizer(EEGTokenizer):
    """Mean over each hop, then a two-stage residual uniform quantizer: exact bookkeeping to test against."""

    def __init__(self, *, residual: bool = True, window_samples: int = 50) -> None:
        super().__init__()
        self.sample_rate, self.window_samples, self.hop_length = 100.0, window_samples, 5
        self.residual = residual
        self.levels = torch.nn.Parameter(torch.linspace(-4, 4, 33), requires_grad=False)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (33, 33) if self.residual else (33,)

    def _nearest(self, v: torch.Tensor, scale: float) -> torch.Tensor:
        return (v[..., None] - self.levels * scale).abs().argmin(-1)

    def encode_windows(self, x: torch.Tensor) -> torch.Tensor:
        means = F.avg_pool1d(x, self.hop_length)[:, 0]
        first = self._nearest(means, 1.0)
        if not self.residual:
            return first
        second = self._nearest(means - self.levels[first], 1 / 8)
        return torch.stack([first, second], 1)

    def decode_windows(self, ids: torch.Tensor) -> torch.Tensor:
        values = self.levels[ids] if ids.ndim == 2 else self.levels[ids[:, 0]] + self.levels[ids[:, 1]] / 8
        return values.repeat_interleave(self.hop_length, -1)[:, None]


def _blocky(b: int, c: int, t: int, seed: int = 0) -> torch.Tensor:
    """Signals constant over each 5-sample hop, with channel-specific offsets and gains (microvolt-like)."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randn(b, c, -(-t // 5), generator=g).repeat_interleave(5, -1)[..., :t]
    return 40 * torch.rand(b, c, 1, generator=g) * blocks + 100 * torch.randn(b, c, 1, generator=g)


@pytest.mark.parametrize("overlap", [0.0, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("length", [7, 50, 51, 173])
def test_windows_reassemble_exactly(overlap: float, length: int) -> None:
    model = HoldQuantizer()
    x = torch.randn(2, 3, length, dtype=torch.float64)
    stride = model.window_stride(overlap)
    windows = model.to_windows(x, stride)
    assert windows.shape[:3] == (2, 3, 1 + -(-max(length - 50, 0) // stride))
    torch.testing.assert_close(model.from_windows(windows, stride, length), x)


def test_cross_fades_blend_disagreeing_windows_linearly() -> None:
    model = HoldQuantizer()
    windows = torch.stack([torch.zeros(50), torch.ones(50)])[None, None].double()
    out = model.from_windows(windows, 30, 80)[0, 0]
    assert torch.all(out[:30] == 0) and torch.all(out[50:] == 1)
    fade = out[30:50]
    assert torch.all(fade.diff() > 0) and fade[0] < 0.05 and fade[-1] > 0.95


@pytest.mark.parametrize("residual", [False, True])
def test_round_trip_keeps_shape_units_and_channel_order(residual: bool) -> None:
    model = HoldQuantizer(residual=residual).eval()
    x = _blocky(2, 5, 235)  # whole hops: the hold model averages the zero padding into a partial one
    tokens = model.encode(x, overlap=0.5)
    windows = 1 + -(-(235 - 50) // 25)
    assert tokens.grid == (5, windows, 10)
    assert tokens.ids.shape == ((2, 2, 5, windows, 10) if residual else (2, 5, windows, 10))
    assert set(tokens.side) == {"offset", "gain"} and tokens.side["gain"].shape == (2, 5)
    out = model.decode(tokens)
    assert out.shape == x.shape
    gain = tokens.side["gain"][..., None]
    step = 0.25 / 8 if residual else 0.25  # the finest level spacing, in normalised units
    assert bool(((out - x).abs() <= gain * step / 2 + 1e-3).all())
    # each channel is tokenized on its own: permuting channels permutes tokens
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.equal(model.encode(x[:, perm], overlap=0.5).ids, tokens.ids[..., perm, :, :])


def test_batch_equals_single_items_and_files_round_trip(tmp_path) -> None:
    from zoo import Tokens

    model = HoldQuantizer().eval()
    x = _blocky(3, 2, 120, seed=1)
    batch = model.encode(x, overlap=0.2)
    for i in range(3):
        single = model.encode(x[i : i + 1], overlap=0.2)
        assert single.equal(batch[i])
        torch.testing.assert_close(model.decode(single), model.decode(batch)[i : i + 1])
    loaded = Tokens.load(batch.save(tmp_path / "t.safetensors"))
    assert torch.equal(model.decode(loaded), model.decode(batch))


def test_drop_partial_keeps_whole_windows_with_whole_recording_statistics() -> None:
    """Upstream data scripts keep whole windows only; the per-recording statistics still see every sample."""
    model = HoldQuantizer().eval()
    x = _blocky(1, 2, 173, seed=2)
    full, whole = model.encode(x), model.encode(x, drop_partial=True)
    assert (full.grid[1], whole.grid[1]) == (4, 3) and whole.meta["num_samples"] == 150
    assert torch.equal(whole.ids, full.ids[..., :3, :])
    torch.testing.assert_close(whole.side["gain"], full.side["gain"])
    assert model.decode(whole).shape == (1, 2, 150)
    with pytest.raises(ValueError, match="whole window"):
        model.encode(x[..., :40], drop_partial=True)


def test_windows_go_through_the_model_in_bounded_chunks() -> None:
    """Memory stays flat in the recording's length: at most ``window_batch`` windows per model call."""
    model = HoldQuantizer().eval()
    x = _blocky(2, 3, 517, seed=3)
    reference = model.encode(x)
    sizes: list[int] = []
    encode_windows = model.encode_windows
    model.encode_windows = lambda w: sizes.append(len(w)) or encode_windows(w)  # type: ignore[method-assign]
    model.window_batch = 4
    chunked = model.encode(x)
    assert torch.equal(chunked.ids, reference.ids) and max(sizes) == 4 and sum(sizes) == 2 * 3 * 11
    torch.testing.assert_close(model.decode(chunked), model.decode(reference))


def test_per_window_normalisation_round_trips_in_the_inputs_units() -> None:
    """With ``normalise_windows`` each window carries its own offset and gain, undone before blending."""
    model = HoldQuantizer(residual=True).eval()
    model.normalise_windows = True
    x = _blocky(2, 3, 200, seed=4) * torch.tensor([1.0, 1.0, 30.0, 30.0]).repeat_interleave(50)
    tokens = model.encode(x, overlap=0.5)
    assert tokens.side["gain"].shape == (2, 3, tokens.grid[1])
    windows = model.to_windows(x, 25)
    torch.testing.assert_close(tokens.side["offset"], windows.double().mean(-1).float())
    out = model.decode(tokens)
    assert out.shape == x.shape and bool(((out - x).abs() <= 0.06 * x.abs().amax(-1, keepdim=True)).all())
    for i in range(2):
        assert model.encode(x[i : i + 1], overlap=0.5).equal(tokens[i])


def test_bad_tensors_and_tokens_are_rejected() -> None:
    model = HoldQuantizer()
    with pytest.raises(ValueError, match=r"expected EEG \[B, C, T\]"):
        model.encode(torch.zeros(3, 100))
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.full((1, 2, 100), float("nan")))
    with pytest.raises(ValueError, match="overlap"):
        model.encode(torch.zeros(1, 2, 100), overlap=1.0)
    tokens = model.encode(_blocky(1, 2, 60))
    tokens.ids[0, 0, 0, 0, 0] = 33
    with pytest.raises(ValueError, match="outside the codebook"):
        model.decode(tokens)


def test_bad_channels_are_named() -> None:
    t = torch.arange(1000) / 100
    good = 20 * torch.sin(2 * torch.pi * 3 * t) + torch.randn(1000)
    flat = torch.full((1000,), 3.0)
    clipped = good.clamp(-15, 15)
    holey = good.clone()
    holey[5] = float("nan")
    spiky = good.clone()
    spiky[::97] = 80.0  # isolated extremes are not clipping
    data = torch.stack([good, flat, clipped, holey, spiky])
    problems = bad_channels(data, ["Cz", "Ref", "Fp1", "O2", "Pz"])
    assert set(problems) == {"Ref", "Fp1", "O2"}
    assert "flat" in problems["Ref"] and "clipped" in problems["Fp1"] and "NaN" in problems["O2"]
    rec = EEGRecording(data, 100.0, ["Cz", "Ref", "Fp1", "O2", "Pz"], path="rec.edf")
    model = HoldQuantizer()
    with pytest.raises(MediaError, match=r"rec\.edf.*Ref: flat.*Fp1: clipped.*O2: 1 NaN"):
        model.prepare(rec)
    x = model.prepare(rec, channels=["Pz", "Cz"])
    assert x.shape == (1, 2, 1000) and torch.equal(x[0, 1], good)
    assert model.media_meta(rec, channels=["Pz", "Cz"]) == {"channel_names": ["Pz", "Cz"]}


def test_real_recording_of_any_montage_and_rate(shared_data) -> None:
    rec = read_eeg(shared_data / "eeg/mne_testing/EDF/test_edf_overlapping_annotations.edf")
    model = HoldQuantizer().eval()
    x = model.prepare(rec, channels=rec.channel_names[:7])
    assert x.shape == (1, 7, round(rec.data.shape[1] * 100 / rec.sample_rate))
    tokens = model.encode(x, overlap=0.25)
    tokens.meta.update(model.media_meta(rec, channels=rec.channel_names[:7]))
    out = model.decode(tokens)
    assert out.shape == x.shape
    # a 5-sample hold of real EEG at 100 Hz keeps the slow part of the signal
    corr = torch.corrcoef(torch.stack([out.flatten(), x.flatten()]))[0, 1]
    assert corr > 0.8, corr
    finished = model.finish(out, tokens)
    assert finished.channel_names == rec.channel_names[:7] and finished.sample_rate == 100.0
