"""One LightningModule that trains every zoo tokenizer, with or without a GAN.

Optimization is manual because GAN training alternates two optimizers. The discriminator's step
goes through its raw optimizer, so ``trainer.global_step`` counts generator steps only: recipes'
``max_steps``, warmup and ``disc_start`` all mean training iterations, and a resumed run continues
the same count.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from .._factory import create
from ..tokenizer import Tokenizer, TokenizerOutput
from .ema import EMAWeights
from .samples import image_pairs, save_png, signal_pairs, spectrogram_pairs, usage_histogram
from .schedule import warmup_cosine

log = logging.getLogger(__name__)

# Reconstruction terms a recipe can weight by name, and the modalities each applies to.
RECONSTRUCTION_TERMS = {
    "l1": ("image", "audio", "eeg"),
    "l2": ("image", "audio", "eeg"),
    "perceptual": ("image",),
    "mel": ("audio",),
    "stft": ("audio",),
    "eeg": ("eeg",),
}


class TokenizerModule(L.LightningModule):
    """Trains the registered tokenizer ``model`` (any modality) from a recipe.

    Args:
        model: registry name of the tokenizer (``zoo list``), e.g. ``"vq16_tiny"``.
        model_args: constructor overrides for that tokenizer.
        losses: reconstruction terms and their weights, by name: ``l1``, ``l2``, ``perceptual``
            (images), ``mel`` and ``stft`` (audio), ``eeg`` (EEG time + spectral). The tokenizer's
            own losses (``vq/...``, and ``rec/...`` from models that score their reconstruction
            themselves) are always added, already weighted; ``{}`` trains on those alone. Terms
            compare ``recon`` with the output's ``target`` when the model sets one (a spectrogram).
        loss_args: constructor arguments of the named terms' loss modules, e.g. Vocos's single mel
            ``{"mel": {"window_lengths": [1024], "n_mels": [100], "natural_log": true}}`` (see
            ``zoo.losses.MultiResolutionMelLoss``, ``MultiResolutionSTFTLoss``, ``EEGReconstructionLoss``).
        perceptual_weights: file with the perceptual backbone's weights (safetensors or a torch file);
            without it the perceptual term uses a frozen random-feature network, stated in the log
            and the exported model card. Nothing is ever downloaded.
        perceptual_backbone: timm name of that backbone.
        discriminator: a discriminator module (``zoo.nn.discriminators``); ``None`` trains without GAN.
        gan_loss: ``"hinge"``, ``"hinge_clamped"``, ``"least_squares"`` or ``"non_saturating"``.
        gan_weight: weight of the generator's adversarial loss (times the adaptive weight if on).
        adaptive_gan_weight: VQGAN's balancing by gradient norms at the decoder's last layer.
        feature_matching_weight: weight of the discriminator feature-matching loss (audio codecs).
        lecam_weight: LeCam regularisation of the discriminator (0 disables).
        disc_start: iteration at which the discriminator and adversarial loss switch on.
        late_gan_weight, late_gan_start: a second adversarial weight from iteration ``late_gan_start`` on
            (KARL's stage 2: 0.2, then 0.8 from epoch 100); ``None`` keeps ``gan_weight``.
        generator_every: with the GAN on, only every ``generator_every``-th iteration updates the
            tokenizer and the others update the discriminator alone (KARL: 9); 1 updates both every
            iteration. Either way each iteration advances ``trainer.global_step`` once.
        lr, disc_lr, betas, weight_decay: AdamW settings (``disc_lr`` defaults to ``lr``).
        warmup_steps, min_lr_ratio: linear warmup, then cosine decay to ``min_lr_ratio * lr`` at
            ``trainer.max_steps``.
        grad_clip: max gradient norm per optimizer step (``None`` disables).
        ema_decay: keep an EMA copy of the tokenizer (validated and exported instead of the raw
            weights); ``None`` disables.
        sample_every: write reconstruction and codebook-usage PNGs every this many iterations
            (at validation); 0 disables.
        init_from: weights to start from instead of random ones: a registry name with its pretrained tag,
            a Hub repo or a directory written by ``save_pretrained``/``zoo export`` (anything ``zoo.load``
            takes). They must fit ``model`` (with ``model_args``) exactly; a mismatch names the keys.
            Fine-tuning a codec on new data starts here (a resumed run restores its own weights instead).
        init_parts: weights for named submodules from other saved models (anything ``zoo.load`` takes),
            e.g. ``{"base": "exports/vqgan_mage"}`` to start KARL on a trained base tokenizer; each must fit
            its submodule exactly. A saved model of the tokenizer's own class gives its same-named part
            (``{"qformer": "seed"}``: SEED's stage-1 Q-Former from the released tokenizer). Applied after
            ``init_from``.
        freeze: names of submodules to keep fixed, e.g. ``["encoder", "quantizer"]`` to fine-tune only a
            decoder: their parameters get no gradient and they stay in eval mode, so EMA codebooks, k-means
            and dead-code restarts inside them do not move either.
    """

    def __init__(
        self,
        model: str,
        model_args: dict[str, Any] | None = None,
        losses: dict[str, float] | None = None,
        loss_args: dict[str, dict[str, Any]] | None = None,
        perceptual_weights: str | None = None,
        perceptual_backbone: str = "vgg16",
        discriminator: nn.Module | None = None,
        gan_loss: str = "hinge",
        gan_weight: float = 0.1,
        adaptive_gan_weight: bool = True,
        feature_matching_weight: float = 0.0,
        lecam_weight: float = 0.0,
        disc_start: int = 0,
        late_gan_weight: float | None = None,
        late_gan_start: int = 0,
        generator_every: int = 1,
        lr: float = 1e-4,
        disc_lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        grad_clip: float | None = 1.0,
        ema_decay: float | None = None,
        sample_every: int = 500,
        init_from: str | None = None,
        init_parts: dict[str, str] | None = None,
        freeze: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["discriminator"])
        self.automatic_optimization = False
        self.tokenizer: Tokenizer = create(model, **(model_args or {}))
        if init_from:
            self._load_initial_weights(init_from)
        for part, source in (init_parts or {}).items():
            self._load_part(part, source)
        self.frozen = self._freeze(list(freeze or []))
        self.train(self.training)  # Lightning keeps each submodule's mode as it finds it: set it now
        self.modality = self.tokenizer.modality
        self.loss_weights = dict(losses if losses is not None else {"l1": 1.0})
        for name in self.loss_weights:
            if name not in RECONSTRUCTION_TERMS:
                raise ValueError(f"unknown loss {name!r}; known: {', '.join(RECONSTRUCTION_TERMS)}")
            if self.modality not in RECONSTRUCTION_TERMS[name]:
                raise ValueError(f"loss {name!r} does not apply to {self.modality} tokenizers")
        # Frozen loss networks live outside the module tree: they are not trained, checkpointed or
        # exported, and are moved to the module's device when first used.
        self._loss_modules: dict[str, nn.Module] = {}
        self.loss_args = {name: dict(args) for name, args in (loss_args or {}).items()}
        for name in self.loss_args:
            if name not in ("mel", "stft", "eeg") or name not in self.loss_weights:
                raise ValueError(
                    f"loss_args for {name!r}: only the configurable terms (mel, stft, eeg) among the "
                    f"recipe's losses {sorted(self.loss_weights)} take arguments"
                )
            self._loss_module(name)  # a wrong argument fails when the recipe loads
        self.perceptual_source: str | None = None
        if "perceptual" in self.loss_weights:
            from ..losses import PerceptualLoss

            perceptual = PerceptualLoss(backbone=perceptual_backbone, weights=perceptual_weights)
            self._loss_modules["perceptual"] = perceptual
            self.perceptual_source = perceptual.source
            log.warning("perceptual loss: %s", perceptual.source)
        self.discriminator = discriminator
        if discriminator is not None:
            from ..losses import LeCamRegularizer
            from ..losses import gan_loss as check_gan_loss

            check_gan_loss(gan_loss)  # an unknown name fails when the recipe loads

            self.lecam = LeCamRegularizer() if lecam_weight > 0 else None
        self.ema = EMAWeights(self.tokenizer, ema_decay) if ema_decay else None
        self._val_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._val_spectral = False  # whether _val_batch holds spectrograms (see TokenizerOutput.target)
        self._val_counts: torch.Tensor | None = None
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ starting point
    def _load_initial_weights(self, source: str) -> None:
        from ..hub import load, load_weights

        pretrained = load(source)
        load_weights(self.tokenizer, pretrained.state_dict(), f"init_from {source!r}")
        log.info("initial weights: %s", source)

    def _load_part(self, part: str, source: str) -> None:
        from ..hub import load, load_weights

        modules = dict(self.tokenizer.named_modules())
        if not part or part not in modules:
            top = ", ".join(name for name, _ in self.tokenizer.named_children())
            raise ValueError(f"init_parts: no submodule {part!r} in {self.hparams.model}; its parts: {top}")
        donor = load(source)
        if type(donor) is type(self.tokenizer):  # the same part of a model like this one
            donor = dict(donor.named_modules()).get(part, donor)
        load_weights(modules[part], donor.state_dict(), f"init_parts[{part!r}] {source!r}")
        log.info("initial weights of %s: %s", part, source)

    def _freeze(self, names: list[str]) -> list[str]:
        """Stop gradients into the named submodules; `train` keeps them in eval mode."""
        modules = dict(self.tokenizer.named_modules())
        unknown = [n for n in names if n.rstrip(".") not in modules or not n.rstrip(".")]
        if unknown:
            top = ", ".join(name for name, _ in self.tokenizer.named_children())
            raise ValueError(f"freeze: no submodule(s) {unknown} in {self.hparams.model}; its parts: {top}")
        frozen = [n.rstrip(".") for n in names]
        for name in frozen:
            for parameter in modules[name].parameters():
                parameter.requires_grad_(False)
        if frozen and not any(p.requires_grad for p in self.tokenizer.parameters()):
            raise ValueError(f"freeze: {frozen} leaves nothing of {self.hparams.model} to train")
        return frozen

    def train(self, mode: bool = True) -> TokenizerModule:
        super().train(mode)
        frozen = getattr(self, "frozen", [])
        modules = dict(self.tokenizer.named_modules()) if frozen else {}
        for name in frozen:
            modules[name].eval()
        return self

    # ------------------------------------------------------------------ losses
    def _loss_module(self, name: str) -> nn.Module:
        if name not in self._loss_modules:
            from .. import losses

            args = self.loss_args.get(name, {})
            if name == "mel":
                module = losses.MultiResolutionMelLoss(sample_rate=self.tokenizer.sample_rate, **args)
            elif name == "stft":
                module = losses.MultiResolutionSTFTLoss(**args)
            else:
                module = losses.EEGReconstructionLoss(**args)
            self._loss_modules[name] = module
        module = self._loss_modules[name]
        return module.to(self.device)

    def reconstruction_losses(self, recon: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted reconstruction terms keyed ``rec/<name>``."""
        terms = {}
        for name, weight in self.loss_weights.items():
            if weight == 0:
                continue
            if name == "l1":
                value = F.l1_loss(recon, target)
            elif name == "l2":
                value = F.mse_loss(recon, target)
            else:
                value = self._loss_module(name)(recon, target)
            terms[f"rec/{name}"] = weight * value
        return terms

    def _loss_names(self, out: Any) -> list[str]:
        """The GAN loss of each of the discriminator's maps: its own (a `CombinedDiscriminator` member's)
        or the recipe's ``gan_loss``."""
        return [name or self.hparams.gan_loss for name in out.loss_names()]

    # ------------------------------------------------------------------ optimizers
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.tokenizer.parameters() if p.requires_grad]
        opt_g = torch.optim.AdamW(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else None

        def factor(step: int) -> float:
            return warmup_cosine(
                step, warmup_steps=hp.warmup_steps, total_steps=total, min_ratio=hp.min_lr_ratio
            )

        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, factor)
        if self.discriminator is None:
            return [opt_g], [sched_g]
        opt_d = torch.optim.AdamW(
            self.discriminator.parameters(),
            lr=hp.disc_lr or hp.lr,
            betas=tuple(hp.betas),
            weight_decay=hp.weight_decay,
        )
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, factor)
        return [opt_g, opt_d], [sched_g, sched_d]

    def _clip(self, params: Any) -> None:
        if self.hparams.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params), self.hparams.grad_clip)

    # ------------------------------------------------------------------ training
    @staticmethod
    def inputs(batch: Any) -> torch.Tensor:
        """The media tensor of a batch (a tensor, or the first element of a tuple/list or ``x`` of a dict)."""
        if isinstance(batch, torch.Tensor):
            return batch
        if isinstance(batch, dict):
            return batch["x"]
        return batch[0]

    def gan_weight_at(self, step: int) -> float:
        """The adversarial weight at iteration ``step`` (0 before ``disc_start``)."""
        hp = self.hparams
        if self.discriminator is None or step < hp.disc_start:
            return 0.0
        if hp.late_gan_weight is not None and step >= hp.late_gan_start:
            return float(hp.late_gan_weight)
        return float(hp.gan_weight)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = self.inputs(batch)
        step = self.global_step
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        opt_g = optimizers[0]
        gan_weight = self.gan_weight_at(step)
        gan_on = gan_weight > 0
        every = max(1, int(self.hparams.generator_every))
        update_generator = not gan_on or every == 1 or (step + 1) % every == 0

        # A discriminator-only iteration needs the reconstructions, not the graph that made them.
        with torch.set_grad_enabled(update_generator):
            out: TokenizerOutput = self.tokenizer.training_output(x, step)
        target = x if out.target is None else out.target
        judged = out.judged or ([(out.recon, None)] if out.recon is not None else [])
        if not update_generator:  # a discriminator-only iteration; its optimizer step counts the iteration
            d_terms = self._discriminator_step(target, judged, optimizers[1], count_step=True)
            with warnings.catch_warnings():  # the generator's schedule follows iterations, stepped or not
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                for scheduler in schedulers:
                    scheduler.step()
            self.log_dict({f"train/{k}": v for k, v in d_terms.items()})
            return sum(d_terms.values())
        terms: dict[str, torch.Tensor] = {}
        for recon, key in judged:
            own = self.reconstruction_losses(recon, target)
            if gan_on:
                adversarial = self._generator_adversarial(target, recon, sum(own.values()), key, gan_weight)
                own.update(adversarial)
            for name, value in own.items():
                terms[name] = terms[name] + value if name in terms else value
        terms.update(out.losses)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {step}: {_fmt(terms)}")
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip(self.tokenizer.parameters())
        opt_g.step()
        schedulers[0].step()
        if self.ema is not None:
            self.ema.update(self.tokenizer)

        if gan_on and every == 1:
            d_terms = self._discriminator_step(target, [(r.detach(), k) for r, k in judged], optimizers[1])
            schedulers[1].step()
            terms.update(d_terms)
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()})
        self.log_dict({f"train/{k}": v for k, v in out.stats.items()}, prog_bar=False)
        self.log("train/lr", schedulers[0].get_last_lr()[0])
        return loss.detach()

    def _judge(self, images: torch.Tensor, key: int | None) -> Any:
        return self.discriminator(images) if key is None else self.discriminator(images, key)

    def _generator_adversarial(
        self,
        x: torch.Tensor,
        recon: torch.Tensor,
        rec_total: torch.Tensor,
        key: int | None = None,
        gan_weight: float | None = None,
    ) -> dict[str, torch.Tensor]:
        from ..losses.gan import mixed_generator_loss

        self.discriminator.requires_grad_(False)
        try:
            fake = self._judge(recon, key)
            adversarial = mixed_generator_loss(fake.logits, self._loss_names(fake))
            weight = torch.tensor(
                self.hparams.gan_weight if gan_weight is None else gan_weight, device=x.device
            )
            last = self.tokenizer.last_layer()
            if self.hparams.adaptive_gan_weight and last is not None and torch.is_tensor(rec_total):
                from ..losses import adaptive_generator_weight

                weight = weight * adaptive_generator_weight(rec_total, adversarial, last)
            terms = {"gan/generator": weight * adversarial}
            if self.hparams.feature_matching_weight > 0:
                from ..losses import feature_matching_loss

                with torch.no_grad():
                    real = self._judge(x, key)
                terms["gan/feature_matching"] = self.hparams.feature_matching_weight * feature_matching_loss(
                    real.features, fake.features
                )
            return terms
        finally:
            self.discriminator.requires_grad_(True)

    def _discriminator_step(
        self,
        x: torch.Tensor,
        judged: list[tuple[torch.Tensor, int | None]],
        opt_d: Any,
        *,
        count_step: bool = False,
    ) -> dict[str, torch.Tensor]:
        """One discriminator update on real ``x`` against every judged reconstruction (by its member).

        Normally the raw optimizer steps, so ``global_step`` counts generator steps only; on an iteration
        without a generator step (``count_step``) Lightning's wrapper steps, so the iteration still counts.
        """
        from ..losses.gan import mixed_discriminator_loss

        terms: dict[str, torch.Tensor] = {}
        for fake, key in judged:
            real_out, fake_out = self._judge(x, key), self._judge(fake.detach(), key)
            d_loss = mixed_discriminator_loss(real_out.logits, fake_out.logits, self._loss_names(real_out))
            terms["gan/discriminator"] = terms.get("gan/discriminator", 0) + d_loss
            if self.lecam is not None:
                lecam = self.hparams.lecam_weight * self.lecam(real_out.logits, fake_out.logits)
                terms["gan/lecam"] = terms.get("gan/lecam", 0) + lecam
        total = sum(terms.values())
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self._clip(self.discriminator.parameters())
        if count_step:
            opt_d.step()
        else:
            opt_d.optimizer.step()
        return {k: v.detach() for k, v in terms.items()}

    # ------------------------------------------------------------------ validation
    def evaluated_tokenizer(self) -> Tokenizer:
        """The weights that are validated and exported: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.tokenizer

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        tokenizer = self.evaluated_tokenizer()
        tokenizer.eval()
        out = tokenizer(x)
        if out.recon is None:  # a model scored only by its own losses (SEED without a pixel decoder)
            metrics = {f"val/{k}": v for k, v in out.losses.items()}
            metrics["val/loss"] = sum(out.losses.values())
            self.log_dict(metrics, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
            self._count_ids(out.ids, tokenizer)
            return
        spectral = out.target is not None
        x = x if out.target is None else out.target
        metrics = {"val/l1": F.l1_loss(out.recon, x), "val/mse": F.mse_loss(out.recon, x)}
        if self.modality == "image":
            mse = F.mse_loss(out.recon.clamp(0, 1), x, reduction="none").flatten(1).mean(1)
            metrics["val/psnr"] = (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean()
        self.log_dict(metrics, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        self._count_ids(out.ids, tokenizer)
        if batch_idx == 0:
            self._val_batch = (x.detach().cpu(), out.recon.detach().float().cpu())
            self._val_spectral = spectral

    def _count_ids(self, ids: torch.Tensor | None, tokenizer: Tokenizer) -> None:
        """Accumulate codebook usage over the validation epoch (the usage PNG)."""
        if ids is None:
            return
        ids = ids.detach().reshape(-1)
        counts = torch.bincount(ids[ids >= 0], minlength=tokenizer.codebook_sizes[0]).cpu()
        self._val_counts = counts if self._val_counts is None else self._val_counts + counts

    def on_validation_epoch_end(self) -> None:
        self.last_metrics = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
        }
        every = self.hparams.sample_every
        if every and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "samples"
            if self._val_batch is not None:
                original, recon = self._val_batch
                if self.modality == "image":
                    picture = image_pairs(original, recon)
                elif self._val_spectral:
                    picture = spectrogram_pairs(original, recon)
                else:
                    picture = signal_pairs(original, recon)
                save_png(picture, folder / f"step{self.global_step:07d}_reconstructions.png")
            if self._val_counts is not None:
                save_png(
                    usage_histogram(self._val_counts),
                    folder / f"step{self.global_step:07d}_codebook_usage.png",
                )
        self._val_batch, self._val_counts = None, None

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Everything ``zoo export`` needs without rebuilding the LightningModule or its losses."""
        tokenizer = self.evaluated_tokenizer()
        checkpoint["zoo"] = {
            "arch": tokenizer.arch,
            "config": tokenizer.config,
            "ema": self.ema is not None,
            "steps": int(self.global_step),
            "metrics": dict(self.last_metrics),
            "perceptual_source": self.perceptual_source,
            "losses": dict(self.loss_weights),
            "gan": None if self.discriminator is None else type(self.discriminator).__name__,
        }
        # Random streams (quantizer dropout, augmentation in the main process) resume where they were.
        checkpoint["zoo_rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "zoo_rng" in checkpoint:
            torch.set_rng_state(checkpoint["zoo_rng"]["torch"])


def _fmt(terms: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
