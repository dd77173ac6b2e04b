"""The tokenizer LightningModule: steps, checkpoints, exact resumption, export, and the train CLI."""

from __future__ import annotations

import csv
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from training_data import RandomImages

import zoo
from zoo.data import ResumableDataLoader
from zoo.errors import CheckpointError
from zoo.training import TokenizerModule, warmup_cosine
from zoo.training.cli import export
from zoo.training.csv_log import ResumableCSVLogger

ROOT = Path(__file__).resolve().parents[1]


def trainer(run: Path, max_steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        default_root_dir=run,
        logger=ResumableCSVLogger(run, name="", version=""),
        callbacks=[ModelCheckpoint(dirpath=run / "checkpoints", every_n_train_steps=3, save_last=True)],
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=3,
        **kwargs,
    )


class StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def module(**kwargs) -> TokenizerModule:
    torch.manual_seed(0)
    return TokenizerModule("vq16_tiny", lr=1e-3, ema_decay=0.9, warmup_steps=2, **kwargs)


def test_steps_checkpoint_samples_and_export(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit = trainer(run, 6)
    model = module()
    fit.fit(model, RandomImages())
    assert fit.global_step == 6
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step0000003_codebook_usage.png",
        "step0000003_reconstructions.png",
        "step0000006_codebook_usage.png",
        "step0000006_reconstructions.png",
    ]
    out = export(run, tmp_path / "export")
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    loaded = zoo.load(out)
    ema = model.ema.module
    for key, value in ema.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key  # the EMA weights are what ships
    card = (out / "README.md").read_text()
    assert "6 training steps" in card and "EMA weights" in card
    raw = zoo.load(export(run, tmp_path / "raw", use_ema=False))
    assert torch.equal(
        raw.state_dict()["quantizer.codebook"], model.tokenizer.state_dict()["quantizer.codebook"]
    )


def test_fine_tuning_starts_from_saved_weights_and_keeps_frozen_parts_fixed(tmp_path: Path) -> None:
    """init_from loads a saved model strictly; freeze keeps the encoder and quantizer where they were
    (no k-means initialisation or dead-code restart moves the codebook either) while the decoder trains."""
    torch.manual_seed(1)
    args = {"kmeans_init": True, "restart_threshold": 1.0}
    start = zoo.create("vq16_tiny", **args)
    start.save_pretrained(tmp_path / "start")
    model = TokenizerModule(
        "vq16_tiny",
        model_args=args,
        lr=1e-3,
        init_from=str(tmp_path / "start"),
        freeze=["encoder", "quant_conv", "quantizer"],
    )
    before = {k: v.clone() for k, v in model.tokenizer.state_dict().items()}
    for key, value in start.state_dict().items():
        assert torch.equal(before[key], value), key
    trainer(tmp_path / "run", 4).fit(model, RandomImages())
    after = model.tokenizer.state_dict()
    fixed = [k for k in after if k.startswith(("encoder.", "quant_conv.", "quantizer."))]
    assert fixed and all(torch.equal(after[k], before[k]) for k in fixed)
    assert not torch.equal(after["decoder.conv_out.weight"], before["decoder.conv_out.weight"])
    with pytest.raises(ValueError, match=r"no submodule\(s\) \['encodr'\].*encoder"):
        TokenizerModule("vq16_tiny", freeze=["encodr"])
    with pytest.raises(CheckpointError, match="init_from"):
        TokenizerModule("vq16_tiny", model_args={"codebook_size": 128}, init_from=str(tmp_path / "start"))


def test_resuming_continues_the_same_run_exactly(tmp_path: Path) -> None:
    straight = module()
    trainer(tmp_path / "straight", 6).fit(straight, RandomImages())

    first = module()
    interrupted = trainer(tmp_path / "resumed", 6)
    interrupted.callbacks.append(StopAt(3))  # as if the run were killed after its step-3 checkpoint
    interrupted.fit(first, RandomImages())
    assert interrupted.global_step == 3
    resumed = module()
    resume = trainer(tmp_path / "resumed", 6)
    resume.fit(resumed, RandomImages(), ckpt_path=str(tmp_path / "resumed" / "checkpoints" / "last.ckpt"))
    assert resume.global_step == 6
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), f"{key} differs after resuming"
    opt_a = straight.optimizers().optimizer.state_dict()["state"]
    opt_b = resumed.optimizers().optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"]) for i in opt_a)
    # the resumed run's metrics.csv still holds the rows logged before the interruption
    early = [entry for entry in logged(tmp_path / "straight") if entry[0] < 3]
    assert early and set(early) <= set(logged(tmp_path / "resumed"))
    assert max(logged(tmp_path / "resumed"))[0] == 5


def logged(run: Path) -> list[tuple[int, str]]:
    """(step, metric) of every value in a run's metrics.csv."""
    with open(run / "metrics.csv", newline="") as f:
        return sorted(
            (int(r["step"]), k) for r in csv.DictReader(f) for k, v in r.items() if v and k != "step"
        )


def test_gan_training_counts_iterations_not_optimizer_steps(tmp_path: Path) -> None:
    from zoo.nn import PatchDiscriminator

    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=8, num_layers=2, norm="group")
    before = [p.detach().clone() for p in disc.parameters()]
    model = module(
        discriminator=disc,
        disc_start=2,
        losses={"l1": 1.0, "perceptual": 0.1},
        perceptual_backbone="resnet18",
    )
    fit = trainer(tmp_path / "gan", 5)
    fit.fit(model, RandomImages())
    assert fit.global_step == 5  # the discriminator's steps do not advance the counter
    assert any(not torch.equal(a, b) for a, b in zip(before, disc.parameters(), strict=True))
    logged = fit.logged_metrics
    assert {"train/gan/generator", "train/gan/discriminator", "train/rec/perceptual"} <= set(logged)
    checkpoint = torch.load(tmp_path / "gan" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["zoo"]["perceptual_source"].startswith("random-init resnet18")
    card = (export(tmp_path / "gan", tmp_path / "out") / "README.md").read_text()
    assert "random-init resnet18" in card and "PatchDiscriminator" in card


def test_resumable_loader_skips_consumed_batches_and_changes_order_per_epoch() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(10))
    loader = ResumableDataLoader(data, batch_size=3, seed=1)
    epoch0 = [b[0].tolist() for b in loader]
    epoch1 = [b[0].tolist() for b in loader]
    assert sorted(i for batch in epoch0 for i in batch) == list(range(10)) and epoch0 != epoch1
    fresh = ResumableDataLoader(data, batch_size=3, seed=1)
    iterator = iter(fresh)
    next(iterator), next(iterator)
    state = fresh.state_dict()
    assert state == {"epoch": 0, "batches_consumed": 2}
    restored = ResumableDataLoader(data, batch_size=3, seed=1)
    restored.load_state_dict(state)
    assert [b[0].tolist() for b in restored] == epoch0[2:]
    assert [b[0].tolist() for b in restored] == epoch1
    abandoned = ResumableDataLoader(data, batch_size=3, seed=1)
    iterator = iter(abandoned)
    next(iterator)  # a pass left unfinished does not shorten the next one
    assert [b[0].tolist() for b in abandoned] == epoch1


def test_warmup_then_cosine() -> None:
    factors = [warmup_cosine(s, warmup_steps=4, total_steps=14, min_ratio=0.1) for s in range(16)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[14] == pytest.approx(0.1) and factors[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))


def test_loss_args_configure_the_named_loss_module() -> None:
    """A recipe can set the mel loss to Vocos's single 100-band mel (WavTokenizer's paper recipe does);
    arguments for terms the recipe does not use, or that the module does not take, fail at load time."""
    from zoo.losses import MultiResolutionMelLoss

    args = {"window_lengths": [1024], "n_mels": [100], "natural_log": True, "floor": 1e-7}
    module = TokenizerModule("wavtokenizer_tiny", losses={"mel": 1.0}, loss_args={"mel": args})
    mel = module._loss_module("mel")
    assert isinstance(mel, MultiResolutionMelLoss) and mel.windows == [(1024, 256)] and mel.natural_log
    x, y = torch.randn(2, 1, 4800) * 0.1, torch.randn(2, 1, 4800) * 0.1
    expected = MultiResolutionMelLoss(sample_rate=24000, **args)(x, y)
    torch.testing.assert_close(module.reconstruction_losses(x, y)["rec/mel"], expected)
    with pytest.raises(ValueError, match="loss_args for 'stft'"):
        TokenizerModule("wavtokenizer_tiny", losses={"mel": 1.0}, loss_args={"stft": {}})
    with pytest.raises(TypeError, match="n_mel"):
        TokenizerModule("wavtokenizer_tiny", losses={"mel": 1.0}, loss_args={"mel": {"n_mel": [80]}})


def test_unknown_or_misplaced_losses_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown loss 'ssim'"):
        TokenizerModule("vq16_tiny", losses={"ssim": 1.0})
    with pytest.raises(ValueError, match="'mel' does not apply to image"):
        TokenizerModule("vq16_tiny", losses={"mel": 1.0})


def test_export_refuses_runs_without_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        export(tmp_path, tmp_path / "out")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        export(bad, tmp_path / "out")


RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_resolves(recipe: Path, capsys) -> None:
    """Every recipe parses into a full config (in-process: one import of torch for all of them)."""
    from zoo.training.cli import train

    with pytest.raises(SystemExit) as done:
        train([str(recipe), "--print_config"])
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    assert (
        "class_path: zoo.training.TokenizerModule" in printed
        or "class_path: zoo.training.GeneratorModule" in printed
    )
    model = re.sub(r"_stage\d+$", "", recipe.stem)  # karl_stage2.yaml trains karl
    assert f"model: {model}" in printed
    assert "CSVLogger" in printed and "TensorBoardLogger" in printed


def test_zoo_train_command_prints_a_resolved_recipe(tmp_path: Path) -> None:
    """The console entry point itself, run as users run it."""
    recipe = ROOT / "recipes" / "vq16_tiny.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "train", str(recipe), "--print_config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "class_path: zoo.training.TokenizerModule" in done.stdout and "model: vq16_tiny" in done.stdout


def test_every_registered_tokenizer_has_a_recipe() -> None:
    import yaml

    trained = {yaml.safe_load(r.read_text())["model"]["init_args"]["model"] for r in RECIPES}
    tokenizers = {name for name in zoo.list_models() if zoo.info(name)["modality"] != "generator"}
    # Tokenizers without a network are fitted by a command instead (HiVG: zoo fit-segments).
    fitted = {name for name in tokenizers if getattr(zoo.create(name), "trained_by", None)}
    assert tokenizers - fitted <= trained, f"no recipe for {sorted(tokenizers - fitted - trained)}"
    assert fitted == {"hivg", "hivg_784", "hivg_1008"}


DDP_RECIPE = """
seed_everything: 0
trainer:
  max_steps: 4
  accelerator: cpu
  devices: 2
  strategy: ddp
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  limit_val_batches: 0
  logger: false
  enable_checkpointing: false
model:
  class_path: zoo.training.TokenizerModule
  init_args: {model: vq16_tiny, lr: 1.0e-3}
data:
  class_path: training_data.RandomImages
  init_args: {num_images: 32, batch_size: 4}
"""


def test_ddp_on_two_cpu_processes_keeps_codebooks_identical(tmp_path: Path) -> None:
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(DDP_RECIPE)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo",
            "train",
            str(recipe),
            "--trainer.callbacks+=training_data.SaveRankState",
            f"--trainer.callbacks.out_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert bool(first["quantizer.initted"])
    for key, value in first.items():
        assert torch.equal(value, second[key]), f"{key} differs between the two ranks"


def test_sample_pictures_for_signals_and_codebook_usage(tmp_path: Path) -> None:
    from zoo.io import read_image
    from zoo.training.samples import save_png, signal_pairs, usage_histogram

    t = torch.linspace(0, 1, 4000)
    audio = torch.sin(2 * torch.pi * 440 * t).view(1, 1, -1).repeat(2, 1, 1)
    picture = signal_pairs(audio, audio)
    assert picture.shape[0] == 3 and picture.shape[1] == 2 * 129  # two items, 129 frequency bins each
    left, right = picture[..., : picture.shape[-1] // 2], picture[..., picture.shape[-1] // 2 :]
    assert torch.equal(left, right)  # original and a perfect reconstruction look the same
    muffled = signal_pairs(audio, torch.zeros_like(audio))
    assert not torch.equal(muffled[..., : picture.shape[-1] // 2], muffled[..., picture.shape[-1] // 2 :])
    counts = torch.tensor([0.0, 5.0, 1.0, 9.0])
    bars = usage_histogram(counts, height=16)
    assert bars.shape == (3, 16, 512)
    assert (bars[:, :, 0] != bars[:, :, -1]).any()  # the most used code's bar is full, the unused one empty
    path = save_png(bars, tmp_path / "usage.png")
    assert read_image(path).shape == (3, 16, 512)


# Generator recipes train on token caches: tests/test_generator_training.py builds them from real data.
TINY_RECIPES = [r for r in RECIPES if r.stem.endswith("_tiny") and "GeneratorModule" not in r.read_text()]


@pytest.mark.parametrize("recipe", TINY_RECIPES, ids=[r.stem for r in TINY_RECIPES])
def test_tiny_recipe_loss_falls_on_real_data(recipe: Path, tmp_path: Path) -> None:
    """The recipe itself (its model, losses and optimizer) trains on its default real data: the embedded
    photos for images, the shared bundle for audio (skipped where the bundle is absent)."""
    import csv

    import yaml

    from zoo.training.cli import train

    data_path = yaml.safe_load(recipe.read_text())["data"]["init_args"].get("path")
    if data_path and not (ROOT / data_path).exists():
        pytest.skip(f"{recipe.name} trains on {data_path}, which is not here")

    steps = 60
    train(
        [
            str(recipe),
            *(["--data.init_args.path", str(ROOT / data_path)] if data_path else []),
            "--trainer.max_steps",
            str(steps),
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.val_check_interval",
            "1000",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--model.init_args.warmup_steps",
            "10",
            "--data.init_args.batch_size",
            "8",
        ]
    )
    with open(tmp_path / "metrics.csv") as handle:
        losses = [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert len(losses) == steps
    # A multi-resolution mel loss falls more slowly in 60 steps than a pixel loss; both must fall.
    ratio = 0.93 if "audio" in yaml.safe_load(recipe.read_text())["data"]["class_path"].lower() else 0.8
    assert sum(losses[-10:]) / 10 < ratio * sum(losses[:10]) / 10, losses
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "config.yaml").is_file()
