"""What every zoo model shares, tokenizer or generator: a captured config, a registry name, and Hub I/O.

Constructor arguments must be JSON-serialisable primitives: they are captured automatically and become
``config.json``, so a saved model can be rebuilt from its config alone (as with huggingface_hub's
``PyTorchModelHubMixin``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"model config values must be JSON primitives, got {type(value).__name__}: {value!r}")


class ZooModel(nn.Module):
    """Base of `Tokenizer` and `Generator`.

    ``arch`` is the registry name the model was created under (set by the factory) and goes into
    ``config.json`` as ``architecture``; ``modality`` says which kind of model it is.
    """

    modality: ClassVar[str] = ""
    arch: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def capturing_init(self: ZooModel, *args: Any, **kw: Any) -> None:
            # The most derived class's __init__ runs first: only it records the config.
            if "_zoo_config" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = {k: _jsonable(v) for k, v in list(bound.arguments.items())[1:]}
                object.__setattr__(self, "_zoo_config", config)
            init(self, *args, **kw)

        cls.__init__ = capturing_init  # type: ignore[method-assign]

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model (``type(self)(**config)``)."""
        return dict(self.__dict__.get("_zoo_config", {}))

    def update_config(self, **values: Any) -> None:
        """Record constructor arguments decided after construction (a generator's tokenizer, found
        from the token cache it trains on), so ``config.json`` rebuilds the same model."""
        config = self.config
        config.update({k: _jsonable(v) for k, v in values.items()})
        object.__setattr__(self, "_zoo_config", config)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """One entry per codebook of the tokens made or modelled; empty for continuous latents."""
        return ()

    @property
    def discrete(self) -> bool:
        return bool(self.codebook_sizes)

    @property
    def input_spec(self) -> dict[str, Any]:
        """What the model takes: resolution or sample rate, channels, value range; a generator's condition."""
        raise NotImplementedError

    def token_layout(self) -> dict[str, Any]:
        """Token count, grid, codebook sizes and rate at the native size."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the weights live (the buffers, for a model without parameters such as HiVG; else CPU)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def weights_fingerprint(self) -> str:
        """A 16-hex digest of the weights that tells two models apart without hashing every byte.

        It hashes every tensor's name, shape and dtype plus up to 256 evenly spaced values, so it costs
        milliseconds even for a billion parameters; token files record it so that decoding with other
        weights than the encoder's is caught. Cached until a tensor is modified in place or replaced.
        """
        import hashlib

        tensors = [(k, v) for k, v in self.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)]
        key = tuple((k, v.data_ptr(), v._version) for k, v in tensors)
        cached = self.__dict__.get("_zoo_fingerprint")
        if cached is not None and cached[0] == key:
            return cached[1]
        digest = hashlib.sha256()
        for name, tensor in tensors:
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            if tensor.device.type == "meta" or tensor.numel() == 0:
                continue
            flat = tensor.detach().reshape(-1)
            picked = flat[
                torch.linspace(0, flat.numel() - 1, min(256, flat.numel()), device=flat.device).long()
            ]
            digest.update(picked.to("cpu", torch.float64).numpy().tobytes())
        fingerprint = digest.hexdigest()[:16]
        object.__setattr__(self, "_zoo_fingerprint", (key, fingerprint))
        return fingerprint

    # ------------------------------------------------------------------ Hub
    def save_pretrained(self, save_directory: str | Path, **card_kwargs: Any) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card."""
        from .hub import save_pretrained

        return save_pretrained(self, save_directory, **card_kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload to a Hub repo in one commit; returns the commit sha."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> ZooModel:
        """Load like ``zoo.load``, checking that the result is an instance of ``cls``."""
        from .hub import load

        model = load(name_or_path, **kwargs)
        if not isinstance(model, cls):
            raise TypeError(f"{name_or_path!r} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def untrained_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture and configuration with fresh random weights drawn under ``seed``: the control
    row that says how much of a tokenizer's score comes from training and how much from its shape (a
    random encoder with a linear probe is already a fair feature extractor)."""
    config = getattr(model, "config", None)
    if not config:
        raise ValueError(
            f"{type(model).__name__} records no constructor config, so it cannot be rebuilt untrained"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        copy = type(model)(**config)
    copy.arch = getattr(model, "arch", None)
    return copy.eval()
