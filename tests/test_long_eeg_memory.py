"""Long EEG without memory growing in its length (issue 17: an hour of 64-channel EEG took about 35 GB).
``EEGTokenizer.encode``/``decode`` cut, normalise, tokenize and blend ``window_batch`` windows at a time;
these tests check that this gives exactly what the whole-recording computation gave (the hour of
64-channel EEG under a memory ceiling is in tests/test_long_media_memory.py)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.tokenizer import EEGTokenizer
from zoo.tokens import Tokens


def whole_recording_encode(
    model: EEGTokenizer, x: torch.Tensor, overlap: float, drop_partial: bool
) -> Tokens:
    """``encode`` as it was before it worked in blocks: every window of the recording cut, normalised and
    gathered at once (only the model calls went ``window_batch`` at a time)."""
    b, c, length = x.shape
    stride = model.window_stride(overlap)
    x = x.float()
    if not model.normalise_windows:
        offset, gain = model.channel_statistics(x)
    if drop_partial:
        length = (length - model.window_samples) // stride * stride + model.window_samples
        x = x[..., :length]
    if model.normalise_windows:
        windows = model.to_windows(x, stride)
        offset, gain = model.channel_statistics(windows)
        windows = model.normalise(windows, offset, gain)
    else:
        windows = model.to_windows(model.normalise(x, offset, gain), stride)
    count = windows.shape[2]
    flat = windows.reshape(-1, 1, model.window_samples)
    ids = torch.cat([model.encode_windows(chunk) for chunk in flat.split(model.window_batch)])
    frames = ids.shape[-1]
    ids = ids.reshape(b, c, count, *ids.shape[1:])
    if ids.ndim == 5:
        ids = ids.permute(0, 3, 1, 2, 4)
    meta = {"num_samples": length, "window_stride": stride}
    return Tokens(
        ids=ids.contiguous(),
        grid=(c, count, frames),
        codebook_sizes=model.codebook_sizes,
        side={"offset": offset, "gain": gain},
        meta=meta,
    )


def whole_recording_decode(model: EEGTokenizer, tokens: Tokens) -> torch.Tensor:
    """``decode`` as it was before it worked in blocks: every window decoded, then all blended at once."""
    ids = tokens.ids
    c, count, _ = tokens.grid
    if ids.ndim == 5:
        ids = ids.permute(0, 2, 3, 1, 4)
    b = ids.shape[0]
    flat = ids.reshape(b * c * count, *ids.shape[3:])
    windows = torch.cat([model.decode_windows(chunk) for chunk in flat.split(model.window_batch)])
    windows = windows.reshape(b, c, count, -1)[..., : model.window_samples].float()
    stride, length = tokens.meta["window_stride"], tokens.meta["num_samples"]
    offset, gain = (t.to(windows) for t in (tokens.side["offset"], tokens.side["gain"]))
    if gain.ndim == 3:
        return model.from_windows(windows * gain[..., None] + offset[..., None], stride, length)
    return model.from_windows(windows, stride, length) * gain[..., None] + offset[..., None]


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("biocodec_tiny", {}),  # median and IQR of each whole channel, clipped
        ("biocodec_tiny", {"normalisation": "zscore"}),
        ("tfm_tokenizer_tiny", {}),  # 95th percentile of each window
    ],
)
@pytest.mark.parametrize(("overlap", "drop_partial"), [(0.0, False), (0.5, True), (0.75, False)])
def test_blocked_encode_and_decode_equal_the_whole_recording_computation(
    arch: str, options: dict, overlap: float, drop_partial: bool
) -> None:
    torch.manual_seed(0)
    model = zoo.create(arch, **options).eval()
    model.window_batch = 7  # calls whose windows straddle channels and batch items
    model.statistics_samples = 2 * model.window_samples  # channels' statistics one row at a time
    length = 2 * model.window_samples + 37  # at 0.75 overlap, four windows cover most samples
    x = torch.randn(2, 2, length) * 30 + torch.randn(2, 2, 1) * 100
    with torch.inference_mode():
        blocked = model.encode(x, overlap=overlap, drop_partial=drop_partial)
        reference = whole_recording_encode(model, x, overlap, drop_partial)
        assert torch.equal(blocked.ids, reference.ids) and blocked.grid == reference.grid
        for name in ("offset", "gain"):
            assert torch.equal(blocked.side[name], reference.side[name]), name
        assert blocked.meta["num_samples"] == reference.meta["num_samples"]
        assert torch.equal(model.decode(blocked), whole_recording_decode(model, reference))
