"""xAR's generator against OliverRensu/xAR @ 121e9c9: the xAR-B network (``models/xar.py::xar_base``,
172.6 M parameters) on MAR's KL-16 latents, 4 cells of 8x8 tokens.

Upstream's official sampling is ``eval.py`` -> ``engine_xar.evaluate``: the network is built as
``xar.__dict__[args.model](img_size, vae_stride, patch_size, vae_embed_dim, label_drop_prob, class_num,
attn_dropout, proj_dropout)`` from ``eval.py``'s argument parser, loaded from a bare state dict, and
``sample_tokens(num_steps, cfg, label)`` draws latents still in KL-16 units times 0.2325 (``evaluate``
divides by 0.2325 before ``vae.decode``). The README's xAR-B command passes ``--num_steps 40 --cfg 2.7``;
the adapter reads ``eval.py``'s parser with those arguments. Training (``engine_xar.train_one_epoch``)
feeds ``posterior.sample() * 0.2325``; both sides here get the zoo's ``kl16`` latents, which are already
multiplied by 0.2325 (the posterior mean of the substrate's seeded random weights).

- Teacher-forced output: upstream's own training ``forward(latents, labels)`` in train mode with every
  dropout and the class dropout off, its predicted velocity read by a hook on ``pred``. The batch is the
  file's latents twice, under the file's class and under the null class 1000 (upstream's ``squeeze``
  calls break a batch of one). Its random draws are seeded (torch and numpy's global generators); the
  zoo side makes the same per-cell times (numpy's logit-normal) and noise, and calls ``XAR.velocity``
  on the noised tokens with the block-causal mask. The zoo's own ``training_loss`` draws its times from
  torch instead (a documented difference), so it cannot replay upstream's draws.
- Sampled latents: ``sample_tokens`` after ``torch.manual_seed`` against ``XAR.sample(seed=...)`` at
  the README's cfg 2.7 (linear ramp over the cells) and, concatenated after it, at cfg 1. Guided, both
  sides run the same batches and agree bit for bit; at cfg 1 the zoo skips upstream's unused null-class
  half, so its matrix products have half the rows and round differently (about 1e-6 on latents of
  magnitude 5; a deliberate difference: half the work). ``--option cfg1=0`` leaves the cfg 1 sample out,
  which shows the guided samples equal bit for bit. Upstream's default is 40 Euler-Maruyama steps per cell
  (160 network calls at batch 2); on CPU the adapter uses ``--option steps=6`` (both sides; upstream's
  sampler needs at least 3). ``--option steps=40`` runs upstream's setting.

Adjustments to run upstream's code here, none of which changes its arithmetic: ``models/xar.py`` imports
``flash_attn`` at top level without using it, and ``eval.py``/``engine_xar.py`` import ``torch_fidelity``,
``cv2`` and TensorBoard for the FID evaluation and image files; these are stubs when missing. Upstream
moves a few tensors with ``.cuda()`` (labels, start noise); inside the adapter's calls
``torch.Tensor.cuda`` returns the tensor unchanged (restored afterwards), and both sides run float32 on
CPU (``evaluate`` runs under CUDA fp16 autocast). ``--option depth=N`` builds N encoder and N decoder
blocks on both sides (for quick checks; the paper's 8 by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .common import (
    GeneratorAdapter,
    Output,
    cuda_calls_on_cpu,
    randomize,
    state_dict_of,
    through_converter,
    training_without_dropout,
)

TAG = "xar_b.in1k_256"
# README's "Evaluate xAR-B with classifier-free guidance" command (the arguments eval.py's parser reads)
EVAL_ARGS = ["--model", "xar_base", "--num_steps", "40", "--cfg", "2.7"]
NULL_CLASS = 1000  # upstream's hard-coded null label (row 1000 of the 1001-row class table)
CELLS, CELL_TOKENS = 4, 64
DEFAULT_STEPS = 6


def _dropout_rates(net: Any) -> list[tuple[Any, str]]:
    """xAR's dropout rates outside ``nn.Dropout``: the class-label drop and float attention dropouts."""
    rates = [(m, "attn_drop") for m in net.modules() if isinstance(getattr(m, "attn_drop", None), float)]
    return [(net, "label_drop_prob"), *rates]


class XARAdapter(GeneratorAdapter):
    model = "xar_b"
    tag = TAG
    card = "xar"
    substrate = "kl16"
    upstream_files = ("models/xar.py", "models/sampler.py", "models/rope.py", "eval.py", "engine_xar.py")
    # flash_attn: imported and unused by models/xar.py; the rest: eval.py's FID evaluation and logging
    stubs = ("flash_attn", "torch_fidelity", "cv2", "torch.utils.tensorboard")
    description = "xAR-B, eval.py's sample_tokens (cfg 2.7 and 1, --option steps=6 of 40) + training forward"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps = self.option_int("steps", DEFAULT_STEPS)
        if self.steps < 3:
            raise SystemExit("--option steps must be at least 3 (upstream's sampler needs it)")
        self.depth = self.option_int("depth", 0)
        self.with_cfg1 = bool(self.option_int("cfg1", 1))
        self.cfg = 1.0

    def build(self) -> tuple[Any, Any]:
        with self.imports():
            import eval as upstream_eval
            from models import xar

        args = upstream_eval.get_args_parser().parse_args(EVAL_ARGS)
        self.cfg = float(args.cfg)
        kwargs = {
            "img_size": args.img_size,
            "vae_stride": args.vae_stride,
            "patch_size": args.patch_size,
            "vae_embed_dim": args.vae_embed_dim,
            "label_drop_prob": args.label_drop_prob,
            "class_num": args.class_num,
            "attn_dropout": args.attn_dropout,
            "proj_dropout": args.proj_dropout,
        }
        torch.manual_seed(self.seed)
        overrides: dict[str, Any] = {}
        if self.depth:
            # xar_base's own widths with fewer blocks (a quick check, not the paper configuration)
            net = xar.xAR(
                encoder_embed_dim=768,
                encoder_depth=self.depth,
                encoder_num_heads=12,
                decoder_embed_dim=768,
                decoder_depth=self.depth,
                decoder_num_heads=12,
                mlp_ratio=4,
                **kwargs,
            )
            overrides = {"encoder_depth": self.depth, "decoder_depth": self.depth}
        else:
            net = xar.__dict__[args.model](**kwargs)
        net.eval()
        randomize(net, self.seed)
        # eval.py loads the released file as a bare state dict (buffers included)
        zoo_model = through_converter(self.tag, state_dict_of(net), **overrides)
        return net, zoo_model

    # ------------------------------------------------------------------ shared inputs
    def _inputs(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.tokens(path).latents.float()
        labels = torch.tensor([self.label(path), NULL_CLASS])
        return latents.repeat(len(labels), 1, 1, 1), labels

    def _forward_seed(self) -> None:
        import numpy as np

        torch.manual_seed(self.seed + 2)
        np.random.seed(self.seed + 2)

    def _cfgs(self) -> tuple[float, ...]:
        return (self.cfg, 1.0) if self.with_cfg1 else (self.cfg,)

    def _sample_seed(self) -> int:
        return self.seed + 3

    # ------------------------------------------------------------------ upstream
    def run_upstream(self, net: Any, path: Path) -> Output:
        latents, labels = self._inputs(path)
        captured: list[torch.Tensor] = []
        hook = net.pred.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
        try:
            with cuda_calls_on_cpu(), training_without_dropout(net, _dropout_rates(net)):
                self._forward_seed()
                net(latents, labels)
        finally:
            hook.remove()
        velocity = captured[0]
        samples = []
        with cuda_calls_on_cpu():
            for cfg in self._cfgs():
                torch.manual_seed(self._sample_seed())
                samples.append(net.sample_tokens(num_steps=self.steps, cfg=cfg, label=labels[:1]))
        return Output(latent=velocity, decoded=torch.cat(samples))

    # ------------------------------------------------------------------ zoo
    def _replay_upstream_draws(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-cell times ``[B, cells]`` and noise ``[B, L, C]`` that upstream's training forward
        draws after ``_forward_seed``: a class-dropout ``rand(B)``, numpy's logit-normal times (cell-major
        rows), then one ``randn`` per cell."""
        import numpy as np

        b, _, c = x.shape
        self._forward_seed()
        torch.rand(b)  # upstream's class-dropout draw (its probability is zero here)
        normal = np.random.standard_normal(b * CELLS)
        t = torch.tensor(1 / (1 + np.exp(-normal)), dtype=torch.float32).view(CELLS, b).T
        noise = torch.stack([torch.randn(b, CELL_TOKENS, c) for _ in range(CELLS)], dim=1)
        return t.contiguous(), noise.reshape(b, CELLS * CELL_TOKENS, c)

    def run_zoo(self, model: Any, path: Path) -> Output:
        latents, labels = self._inputs(path)
        x = model.layout.to_sequence(latents)
        t_cells, noise = self._replay_upstream_draws(x)
        t = t_cells[:, model.entity]
        x_t = (1 - t[..., None]) * x + t[..., None] * noise
        velocity = model.velocity(x_t, labels, t, mask=model.mask)
        samples = [
            model.sample(labels[:1], cfg=cfg, steps=self.steps, seed=self._sample_seed()).latents
            for cfg in self._cfgs()
        ]
        return Output(latent=velocity, decoded=torch.cat(samples))


ADAPTERS = {"xar": XARAdapter}
