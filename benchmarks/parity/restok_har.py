"""ResTok's HAR generator (LlamaGen GPT-L with level-parallel decoding) against Kwai-Kolors/ResTok @ e0059cb.

Upstream's official sampling is ``autoregressive/sample/sample_c2i_ddp_cfg_search.py`` as the README runs
it for the paper's gFID 2.34 (``--config configs/infer/ResTok/llamagen_l_c2i_restok_l_128.yaml --precision
none --cfg-scale 3.75 --cfg-schedule step --step-start-ratio 0.25 --top-p 0.95``, top-k 0, temperature 1,
``--global-seed 0``): the network comes from ``demo_util.get_llamagen_generator(config)`` (GPT-L of
``autoregressive/models/gpt_har.py``, 128 ids, 4 drawn one by one, 127 placeholders), kept in float32, and
``generate_har`` draws ``max_new_tokens = num_steps = 128`` ids with ``cfg_schedule_kwargs = {"num_steps": 9,
"window_start": 0.25, "min_cfg_scale": 1.0}`` (9 = 4 + log2(128 / 4) passes, the script's own formula)
after ``torch.manual_seed(0)``. That is 9 passes per image, cheap enough on a CPU at the paper size, so
no option shortens the run. The adapter builds the network through that same function (with the
config's generator checkpoint left out: random weights instead), perturbs it with seeded noise and
loads its state dict (the layout of the release's ``model.safetensors`` / a training run's
``pytorch_model.bin``) into the zoo through ``convert_restok_har``.

Per real file, both sides get the ids of the zoo's paper-size ResTok-L (seeded random weights) and a
class label from the file name:

- teacher-forced output: the logits of upstream's training forward (``model(ids, labels)`` in train
  mode as ``utils/train_utils.py`` calls it; dropouts and class dropout set to 0 for the call) against
  the zoo's ``logits(ids, labels)``;
- ids: one sample under the README's settings, upstream seeded through ``torch.manual_seed(seed)`` and the
  zoo through ``sample(..., seed=seed)`` (a generator seeded the same way, so the multinomial draws
  coincide);
- further samples compared as ids: ``cfg1`` (no guidance), ``script_defaults`` (the script's argparse
  defaults: cfg 2.0 constant, top-p 1.0) and ``topk`` (cfg 3.75 step from 25 %, top-k 100, temperature 0.9).

No deliberate zoo difference changes these outputs (the zoo has no ``cfg_interval``; the script passes -1,
which disables it). ``--option size=small`` builds upstream's GPT-B (768 wide, 12 blocks) on both sides
for quick runs; ``--option sample_seed=N`` changes the sampling seed (default 0, the script's
``--global-seed``). ResTok-L tokenizes each file once, before the timed runs (a few seconds a file). Upstream needs ``omegaconf`` (``pip install --target DIR omegaconf`` and
``PYTHONPATH=DIR``); its tokenizer module, imported by ``demo_util``, imports ``accelerate`` and
``webdataset`` for training only (stubbed when missing).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .common import (
    GeneratorAdapter,
    Output,
    randomize,
    state_dict_of,
    through_converter,
    training_without_dropout,
)

TAG = "restok_har_l.in1k_256"
CONFIG = "configs/infer/ResTok/llamagen_l_c2i_restok_l_128.yaml"
# the README's gFID command; top-k 0 and temperature 1 are the script's defaults
OFFICIAL = {"cfg": 3.75, "schedule": "step", "start": 0.25, "top_k": 0, "top_p": 0.95, "temperature": 1.0}
# further settings, each compared as ids
EXTRA = {
    "cfg1": {"cfg": 1.0, "schedule": "constant", "start": 0.25, "top_k": 0, "top_p": 1.0, "temperature": 1.0},
    "script_defaults": {
        "cfg": 2.0,
        "schedule": "constant",
        "start": 0.25,
        "top_k": 0,
        "top_p": 1.0,
        "temperature": 1.0,
    },
    "topk": {"cfg": 3.75, "schedule": "step", "start": 0.25, "top_k": 100, "top_p": 1.0, "temperature": 0.9},
}
# upstream GPT sizes the adapter offers, with the zoo constructor arguments of the same network
SIZES = {"paper": ("GPT-L", {}), "small": ("GPT-B", {"dim": 768, "depth": 12, "heads": 12})}


class ResTokHARAdapter(GeneratorAdapter):
    model = "restok_har_l"
    tag = TAG
    card = "restok_har"
    substrate = "restok"
    upstream_files = (
        "autoregressive/models/gpt_har.py",
        "autoregressive/models/generate.py",
        "demo_util.py",
    )
    # demo_util imports upstream's tokenizer, whose quantizer and dataset package import these for training
    stubs = ("accelerate", "accelerate.utils", "accelerate.utils.operations", "webdataset")
    description = (
        "HAR GPT-L over ResTok-L 128: logits + seeded samples (cfg 3.75 step 25 %, top-p 0.95, 9 passes)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.size = self.options.get("size", "paper")
        if self.size not in SIZES:
            raise SystemExit(f"--option size= takes {', '.join(SIZES)}, got {self.size!r}")
        self.sample_seed = self.option_int("sample_seed", 0)
        self.generate_har: Any = None
        self.num_steps = 0

    # ------------------------------------------------------------------ build
    def build(self) -> tuple[Any, Any]:
        with self.imports():
            import demo_util
            from autoregressive.models.generate import generate_har
        self.generate_har = generate_har
        config = demo_util.get_config(str(self.upstream / CONFIG))
        model_type, overrides = SIZES[self.size]
        config.model.generator.model_type = model_type
        config.experiment.generator_checkpoint = None  # random weights, not the config's checkpoint file
        gen = config.model.generator
        self.num_tokens, self.ar_tokens = int(gen.num_steps), int(gen.get("ar_token_num", 4))
        # the sampling script's pass count for HAR's cfg schedule
        self.num_steps = self.ar_tokens + int(math.log2(self.num_tokens)) - int(math.log2(self.ar_tokens))
        torch.manual_seed(self.seed)
        net = demo_util.get_llamagen_generator(config).to(dtype=torch.float32).eval()  # --precision none
        randomize(net, self.seed)
        zoo_model = through_converter(self.tag, state_dict_of(net), **overrides)
        return net, zoo_model

    # ------------------------------------------------------------------ inputs
    def _file_ids(self, path: Path) -> torch.Tensor:
        return self.tokens(path).ids.reshape(1, -1).long()

    def _labels(self, path: Path) -> torch.Tensor:
        return torch.tensor([self.label(path)])

    # ------------------------------------------------------------------ upstream
    def _upstream_sample(self, net: Any, labels: torch.Tensor, s: dict[str, Any]) -> torch.Tensor:
        kwargs: dict[str, Any] = {"num_steps": self.num_steps}
        if s["schedule"] == "step":
            kwargs.update({"window_start": s["start"], "min_cfg_scale": 1.0})
        torch.manual_seed(self.sample_seed)
        ids = self.generate_har(
            net,
            labels,
            self.num_tokens,
            cfg_scale=s["cfg"],
            cfg_interval=-1,
            ar_token_num=self.ar_tokens,
            temperature=s["temperature"],
            top_k=s["top_k"],
            top_p=s["top_p"],
            sample_logits=True,
            cfg_schedule=s["schedule"],
            cfg_schedule_kwargs=kwargs,
        )
        return ids.long()

    def run_upstream(self, net: Any, path: Path) -> Output:
        ids, labels = self._file_ids(path), self._labels(path)
        with training_without_dropout(net, [(net.cls_embedding, "dropout_prob")]):
            logits, _ = net(ids, labels)
        return Output(
            ids=self._upstream_sample(net, labels, OFFICIAL),
            latent=logits,
            extra={k: self._upstream_sample(net, labels, s) for k, s in EXTRA.items()},
        )

    # ------------------------------------------------------------------ zoo
    def _zoo_sample(self, model: Any, labels: torch.Tensor, s: dict[str, Any]) -> torch.Tensor:
        return model.sample(
            labels,
            cfg=s["cfg"],
            cfg_schedule=s["schedule"],
            cfg_start=s["start"],
            temperature=s["temperature"],
            top_k=s["top_k"],
            top_p=s["top_p"],
            seed=self.sample_seed,
        ).ids

    def run_zoo(self, model: Any, path: Path) -> Output:
        ids, labels = self._file_ids(path), self._labels(path)
        return Output(
            ids=self._zoo_sample(model, labels, OFFICIAL),
            latent=model.logits(ids, labels),
            extra={k: self._zoo_sample(model, labels, s) for k, s in EXTRA.items()},
        )


ADAPTERS = {"restok_har": ResTokHARAdapter}
