"""TFM-Encoder: the downstream Transformer over TFM-Tokenizer ids, with masked-token-prediction pretraining.

Paper: Pradeepkumar et al., arXiv:2502.16060; upstream ``TFM_TOKEN_Classifier`` in
Jathurshan0330/TFM-Tokenizer ``models/tfm_token.py`` ("64x4": ``get_tfm_token_classifier_64x4``),
pretrained by ``downstream_transformer_masked_token_prediction_pretraining.py`` and fine-tuned by
``downstream_transformer_finetuning.py``.

Ids ``[B, C, F]`` (channels x frames, from a frozen tokenizer) are embedded ((V + 1) x dim, the extra
row being the mask id ``V``; initialisable from the tokenizer's codebook), each channel gets a learned
channel embedding and the same sinusoidal frame positions, the ``C * F`` tokens are flattened behind a
CLS token and run through a 4-layer linear-attention Transformer. The CLS output feeds the
classification head; during pretraining every other output feeds a ``V``-way token head.

MTP (``mtp_loss``): each id is masked with probability 1/2; a second pass masks exactly the other
positions; the loss is the sum over both passes of the cross-entropy at masked positions.

This is not a tokenizer (it is not registered with ``register_model``); the evaluation code builds it
directly. Differences from upstream: the MTP token head is its own ``mtp_head`` (upstream reuses
``classification_head`` with ``V`` outputs for pretraining and replaces it for fine-tuning; the
converter maps such a head onto ``mtp_head``), and the sinusoidal table is recomputed rather than
stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.linear_attention import LinearAttentionTransformer

__all__ = ["TFMEncoder", "convert_tfm_encoder", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """``[length, dim]`` with sines in even and cosines in odd channels (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class TFMEncoder(nn.Module):
    """Classifier over token grids ``[B, C, F]`` with a masked-token-prediction objective.

    Args:
        num_classes: outputs of the classification head (logits; use BCE on one output for binary tasks
            as upstream, or cross-entropy on several).
        vocab_size: tokenizer codebook size ``V``; id ``V`` is the mask token.
        dim, depth, heads: Transformer width, layers and heads (paper: 64, 4, 8).
        max_channels: channels the channel embedding covers (upstream: 16 bipolar TCP channels).
        max_frames: frames per channel the position table covers.
        dropout: dropout after each attention output projection (upstream 0.2).
        position_dropout: dropout on each channel's embedded tokens (upstream 0.1).
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int = 8192,
        dim: int = 64,
        depth: int = 4,
        heads: int = 8,
        max_channels: int = 16,
        max_frames: int = 1000,
        dropout: float = 0.2,
        position_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.mask_id = vocab_size
        self.max_channels, self.max_frames = max_channels, max_frames
        self.token_embedding = nn.Embedding(vocab_size + 1, dim)
        self.channel_embedding = nn.Embedding(max_channels, dim)
        self.register_buffer("positions", sinusoidal_positions(max_frames, dim), persistent=False)
        self.position_dropout = nn.Dropout(position_dropout)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.transformer = LinearAttentionTransformer(dim, depth, heads, dropout=dropout)
        self.classification_head = nn.Linear(dim, num_classes)
        self.mtp_head = nn.Linear(dim, vocab_size)

    # ------------------------------------------------------------------ setup
    @torch.no_grad()
    def embed_from_codebook(self, codebook: torch.Tensor) -> None:
        """Initialise the token embedding from a tokenizer codebook ``[V, dim]``; the mask row becomes 0."""
        weight = self.token_embedding.weight
        if codebook.ndim != 2 or codebook.shape != (self.vocab_size, weight.shape[1]):
            raise ValueError(
                f"expected a codebook [{self.vocab_size}, {weight.shape[1]}], got shape {tuple(codebook.shape)}"
            )
        weight[: self.vocab_size] = codebook.to(weight)
        weight[self.vocab_size] = 0

    # ------------------------------------------------------------------ forward
    def check_ids(self, ids: torch.Tensor) -> None:
        if ids.ndim != 3 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"expected integer ids [B, C, F], got {ids.dtype} of shape {tuple(ids.shape)}")
        _, c, f = ids.shape
        if c > self.max_channels or f > self.max_frames:
            raise ValueError(
                f"{c} channels x {f} frames exceed this encoder's {self.max_channels} x {self.max_frames}"
            )
        if bool(((ids < 0) | (ids > self.mask_id)).any()):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}] ({self.vocab_size} is the mask id)")

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """Transformer outputs ``[B, 1 + C * F, dim]``: the CLS token first, then channel-major tokens."""
        self.check_ids(ids)
        b, c, f = ids.shape
        x = self.token_embedding(ids.long())
        channels = self.channel_embedding.weight[:c, None, :]  # [C, 1, dim]
        x = self.position_dropout(x + channels + self.positions[:f])
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, c * f, -1)], dim=1)
        return self.transformer(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, C, F]`` -> class logits ``[B, num_classes]``."""
        return self.classification_head(self.features(ids)[:, 0])

    def token_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, C, F]`` (some masked) -> logits over the vocabulary ``[B, C, F, V]``."""
        return self.mtp_head(self.features(ids)[:, 1:]).unflatten(1, ids.shape[1:])

    def mtp_loss(self, ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked-token prediction on unmasked ids ``[B, C, F]``: a Bernoulli(1/2) mask and its complement,
        cross-entropy at the masked positions of each pass, summed over the two passes."""
        if bool((ids == self.mask_id).any()):
            raise ValueError("mtp_loss takes the tokenizer's ids; the mask id is placed here")
        device = generator.device if generator is not None else ids.device
        masked = (torch.rand(ids.shape, generator=generator, device=device) < 0.5).to(ids.device)
        loss = ids.new_zeros((), dtype=torch.float32)
        for hide in (masked, ~masked):
            if not bool(hide.any()):
                continue
            logits = self.token_logits(ids.masked_fill(hide, self.mask_id))
            loss = loss + F.cross_entropy(logits[hide].float(), ids[hide].long())
        return loss


def convert_tfm_encoder(
    state_dict: Mapping[str, torch.Tensor], model: TFMEncoder | None = None
) -> dict[str, torch.Tensor]:
    """Upstream ``TFM_TOKEN_Classifier`` state dict -> ``TFMEncoder`` keys.

    ``index`` (the fixed channel numbers 0..15) and ``temporal_pos_embed.pe`` (the sinusoid table) are
    dropped: both are recomputed. A head with ``V`` outputs (``V + 1`` embedding rows; MTP checkpoints)
    becomes ``mtp_head``, any other the ``classification_head``. Load with ``strict=False`` when the
    checkpoint lacks one of the two heads, as upstream's fine-tuning does.
    """
    vocab = state_dict["eeg_token_embedding.weight"].shape[0] - 1
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.").removeprefix("tfm_token.")
        if key == "index":
            if not torch.equal(value.cpu(), torch.arange(value.numel())):
                raise ValueError("upstream channel index is not 0..N-1; channels would be renumbered")
            continue
        if key == "temporal_pos_embed.pe":
            continue
        if key.startswith("classification_head."):
            head = "mtp_head" if value.shape[0] == vocab else "classification_head"
            key = head + key[len("classification_head") :]
        elif key.startswith("LAT."):
            key = "transformer." + key[len("LAT.") :]
        elif key == "eeg_token_embedding.weight":
            key = "token_embedding.weight"
        elif key == "channel_embed.weight":
            key = "channel_embedding.weight"
        out[key] = value
    return out
