"""The contract every zoo generator follows: a model of one tokenizer's tokens, conditioned on a class.

A generator names the tokenizer whose tokens it models (``gen.tokenizer_name``; ``gen.load_tokenizer()``
loads it), samples ``Tokens`` that tokenizer decodes (``gen.sample(labels, cfg=..., seed=...)``), scores
tokens where the model defines a likelihood (``gen.log_prob(tokens, labels)``), and computes its own
training loss from a batch of a token cache (``gen.training_loss(batch)``), so one Lightning module
trains them all. Saving, loading and the Hub work exactly as for tokenizers (`ZooModel`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .model import ZooModel
from .tokens import Tokens

__all__ = ["Generator", "GeneratorOutput", "as_labels"]


@dataclass
class GeneratorOutput:
    """What ``training_loss`` returns: the scalar to minimise and detached diagnostics to log."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def as_labels(
    labels: int | Sequence[int] | torch.Tensor, num_classes: int, device: torch.device | str
) -> torch.Tensor:
    """Class labels as int64 ``[B]`` on ``device``, each checked to lie in ``[0, num_classes)``."""
    tensor = torch.as_tensor([labels] if isinstance(labels, int) else labels, dtype=torch.long)
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"labels must be a non-empty list of class indices, got shape {tuple(tensor.shape)}")
    bad = tensor[(tensor < 0) | (tensor >= num_classes)]
    if bad.numel():
        raise ValueError(f"class label(s) {bad.tolist()[:5]} outside [0, {num_classes})")
    return tensor.to(device)


class Generator(ZooModel):
    """Base class of every generator.

    Subclasses take the constructor argument ``tokenizer`` (read back as ``tokenizer_name``), set ``num_classes`` and
    ``grid`` and implement ``sample``, ``training_loss`` and ``token_layout``; discrete generators also
    implement ``log_prob``. Labels ``0 .. num_classes - 1`` are classes; the class embedding has one
    more row, the null class ``num_classes`` that classifier-free guidance and label dropout use.
    """

    modality = "generator"
    num_classes: int = 1000
    grid: tuple[int, int] = (16, 16)

    # ------------------------------------------------------------------ spec
    @property
    def latent_channels(self) -> int | None:
        """Channels of the modelled continuous latents; ``None`` for ids."""
        return None

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"condition": "class label", "num_classes": self.num_classes, "tokenizer": self.tokenizer_name}

    def forward_passes(self, steps: int | None = None) -> int:
        """Network evaluations per sampled image (before the CFG batch doubling)."""
        raise NotImplementedError

    def token_layout(self) -> dict[str, Any]:
        layout: dict[str, Any] = {
            "tokenizer": self.tokenizer_name,
            "grid": list(self.grid),
            "tokens_per_item": math.prod(self.grid),
            "forward_passes": self.forward_passes(),
        }
        if self.discrete:
            layout["codebook_sizes"] = list(self.codebook_sizes)
        else:
            layout["latent_channels"] = self.latent_channels
        return layout

    # ------------------------------------------------------------------ tokenizer
    @property
    def tokenizer_name(self) -> str | None:
        """The tokenizer whose tokens this generator models, as ``config.json`` records it."""
        return self.config.get("tokenizer")

    @tokenizer_name.setter
    def tokenizer_name(self, name: str | None) -> None:
        self.update_config(tokenizer=name)

    def layout_problems(
        self, grid: Sequence[int], codebook_sizes: Sequence[int], latent_channels: int | None
    ) -> list[str]:
        """How tokens with this layout differ from what the generator models (empty: they fit)."""
        problems = []
        if tuple(grid) != tuple(self.grid):
            problems.append(f"grid {tuple(grid)} instead of {tuple(self.grid)}")
        if self.discrete and tuple(codebook_sizes) != tuple(self.codebook_sizes):
            problems.append(f"codebooks {tuple(codebook_sizes)} instead of {self.codebook_sizes}")
        if not self.discrete and latent_channels != self.latent_channels:
            problems.append(f"{latent_channels} latent channels instead of {self.latent_channels}")
        return problems

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise if ``tokenizer``'s tokens at its native size are not what this generator models."""
        problems = self.layout_problems(
            tokenizer.token_layout().get("grid", ()),
            tokenizer.codebook_sizes,
            getattr(tokenizer, "latent_channels", None),
        )
        if problems:
            raise ValueError(
                f"{self.arch or type(self).__name__} cannot model the tokens of {tokenizer.arch}: "
                + "; ".join(problems)
            )

    def load_tokenizer(self, name_or_path: str | None = None, **load_kwargs: Any) -> Any:
        """The tokenizer whose tokens this generator models (``zoo.load`` of ``tokenizer_name`` unless
        another is given), checked to produce the grid and codebook this generator was built for."""
        from .hub import load

        name = name_or_path or self.tokenizer_name
        if not name:
            raise ValueError(
                f"{self.arch or type(self).__name__} does not name its tokenizer; pass one "
                "(load_tokenizer('path/to/tokenizer') or zoo sample --tokenizer)"
            )
        tokenizer = load(name, **load_kwargs)
        self.check_tokenizer(tokenizer)
        return tokenizer

    # ------------------------------------------------------------------ API
    def sample(
        self,
        labels: int | Sequence[int] | torch.Tensor,
        *,
        cfg: float = 1.0,
        steps: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        progress: bool = False,
    ) -> Tokens:
        """Draw one token grid per label, as ``Tokens`` that the tokenizer decodes."""
        raise NotImplementedError

    def log_prob(self, tokens: Tokens, labels: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood (nats) of each item's tokens given its label, ``[B]``."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no tractable likelihood (it is a flow/diffusion model)"
        )

    def training_loss(self, batch: dict[str, torch.Tensor]) -> GeneratorOutput:
        """The training objective on a token-cache batch (``ids`` or ``latents``, and ``labels``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def labels(self, labels: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        return as_labels(labels, self.num_classes, self.device)

    def make_generator(self, seed: int | None) -> torch.Generator | None:
        """A random generator on the model's device seeded with ``seed`` (``None``: the global RNG)."""
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def sampled_tokens(
        self,
        labels: torch.Tensor,
        ids: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        **settings: Any,
    ) -> Tokens:
        """Wrap sampled ids or latents as ``Tokens`` stamped with the tokenizer that decodes them and
        the generator and settings that drew them."""
        meta = {
            "generator": getattr(self, "source", None) or self.arch,
            "labels": labels.tolist(),
            **{k: v for k, v in settings.items() if v is not None},
        }
        return Tokens(
            ids=ids,
            latents=latents,
            grid=tuple(self.grid),
            codebook_sizes=self.codebook_sizes,
            meta=meta,
            model=self.tokenizer_name,
        )
