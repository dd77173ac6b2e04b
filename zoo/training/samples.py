"""PNG renderings of what a training run produces: reconstructions, spectrograms, codebook usage.

Drawn with tensors only (no plotting library), written atomically through ``zoo.io.write_image``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..io import write_image

# A perceptually ordered dark-blue -> teal -> yellow colour ramp (five anchors, linearly blended).
_RAMP = torch.tensor(
    [[0.27, 0.00, 0.33], [0.23, 0.32, 0.55], [0.13, 0.57, 0.55], [0.37, 0.79, 0.38], [0.99, 0.91, 0.14]]
)


def colorize(values: torch.Tensor) -> torch.Tensor:
    """Map a ``[H, W]`` array to an RGB image ``[3, H, W]`` by the colour ramp, min to max."""
    v = values.float()
    v = (v - v.min()) / (v.max() - v.min()).clamp_min(1e-12)
    position = v * (len(_RAMP) - 1)
    low = position.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (position - low).unsqueeze(-1)
    rgb = _RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac
    return rgb.permute(2, 0, 1)


def image_pairs(originals: torch.Tensor, recons: torch.Tensor, max_items: int = 8) -> torch.Tensor:
    """Originals above reconstructions, side by side: ``[3, 2H, n W]``."""
    n = min(max_items, originals.shape[0])
    top = torch.cat(list(originals[:n].clamp(0, 1)), dim=-1)
    bottom = torch.cat(list(recons[:n].clamp(0, 1)), dim=-1)
    grid = torch.cat([top, bottom], dim=-2)
    return grid.expand(3, -1, -1) if grid.shape[0] == 1 else grid[:3]


def log_spectrogram(signal: torch.Tensor, n_fft: int = 256) -> torch.Tensor:
    """Log-magnitude STFT ``[freq, frames]`` of a mono signal ``[T]``, low frequencies at the bottom."""
    n_fft = max(8, min(n_fft, signal.shape[-1]))
    window = torch.hann_window(n_fft)
    spec = torch.stft(signal.float(), n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    return spec.abs().clamp_min(1e-5).log().flip(0)


def signal_pairs(originals: torch.Tensor, recons: torch.Tensor, max_items: int = 4) -> torch.Tensor:
    """Spectrograms of originals (left) and reconstructions (right), one row per item (first channel)."""
    rows = []
    for original, recon in zip(originals[:max_items], recons[:max_items], strict=False):
        left, right = log_spectrogram(original[0]), log_spectrogram(recon[0])
        both = torch.cat([left, right], dim=-1)
        rows.append(colorize(both))
    return torch.cat(rows, dim=-2)


def spectrogram_pairs(originals: torch.Tensor, recons: torch.Tensor, max_items: int = 4) -> torch.Tensor:
    """Magnitude spectrograms ``[B, freq, frames]`` (models that reconstruct spectrograms) as log images,
    originals left and reconstructions right on one colour scale, low frequencies at the bottom."""
    rows = []
    for original, recon in zip(originals[:max_items], recons[:max_items], strict=False):
        both = torch.cat([original.float(), recon.float()], dim=-1).abs().clamp_min(1e-5).log().flip(0)
        rows.append(colorize(both).repeat_interleave(4, dim=-1))
    return torch.cat(rows, dim=-2)


def usage_histogram(counts: torch.Tensor, height: int = 128) -> torch.Tensor:
    """Codes sorted by hit count as a bar chart ``[3, height, K']`` (K' <= 1024 bins): flat is healthy."""
    counts = counts.float().sort(descending=True).values
    if counts.numel() > 1024:
        counts = counts[: counts.numel() // 1024 * 1024].view(1024, -1).mean(1)
    bars = (counts / counts.max().clamp_min(1e-12) * (height - 1)).round().long()
    rows = torch.arange(height - 1, -1, -1).unsqueeze(1)
    filled = (rows <= bars.unsqueeze(0)).float()
    image = torch.stack([0.2 + 0.6 * filled, 0.3 + 0.5 * filled, 0.9 - 0.5 * filled])
    return image.repeat_interleave(max(1, 512 // counts.numel()), dim=-1)


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    write_image(Path(path), image.detach().cpu().clamp(0, 1))
    return Path(path)


def image_grid(images: torch.Tensor, columns: int = 8, pad: int = 2) -> torch.Tensor:
    """``[N, C, H, W]`` images in ``[0, 1]`` tiled row by row into one ``[3, rows (H + pad), columns (W + pad)]``
    picture with a white gutter (generated samples, one row per class)."""
    n, c, h, w = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    canvas = torch.ones(3, rows * (h + pad) + pad, columns * (w + pad) + pad)
    for i, image in enumerate(images.clamp(0, 1).float()):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top : top + h, left : left + w] = image.expand(3, -1, -1) if c == 1 else image[:3]
    return canvas
