"""One LightningModule that trains every zoo generator from a token cache.

The generator computes its own objective (``Generator.training_loss``: cross-entropy for NAR, flow
matching for xAR, each with its label dropout for guidance); this module adds what every paper's
trainer shares: AdamW with weight decay on matrices only, the paper's learning-rate schedule, gradient
clipping, an EMA copy that is validated and exported, and sample grids as PNG. Optimization is
automatic, so Lightning's precision plugins (bf16-mixed on GPUs) and its DDP and FSDP strategies
apply unchanged; the XL sizes need FSDP (``--trainer.strategy fsdp``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from .._factory import create
from ..errors import ZooError
from ..generator import Generator
from .ema import EMAWeights
from .samples import image_grid, save_png
from .schedule import SCHEDULES, lr_factor

log = logging.getLogger(__name__)


class GeneratorModule(L.LightningModule):
    """Trains the registered generator ``model`` on batches of a ``TokenCacheDataModule``.

    Args:
        model: registry name of the generator (``zoo list --modality generator``), e.g. ``"nar_tiny"``.
        model_args: constructor overrides. ``tokenizer`` left unset is taken from the token cache, so
            the exported generator names the tokenizer that decodes its samples.
        lr, betas, weight_decay: AdamW settings; weight decay applies to parameters of two or more
            dimensions only (matrices and embeddings, not biases or norms), as upstream.
        schedule: ``constant``, ``cosine``, ``constant_cosine`` or ``multistep`` (see
            ``zoo.training.schedule.lr_factor``), after ``warmup_steps`` of linear warmup.
        min_lr_ratio, cosine_start, milestones, gamma: the schedule's settings, as fractions of
            ``trainer.max_steps``.
        grad_clip: max gradient norm (``None`` disables).
        ema_decay: keep an EMA copy (validated, sampled and exported instead of the raw weights).
        init_from: weights to start from (anything ``zoo.load`` takes), strictly matched.
        sample_every: write a grid of samples (one row per class) every this many steps at validation,
            decoded by the generator's tokenizer when it can be loaded; 0 disables.
        sample_cfg, sample_classes: guidance scale and classes of those samples.
    """

    def __init__(
        self,
        model: str,
        model_args: dict[str, Any] | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.05,
        schedule: str = "constant",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        cosine_start: float = 0.0,
        milestones: tuple[float, ...] = (0.5, 2 / 3, 5 / 6),
        gamma: float = 0.2,
        grad_clip: float | None = 1.0,
        ema_decay: float | None = None,
        init_from: str | None = None,
        sample_every: int = 0,
        sample_cfg: float = 1.0,
        sample_classes: int = 8,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
        self.save_hyperparameters()
        self.generator: Generator = create(model, **(model_args or {}))
        if not isinstance(self.generator, Generator):
            raise TypeError(
                f"{model} is a {self.generator.modality} model, not a generator; train it with TokenizerModule"
            )
        if init_from:
            from ..hub import load, load_weights

            load_weights(self.generator, load(init_from).state_dict(), f"init_from {init_from!r}")
        self.ema = EMAWeights(self.generator, ema_decay) if ema_decay else None
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ data checks
    def on_fit_start(self) -> None:
        """Check the cache's tokens against the generator, and record the cache's tokenizer."""
        strategy = type(self.trainer.strategy).__name__
        if self.ema is not None and "FSDP" in strategy:
            raise ValueError(
                "ema_decay with the FSDP strategy is not supported: the EMA copy is a full, unsharded "
                "model; set ema_decay: null (keep EMA with ddp) or average checkpoints afterwards"
            )
        datamodule = getattr(self.trainer, "datamodule", None)
        index = getattr(datamodule, "cache_index", None)
        if not index:
            return
        generator = self.generator
        problems = generator.layout_problems(
            index.get("grid", ()), index.get("codebook_sizes") or (), index.get("latent_channels")
        )
        if index.get("num_classes") and int(index["num_classes"]) > generator.num_classes:
            problems.append(f"{index['num_classes']} classes vs {generator.num_classes}")
        if problems:
            raise ValueError(f"the token cache does not fit {self.hparams.model}: " + "; ".join(problems))
        if not generator.tokenizer_name and index.get("tokenizer"):
            self._record_tokenizer(index["tokenizer"])
            log.info("generator tokenizer: %s (from the token cache)", index["tokenizer"])

    def _record_tokenizer(self, name: str) -> None:
        """Name the tokenizer in the trained generator's config (and its EMA copy's, which is exported)."""
        for model in (self.generator, *([self.ema.module] if self.ema else [])):
            model.tokenizer_name = name

    # ------------------------------------------------------------------ optimizer
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.generator.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": hp.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else None

        def factor(step: int) -> float:
            return lr_factor(
                hp.schedule,
                step,
                warmup_steps=hp.warmup_steps,
                total_steps=total,
                min_ratio=hp.min_lr_ratio,
                cosine_start=hp.cosine_start,
                milestones=tuple(hp.milestones),
                gamma=hp.gamma,
            )

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        clip = gradient_clip_val or self.hparams.grad_clip
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.generator.training_loss(batch)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(f"non-finite training loss at step {self.global_step}")
        size = len(batch["labels"])
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in out.stats.items()}, batch_size=size)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], batch_size=size)
        return out.loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.generator)

    def evaluated_generator(self) -> Generator:
        return self.ema.module if self.ema is not None else self.generator

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        generator = self.evaluated_generator().eval()
        # The same noise and times at every validation, so the flow loss compares across steps.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(batch_idx)
            out = generator.training_loss(batch)
        size = len(batch["labels"])
        self.log("val/loss", out.loss, prog_bar=True, sync_dist=True, batch_size=size)
        self.log_dict({f"val/{k}": v for k, v in out.stats.items()}, sync_dist=True, batch_size=size)

    def on_validation_epoch_end(self) -> None:
        self.last_metrics = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
        }
        every = self.hparams.sample_every
        if not every or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        generator = self.evaluated_generator()
        if not generator.tokenizer_name:
            return
        try:
            tokenizer = generator.load_tokenizer(device=self.device)
        except (ZooError, ValueError, OSError) as exc:  # an unreachable tokenizer only costs the picture
            log.warning("no sample grid: tokenizer %s not loadable (%s)", generator.tokenizer_name, exc)
            return
        classes = min(self.hparams.sample_classes, generator.num_classes)
        labels = [c for c in range(classes) for _ in range(4)]
        tokens = generator.sample(labels, cfg=self.hparams.sample_cfg, seed=0)
        if getattr(tokenizer, "modality", None) == "svg":
            images = self._rendered_svgs(tokenizer, tokens)
            if images is None:
                return
        else:
            images = tokenizer.decode(tokens.to(tokenizer.device)).float().cpu()
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "samples"
        save_png(image_grid(images, columns=4), folder / f"step{self.global_step:07d}_samples.png")

    @staticmethod
    def _rendered_svgs(tokenizer: Any, tokens: Any, size: int = 128) -> torch.Tensor | None:
        """SVG samples drawn on white (repaired as the decoder documents), for the sample grid."""
        import warnings

        try:
            from ..models.svg.render import render_svg

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a young model's repairs are expected, not news
                texts = tokenizer.decode(tokens)
            pictures = [torch.from_numpy(render_svg(text, size)).permute(2, 0, 1) for text in texts]
        except (ImportError, ValueError, ZooError) as exc:
            log.warning("no sample grid: SVG samples could not be rendered (%s)", exc)
            return None
        return torch.stack(pictures)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What ``zoo export`` needs to rebuild the generator without this module."""
        generator = self.evaluated_generator()
        checkpoint["zoo"] = {
            "arch": generator.arch,
            "config": generator.config,
            "ema": self.ema is not None,
            "prefix": "generator",
            "steps": int(self.global_step),
            "metrics": dict(self.last_metrics),
            "losses": {"objective": type(generator).__name__},
        }
        checkpoint["zoo_rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "zoo_rng" in checkpoint:
            torch.set_rng_state(checkpoint["zoo_rng"]["torch"])
        config = (checkpoint.get("zoo") or {}).get("config") or {}
        if config.get("tokenizer") and not self.generator.tokenizer_name:
            self._record_tokenizer(config["tokenizer"])
