"""Rasterise SVG with resvg (``resvg-py``, a wheel with no system libraries) and compare renders.

Used to measure what tokenization keeps: the pixel IoU of what is drawn and the PSNR of the picture on
white, between an SVG and its ``decode(encode(x))``.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["ink_iou", "on_canvas", "psnr", "render_svg"]


def render_svg(svg: str, size: int) -> np.ndarray:
    """``svg`` drawn on white at ``size`` x ``size`` px: float RGB ``[size, size, 3]`` in ``[0, 1]``."""
    try:
        import resvg_py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("rendering SVG needs `resvg-py`: pip install 'zoo[svg]'") from exc
    from PIL import Image

    png = bytes(resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size, background="#ffffff"))
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size))
    return np.asarray(image, dtype=np.float32) / 255.0


def on_canvas(svg: str, size: int) -> str:
    """``svg`` with a ``size`` px square viewport showing its viewBox (centred, aspect kept), as
    `normalize_svg` places it, so that an original and its normalised form render alike."""
    import xml.etree.ElementTree as ET

    from ...io.svg import parse_svg
    from .normalize import _canvas_root

    root = parse_svg(svg)
    _canvas_root(root, size, None)
    return ET.tostring(root, encoding="unicode")


def ink_iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of the pixels each picture darkens below ``threshold`` (1 when both are blank)."""
    ink_a, ink_b = a.mean(-1) < threshold, b.mean(-1) < threshold
    union = np.logical_or(ink_a, ink_b).sum()
    return 1.0 if union == 0 else float(np.logical_and(ink_a, ink_b).sum() / union)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two pictures in ``[0, 1]`` (inf when equal)."""
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))
