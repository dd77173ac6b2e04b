"""NAR (next-neighbour autoregression over LlamaGen VQ-16 ids) against ThisisBillhe/NAR @ 225c1fb, at the
NAR-B paper size (12+1 blocks of width 768, 16x16 ids over 16,384 codes, 1,000 classes; 130.6 M
parameters), the size with released 256 px weights (``nar_b.in1k_256``) that a CPU runs in seconds.

The image code lives in the repository's ``NAR-images`` folder; ``--upstream`` may name the repository or
that folder. The network is ``autoregressive/models/gpt.py::GPT_models["GPT-B"](vocab_size=16384,
block_size=256, num_classes=1000, cls_token_num=1, model_type="c2i")``, as ``sample_c2i.py`` builds it
for ``--image-size 256`` (the released checkpoints' grid; the script's default of 384 would load them
into a 24x24 grid), its checkpoint ``{"model": state_dict}``.

- Teacher-forced output: the logits of ``Transformer.forward(idx, cond_idx, mask=...)``, the branch
  ``train_c2i.py`` trains, with its proximity mask (``torch.tril`` over the sequence with
  ``setup_proximity_mask`` filling the image block, one copy per batch item), run in eval mode so that
  token, residual, FFN and class-label dropout are off. The zoo side is ``NAR.logits``.
- Sampled ids: ``autoregressive/models/generate.py::generate`` with ``sample_c2i.py``'s defaults (cfg 4.0,
  top-k 2000, top-p 1.0, temperature 1.0, ``cfg_interval=-1``) for one label per file, after
  ``torch.manual_seed``; the zoo's ``NAR.sample`` gets the same seed as ``seed=``, so both draw the same
  ``multinomial`` numbers in the same order (2n - 1 = 31 forward passes, no step count to shorten).
  Further settings, compared as ids in the note: ``cfg1`` (plain sampling), ``eval`` (the FID script
  ``scripts/autoregressive/sample_c2i.sh``: cfg 2.0, top-k 0) and ``top_p`` (cfg 1.5, top-p 0.9,
  temperature 0.9, guidance off after 64 tokens via ``cfg_interval``).

Both sides run in float32 (``sample_c2i.py`` defaults to bf16 on a GPU; ``--precision none`` is its
float32 setting). Upstream's ``tqdm`` progress bar is silenced while it samples, and the KV caches that
``generate`` leaves attached to the network are detached before the next teacher-forced forward (its
training branch cannot run with them); neither changes a result. ``--option depth=N`` builds both
sides with ``N`` blocks before the heads (development runs; the default is the paper's 12).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .common import (
    GeneratorAdapter,
    Output,
    randomize,
    state_dict_of,
    through_converter,
)

TAG = "nar_b.in1k_256"
GRID = 16  # 256 px images through a 16x downsampling VQ
VOCAB = 16384
# sample_c2i.py's defaults, then further settings compared as extra id streams
SETTINGS: dict[str, dict[str, Any]] = {
    "main": {"cfg": 4.0, "top_k": 2000, "top_p": 1.0, "temperature": 1.0, "cfg_interval": -1},
    "cfg1": {"cfg": 1.0, "top_k": 0, "top_p": 1.0, "temperature": 1.0, "cfg_interval": -1},
    "eval": {"cfg": 2.0, "top_k": 0, "top_p": 1.0, "temperature": 1.0, "cfg_interval": -1},
    "top_p": {"cfg": 1.5, "top_k": 0, "top_p": 0.9, "temperature": 0.9, "cfg_interval": 64},
}


def images_folder(root: Path) -> Path:
    """The repository's ``NAR-images`` folder when ``root`` is the repository, else ``root`` itself."""
    inner = Path(root) / "NAR-images"
    return inner if inner.is_dir() else Path(root)


class NARAdapter(GeneratorAdapter):
    model = "nar_b"
    tag = TAG
    card = "nar"
    substrate = "vq16"
    upstream_files = (
        "autoregressive/models/gpt.py",
        "autoregressive/models/generate.py",
        "utils/drop_path.py",
    )
    description = (
        "NAR-B over VQ-16 ids: train_c2i.py's masked forward, sample_c2i.py's generate "
        "(cfg 4, top-k 2000) + cfg 1 / eval / top-p samples"
    )

    def __init__(self, upstream: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(images_folder(upstream), *args, **kwargs)
        self.depth = self.option_int("depth", 12)
        self.generate_module: Any = None

    def build(self) -> tuple[Any, Any]:
        with self.imports():
            from autoregressive.models import generate as generate_module
            from autoregressive.models.gpt import GPT_models, ModelArgs, Transformer
        self.generate_module = generate_module
        torch.manual_seed(self.seed)
        settings = {"vocab_size": VOCAB, "block_size": GRID * GRID, "num_classes": self.num_classes}
        settings |= {"cls_token_num": 1, "model_type": "c2i"}
        if self.depth == 12:
            net = GPT_models["GPT-B"](**settings)
        else:  # a shallower GPT-B for development runs
            net = Transformer(ModelArgs(n_layer=self.depth, n_head=12, dim=768, **settings))
        net = randomize(net.eval(), self.seed)
        overrides = {} if self.depth == 12 else {"depth": self.depth}
        zoo_model = through_converter(self.tag, {"model": state_dict_of(net)}, **overrides)
        return net, zoo_model

    def _sample_seed(self) -> int:
        return self.seed + 2

    @contextlib.contextmanager
    def _quiet_generate(self) -> Iterator[None]:
        """Upstream's decode loop wraps its range in ``tqdm``; a plain iterator while it runs."""
        saved = self.generate_module.tqdm
        self.generate_module.tqdm = lambda iterable, *args, **kwargs: iterable
        try:
            yield
        finally:
            self.generate_module.tqdm = saved

    def run_upstream(self, net: Any, path: Path) -> Output:
        ids = self.tokens(path).ids.reshape(1, -1).long()
        label = torch.tensor([self.label(path)])
        # generate() leaves KV caches attached; the training branch runs without them
        for layer in net.layers:
            layer.attention.kv_cache = None
        length = net.cls_token_num + net.block_size
        mask = torch.tril(torch.ones(length, length, dtype=torch.bool))
        net.setup_proximity_mask(mask[-net.block_size :, -net.block_size :], net.block_size)
        logits, _ = net(idx=ids, cond_idx=label, mask=mask[None].repeat(len(ids), 1, 1))
        samples = {}
        with self._quiet_generate():
            for name, s in SETTINGS.items():
                torch.manual_seed(self._sample_seed())
                out = self.generate_module.generate(
                    net,
                    label,
                    GRID * GRID,
                    cfg_scale=s["cfg"],
                    cfg_interval=s["cfg_interval"],
                    temperature=s["temperature"],
                    top_k=s["top_k"],
                    top_p=s["top_p"],
                    sample_logits=True,
                )
                samples[name] = out.long().reshape(1, GRID, GRID)
        main = samples.pop("main")
        return Output(ids=main, latent=logits, extra=samples)

    def run_zoo(self, model: Any, path: Path) -> Output:
        ids = self.tokens(path).ids.reshape(1, -1).long()
        label = torch.tensor([self.label(path)])
        logits = model.logits(ids, label)
        samples = {}
        for name, s in SETTINGS.items():
            out = model.sample(label, seed=self._sample_seed(), **s)
            samples[name] = out.ids.long().reshape(1, GRID, GRID)
        main = samples.pop("main")
        return Output(ids=main, latent=logits, extra=samples)


ADAPTERS = {"nar": NARAdapter}
