"""Token caches: encode a dataset once (LlamaGen/MAR style), resume, read back, serve batches; dataset labels."""

from __future__ import annotations

import functools
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import Dataset, Subset

import zoo
from zoo.cli import main
from zoo.data import (
    CifarNpz,
    FashionMnistIdx,
    ImageFolder,
    SkimagePhotos,
    TokenCache,
    TokenCacheDataModule,
    build_token_cache,
)
from zoo.data.token_cache import make_views
from zoo.errors import MediaError
from zoo.io import read_image, write_image

pytestmark = pytest.mark.usefixtures("single_thread")

CLASSES = ("cat", "dog")


def smooth_images(n: int, seed: int, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    """Photo-like test images: low-frequency colour fields, so neighbouring pixels correlate."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 5, 5, generator=g)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet layout: 6 PNGs in each of cat/ and dog/, plus one loose file at the root (class "")."""
    root = tmp_path_factory.mktemp("images")
    images = smooth_images(13, 0)
    for i, x in enumerate(images[:12]):
        write_image(root / CLASSES[i % 2] / f"{i:02d}.png", x)
    write_image(root / "loose.png", images[12])
    return root


@pytest.fixture(scope="module")
def vq() -> torch.nn.Module:
    torch.manual_seed(1)
    return zoo.create("vq16_tiny").eval()


@pytest.fixture(scope="module")
def kl() -> torch.nn.Module:
    torch.manual_seed(2)
    return zoo.create("kl16_tiny").eval()


@pytest.fixture(scope="module")
def vq_dir(vq: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vq.save_pretrained(tmp_path_factory.mktemp("tok") / "vq16_tiny")


def shards(folder: Path) -> dict[str, torch.Tensor]:
    """Every shard's tensors concatenated along items, in shard order."""
    parts = [load_file(p) for p in sorted(folder.glob("shard-*.safetensors"))]
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class Images(Dataset):
    """An in-memory labelled image dataset (any object with len, getitem and label will do)."""

    def __init__(self, images: torch.Tensor, labels: list[int]) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]

    def label(self, i: int) -> int:
        return self.labels[i]

    @property
    def class_names(self) -> list[str]:
        return [f"c{k}" for k in range(max(self.labels) + 1)]


# --------------------------------------------------------------------------------------------------
# Building and reading


def test_discrete_flip_cache_holds_the_ids_of_each_image_and_its_mirror(image_folder, vq, tmp_path):
    dataset = ImageFolder(image_folder, None)
    assert dataset.class_names == ["", "cat", "dog"]
    out = build_token_cache(vq, dataset, tmp_path / "cache", views="flip", shard_size=5, progress=False)
    stored = shards(out)
    x = torch.stack([read_image(f) for f in dataset.files])
    with torch.inference_mode():
        ids, flipped = vq.encode(x).ids, vq.encode(x.flip(-1)).ids
    assert stored["ids"].dtype == torch.int16 and stored["ids"].shape == (13, 2, 8, 8)
    assert torch.equal(stored["ids"][:, 0].long(), ids)
    assert torch.equal(stored["ids"][:, 1].long(), flipped)
    assert not torch.equal(ids, flipped)
    folders = [f.parent.name if f.parent != image_folder else "" for f in dataset.files]
    assert stored["labels"].tolist() == [dataset.class_names.index(name) for name in folders]
    assert stored["labels"].dtype == torch.int64 and set(stored["labels"].tolist()) == {0, 1, 2}
    assert stored["index"].tolist() == list(range(13))

    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "zoo.token_cache" and index["kind"] == "ids" and index["num_views"] == 2
    assert index["grid"] == [8, 8] and index["codebook_sizes"] == [256] and index["latent_channels"] is None
    assert [s["items"] for s in index["shards"]] == [5, 5, 3] and index["class_names"] == ["", "cat", "dog"]
    cache = TokenCache(out, view=1)
    assert len(cache) == 13 and cache.kind == "ids" and cache.grid == (8, 8) and cache.num_classes == 3
    item = cache[7]
    assert set(item) == {"ids", "labels"} and item["ids"].dtype == torch.long
    assert torch.equal(item["ids"], flipped[7]) and int(item["labels"]) == stored["labels"][7]


def test_continuous_cache_stores_the_posterior_and_draws_a_sample_per_seed(image_folder, kl, tmp_path):
    dataset = ImageFolder(image_folder, None)
    out = build_token_cache(kl, dataset, tmp_path / "cache", shard_size=8, progress=False)
    stored = shards(out)
    x = torch.stack([read_image(f) for f in dataset.files])
    tokens = kl.encode(x, posterior=True)
    assert stored["latents"].shape == (13, 1, 4, 8, 8) and stored["latents"].dtype == torch.float32
    torch.testing.assert_close(stored["latents"][:, 0], tokens.latents, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stored["latent_std"][:, 0], tokens.side["latent_std"], atol=1e-6, rtol=1e-5)
    index = json.loads((out / "index.json").read_text())
    assert index["kind"] == "latents" and index["latent_channels"] == 4 and index["scale_factor"] == 0.2325

    cache = TokenCache(out)
    mean, std = stored["latents"][3, 0], stored["latent_std"][3, 0]
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(123))
    torch.testing.assert_close(cache[(3, 123)]["latents"], mean + std * noise)
    assert torch.equal(cache[(3, 123)]["latents"], cache[(3, 123)]["latents"])
    assert not torch.allclose(cache[(3, 123)]["latents"], cache[(3, 124)]["latents"])
    assert torch.equal(TokenCache(out, sample_posterior=False)[(3, 123)]["latents"], mean)


def adm_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """ADM's center_crop_arr restated on PIL (what LlamaGen's and MAR's caches run): BOX halvings while
    the short side is at least twice the size, one BICUBIC resize, a centred crop."""
    from PIL import Image

    image = Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy())
    while min(image.size) >= 2 * size:
        image = image.resize((image.size[0] // 2, image.size[1] // 2), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), resample=Image.BICUBIC)
    array = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    top, left = (array.shape[1] - size) // 2, (array.shape[2] - size) // 2
    return array[:, top : top + size, left : left + size]


def test_ten_crop_gives_llamagen_views(vq, tmp_path):
    images = (smooth_images(3, 5) * 255).round() / 255  # 8-bit pixels, as every reader gives them
    dataset = Images(images, [0, 1, 0])
    out = build_token_cache(vq, dataset, tmp_path / "cache", views="ten_crop", progress=False)
    stored = shards(out)
    assert stored["ids"].shape == (3, 10, 8, 8)
    big = torch.stack([adm_center_crop(image, 35) for image in images])  # int(32 * 1.1)
    with torch.inference_mode():
        top_left = vq.encode(big[..., :32, :32]).ids
        mirrored_top_left = vq.encode(big.flip(-1)[..., :32, :32]).ids
        bottom_right = vq.encode(big[..., 3:, 3:]).ids
    assert torch.equal(stored["ids"][:, 0].long(), top_left)
    assert torch.equal(stored["ids"][:, 3].long(), bottom_right)
    assert torch.equal(stored["ids"][:, 5].long(), mirrored_top_left)
    assert len({tuple(v.flatten().tolist()) for v in stored["ids"][0]}) > 5  # distinct crops
    assert json.loads((out / "index.json").read_text())["class_names"] == ["c0", "c1"]

    wide = (smooth_images(1, 6, (32, 48))[0] * 255).round() / 255  # a centred square before the ten crops
    square = adm_center_crop(wide, 35)
    assert torch.equal(make_views(wide, "ten_crop", 32)[1], square[:, :32, 3:])
    large = (smooth_images(1, 7, (100, 150))[0] * 255).round() / 255  # BOX-halved once, then BICUBIC
    assert torch.equal(make_views(large, "flip", 32)[0], adm_center_crop(large, 32))
    assert torch.equal(make_views(large, "flip", 32)[1], adm_center_crop(large, 32).flip(-1))


def test_a_rerun_encodes_only_the_missing_shards_and_refuses_other_settings(vq, tmp_path, monkeypatch):
    dataset = Images(smooth_images(10, 7), [i % 3 for i in range(10)])
    calls: list[int] = []
    encode = vq.encode

    @functools.wraps(encode)
    def counting(x: torch.Tensor, **kwargs: object) -> zoo.Tokens:
        calls.append(len(x))
        return encode(x, **kwargs)

    monkeypatch.setattr(vq, "encode", counting)
    out = tmp_path / "cache"
    build_token_cache(vq, dataset, out, shard_size=4, progress=False)
    assert calls == [4, 4, 2]
    first = file_bytes(out)
    assert sorted(first) == [
        "index.json",
        "shard-00000.safetensors",
        "shard-00001.safetensors",
        "shard-00002.safetensors",
    ]
    (out / "shard-00001.safetensors").unlink()
    (out / "index.json").unlink()
    build_token_cache(vq, dataset, out, shard_size=4, progress=False)
    assert calls == [4, 4, 2, 4]  # shard 1 only
    assert file_bytes(out) == first

    build_token_cache(vq, dataset, out, shard_size=4, progress=False)  # complete: nothing to encode
    assert len(calls) == 4
    with pytest.raises(MediaError, match="other settings.*shard_size") as err:
        build_token_cache(vq, dataset, out, shard_size=5, progress=False)
    assert err.value.path == out / "index.json"
    (out / "index.json").unlink()
    with pytest.raises(MediaError, match='views: "none" there, "flip" now'):
        build_token_cache(vq, dataset, out, shard_size=4, views="flip", progress=False)
    other = zoo.create("vq16_tiny").eval()  # same name, other weights
    with pytest.raises(MediaError, match="another tokenizer.*tokenizer_fingerprint"):
        build_token_cache(other, dataset, out, shard_size=4, progress=False)
    assert len(calls) == 4 and not (out / "index.json").exists()


def test_damaged_caches_are_reported_with_the_file_at_fault(vq, tmp_path):
    dataset = Images(smooth_images(6, 9), [0] * 6)
    out = build_token_cache(vq, dataset, tmp_path / "cache", shard_size=4, progress=False)
    index_file, shard = out / "index.json", out / "shard-00001.safetensors"
    good = file_bytes(out)

    shard.write_bytes(good[shard.name][:-100])  # truncated
    with pytest.raises(MediaError, match="truncated") as err:
        TokenCache(out)
    assert err.value.path == shard
    with pytest.warns(UserWarning, match="encoding it again"):  # a rebuild repairs it
        build_token_cache(vq, dataset, out, shard_size=4, progress=False)
    assert file_bytes(out) == good

    shard.unlink()
    with pytest.raises(MediaError, match="missing") as err:
        TokenCache(out)
    assert err.value.path == shard
    shard.write_bytes(good[shard.name])

    index = json.loads(good["index.json"])
    index["shards"][1]["items"] = 3
    index_file.write_text(json.dumps(index))
    with pytest.raises(MediaError, match="lists 2 shards of 7 items") as err:
        TokenCache(out)
    assert err.value.path == index_file
    index_file.write_text(json.dumps({**index, "format": "something.else"}))
    with pytest.raises(MediaError, match="not a zoo token cache"):
        TokenCache(out)
    index_file.unlink()
    with pytest.raises(MediaError, match="index is missing") as err:
        TokenCache(out)
    assert err.value.path == index_file


def test_datamodule_batches_are_reproducible_and_split_by_dataset_index(image_folder, kl, vq, tmp_path):
    dataset = ImageFolder(image_folder, None)
    latents = build_token_cache(kl, dataset, tmp_path / "kl", views="flip", progress=False)

    def train_batches(seed: int) -> list[dict[str, torch.Tensor]]:
        dm = TokenCacheDataModule(str(latents), batch_size=4, seed=seed, val_fraction=0.3)
        dm.setup("fit")
        assert dm.cache_index is not None and dm.cache_index["kind"] == "latents"
        return list(dm.train_dataloader())

    dm = TokenCacheDataModule(str(latents), batch_size=4, val_fraction=0.3)
    dm.setup("fit")
    train, val = dm.train_dataset, dm.val_dataset
    assert len(train) + len(val) == 13 and len(val) > 0
    assert not set(train.dataset_indices()) & set(val.dataset_indices())
    first = train_batches(0)
    assert set(first[0]) == {"latents", "labels"}
    assert first[0]["latents"].shape == (4, 4, 8, 8) and first[0]["labels"].shape == (4,)
    again = train_batches(0)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, again, strict=True) for k in a)
    other = train_batches(1)
    assert not all(torch.equal(a["latents"], b["latents"]) for a, b in zip(first, other, strict=True))
    stored = shards(latents)
    val_batch = next(iter(dm.val_dataloader()))  # view 0, posterior mean, in order
    expected = stored["latents"][val.dataset_indices(), 0][: len(val_batch["latents"])]
    assert torch.equal(val_batch["latents"], expected)

    ids = build_token_cache(vq, dataset, tmp_path / "vq", progress=False)
    dm = TokenCacheDataModule(str(ids), batch_size=8, val_path=str(ids), limit=10)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["ids"].shape == (8, 8, 8) and batch["ids"].dtype == torch.long
    assert dm.hparams["val_path"] == str(ids)
    with pytest.raises(MediaError, match="other tokens"):
        TokenCacheDataModule(str(ids), val_path=str(latents)).setup("fit")


def test_cli_cache_end_to_end(image_folder, vq_dir, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["cache", str(vq_dir), str(image_folder), "-o", str(out), "--views", "flip"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["tokenizer"] == str(vq_dir) and index["num_items"] == 13 and index["resolution"] == 32
    assert "cached 13 items x 2 views" in capsys.readouterr().out
    assert main(["cache", str(vq_dir), str(tmp_path / "nothing"), "-o", str(out)]) == 2
    assert "zoo cache: error:" in capsys.readouterr().err


def test_two_processes_write_the_same_shards_as_one(image_folder, vq, tmp_path):
    dataset = Subset(ImageFolder(image_folder, None), range(1, 13))
    one = build_token_cache(vq, dataset, tmp_path / "one", shard_size=4, progress=False)
    two = build_token_cache(
        vq, dataset, tmp_path / "two", shard_size=4, devices=["cpu", "cpu"], progress=False
    )
    assert len(list(two.glob("shard-*"))) == 3
    assert file_bytes(one) == file_bytes(two)


# --------------------------------------------------------------------------------------------------
# Dataset labels


def test_npz_and_idx_labels_follow_the_split_without_decoding(tmp_path):
    x = (np.arange(20 * 8 * 8 * 3) % 251).astype(np.uint8).reshape(20, 8, 8, 3)
    y = np.arange(20) % 4
    np.savez(tmp_path / "c.npz", x=x, y=y.astype(np.uint8), classes=np.array(["a", "b", "c", "d"]))
    train = CifarNpz(tmp_path / "c.npz", "train", val_fraction=0.3)
    assert [train.label(i) for i in range(len(train))] == [int(y[i]) for i in train._items]
    assert train.class_names == ["a", "b", "c", "d"] and train.num_classes == 4 and train._array is None
    assert torch.equal(train[0], CifarNpz(tmp_path / "c.npz", "train", val_fraction=0.3)[0])
    np.savez(tmp_path / "unlabelled.npz", x=x)
    bare = CifarNpz(tmp_path / "unlabelled.npz")
    assert bare.label(19) == 0 and bare.class_names == ["0"]

    images = bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 4]) + bytes(range(80))
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "t10k-images-idx3-ubyte").write_bytes(images)
    unlabelled = FashionMnistIdx(tmp_path / "idx", "test")
    assert unlabelled.label(4) == 0 and unlabelled.class_names == ["0"]
    with gzip.open(tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 9, 2, 1, 1, 6]))
    fashion = FashionMnistIdx(tmp_path / "idx", "test")
    assert [fashion.label(i) for i in range(5)] == [9, 2, 1, 1, 6] and fashion._array is None
    assert fashion.class_names[9] == "Ankle boot" and fashion.num_classes == 10
    with gzip.open(tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 4, 9, 2, 1, 1]))
    with pytest.raises(MediaError, match="4 labels for the 5 images"):
        FashionMnistIdx(tmp_path / "idx", "test").label(0)


def test_image_folder_labels_follow_the_hash_split(image_folder):
    every = ImageFolder(image_folder, None)
    by_file = {f: every.label(i) for i, f in enumerate(every.files)}
    for split in ("train", "val"):
        part = ImageFolder(image_folder, None, split=split, val_fraction=0.3)
        assert part.class_names == every.class_names
        assert [part.label(i) for i in range(len(part))] == [by_file[f] for f in part.files]
    pytest.importorskip("skimage")
    photos = SkimagePhotos(split="val")
    assert photos.label(len(photos) - 1) == 0 and photos.num_classes == 1 and photos._loaded is None


def test_cifar_test_labels_survive_the_cache(shared_data, vq_dir, tmp_path):
    npz = shared_data / "images" / "cifar10" / "test.npz"
    out = tmp_path / "cifar"
    argv = ["cache", str(vq_dir), str(npz), "-o", str(out), "--limit", "64", "--shard-size", "32"]
    assert main(argv) == 0
    stored = shards(out)
    y = np.load(npz)["y"]
    assert stored["ids"].shape == (64, 1, 8, 8) and len(set(stored["index"].tolist())) == 64
    assert stored["labels"].tolist() == y[stored["index"].numpy()].tolist()
    assert len(set(stored["labels"].tolist())) == 10  # the limit spreads over every class
    cache = TokenCache(out)
    assert cache.class_names[:2] == ["airplane", "automobile"] and cache.label(63) == int(
        y[stored["index"][63]]
    )
    fashion = FashionMnistIdx(shared_data / "images" / "fashion_mnist", "test")
    assert [fashion.label(i) for i in range(5)] == [9, 2, 1, 1, 6]
    shutil.rmtree(out)
