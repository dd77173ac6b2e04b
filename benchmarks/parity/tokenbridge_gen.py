"""TokenBridge's generator against YuqingWang1029/TokenBridge @ 3ede281: a MAR encoder/decoder over the
dequantized 6-bit ids of the ``tokenbridge`` tokenizer and a channel-wise autoregressive head.

Upstream's official pipeline is ``main_tokenbridge.py --evaluate`` as the README runs it for
TokenBridge-L: its argument parser (``--model tokenbridge_large --num_iter 256 --cfg 3.1
--cfg_schedule linear --temperature 0.96 --quant_bits 6``, every other default as parsed) builds
``models/tokenbridge.py::tokenbridge_large`` with main's keyword arguments, the evaluation switches to
the EMA parameters and ``engine_tokenbridge.evaluate`` calls ``sample_tokens(bsz, num_iter, cfg,
cfg_schedule, labels, temperature)``. The checkpoint goes to the zoo as main saves it (``{"model":
state_dict, "model_ema": {name: parameter}}``) through ``convert_tokenbridge_gen``.

Teacher-forced output (``latent``): upstream's training ``forward(latents, labels)`` in eval mode (no
dropout, no label dropout) on the dequantized substrate tokens of the file, with a seeded mask (order
and truncated-normal ratio drawn once, handed to upstream's ``sample_orders`` / ``mask_ratio_generator``
and drawn identically by the zoo's ``training_loss`` from the same torch seed); compared are the
backbone features of the masked positions, the channel head's logits and the loss, concatenated.

Samples (``ids``): the README's L settings, one sample per file for the file's label, upstream seeded
with ``torch.manual_seed`` and the zoo with ``sample(seed=)``; upstream's ids are its own ``quantize`` of
the latents ``sample_tokens`` returns (they are levels, so this recovers the drawn ids); ``extra["cfg1"]`` is a second sample at
main's parser defaults (cfg 1, temperature 1), ``decoded`` the sampled latents (upstream's return value
vs the zoo's dequantization of its ids). 256 iterations of a 487M-parameter network are far too slow on
CPU, so both sides use ``--option steps=N`` iterations (default 2; the schedule, guidance and channel
head are the same at any count). Upstream's ``.cuda()`` calls are made no-ops while it runs (restored
afterwards); its ``autocast`` is CUDA-only and does nothing on CPU, so both sides run float32.

Deliberate zoo difference: the zoo draws the position order from torch's generator, upstream from
numpy's global RNG. By default upstream's ``sample_orders`` is given the zoo's draw (``torch.randperm``
from the seeded global generator, after which both sides' multinomial draws coincide);
``--option orders=numpy`` instead runs upstream's own numpy shuffle (``np.random.seed``) and gives the
zoo that order, so upstream's sampler runs unpatched. ``--option small=1`` shrinks both networks (2+2
blocks of width 256) for quick checks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import GeneratorAdapter, Output, cuda_calls_on_cpu, randomize, state_dict_of, through_converter

TAG = "tokenbridge_gen_l.in1k_256"
# README's evaluation command for TokenBridge-L (main_tokenbridge.py's parser fills in the rest)
EVAL_ARGS = (
    "--model", "tokenbridge_large", "--num_iter", "256", "--cfg", "3.1", "--cfg_schedule", "linear",
    "--temperature", "0.96", "--quant_bits", "6", "--evaluate",
)  # fmt: skip
MAIN_KWARGS = (
    "img_size", "vae_stride", "patch_size", "vae_embed_dim", "mask_ratio_min", "label_drop_prob", "class_num",
    "attn_dropout", "proj_dropout", "buffer_size", "grad_checkpointing", "quant_min", "quant_max",
    "use_quantized_value",
)  # fmt: skip
# --option small=1: 2+2 blocks of width 256 and a 1-block channel head, the same on both sides
SMALL_UPSTREAM = {
    "encoder_embed_dim": 256, "encoder_depth": 2, "encoder_num_heads": 4, "decoder_embed_dim": 256,
    "decoder_depth": 2, "decoder_num_heads": 4, "channel_embed_dim": 256, "channel_depth": 1, "channel_heads": 4,
}  # fmt: skip
SMALL_ZOO = {"dim": 256, "encoder_depth": 2, "decoder_depth": 2, "heads": 4, "channel_dim": 256,
             "channel_depth": 1, "channel_heads": 4}  # fmt: skip


@contextlib.contextmanager
def patched(obj: Any, **attrs: Any) -> Iterator[None]:
    """Set attributes of one instance for the duration, then put back what its ``__dict__`` held."""
    missing = object()
    saved = {name: obj.__dict__.get(name, missing) for name in attrs}
    for name, value in attrs.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


class _FixedRatio:
    """Stands in for upstream's scipy ``truncnorm`` frozen distribution: ``rvs`` gives the seeded ratio."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def rvs(self, n: int) -> np.ndarray:
        return np.full(n, self.ratio)


class TokenBridgeGenAdapter(GeneratorAdapter):
    model = "tokenbridge_gen_l"
    tag = TAG
    card = "tokenbridge_gen"
    substrate = "tokenbridge"
    upstream_files = ("models/tokenbridge.py", "main_tokenbridge.py", "engine_tokenbridge.py")
    # main_tokenbridge.py imports the evaluation engine, which imports these for FID/IS and PNG writing
    stubs = ("torch_fidelity", "cv2")
    columns = ("teacher-forced features/logits/loss", "sampled latents")
    description = (
        "MAR + channel AR head, main_tokenbridge.py --evaluate (L: cfg 3.1, temp 0.96; --option steps=N)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps = self.option_int("steps", 2)
        self.orders = self.options.get("orders", "torch")
        if self.orders not in ("torch", "numpy"):
            raise SystemExit(f"--option orders= takes torch or numpy, got {self.orders!r}")
        self.small = self.options.get("small", "0") not in ("0", "false", "")
        self.args: Any = None
        self.defaults: Any = None

    # ------------------------------------------------------------------ build
    def build(self) -> tuple[Any, Any]:
        with self.imports():
            import main_tokenbridge
            from models import tokenbridge
        args = main_tokenbridge.get_args_parser().parse_args(list(EVAL_ARGS))
        self.args, self.defaults = args, main_tokenbridge.get_args_parser().parse_args([])
        # the keyword arguments main_tokenbridge.py passes to the model function
        kwargs = {name: getattr(args, name) for name in MAIN_KWARGS}
        kwargs["quant_levels"] = 2**args.quant_bits
        torch.manual_seed(self.seed)
        overrides: dict[str, Any] = {}
        if self.small:
            net = tokenbridge.TokenBridge(
                **SMALL_UPSTREAM, mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **kwargs
            )
            overrides = SMALL_ZOO
        else:
            net = tokenbridge.__dict__[args.model](**kwargs)
        net.eval()
        randomize(net, self.seed)
        # main_tokenbridge.py saves both; evaluation runs the EMA parameters over model's buffers
        ema = {name: p.detach().clone() for name, p in net.named_parameters()}
        checkpoint = {"model": state_dict_of(net), "model_ema": ema}
        zoo_model = through_converter(self.tag, checkpoint, **overrides)
        return net, zoo_model

    # ------------------------------------------------------------------ shared inputs
    def _latents(self, path: Path) -> tuple[Any, torch.Tensor]:
        """The file's substrate tokens and their dequantized values ``[1, 16, 16, 16]`` (scaled latent space:
        what upstream's training forward quantizes)."""
        tokens = self.tokens(path)
        with torch.no_grad():
            return tokens, self.tokenizer.dequantize(tokens)

    def _mask_draw(self, path: Path, seq_len: int) -> tuple[int, float, torch.Tensor]:
        """The seeded mask ratio and order the zoo's ``training_loss`` draws after ``manual_seed(seed)``."""
        from zoo.models.generators.tokenbridge_gen import truncated_mask_ratio

        seed = self.seed + 2 + self.label(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ratio = truncated_mask_ratio(self.args.mask_ratio_min)
            order = torch.randperm(seq_len)
        return seed, ratio, order

    def _sample_seed(self, path: Path, k: int) -> int:
        return self.seed + 100 * k + self.label(path)

    def _numpy_order(self, seed: int, b: int, seq_len: int) -> torch.Tensor:
        rng_state = np.random.get_state()
        np.random.seed(seed)
        orders = []
        for _ in range(b):
            order = np.arange(seq_len)
            np.random.shuffle(order)
            orders.append(order)
        np.random.set_state(rng_state)
        return torch.from_numpy(np.stack(orders)).long()

    # ------------------------------------------------------------------ upstream
    def run_upstream(self, net: Any, path: Path) -> Output:
        tokens, latents = self._latents(path)
        label = torch.tensor([self.label(path)])
        _, ratio, order = self._mask_draw(path, net.seq_len)
        seen: dict[str, torch.Tensor] = {}
        channel_ar = net.forward_channel_ar
        quantize = net.quantize

        def record_ar(z: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            seen["features"] = z[mask.bool()]
            seen["logits"] = channel_ar(z, targets, mask)
            return seen["logits"]

        def record_quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen["ids"], values = quantize(x)
            return seen["ids"], values

        with (
            cuda_calls_on_cpu(),
            patched(
                net,
                sample_orders=lambda bsz: order[None].expand(bsz, -1),
                mask_ratio_generator=_FixedRatio(ratio),
                forward_channel_ar=record_ar,
                quantize=record_quantize,
            ),
        ):
            loss = net(latents, label)
        # upstream's quantizer must give back the substrate's ids from their dequantized values
        if not torch.equal(seen["ids"], tokens.ids.flatten(2).transpose(1, 2)):
            raise RuntimeError("upstream's quantize does not recover the substrate ids")
        latent = torch.cat([seen["features"].flatten(), seen["logits"].flatten(), loss.reshape(1)])

        samples = {}
        for k, (cfg, temperature) in enumerate(self._settings()):
            seed = self._sample_seed(path, k)
            torch.manual_seed(seed)
            draws = {}
            if self.orders == "torch":
                draws["sample_orders"] = lambda bsz: torch.stack(
                    [torch.randperm(net.seq_len) for _ in range(bsz)]
                )
            else:
                np.random.seed(seed)
            with cuda_calls_on_cpu(), patched(net, **draws):
                samples[k] = net.sample_tokens(
                    bsz=1, num_iter=self.steps, cfg=cfg, cfg_schedule=self.args.cfg_schedule, labels=label,
                    temperature=temperature,
                )  # fmt: skip
        ids = {k: quantize(v.flatten(2).transpose(1, 2))[0] for k, v in samples.items()}
        return Output(
            ids=self._grid(ids[0]), latent=latent, decoded=samples[0], extra={"cfg1": self._grid(ids[1])}
        )

    def _settings(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(cfg, temperature): the README's evaluation of L, then main_tokenbridge.py's parser defaults."""
        return (self.args.cfg, self.args.temperature), (self.defaults.cfg, self.defaults.temperature)

    @staticmethod
    def _grid(ids: torch.Tensor) -> torch.Tensor:
        """``[B, L, C]`` -> ``[B, C, n, n]``."""
        n = math.isqrt(ids.shape[1])
        return ids.transpose(1, 2).reshape(ids.shape[0], ids.shape[2], n, n)

    # ------------------------------------------------------------------ zoo
    def run_zoo(self, model: Any, path: Path) -> Output:
        tokens, _ = self._latents(path)
        label = self.label(path)
        mask_seed, _, _ = self._mask_draw(path, model.seq_len)
        seen: dict[str, torch.Tensor] = {}
        logits_fn = model.head.logits

        def record(features: torch.Tensor, ids: torch.Tensor, sampling: bool = False) -> torch.Tensor:
            seen["features"] = features
            seen["logits"] = logits_fn(features, ids, sampling)
            return seen["logits"]

        with torch.random.fork_rng(devices=[]), patched(model.head, logits=record):
            torch.manual_seed(mask_seed)
            loss = model.training_loss({"ids": tokens.ids, "labels": torch.tensor([label])}).loss
        latent = torch.cat([seen["features"].flatten(), seen["logits"].flatten(), loss.reshape(1)])

        samples = {}
        for k, (cfg, temperature) in enumerate(self._settings()):
            seed = self._sample_seed(path, k)
            draws = {}
            if self.orders == "numpy":
                draws["_random_orders"] = lambda b, generator, seed=seed: self._numpy_order(
                    seed, b, model.seq_len
                ).to(model.device)
            with patched(model, **draws):
                samples[k] = model.sample(
                    [label], cfg=cfg, steps=self.steps, temperature=temperature, seed=seed
                )
        decoded = self.tokenizer.dequantize(samples[0])  # the substrate's dequantization of the sample
        return Output(ids=samples[0].ids, latent=latent, decoded=decoded, extra={"cfg1": samples[1].ids})


ADAPTERS = {"tokenbridge_gen": TokenBridgeGenAdapter}
