"""LPIPS-style perceptual distance over a frozen timm CNN, with weights only from a file the user names.

LPIPS (Zhang et al. 2018, arXiv:1801.03924; richzhang/PerceptualSimilarity, BSD-2) compares unit-normalised
activations of a frozen VGG16 at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3: squared differences,
optionally weighted per channel by a learned linear head, averaged over space and summed over layers.
taming-transformers, LlamaGen and KARL train their VQGANs with it.

Here the backbone is any timm CNN that supports ``features_only`` (timm's five VGG16 feature levels are
exactly LPIPS's taps). It is built with ``pretrained=False`` and never downloads: weights come from
``weights=`` or the ``ZOO_PERCEPTUAL_WEIGHTS`` environment variable (a timm or torchvision state dict in
safetensors, or a torch file read with ``weights_only=True``). Without them the backbone keeps a seeded
random initialisation, a random-feature perceptual loss that still compares local structure at several
scales but is not LPIPS; ``source`` says which one was built, and a warning is logged, so the trainer can
report it in its log and the model card.

The frozen network is left out of ``state_dict()``: checkpoints hold trainable state only, and the
network is rebuilt from its source.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["PERCEPTUAL_HEAD_WEIGHTS_ENV", "PERCEPTUAL_WEIGHTS_ENV", "PerceptualLoss"]

logger = logging.getLogger(__name__)

PERCEPTUAL_WEIGHTS_ENV = "ZOO_PERCEPTUAL_WEIGHTS"
PERCEPTUAL_HEAD_WEIGHTS_ENV = "ZOO_PERCEPTUAL_HEAD_WEIGHTS"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# LPIPS's linear heads are saved as ``lin{i}.model.1.weight`` (index 0 is a dropout), shape [1, C, 1, 1].
_LPIPS_HEAD_KEY = re.compile(r"^lin(\d+)\.(?:model\.\d+\.)?weight$")
_WRAPPER_KEYS = ("state_dict", "model", "module")
_FROZEN_PREFIXES = ("backbone.", "head.")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or from a torch file unpickled with ``weights_only=True``."""
    if not path.is_file():
        raise FileNotFoundError(f"perceptual-loss weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(state, Mapping) and (key := next((k for k in _WRAPPER_KEYS if k in state), None)):
        state = state[key]  # unwrap {"state_dict": ...} / {"model": ...} checkpoints
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def _canonical(key: str) -> str:
    # timm's features_only wrappers flatten sequentials (``features.0`` -> ``features_0``); comparing keys
    # with dots as underscores lets full-model and features-only state dicts load alike.
    return key.replace(".", "_")


def _create_backbone(name: str, out_indices: tuple[int, ...] | None, seed: int) -> nn.Module:
    """A seeded, randomly initialised timm ``features_only`` network, built without downloading.

    It is first built on the meta device and initialised by each layer's ``reset_parameters``: timm builds
    the whole classifier before ``features_only`` drops it (VGG16's has 120M parameters, seconds of random
    init on a CPU). A model that cannot be built on meta, or has a tensor that this leaves uninitialised
    (a layer-scale parameter, a buffer derived at build time), is built normally instead.
    """
    import timm

    kwargs: dict = {"pretrained": False, "features_only": True}
    if out_indices is not None:
        kwargs["out_indices"] = out_indices
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
        torch.manual_seed(seed)
        try:
            with torch.device("meta"):
                model = timm.create_model(name, **kwargs)
            if _materialize_with_layer_init(model):
                return model
        except (NotImplementedError, RuntimeError):  # build-time arithmetic on meta tensors
            pass
        torch.manual_seed(seed)
        return timm.create_model(name, **kwargs)


def _materialize_with_layer_init(model: nn.Module) -> bool:
    """Meta -> CPU through ``reset_parameters``; False if some tensor would stay uninitialised."""
    persistent = set(model.state_dict(keep_vars=True))
    if any(name not in persistent for name, _ in model.named_buffers()):
        return False
    model.to_empty(device="cpu")
    tensors = [*model.parameters(), *model.buffers()]
    with torch.no_grad():
        for tensor in tensors:
            if tensor.is_floating_point():
                tensor.fill_(math.nan)  # whatever no layer resets stays NaN
        for module in model.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return not any(t.is_floating_point() and t.isnan().any() for t in tensors)


def _unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance between images in ``[0, 1]``; frozen, always in eval mode.

    Images are normalised inside with the backbone's mean and std (ImageNet's for VGG16, the same affine
    map as LPIPS's scaling layer applies to its ``[-1, 1]`` inputs).

    Args:
        backbone: a timm CNN name with ``features_only`` support.
        weights: backbone state dict file (timm or torchvision key names; the classifier is ignored);
            default ``$ZOO_PERCEPTUAL_WEIGHTS``; without either, a seeded random initialisation.
        layers: timm feature levels to compare; default the first five (for ``vgg16``, LPIPS's taps). At
            32x32 all five VGG16 levels cost about 0.3 GFLOP per image, dominated by the first one.
        head_weights: LPIPS linear-head file (``lin{i}.model.1.weight``, one per layer); default
            ``$ZOO_PERCEPTUAL_HEAD_WEIGHTS``, else ``lin*`` keys inside ``weights``; without a head,
            channels are summed (LPIPS's "baseline" variant).
        seed: seed of the random initialisation (used when no weights are given).
        reduction: ``"mean"`` over the batch, or ``"none"`` for one distance per image ``[B]``.

    Attributes:
        source: human-readable origin of the network, e.g. ``"random-init vgg16 (no weights given)"``.
        random_init: True when no backbone weights were loaded.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        backbone: str = "vgg16",
        weights: str | os.PathLike | None = None,
        layers: Sequence[int] | None = None,
        *,
        head_weights: str | os.PathLike | None = None,
        seed: int = 0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.reduction = reduction
        weights = weights or os.environ.get(PERCEPTUAL_WEIGHTS_ENV) or None
        head_weights = head_weights or os.environ.get(PERCEPTUAL_HEAD_WEIGHTS_ENV) or None

        self.backbone = _create_backbone(backbone, None if layers is None else tuple(layers), seed)
        # With the default, every level is built and the first five are compared: past them a CNN has at
        # most a final pooling layer (VGG's sixth level), which is cheaper than a second model build.
        self.layers = (
            tuple(range(min(5, len(self.backbone.feature_info)))) if layers is None else tuple(layers)
        )
        channels = self.backbone.feature_info.channels()[: len(self.layers)]
        cfg = getattr(self.backbone, "pretrained_cfg", None) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", _IMAGENET_MEAN)).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(cfg.get("std", _IMAGENET_STD)).view(1, -1, 1, 1), False)

        state = _read_state_dict(Path(weights)) if weights else {}
        if weights:
            self._load_backbone(state, weights)
            self.source = f"{backbone} from {weights}"
        else:
            self.source = f"random-init {backbone} (no weights given)"
            logger.warning(
                "PerceptualLoss: no weights given (argument or $%s), so %s is randomly initialised "
                "(seed %d): a random-feature perceptual loss, not LPIPS.",
                PERCEPTUAL_WEIGHTS_ENV,
                backbone,
                seed,
            )
        self.random_init = not weights

        head_state = _read_state_dict(Path(head_weights)) if head_weights else state
        self.head = self._build_head(head_state, channels)
        if self.head is not None:
            self.source += f" + LPIPS head from {head_weights or weights}"

        self.requires_grad_(False)
        self.eval()
        self.register_state_dict_post_hook(_drop_frozen_keys)
        self.register_load_state_dict_pre_hook(_fill_frozen_keys)

    def _load_backbone(self, state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
        by_canonical = {_canonical(k): v for k, v in state.items()}
        target = self.backbone.state_dict()
        missing = [k for k in target if _canonical(k) not in by_canonical and "num_batches_tracked" not in k]
        if missing:
            raise ValueError(
                f"{path} does not hold the backbone's weights: {len(missing)} of {len(target)} tensors are "
                f"missing (first: {missing[:3]}); pass a state dict of the same timm architecture"
            )
        self.backbone.load_state_dict(
            {k: by_canonical[_canonical(k)] for k in target if _canonical(k) in by_canonical}, strict=False
        )

    def _build_head(self, state: Mapping[str, torch.Tensor], channels: Sequence[int]) -> nn.ModuleList | None:
        found = {int(m.group(1)): v for k, v in state.items() if (m := _LPIPS_HEAD_KEY.match(k))}
        if not found:
            return None
        if sorted(found) != list(range(len(channels))):
            raise ValueError(f"LPIPS head has layers {sorted(found)}, expected 0..{len(channels) - 1}")
        head = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        for i, conv in enumerate(head):
            conv.weight.data.copy_(found[i].reshape(conv.weight.shape))
        return head

    def train(self, mode: bool = True) -> PerceptualLoss:
        """The network stays in eval mode: batch-norm statistics and dropout must not change the metric."""
        super().train(mode)
        self.backbone.eval()
        if self.head is not None:
            self.head.eval()
        return self

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input``, ``target``: images ``[B, 3, H, W]`` in ``[0, 1]``; the distance (``[B]`` if unreduced)."""
        batch = torch.cat([input, target]).to(self.mean.dtype)
        features = self.backbone((batch - self.mean) / self.std)
        distance = 0
        for i, feature in enumerate(features[: len(self.layers)]):
            x, y = _unit_normalize(feature).chunk(2)
            diff = (x - y).square()
            diff = self.head[i](diff) if self.head is not None else diff.sum(dim=1, keepdim=True)
            distance = distance + diff.mean(dim=(1, 2, 3))
        return distance.mean() if self.reduction == "mean" else distance


def _drop_frozen_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(tuple(prefix + p for p in _FROZEN_PREFIXES))]:
        del state_dict[key]


def _fill_frozen_keys(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    # Checkpoints omit the frozen network; keep the one this instance built (so strict loading passes).
    for child in ("backbone", "head"):
        if (submodule := getattr(module, child)) is not None:
            for name, tensor in submodule.state_dict(keep_vars=True).items():
                state_dict.setdefault(f"{prefix}{child}.{name}", tensor.detach())
