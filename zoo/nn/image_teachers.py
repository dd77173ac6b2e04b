"""Frozen image networks a tokenizer reads or learns from but never trains: vision towers and embedding teachers.

SEED tokenizes the features of a frozen EVA-CLIP ViT-g/14 and learns to predict the 1024-d image
embedding of a frozen OpenCLIP ViT-H/14. Both are large, separately licensed and supplied by the user as
local files; nothing here downloads anything. Like the audio teachers (`zoo.nn.teachers`), they are kept
outside the tokenizer's module tree (so a saved or pushed tokenizer holds only its own weights) and are
permanently frozen (`Frozen`).

For tiny configurations both have seeded random stand-ins whose weights are regenerated from the seed on
construction: deterministic functions of the image that carry its content, so a tiny tokenizer trained
against them learns something, with nothing downloaded and nothing saved.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .teachers import Frozen

__all__ = ["CLIPImageEmbedTeacher", "EVAVisionTower", "ImageEmbedTeacher", "RandomImageEmbedTeacher"]


def _seeded_(module: nn.Module, seed: int, std: float = 0.02) -> None:
    """Deterministic weights that do not depend on the library's own initialisation: N(0, std) matrices
    and embeddings, zero biases, unit norm scales, drawn in sorted name order from one generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim == 1 and ("norm" in name or leaf == "weight"):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif p.ndim == 1:
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def _read_weights(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or torch file (``weights_only``), unwrapped from ``model``/``state_dict``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"{what}: {file} does not exist (pass a local weights file; nothing is downloaded)"
        )
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or a pickle that needs code
        raise ValueError(f"{what}: cannot read {file}: {exc}") from exc
    for key in ("model", "state_dict", "module"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    return dict(state)


class EVAVisionTower(Frozen):
    """EVA-CLIP ViT-g/14 as BLIP-2 and SEED use it: 39 of its 40 blocks, no final norm, all tokens out.

    Built with timm's `Eva` (q and v biases, exact GELU, absolute positions, LayerNorm eps 1e-6), whose
    parameter names equal those of LAVIS's ``eva_vit_g.pth``. ``forward`` takes CLIP-normalised images
    ``[B, 3, S, S]`` and returns the last block's output ``[B, 1 + (S/14)^2, 1408]``, class token first.

    Args:
        image_size, patch_size, width, depth, heads, mlp_hidden: the ViT (paper: 224, 14, 1408, 39, 16, 6144).
    """

    def __init__(
        self,
        *,
        image_size: int = 224,
        patch_size: int = 14,
        width: int = 1408,
        depth: int = 39,
        heads: int = 16,
        mlp_hidden: int = 6144,
    ) -> None:
        super().__init__()
        from timm.models.eva import Eva

        self.image_size, self.width, self.depth = image_size, width, depth
        self.vit = Eva(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            mlp_ratio=mlp_hidden / width,
            qkv_bias=True,
            num_classes=0,
            global_pool="",
            use_post_transformer_norm=False,
            use_fc_norm=False,
        )
        if self.vit.blocks[0].mlp.fc1.out_features != mlp_hidden:
            raise ValueError(
                f"timm built an MLP of {self.vit.blocks[0].mlp.fc1.out_features}, not {mlp_hidden}"
            )
        self.freeze()

    @property
    def num_tokens(self) -> int:
        return self.vit.patch_embed.num_patches + 1

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: int) -> EVAVisionTower:
        """The tower with weights from a local file (LAVIS's ``eva_vit_g.pth`` or a safetensors copy).

        Blocks past ``depth`` (the 40th, which BLIP-2 drops) and heads (``norm``, ``head``, ``fc_norm``)
        are ignored, as upstream loads them non-strictly; anything else that does not fit is an error
        naming the file and the keys.
        """
        tower = cls(**kwargs)
        tower.load_weights(_read_weights(path, "EVA vision tower"), str(path))
        return tower

    def load_weights(self, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        state = {k.removeprefix("visual_encoder."): v for k, v in state.items()}
        own = self.vit.state_dict()
        ignored = [
            k
            for k in state
            if k not in own
            and (
                k.split(".")[0] in ("norm", "head", "fc_norm")
                or (k.startswith("blocks.") and int(k.split(".")[1]) >= self.depth)
            )
        ]
        unknown = sorted(set(state) - set(own) - set(ignored))
        missing = sorted(set(own) - set(state))
        if unknown or missing:
            raise ValueError(
                f"{source} does not fit the EVA vision tower (depth {self.depth}, width {self.width}): "
                f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                f"unexpected {unknown[:8]}{'...' if len(unknown) > 8 else ''}"
            )
        wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
        if wrong:
            raise ValueError(
                f"{source}: shapes differ from the EVA vision tower for {wrong[:8]} "
                f"(e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})"
            )
        if ignored:
            warnings.warn(
                f"{source}: ignored {len(ignored)} keys the tower does not use (e.g. {ignored[0]})",
                stacklevel=3,
            )
        self.vit.load_state_dict({k: state[k] for k in own}, strict=True)

    @classmethod
    def seeded(cls, seed: int = 0, **kwargs: int) -> EVAVisionTower:
        """A tower with seeded random weights (tiny configurations)."""
        tower = cls(**kwargs)
        _seeded_(tower.vit, seed)
        return tower

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"the vision tower takes {self.image_size}x{self.image_size} images, got {tuple(images.shape[-2:])}"
            )
        with torch.no_grad():
            return self.vit.forward_features(images.to(self.vit.cls_token.dtype))


class ImageEmbedTeacher(Frozen):
    """Base of embedding teachers: CLIP-normalised images ``[B, 3, S, S]`` -> embeddings ``[B, dim]``."""

    dim: int = 0
    image_size: int = 224

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.embed(images).float()


class CLIPImageEmbedTeacher(ImageEmbedTeacher):
    """The projected image embedding (``image_embeds``, not normalised) of a CLIP vision model in a local
    ``transformers`` folder; SEED distils OpenCLIP ViT-H/14 (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``,
    1024-d), fed the same 224 px CLIP-normalised tensor as its own encoder, as upstream does."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import transformers
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the CLIP teacher needs `transformers`: pip install 'zoo[reasoning]'") from exc
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"CLIP teacher: {folder} is not a directory (pass a local model folder)")
        self.model = transformers.CLIPVisionModelWithProjection.from_pretrained(
            str(folder), local_files_only=True
        )
        self.dim = int(self.model.config.projection_dim)
        self.image_size = int(self.model.config.image_size)
        self.freeze()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        return self.model(pixel_values=images.to(dtype)).image_embeds


class RandomImageEmbedTeacher(ImageEmbedTeacher):
    """A fixed random embedder that stands in for CLIP in tiny configurations: the image's 4 x 4 colour
    layout and the mean and standard deviation of three stride-2 tanh convolutions, through a fixed random
    projection. Weights come from ``seed``; the embedding carries the coarse content a tiny pixel decoder
    can learn to redraw."""

    def __init__(self, dim: int, *, image_size: int = 32, channels: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.dim, self.image_size = dim, image_size
        g = torch.Generator().manual_seed(seed)
        widths = (3, channels, channels, 2 * channels)
        for i in range(3):
            fan_in = widths[i] * 9
            self.register_buffer(
                f"conv{i}",
                torch.randn(widths[i + 1], widths[i], 3, 3, generator=g) / math.sqrt(fan_in),
                persistent=False,
            )
        features = 3 * 16 + 4 * channels
        self.register_buffer(
            "proj", torch.randn(dim, features, generator=g) / math.sqrt(features), persistent=False
        )
        self.freeze()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        h = images.float()
        layout = F.adaptive_avg_pool2d(h, 4).flatten(1)
        for i in range(3):
            h = torch.tanh(F.conv2d(h, getattr(self, f"conv{i}"), stride=2, padding=1))
        pooled = torch.cat([layout, h.mean((2, 3)), h.std((2, 3))], dim=1)
        return 2.0 * pooled @ self.proj.T
