"""Hi-MAR (two-phase MAR with low-resolution pivots) against HiDream-ai/himar @ 1d378c1, at the Hi-MAR-B
size, over the latents of MAR's KL-16 VAE.

Upstream's official pipeline is ``main_himar.py --evaluate`` (``engine_mar.evaluate``): the README's
Hi-MAR-B flags (``--model himar_base --diffloss_d 6 --diffloss_w 1024 --cond_scale 8 --cond_dim 16
--two_diffloss --global_dm --gdm_d 6 --gdm_w 512 --head 8 --ratio 4 --cos --num_iter 4 --cfg 2.5
--re_cfg 2.7 --cfg_schedule linear``, temperature 1.0, ``--num_sampling_steps 100``) are parsed with
``main_himar.get_args_parser`` and the network is built from them as ``main_himar.main`` builds it; the
sample is ``HiMAR.sample_tokens`` (32 pivot iterations with the MLP head, then ``num_iter`` iterations
with the DiT head over the whole map). The zoo model is ``himar_b`` loaded from ``{"model", "model_ema"}``
(``checkpoint-last.pth``'s layout) by ``convert_himar``, sampled with its default guidance and steps.

Each file becomes the substrate's (``kl16``, seeded random weights) scaled latents ``[1, 16, 16, 16]``,
what the engine feeds (``posterior * 0.2325``; the posterior mean here), plus the pivots: the same
tokenizer on the image bicubic-downsampled to 128 px (``main_cache.py``); the label comes from the
file name. Both sides get the same tensors.

- Teacher-forced (eval mode: dropouts and class dropout off): one seeded pivot mask (a share in [0.7, 1]
  of the 64 pivots, all main tokens) and one main mask (a cosine share of the 256 main tokens); upstream's
  ``forward_mae_encoder/decoder_stage1`` and ``_stage2`` (phase 2's pivot slots get the phase-1
  features) against the zoo's ``encode_phase``/``decode_phase``; then the two losses under the same
  seeded global draws: upstream's ``global_forward_loss`` (DiT head) against the zoo's ``_dit_loss``, and
  upstream's MLP-head diffusion ``training_losses`` with a uniformly drawn timestep, masked-averaged,
  against the zoo's ``_mlp_loss``, and the engine's weighted total. Upstream's ``DiffLoss.forward`` reads
  an undefined timestep and raises, so it is not called: the uniform draw is the zoo's documented fix,
  and this comparison shows the rest of that loss equal. The column holds both feature maps, both
  losses and the total.
- Sample (``Output.decoded``: the 8x8 pivots then the 16x16 latents): upstream's randomness is routed to
  a generator seeded like the zoo's ``seed=``: ``sample_orders_step`` returns the zoo's orders (pivots,
  then main tokens, from ``rand().argsort()``), each head's starting ``torch.randn`` and each
  ancestral step's noise come from that generator; draws upstream makes and never reads (the guided
  copy's half of the step noise, the last step's, and the DiT loop's unused ``gt_noise``) get zeros.

CPU settings, the same on both sides: the DiT head runs ``--option dit_steps=N`` DDPM steps per MAR
iteration (default 10; upstream hard-codes 250, replaced by ``create_diffusion(str(N))``), the MLP head
``--option head_steps=N`` (default 100, upstream's ``--num_sampling_steps``), ``--option steps=N``
phase-2 iterations (default: the README's 4; phase 1's 32 are fixed upstream). ``.cuda()`` is an
identity during the runs, and no autocast is used (upstream samples under CUDA fp16 autocast).
``--option size=tiny`` narrows both networks (width 64, depth 2) for quick checks. Phase 1's 32
transformer passes cannot be shortened on upstream's side, so a paper-size file takes minutes per side.

With random weights the heads' noise predictions are far off, so the sampled latents grow to about
1e5 on both sides: their differences (about 1e-1) are float32 rounding of those magnitudes (relative
about 1e-6). Before the zoo paired each pivot step's noise rows with the revealed tokens in raster
order, as upstream's ``nonzero`` gather does, its seeded pivots differed from upstream's here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .common import GeneratorAdapter, Output, cuda_calls_on_cpu, randomize, state_dict_of, through_converter

TAG = "himar_b.in1k_256"
# the README's Hi-MAR-B evaluation flags that shape the network and its sampling (paths, output and
# distributed flags left out)
_EVAL_LINES = (
    "--img_size 256 --vae_embed_dim 16 --vae_stride 16 --patch_size 1 --model himar_base",
    "--diffloss_d 6 --diffloss_w 1024 --num_iter 4 --cfg 2.5 --re_cfg 2.7 --cfg_schedule linear",
    "--cond_scale 8 --cond_dim 16 --two_diffloss --global_dm --gdm_d 6 --gdm_w 512 --eval_bsz 256",
    "--load_epoch -1 --head 8 --ratio 4 --cos --evaluate",
)
EVAL_FLAGS = tuple(flag for line in _EVAL_LINES for flag in line.split())
TINY_UPSTREAM = {
    "width": 64,
    "depth": 2,
    "heads": 4,
    "diffloss_d": 2,
    "diffloss_w": 64,
    "gdm_d": 2,
    "gdm_w": 64,
}
TINY_ZOO = {
    "dim": 64,
    "encoder_depth": 2,
    "decoder_depth": 2,
    "heads": 4,
    "head_depth": 2,
    "head_width": 64,
    "dit_depth": 2,
    "dit_width": 64,
    "dit_heads": 4,
}


class HiMARAdapter(GeneratorAdapter):
    model = "himar_b"
    tag = TAG
    card = "himar"
    substrate = "kl16"
    upstream_files = (
        "main_himar.py",
        "models/himar.py",
        "models/diffloss.py",
        "models/models.py",
        "diffusion/__init__.py",
        "diffusion/gaussian_diffusion.py",
        "diffusion/respace.py",
    )
    # main_himar.py (imported for its argument parser) pulls in logging and FID tools at top level
    stubs = ("torch.utils.tensorboard", "torch_fidelity", "cv2")
    description = (
        "Hi-MAR-B, main_himar.py --evaluate (README flags); features + both losses, seeded two-phase "
        "sample (--option dit_steps/head_steps/steps)"
    )
    columns = ("teacher-forced features and losses", "sampled pivots and latents (relative)")
    # random weights make the sampled latents grow to ~1e5 on both sides: their scale is arbitrary
    relative = (False, True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dit_steps = self.option_int("dit_steps", 10)
        self.head_steps = self.option_int("head_steps", 100)
        self.steps = self.option_int("steps", 0) or None
        self.tiny = self.options.get("size", "") == "tiny"
        self.args: Any = None
        self._pivots: dict[Path, torch.Tensor] = {}

    # ------------------------------------------------------------------ build
    def build(self) -> tuple[Any, Any]:
        with self.imports():
            import main_himar
            from diffusion import create_diffusion
            from models import himar

        flags = [*EVAL_FLAGS, "--num_sampling_steps", str(self.head_steps)]
        if self.steps:
            flags += ["--num_iter", str(self.steps)]
        args = self.args = main_himar.get_args_parser().parse_args(flags)
        kwargs = {  # the keyword arguments main_himar.main passes
            "img_size": args.img_size,
            "vae_stride": args.vae_stride,
            "patch_size": args.patch_size,
            "vae_embed_dim": args.vae_embed_dim,
            "mask_ratio_min": args.mask_ratio_min,
            "label_drop_prob": args.label_drop_prob,
            "class_num": args.class_num,
            "attn_dropout": args.attn_dropout,
            "proj_dropout": args.proj_dropout,
            "buffer_size": args.buffer_size,
            "diffloss_d": args.diffloss_d,
            "diffloss_w": args.diffloss_w,
            "num_sampling_steps": args.num_sampling_steps,
            "diffusion_batch_mul": args.diffusion_batch_mul,
            "grad_checkpointing": args.grad_checkpointing,
            "cond_drop_prob": args.cond_drop_prob,
            "diff_seqlen": args.diff_seqlen,
            "step_warmup": args.step_warmup,
            "step_stage2_rate": args.step_stage2_rate,
            "cond_scale": args.cond_scale,
            "cond_dim": args.cond_dim,
            "two_diffloss": args.two_diffloss,
            "seq_len": args.seq_len,
            "global_dm": args.global_dm,
            "gdm_w": args.gdm_w,
            "gdm_d": args.gdm_d,
            "head": args.head,
            "ratio": args.ratio,
            "cos": args.cos,
        }
        torch.manual_seed(self.seed)
        if self.tiny:
            t = TINY_UPSTREAM
            kwargs.update(
                diffloss_d=t["diffloss_d"], diffloss_w=t["diffloss_w"], gdm_d=t["gdm_d"], gdm_w=t["gdm_w"]
            )
            kwargs["head"] = t["heads"]
            net = himar.HiMAR(
                encoder_embed_dim=t["width"],
                encoder_depth=t["depth"],
                encoder_num_heads=t["heads"],
                decoder_embed_dim=t["width"],
                decoder_depth=t["depth"],
                decoder_num_heads=t["heads"],
                mlp_ratio=4,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                **kwargs,
            )
        else:
            net = himar.__dict__[args.model](**kwargs)
        net.eval()
        randomize(net, self.seed)
        if self.dit_steps != 250:  # GlobalDiffLoss hard-codes 250 sampling steps
            net.cond_diffloss.gen_diffusion = create_diffusion(
                str(self.dit_steps), noise_schedule="cosine", learn_sigma=False
            )
        state = state_dict_of(net)
        zoo_model = through_converter(
            self.tag, {"model": state, "model_ema": state, "epoch": 0}, **(TINY_ZOO if self.tiny else {})
        )
        return net, zoo_model

    # ------------------------------------------------------------------ inputs
    def before_runs(self, files: Sequence[Path]) -> None:
        for path in files:  # latents and pivots up front, outside both sides' timed runs
            self.inputs(path)

    def inputs(self, path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Main latents ``[1, 16, 16, 16]``, pivots ``[1, 16, 8, 8]`` (scaled, posterior means) and label."""
        from zoo.io import read_media

        latents = self.tokens(path).latents.float()
        if path not in self._pivots:
            tok = self.tokenizer
            with torch.no_grad():
                x = tok.prepare(read_media(path, modality=tok.modality), path=path)
                small = nn.functional.interpolate(
                    x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bicubic"
                )
                self._pivots[path] = tok.encode(small).latents.float()
        return latents, self._pivots[path], torch.tensor([self.label(path)])

    def masks(self, path: Path, n_pivot: int, n_main: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One seeded pivot mask (phase 1) and main mask (phase 2), ``1`` = masked, the same on both sides."""
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.label(path))
        order_p, order_m = torch.randperm(n_pivot, generator=gen), torch.randperm(n_main, generator=gen)
        u1, u2 = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
        n1 = math.ceil(n_pivot * (0.7 + 0.3 * u1))
        n2 = max(1, math.ceil(n_main * math.cos(u2 * math.pi / 2)))
        mask_p = torch.zeros(1, n_pivot).index_fill_(1, order_p[:n1], 1.0)
        mask_m = torch.zeros(1, n_main).index_fill_(1, order_m[:n2], 1.0)
        return mask_p, mask_m

    def sample_seed(self, path: Path) -> int:
        return self.seed * 1000 + self.label(path)

    # ------------------------------------------------------------------ upstream
    def run_upstream(self, net: Any, path: Path) -> Output:
        latents, pivots, labels = self.inputs(path)
        n_p, n_m = pivots.shape[-1] ** 2, latents.shape[-1] ** 2
        mask_p, mask_m = self.masks(path, n_p, n_m)
        mask1 = torch.cat([mask_p, torch.ones(1, n_m)], dim=1)
        mask2 = torch.cat([torch.zeros(1, n_p), mask_m], dim=1)
        with cuda_calls_on_cpu():
            emb = net.class_emb(labels)
            x, cond = net.patchify(latents), net.patchify(pivots)
            enc = net.forward_mae_encoder_stage1(x, mask1, emb, task=0, cond=cond)
            z1 = net.forward_mae_decoder_stage1(enc, mask1, task=0)[:, :n_p]
            # HiMAR.forward_loss's reshapes and repeats, then DiffLoss.forward with its timestep drawn
            k = net.diffusion_batch_mul
            target, z = cond.reshape(n_p, -1).repeat(k, 1), z1.reshape(n_p, -1).repeat(k, 1)
            weights = mask_p.reshape(-1).repeat(k)
            torch.manual_seed(self.seed + 2)
            diffusion = net.diffloss.train_diffusion
            t = torch.randint(0, diffusion.num_timesteps, (len(target),))
            per_token = diffusion.training_losses(net.diffloss.net, target, t, {"c": z})["loss"]
            loss1 = (per_token * weights).sum() / weights.sum()
            enc = net.forward_mae_encoder_stage2(x, mask2, emb, task=1, cond=cond, small_z=z1.detach())
            z2 = net.forward_mae_decoder_stage2(enc, mask2, task=1)[:, n_p:]
            torch.manual_seed(self.seed + 3)
            loss2 = net.global_forward_loss(z=z2, target=latents, mask=mask_m, c=labels)
            # engine_mar.train_one_epoch's weighting of HiMAR.forward's (2.0 loss1, 0.75 loss2)
            total = (n_p / (n_p + n_m)) * 2.0 * loss1 + (n_m / (n_p + n_m)) * 0.75 * loss2
            teacher = torch.cat([z1.flatten(), z2.flatten(), torch.stack([loss1, loss2, total])])

            args = self.args
            rng = torch.Generator().manual_seed(self.sample_seed(path))
            with _routed_draws(net, rng, n_p):
                pivots_s, latents_s = net.sample_tokens(
                    bsz=1,
                    num_iter=args.num_iter,
                    cfg=args.cfg,
                    re_cfg=args.re_cfg,
                    cfg_schedule=args.cfg_schedule,
                    labels=labels,
                    temperature=args.temperature,
                )
        return Output(latent=teacher, decoded=torch.cat([pivots_s.flatten(), latents_s.flatten()]))

    # ------------------------------------------------------------------ zoo
    def run_zoo(self, model: Any, path: Path) -> Output:
        latents, pivots, labels = self.inputs(path)
        n_p, n_m = model.n_pivot, model.n_main
        mask_p, mask_m = self.masks(path, n_p, n_m)
        mask1 = torch.cat([mask_p, torch.ones(1, n_m)], dim=1)
        mask2 = torch.cat([torch.zeros(1, n_p), mask_m], dim=1)
        p = pivots.flatten(2).transpose(1, 2)
        main_in = model.z_proj(latents.flatten(2).transpose(1, 2))
        emb = model._class_embedding(labels, False)
        z1 = model.decode_phase(0, model.encode_phase(0, model.cond_proj(p), main_in, mask1, emb), mask1)[
            :, :n_p
        ]
        torch.manual_seed(self.seed + 2)
        loss1 = model._mlp_loss(z1, p, mask_p)
        z2 = model.decode_phase(1, model.encode_phase(1, model.cond_z_proj(z1), main_in, mask2, emb), mask2)
        z2 = z2[:, n_p:]
        torch.manual_seed(self.seed + 3)
        loss2 = model._dit_loss(z2, latents, mask_m)
        w1, w2 = model.phase_weights
        total = (n_p * w1 * loss1 + n_m * w2 * loss2) / (n_p + n_m)
        teacher = torch.cat([z1.flatten(), z2.flatten(), torch.stack([loss1, loss2, total])])

        tokens, pivots_s = model.sample(
            labels,
            steps=self.steps,
            dit_steps=self.dit_steps,
            head_steps=self.head_steps,
            seed=self.sample_seed(path),
            return_pivots=True,
        )
        return Output(latent=teacher, decoded=torch.cat([pivots_s.flatten(), tokens.latents.flatten()]))


# ---------------------------------------------------------------------------------------------- patches
@contextlib.contextmanager
def _routed_draws(net: Any, rng: torch.Generator, n_pivot: int) -> Iterator[None]:
    """Route the random draws of upstream's ``sample_tokens`` to ``rng`` in the zoo's order.

    ``sample_orders_step`` (numpy shuffles upstream) returns ``rand().argsort()`` orders, pivots first;
    ``torch.randn`` (each head's starting noise) draws from ``rng``; inside each ancestral step the
    step noise ``torch.randn_like`` draws from ``rng`` for the rows that are read (the conditional half
    under guidance) and is zero where upstream's draw is never read (the guided copy, the last step),
    as is the DiT loop's unused ``gt_noise`` drawn outside the step.
    """
    real_randn, real_randn_like = torch.randn, torch.randn_like
    step: dict[str, Any] = {}

    def orders(bsz: int) -> torch.Tensor:
        n_main = net.seq_len - n_pivot
        order_p = torch.rand(bsz, n_pivot, generator=rng).argsort(1)
        order_m = torch.rand(bsz, n_main, generator=rng).argsort(1)
        return torch.cat([order_p, n_pivot + order_m], dim=1)

    def randn(*size: Any, **kwargs: Any) -> torch.Tensor:
        shape = size[0] if len(size) == 1 and not isinstance(size[0], int) else size
        return real_randn(tuple(shape), generator=rng, dtype=kwargs.get("dtype"))

    def randn_like(x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if not step or step["t"] == 0:
            return torch.zeros_like(x)
        rows = len(x) // 2 if step["guided"] else len(x)
        drawn = real_randn(x[:rows].shape, generator=rng, dtype=x.dtype)
        return torch.cat([drawn, torch.zeros_like(x[rows:])])

    def wrap(diffusion: Any) -> None:
        original = diffusion.p_sample

        def p_sample(model: Any, x: torch.Tensor, t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            step.update(t=int(t[0]), guided="cfg_scale" in (kwargs.get("model_kwargs") or {}))
            try:
                return original(model, x, t, *args, **kwargs)
            finally:
                step.clear()

        diffusion.p_sample = p_sample

    heads = (net.diffloss.gen_diffusion, net.cond_diffloss.gen_diffusion)
    net.sample_orders_step = orders
    for diffusion in heads:
        wrap(diffusion)
    torch.randn, torch.randn_like = randn, randn_like  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randn, torch.randn_like = real_randn, real_randn_like  # type: ignore[assignment]
        del net.sample_orders_step
        for diffusion in heads:
            del diffusion.p_sample


ADAPTERS = {"himar": HiMARAdapter}
