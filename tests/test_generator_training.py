"""Generators trained from recipes on real token caches, exported, sampled with `zoo sample`, and DDP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import zoo
from zoo.cli import main as zoo_main
from zoo.data import CifarNpz, build_token_cache
from zoo.data._common import Subsample
from zoo.training import lr_factor
from zoo.training.cli import export, train

ROOT = Path(__file__).resolve().parents[1]
PAIRS = {"nar_tiny": "vq16_tiny", "xar_tiny": "kl16_tiny"}


class LabelledPhotos(Dataset):
    """The four real photos, cropped eight ways, with two classes (for caches that need no data bundle)."""

    def __init__(self, photos: torch.Tensor) -> None:
        self.class_names = ["portraits", "things"]
        crops = [photos, photos.flip(-1), photos.flip(-2), photos.transpose(-1, -2)]
        self.images = torch.cat(crops + [c.roll(8, -1) for c in crops])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def label(self, index: int) -> int:
        return index % 2


def _cache(tokenizer_name: str, dataset: Dataset, folder: Path, **kwargs) -> Path:
    torch.manual_seed(0)
    tokenizer = zoo.create(tokenizer_name).eval()
    saved = tokenizer.save_pretrained(folder / tokenizer_name)
    return build_token_cache(
        tokenizer,
        dataset,
        folder / f"cache_{tokenizer_name}",
        tokenizer_source=str(saved),
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def cifar_caches(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Token caches of 512 real CIFAR-10 test images (every class) by each tiny tokenizer."""
    folder = tmp_path_factory.mktemp("caches")
    images = Subsample(CifarNpz(shared_data / "images/cifar10/test.npz"), 512)
    torch.set_num_threads(1)
    return {name: _cache(name, images, folder, views="flip") for name in PAIRS.values()}


@pytest.mark.parametrize("recipe", sorted(PAIRS), ids=sorted(PAIRS))
def test_tiny_generator_recipe_trains_on_a_real_cache_then_samples(
    recipe: str, cifar_caches, tmp_path: Path
) -> None:
    """The recipe itself trains on a CIFAR-10 token cache and its loss falls; the export names the
    cache's tokenizer, and `zoo sample` decodes images with it."""
    cache = cifar_caches[PAIRS[recipe]]
    steps = 60
    train(
        [
            str(ROOT / "recipes" / f"{recipe}.yaml"),
            "--data.init_args.path", str(cache),
            "--data.init_args.val_path", "null",
            "--data.init_args.batch_size", "32",
            "--trainer.max_steps", str(steps),
            "--trainer.default_root_dir", str(tmp_path),
            "--trainer.log_every_n_steps", "1",
            "--trainer.val_check_interval", "1000",
            "--trainer.enable_progress_bar", "false",
            "--model.init_args.warmup_steps", "5",
        ]
    )  # fmt: skip
    with open(tmp_path / "metrics.csv") as handle:
        losses = [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert len(losses) == steps
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10, losses
    out = export(tmp_path, tmp_path / "export")
    config = (out / "config.json").read_text()
    assert str(cache.parent / PAIRS[recipe]) in config  # the tokenizer travelled from the cache
    generator = zoo.load(out)
    assert generator.tokenizer_name == str(cache.parent / PAIRS[recipe])
    samples = tmp_path / "samples"
    assert (
        zoo_main(
            [
                "sample",
                str(out),
                "--labels",
                "0,3",
                "--n",
                "2",
                "--cfg",
                "1.5",
                "--steps" if recipe == "xar_tiny" else "--seed",
                "3",
                "-o",
                str(samples),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in samples.glob("class*.png")) == [
        "class0000_000.png",
        "class0000_001.png",
        "class0003_000.png",
        "class0003_001.png",
    ]
    grid = zoo.io.read_image(samples / "grid.png")
    assert grid.shape[0] == 3 and grid.shape[1] > 64 and grid.std() > 0.01
    tokens = zoo.Tokens.load(samples / "samples.tokens.safetensors")
    assert len(tokens) == 4 and tokens.meta["labels"] == [0, 0, 3, 3]


def test_sample_refuses_a_tokenizer_and_a_foreign_one(tmp_path: Path, photos: torch.Tensor, capsys) -> None:
    tokenizer = zoo.create("vq16_tiny").save_pretrained(tmp_path / "vq")
    gen = zoo.create("xar_tiny", tokenizer=str(tokenizer))
    gen.save_pretrained(tmp_path / "xar")
    assert zoo_main(["sample", str(tmp_path / "vq"), "--labels", "1", "-o", str(tmp_path / "o")]) == 2
    assert "not a generator" in capsys.readouterr().err
    assert zoo_main(["sample", str(tmp_path / "xar"), "--labels", "1", "-o", str(tmp_path / "o")]) == 2
    assert zoo_main(["sample", str(tmp_path / "xar"), "--labels", "x", "-o", str(tmp_path / "o")]) == 2


@pytest.fixture(scope="module")
def photo_cache(photos: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cache("vq16_tiny", LabelledPhotos(photos), tmp_path_factory.mktemp("photos"))


DDP_RECIPE = """
seed_everything: 0
trainer:
  max_steps: 4
  accelerator: cpu
  devices: {devices}
  strategy: {strategy}
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  limit_val_batches: 0
  logger: false
  default_root_dir: {root}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {root}/checkpoints, save_last: true}}
model:
  class_path: zoo.training.GeneratorModule
  init_args:
    model: nar_tiny
    model_args: {{class_dropout: 0.0}}
    lr: 1.0e-3
    weight_decay: 0.05
    schedule: multistep
data:
  class_path: zoo.data.TokenCacheDataModule
  init_args: {{path: {cache}, batch_size: {batch}}}
"""


def test_ddp_on_two_cpu_processes_equals_one_process(photo_cache: Path, tmp_path: Path) -> None:
    import lightning as L

    from zoo.training import GeneratorModule

    """Two gloo processes with half the batch each end where one process with the whole batch ends."""
    results = {}
    for devices, strategy, batch in ((1, "auto", 8), (2, "ddp", 4)):
        root = tmp_path / f"run{devices}"
        recipe = tmp_path / f"ddp{devices}.yaml"
        recipe.write_text(
            DDP_RECIPE.format(devices=devices, strategy=strategy, root=root, cache=photo_cache, batch=batch)
        )
        done = subprocess.run(
            [sys.executable, "-m", "zoo", "train", str(recipe)],
            capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        results[devices] = zoo.load(export(root, root / "export"))
    one, two = (dict(results[d].state_dict()) for d in (1, 2))
    L.seed_everything(0)
    start = GeneratorModule("nar_tiny", model_args={"class_dropout": 0.0}).generator.state_dict()
    flat = lambda state: torch.cat([state[k].flatten().float() for k in sorted(state)])
    moved = float((flat(one) - flat(start)).norm())
    apart = float((flat(one) - flat(two)).norm())
    # Adam turns float-rounding differences of near-zero gradients (the all-reduce sums in another
    # order) into visible ones, so compare the whole update: the two runs agree to 0.1 % of it.
    assert moved > 0.01 and apart < 1e-3 * moved, (moved, apart)


def test_generator_module_checks_the_cache_against_the_model(photo_cache: Path, tmp_path: Path) -> None:
    import lightning as L

    from zoo.data import TokenCacheDataModule
    from zoo.training import GeneratorModule

    module = GeneratorModule("nar_tiny", model_args={"vocab_size": 512})
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="codebooks"):
        trainer.fit(module, TokenCacheDataModule(str(photo_cache), batch_size=4))
    with pytest.raises(TypeError, match="not a generator"):
        GeneratorModule("vq16_tiny")


def test_schedules_follow_the_papers() -> None:
    # NAR / LlamaGen: x0.2 at 50, 67 and 83 % of the run.
    factors = [
        lr_factor("multistep", s, warmup_steps=0, total_steps=600) for s in (0, 299, 300, 400, 500, 599)
    ]
    assert factors == pytest.approx([1, 1, 0.2, 0.04, 0.008, 0.008])
    # xAR: warmup, constant until 75 %, then cosine to the floor.
    xar = lambda s: lr_factor(
        "constant_cosine", s, warmup_steps=100, total_steps=800, cosine_start=0.75, min_ratio=0.025
    )
    assert xar(49) == pytest.approx(0.5) and xar(300) == 1 and xar(599) == 1
    assert xar(700) == pytest.approx(0.025 + 0.975 * 0.5) and xar(800) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("linear", 0, warmup_steps=0, total_steps=1)


def test_generator_and_its_tokenizer_travel_through_the_hub(hub, photos: torch.Tensor) -> None:
    """A generator pushed to the (loopback) Hub names a Hub tokenizer; both load by repo id and sample."""
    torch.manual_seed(0)
    zoo.create("vq16_tiny").eval().push_to_hub("tester/vq-for-nar")
    gen = zoo.create("nar_tiny", tokenizer="tester/vq-for-nar").eval()
    sha = gen.push_to_hub("tester/nar-tiny")
    assert set(hub.files("tester/nar-tiny")) == {"config.json", "model.safetensors", "README.md"}
    card = hub.files("tester/nar-tiny")["README.md"].decode()
    assert "generator" in card and "zoo sample" in card
    loaded = zoo.load("tester/nar-tiny", revision=sha)
    tokenizer = loaded.load_tokenizer()
    images = tokenizer.decode(loaded.sample([1, 2], seed=0))
    assert images.shape == (2, 3, 32, 32)
    assert torch.equal(loaded.sample([1, 2], seed=0).ids, gen.sample([1, 2], seed=0).ids)


def test_registered_upstream_nar_checkpoint_loads_through_the_converter_pinned_to_its_grid(
    hub, tmp_path
) -> None:
    import io

    from zoo._registry import unregister_pretrained
    from zoo.errors import CheckpointError

    torch.manual_seed(0)
    reference = zoo.create("nar_tiny", grid=16, vocab_size=64).eval()
    upstream = {f"module.{k}": v for k, v in reference.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"model": upstream}, buffer)
    hub.create_repo("upstream/nar-tiny")
    hub.put_files("upstream/nar-tiny", {"last_version.pt": buffer.getvalue()})
    zoo.register_pretrained(
        "nar_tiny.upstream",
        zoo.PretrainedCfg(hf_hub_id="upstream/nar-tiny", filename="last_version.pt", converter="convert_nar",
                          checkpoint_key=("model", "module", "state_dict", None)),
    )  # fmt: skip
    try:
        with pytest.raises(CheckpointError, match="16x16 grid"):
            zoo.load("nar_tiny.upstream")  # the tiny size's 8x8 grid is not what the checkpoint learnt
        (tmp_path / "ckpt.pt").write_bytes(buffer.getvalue())
        model = zoo.load_upstream("nar_tiny.upstream", tmp_path / "ckpt.pt", grid=16, vocab_size=64)
        ids = torch.randint(0, 64, (1, 16, 16))
        torch.testing.assert_close(model.log_prob(ids, [3]), reference.log_prob(ids, [3]))
    finally:
        unregister_pretrained("nar_tiny.upstream")


def test_encode_and_decode_refuse_a_generator(tmp_path: Path, capsys) -> None:
    zoo.create("nar_tiny", tokenizer="some/vq").save_pretrained(tmp_path / "nar")
    assert (
        zoo_main(
            ["decode", str(tmp_path / "nar"), str(tmp_path / "x.tokens.safetensors"), "-o", str(tmp_path)]
        )
        == 2
    )
    assert "is a generator" in capsys.readouterr().err
