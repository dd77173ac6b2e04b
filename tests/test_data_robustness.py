"""Training data with a bad file in it: reported once and skipped, never the end of a run mid-epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zoo.data.image import ImageFolder
from zoo.errors import MediaError
from zoo.io import write_image


def test_a_truncated_jpeg_is_skipped_and_reported(tmp_path: Path, photos: torch.Tensor) -> None:
    for i, photo in enumerate(photos[:3]):
        write_image(tmp_path / "cls" / f"p{i}.jpg", photo)
    data = (tmp_path / "cls" / "p1.jpg").read_bytes()
    (tmp_path / "cls" / "p1.jpg").write_bytes(data[: len(data) // 3])
    dataset = ImageFolder(tmp_path, resolution=32)
    with pytest.warns(UserWarning, match=r"skipping an unreadable image: .*p1.jpg"):
        items = [dataset[i] for i in range(len(dataset))]
    assert all(x.shape == (3, 32, 32) for x in items)
    assert list(dataset.skipped) == [str(tmp_path / "cls" / "p1.jpg")]
    torch.testing.assert_close(items[1], items[2])  # the bad item's place is taken by the next one


def test_a_folder_where_nothing_decodes_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    dataset = ImageFolder(tmp_path, resolution=32)
    with (
        pytest.warns(UserWarning),
        pytest.raises(MediaError, match="none of its 1 image files can be decoded"),
    ):
        dataset[0]
