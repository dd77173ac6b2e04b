"""SEED (SEED-2 tokenizer): 32 causal ids per image, decoded to an unCLIP image embedding.

Papers: "Planting a SEED of Vision in Large Language Model" (arXiv:2307.08041) and "Making LLaMA SEE and
Draw with SEED Tokenizer" (arXiv:2310.01218). Upstream: AILab-CVC/SEED @ 93b3cf4
(``models/seed_qformer/qformer_quantizer.py``, ``qformer_causual.py``, ``eva_vit.py``, stage-2 training in
``SEED_Tokenizer/lavis/models/blip2_models/blip2_qformer_codebook_all_image.py``).

Encoding: a 224 px image (stretched, bicubic, CLIP mean/std) goes through a frozen EVA-CLIP ViT-g/14
(39 blocks, no final norm; weights from the user, never saved with the tokenizer) and ``ln_vision``;
BLIP-2's Q-Former (BERT-base, post-norm, cross-attention in every second layer) reads the 257 features
with 32 learned queries, query ``i`` seeing only queries ``<= i``, so the ids can be generated left to
right. ``Linear-Tanh-Linear`` maps each query to 32 dimensions and a plain VQ (8192 x 32, no l2
normalisation, taming's legacy loss placement: weight 1 on the commitment term, 0.25 on the codebook
term) gives 32 ids.

Decoding: the codes go back up (``Linear-Tanh-Linear``), get learned positions and four bidirectional ViT
blocks, then the image head makes one 1024-d embedding in OpenCLIP ViT-H/14's image-embedding space,
which Stable Diffusion 2.1 unCLIP turns into pixels. Two heads exist upstream and their weights differ:

- ``decode_head="mlp"`` (the released inference code and ``seed_quantizer.pt``): a bias-free
  ``768-256-128-32`` ReLU MLP per token, flattened to 1024, then ``Linear(1024, 1024)``;
- ``decode_head="reverse_qformer"`` (the training code): a 4-layer BERT Q-Former whose single query reads
  the 32 tokens, then ``Linear(768, 1024)``.

`convert_seed` says which one a checkpoint holds. A second stack of four blocks (``causal_pos`` and
``causal_blocks``) rebuilds the continuous Q-Former output from the codes; only training uses it.

Pixels: ``decode`` runs SD-2.1 unCLIP through ``diffusers`` when the user attaches it (`attach_unclip`:
noise level 0, 20 steps, guidance 10, fixed seeded latents, as upstream), and otherwise a pixel decoder
trained in the zoo on the embedding (``pixel_decoder``), so that SEED decodes media everywhere;
``last_decode_path`` and the log say which one ran.

Training (upstream's stage 2; `training_output`): the ViT, ``ln_vision`` and the Q-Former are frozen and
run without gradients (the Q-Former keeps its BERT dropout of 0.1 in training mode, as upstream's does);
loss = 5 x VQ + 2 x mean(1 - cos(rebuilt, Q-Former output)) + 0.5 x MSE(embedding, the teacher's
``image_embeds``), the teacher being CLIP-ViT-H/14 from a local ``transformers`` folder. The pixel
decoder, when present, learns from the detached embedding with the trainer's pixel losses, so it never
pulls the embedding away from CLIP's space.

Deliberate differences (outputs equal upstream's on the same weights): the causal mask follows
``causal=True`` for any number of queries (upstream switches it on only for exactly 32); the key bias of
the blocks' packed projections is kept (it cancels in the softmax); ``encode`` takes a batch of images
in ``[0, 1]`` and normalises them itself.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._factory import build
from ..._registry import PretrainedCfg, register_model, register_pretrained
from ...errors import MediaError, MissingPartError
from ...io.image import as_uint8, pil_bicubic, unit_float
from ...nn.conv2d import ConvDecoder2d
from ...nn.image_teachers import (
    CLIPImageEmbedTeacher,
    EVAVisionTower,
    ImageEmbedTeacher,
    RandomImageEmbedTeacher,
)
from ...nn.qformer import BertQFormer
from ...nn.teachers import TeacherSet
from ...nn.transformer import TransformerBlock
from ...quantizers import VectorQuantizer
from ...tokenizer import ImageTokenizer, TokenizerOutput
from ...tokens import Tokens

__all__ = ["CLIP_MEAN", "CLIP_STD", "SEED", "PixelDecoder", "convert_seed", "seed_layout_of"]

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DECODE_HEADS = ("mlp", "reverse_qformer")


class PixelDecoder(nn.Module):
    """Embedding ``[B, E]`` -> image ``[B, 3, S, S]`` in ``[-1, 1]``: a linear map to a ``seed_channels``
    x ``S / 2^(n-1)`` grid, then the taming convolutional decoder (``n = len(channel_mult)`` stages)."""

    def __init__(
        self,
        embed_dim: int,
        resolution: int,
        *,
        seed_channels: int = 64,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attention_stages: Sequence[int] = (0,),
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        factor = 2 ** (len(channel_mult) - 1)
        if resolution % factor:
            raise ValueError(
                f"resolution {resolution} is not a multiple of the decoder's upsampling {factor}"
            )
        self.grid, self.seed_channels = resolution // factor, seed_channels
        self.to_grid = nn.Linear(embed_dim, seed_channels * self.grid**2)
        self.decoder = ConvDecoder2d(
            in_channels=seed_channels,
            channels=channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            out_channels=3,
            attention_stages=attention_stages,
            norm_groups=norm_groups,
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        grid = self.to_grid(embedding).view(-1, self.seed_channels, self.grid, self.grid)
        return self.decoder(grid)


class SEED(ImageTokenizer):
    """SEED-2: a causal Q-Former over a frozen EVA ViT, 32 ids per image, decoded to an unCLIP embedding.

    Args:
        resolution: side of the (stretched) input image (224).
        vision: ``"eva_vit_g"`` (weights from ``vision_path``, LAVIS's ``eva_vit_g.pth``, or `attach_vision`)
            or ``"tiny"`` (a seeded random EVA of ``vision_args``; tiny sizes).
        vision_args: the tower's shape (``patch_size``, ``width``, ``depth``, ``heads``, ``mlp_hidden``).
        vision_path: local file with the tower's weights, read on first use.
        teacher: ``"clip"`` (``transformers`` CLIP vision model with projection in ``teacher_path``) or
            ``"tiny"`` (a seeded random conv embedder); only training needs it.
        teacher_path: local folder of the CLIP teacher (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``).
        teacher_seed: seed of the tiny vision tower and teacher.
        width, qformer_layers, qformer_heads, cross_attention_freq, num_queries, causal, qformer_dropout:
            the Q-Former (BERT-base: 768, 12, 12; cross-attention every 2nd layer; 32 causal queries; 0.1).
        train_qformer: let stage 2 train the Q-Former too (tiny sizes, which have no stage-1 Q-Former to
            start from; upstream keeps it frozen). Its output stays the detached target of the cosine term.
        codebook_size, code_dim: the VQ (8192 x 32).
        vq_args: further `VectorQuantizer` options; upstream's is plain (none). Tiny sizes use k-means
            initialisation and dead-code restarts, without which 256 codes collapse onto a handful.
        decode_depth, decode_heads: each stack of de-tokenizer blocks (4 blocks, 12 heads).
        decode_head: ``"mlp"`` (released inference layout) or ``"reverse_qformer"`` (training layout).
        down_dims: the MLP head's per-token widths (768 -> 256 -> 128 -> 32).
        reverse_layers: layers of the Reverse Q-Former head (4).
        embed_dim: the generation embedding (1024, OpenCLIP ViT-H/14's projection).
        vq_weight, cosine_weight, distill_weight: stage-2 loss weights (5, 2, 0.5).
        pixel_decoder: constructor arguments of `PixelDecoder` (``{}`` for its defaults), or ``None`` for
            no pixel decoder (the upstream model).
        unclip_path: local ``diffusers`` folder of ``stabilityai/stable-diffusion-2-1-unclip``, loaded on
            first decode.
        unclip_steps, unclip_guidance, unclip_seed: the unCLIP decode (20 steps, guidance 10; the seed of
            the fixed initial latents).
    """

    def __init__(
        self,
        *,
        resolution: int = 224,
        vision: str = "eva_vit_g",
        vision_args: dict[str, int] | None = None,
        vision_path: str | None = None,
        teacher: str = "clip",
        teacher_path: str | None = None,
        teacher_seed: int = 0,
        width: int = 768,
        qformer_layers: int = 12,
        qformer_heads: int = 12,
        cross_attention_freq: int = 2,
        num_queries: int = 32,
        causal: bool = True,
        qformer_dropout: float = 0.1,
        train_qformer: bool = False,
        codebook_size: int = 8192,
        code_dim: int = 32,
        vq_args: dict[str, Any] | None = None,
        decode_depth: int = 4,
        decode_heads: int = 12,
        decode_head: str = "mlp",
        down_dims: Sequence[int] = (256, 128, 32),
        reverse_layers: int = 4,
        embed_dim: int = 1024,
        vq_weight: float = 5.0,
        cosine_weight: float = 2.0,
        distill_weight: float = 0.5,
        pixel_decoder: dict[str, Any] | None = None,
        unclip_path: str | None = None,
        unclip_steps: int = 20,
        unclip_guidance: float = 10.0,
        unclip_seed: int = 0,
    ) -> None:
        super().__init__()
        if vision not in ("eva_vit_g", "tiny"):
            raise ValueError(f"vision must be 'eva_vit_g' or 'tiny', got {vision!r}")
        if teacher not in ("clip", "tiny"):
            raise ValueError(f"teacher must be 'clip' or 'tiny', got {teacher!r}")
        if decode_head not in DECODE_HEADS:
            raise ValueError(f"decode_head must be one of {DECODE_HEADS}, got {decode_head!r}")
        self.resolution = resolution
        self.vision_kind, self.teacher_kind, self.decode_head = vision, teacher, decode_head
        self.vision_args = {"image_size": resolution, **(vision_args or {})}
        self.downsample = int(self.vision_args.get("patch_size", 14))
        vision_width = int(self.vision_args.get("width", 1408))
        self.embed_dim = embed_dim
        self.vq_weight, self.cosine_weight, self.distill_weight = vq_weight, cosine_weight, distill_weight
        self.unclip_steps, self.unclip_guidance, self.unclip_seed = unclip_steps, unclip_guidance, unclip_seed

        self.ln_vision = nn.LayerNorm(vision_width)
        self.qformer = BertQFormer(
            width=width,
            layers=qformer_layers,
            heads=qformer_heads,
            context_width=vision_width,
            num_queries=num_queries,
            cross_attention_freq=cross_attention_freq,
            causal=causal,
            dropout=qformer_dropout,
        )
        self.encode_task_layer = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, code_dim))
        self.quantize = VectorQuantizer(
            code_dim, codebook_size, commitment_weight=1.0, codebook_weight=0.25, **(vq_args or {})
        )
        self.decode_task_layer = nn.Sequential(
            nn.Linear(code_dim, code_dim), nn.Tanh(), nn.Linear(code_dim, width)
        )
        self.causal_pos = nn.Parameter(torch.zeros(1, num_queries, width))
        self.causal_blocks = nn.ModuleList(
            TransformerBlock(width, decode_heads, 4.0, "fused", 1e-6) for _ in range(decode_depth)
        )
        self.image_pos = nn.Parameter(torch.zeros(1, num_queries, width))
        self.image_blocks = nn.ModuleList(
            TransformerBlock(width, decode_heads, 4.0, "fused", 1e-6) for _ in range(decode_depth)
        )
        if decode_head == "mlp":
            dims = (width, *down_dims)
            layers: list[nn.Module] = []
            for i in range(len(down_dims)):
                layers += [nn.Linear(dims[i], dims[i + 1], bias=False), nn.ReLU()]
            self.image_down = nn.Sequential(*layers[:-1])
            self.image_proj = nn.Linear(num_queries * down_dims[-1], embed_dim)
        else:
            self.image_qformer = BertQFormer(
                width=width,
                layers=reverse_layers,
                heads=qformer_heads,
                context_width=width,
                num_queries=1,
                cross_attention_freq=cross_attention_freq,
                causal=False,
                dropout=qformer_dropout,
            )
            self.image_proj = nn.Linear(width, embed_dim)
        self.pixel_decoder = (
            PixelDecoder(embed_dim, resolution, **pixel_decoder) if pixel_decoder is not None else None
        )
        # Frozen in stage 2, as upstream: the ViT's norm and the (stage-1) Q-Former.
        self.ln_vision.requires_grad_(False)
        self.train_qformer = train_qformer
        self.qformer.requires_grad_(train_qformer)
        self.register_buffer("clip_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

        self._teachers = TeacherSet()
        self._paths = {"vision": vision_path, "teacher": teacher_path, "unclip": unclip_path}
        self.last_decode_path: str | None = None
        if vision == "tiny":
            with torch.device("cpu"):  # real even under a meta-device context; moved on use
                self._teachers["vision"] = EVAVisionTower.seeded(teacher_seed, **self.vision_args)
        if teacher == "tiny":
            with torch.device("cpu"):
                self._teachers["teacher"] = RandomImageEmbedTeacher(
                    embed_dim, image_size=resolution, seed=teacher_seed + 1
                )

    # ------------------------------------------------------------------ spec
    @property
    def num_queries(self) -> int:
        return self.qformer.num_queries

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.quantize.codebook_size,)

    def token_layout(self) -> dict[str, Any]:
        return {
            "grid": [self.num_queries],
            "tokens_per_item": self.num_queries,
            "codebook_sizes": list(self.codebook_sizes),
            "bits_per_token": self.bits_per_token,
            "resolution": self.resolution,
            "order": "causal (query i depends on queries <= i)",
            "decodes_to": f"{self.embed_dim}-d unCLIP image embedding",
        }

    def last_layer(self) -> torch.Tensor | None:
        return None if self.pixel_decoder is None else self.pixel_decoder.decoder.conv_out.weight

    # ------------------------------------------------------------------ frozen parts
    def attach_vision(self, tower: EVAVisionTower | str | Path) -> None:
        """Set the frozen vision tower: an `EVAVisionTower`, or a local weights file (``eva_vit_g.pth``)."""
        if not isinstance(tower, EVAVisionTower):
            tower = EVAVisionTower.from_file(tower, **self.vision_args)
        if tower.width != self.ln_vision.normalized_shape[0] or tower.image_size != self.resolution:
            raise ValueError(
                f"the tower is {tower.width} wide at {tower.image_size} px; this SEED reads "
                f"{self.ln_vision.normalized_shape[0]}-d features at {self.resolution} px"
            )
        self._teachers["vision"] = tower.freeze()

    def attach_teacher(self, teacher: ImageEmbedTeacher | str | Path) -> None:
        """Set the frozen embedding teacher of training: an `ImageEmbedTeacher`, or a local ``transformers``
        folder of a CLIP vision model with projection; its ``dim`` must equal ``embed_dim``."""
        if not isinstance(teacher, ImageEmbedTeacher):
            teacher = CLIPImageEmbedTeacher(teacher)
        if teacher.dim != self.embed_dim:
            raise ValueError(f"the teacher embeds to {teacher.dim} dims; this SEED predicts {self.embed_dim}")
        self._teachers["teacher"] = teacher.freeze()

    def attach_unclip(self, pipeline: Any) -> None:
        """Decode through SD-2.1 unCLIP from now on: a ``diffusers`` ``StableUnCLIPImg2ImgPipeline``, or a
        local folder holding one."""
        if isinstance(pipeline, (str, Path)):
            pipeline = _load_unclip(str(pipeline))
        if not hasattr(pipeline, "image_normalizer"):
            raise TypeError(f"expected a StableUnCLIPImg2ImgPipeline, got {type(pipeline).__name__}")
        self._teachers["unclip"] = pipeline

    def _frozen(self, name: str) -> Any:
        if name not in self._teachers and self._paths.get(name):
            path = self._paths[name]
            {"vision": self.attach_vision, "teacher": self.attach_teacher, "unclip": self.attach_unclip}[
                name
            ](path)
        part = self._teachers.get(name)
        if part is None:
            hints = {
                "vision": "pass vision_path (LAVIS's eva_vit_g.pth, a local file) or call attach_vision()",
                "teacher": "pass teacher_path (a local CLIP-ViT-H-14 transformers folder) or call attach_teacher()",
                "unclip": "pass unclip_path or call attach_unclip()",
            }
            raise MissingPartError(
                f"SEED needs its frozen {name} model: {hints[name]}; nothing is downloaded"
            )
        if isinstance(part, nn.Module):
            part.to(self.clip_mean.device)
        return part

    # ------------------------------------------------------------------ input
    def check_images(self, x: torch.Tensor) -> None:
        super().check_images(x)
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(
                f"SEED reads {self.resolution}x{self.resolution} images, got {tuple(x.shape[-2:])}; "
                "stretch them with prepare() (zoo encode does this)"
            )

    def prepare(self, media: torch.Tensor, *, path: Any = None, resolution: int | None = 0) -> torch.Tensor:
        """Stretch (no crop) to ``resolution`` as SEED's processor does: ``Resize((224, 224), BICUBIC)`` on
        the PIL image (``models/seed_llama_tokenizer.py``), then ``ToTensor``.

        An 8-bit image (every file ``zoo.io`` reads from an 8-bit format) is resized by PIL itself on its
        uint8 pixels, so the result equals upstream's tensor exactly and so do the ids; PIL's bicubic
        differs from torch's (fixed-point weights, a support scaled by the reduction, 8-bit rounding), which
        changed ids. Deeper images, which upstream's ``convert("RGB")`` would cut to 8 bits, keep their
        precision: they take torch's antialiased bicubic, rounded to 8-bit steps.
        """
        if media.ndim != 3 or media.shape[0] != self.in_channels:
            raise MediaError(
                path, f"expected a {self.in_channels}-channel image, got shape {tuple(media.shape)}"
            )
        if resolution not in (0, None, self.resolution):
            raise ValueError(f"SEED reads {self.resolution} px images only, not {resolution}")
        size = (self.resolution, self.resolution)
        x = media if media.dtype == torch.uint8 else media.float()  # uint8: read_image(keep_uint8=True)
        if tuple(x.shape[-2:]) == size:
            return unit_float(x)[None]
        pixels = as_uint8(x)
        if pixels is not None:
            return pil_bicubic(pixels, size, x)[None].to(media.device)
        x = F.interpolate(unit_float(x)[None], size=size, mode="bicubic", align_corners=False, antialias=True)
        return (x.clamp(0, 1) * 255).round() / 255

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> CLIP mean/std normalisation."""
        return (x - self.clip_mean) / self.clip_std

    # ------------------------------------------------------------------ pieces
    def vision_features(self, x: torch.Tensor) -> torch.Tensor:
        """``ln_vision(ViT(x))``: ``[B, 1 + N, vision_width]`` for images in ``[0, 1]``."""
        tower = self._frozen("vision")
        with torch.no_grad():
            return self.ln_vision(tower(self.normalize(x)).to(self.ln_vision.weight.dtype))

    def causal_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """The Q-Former's continuous output ``[B, num_queries, width]`` (what the ids quantize); with
        gradients only when ``train_qformer``."""
        features = self.vision_features(x)
        with torch.set_grad_enabled(self.train_qformer and torch.is_grad_enabled()):
            return self.qformer(features)

    def _up(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_task_layer(codes)

    def rebuild_causal(self, up: torch.Tensor) -> torch.Tensor:
        """The training-only head: codes (after ``decode_task_layer``) -> the Q-Former output."""
        h = up + self.causal_pos
        for block in self.causal_blocks:
            h = block(h)
        return h

    def image_embedding(self, up: torch.Tensor) -> torch.Tensor:
        """Codes (after ``decode_task_layer``) -> the ``[B, embed_dim]`` generation embedding."""
        h = up + self.image_pos
        for block in self.image_blocks:
            h = block(h)
        if self.decode_head == "mlp":
            return self.image_proj(self.image_down(h).flatten(1))
        return self.image_proj(self.image_qformer(h)[:, 0])

    def embedding_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, num_queries]`` -> embeddings ``[B, embed_dim]`` (upstream's ``get_codebook_entry``)."""
        return self.image_embedding(self._up(self.quantize.lookup(ids).transpose(1, 2)))

    # ------------------------------------------------------------------ training
    def _losses_and_embedding(
        self, x: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Any, torch.Tensor]:
        target = self.causal_embeddings(x)
        q = self.quantize(self.encode_task_layer(target).transpose(1, 2))
        up = self._up(q.quantized.transpose(1, 2))
        rebuilt = self.rebuild_causal(up)
        embedding = self.image_embedding(up)
        cosine = F.cosine_similarity(rebuilt.float(), target.detach().float(), dim=-1, eps=0.0)
        losses = {f"vq/{k.split('/')[-1]}": self.vq_weight * v for k, v in q.losses.items()}
        losses["rec/causal_cosine"] = self.cosine_weight * (1 - cosine).mean()
        stats = {f"vq_{k}": v for k, v in q.stats.items()}
        teacher = self._teachers.get("teacher")
        if teacher is None and (self.training or self._paths["teacher"]):
            teacher = self._frozen("teacher")  # loads it, or says how to supply it
        if teacher is not None:
            wanted = teacher(self.normalize(x))
            losses["rec/image_embed_mse"] = self.distill_weight * F.mse_loss(embedding.float(), wanted)
            stats["embed_cosine"] = F.cosine_similarity(embedding.detach().float(), wanted, dim=-1).mean()
        return losses, stats, q, embedding

    def training_output(self, x: torch.Tensor, step: int) -> TokenizerOutput:
        """Upstream's stage 2 (see the module docstring), plus the pixel decoder on the detached embedding."""
        self.check_images(x)
        losses, stats, q, embedding = self._losses_and_embedding(x)
        recon = None
        if self.pixel_decoder is not None:
            recon = (self.pixel_decoder(embedding.detach()) + 1) / 2
        return TokenizerOutput(recon=recon, ids=q.ids, losses=losses, stats=stats)

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        return self.training_output(x, 0)

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Tokens:
        """Images ``[B, 3, S, S]`` in ``[0, 1]`` -> 32 causal ids each (``[B, 32]``)."""
        self.check_images(x)
        z = self.encode_task_layer(self.causal_embeddings(x))
        ids = self.quantize.encode(z.transpose(1, 2))
        return self.make_tokens(
            ids=ids,
            grid=(self.num_queries,),
            codebook_sizes=self.codebook_sizes,
            meta={"image_size": list(x.shape[-2:])},
        )

    @torch.no_grad()
    def decode_embedding(self, tokens: Tokens) -> torch.Tensor:
        """Ids -> the ``[B, embed_dim]`` unCLIP image embedding (what upstream's LLM side decodes)."""
        return self.embedding_from_ids(self.decodable_ids(tokens, 1))

    @property
    def decode_path(self) -> str:
        """What ``decode`` will run: ``"unclip"`` when attached or configured, else ``"pixel_decoder"``."""
        if "unclip" in self._teachers or self._paths["unclip"]:
            return "unclip"
        if self.pixel_decoder is not None:
            return "pixel_decoder"
        return "none"

    @torch.no_grad()
    def decode(self, tokens: Tokens, path: str | None = None) -> torch.Tensor:
        """Ids -> images in ``[0, 1]``: through SD-2.1 unCLIP (``path="unclip"``; 768 px) or the zoo's pixel
        decoder (``"pixel_decoder"``; ``resolution`` px). The default takes unCLIP when it is available;
        ``last_decode_path`` records the choice."""
        path = path or self.decode_path
        if path == "none":
            raise MissingPartError(
                "this SEED has no pixel decoder and no unCLIP pipeline: attach_unclip() (diffusers, SD-2.1 unCLIP "
                "weights), load a SEED with a zoo-trained pixel decoder, or use decode_embedding()"
            )
        embedding = self.decode_embedding(tokens)
        if path == "unclip":
            images = self._unclip(embedding)
        elif path == "pixel_decoder":
            if self.pixel_decoder is None:
                raise MissingPartError(
                    "this SEED has no pixel decoder; decode with path='unclip' or decode_embedding()"
                )
            images = (self.pixel_decoder(embedding) + 1) / 2
        else:
            raise ValueError(f"path must be 'unclip' or 'pixel_decoder', got {path!r}")
        self.last_decode_path = path
        logger.info("SEED decoded %d image(s) through %s", len(images), path)
        return images

    def _unclip(self, embedding: torch.Tensor) -> torch.Tensor:
        """SD-2.1 unCLIP at noise level 0 from fixed latents, as upstream decodes (one image per call).

        Each image gets the same seeded latents and embedding-noise draw, so a batch decodes exactly as its
        items would alone and a decode repeats (upstream draws both unseeded)."""
        pipe = self._frozen("unclip")
        unet = pipe.unet
        size = unet.config.sample_size
        latents = torch.randn(
            1, unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(self.unclip_seed)
        )
        images = []
        for item in embedding:
            out = pipe(
                image_embeds=item[None].to(unet.device, unet.dtype),
                prompt="",
                noise_level=0,
                num_inference_steps=self.unclip_steps,
                guidance_scale=self.unclip_guidance,
                latents=latents.to(unet.device, unet.dtype),
                generator=torch.Generator(unet.device).manual_seed(self.unclip_seed),
                output_type="pt",
            )
            images.append(out.images.float())
        return torch.cat(images).to(embedding.device)


def _load_unclip(path: str) -> Any:
    try:
        from diffusers import StableUnCLIPImg2ImgPipeline
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("decoding SEED through unCLIP needs `diffusers`: pip install 'zoo[seed]'") from exc
    return StableUnCLIPImg2ImgPipeline.from_pretrained(path, local_files_only=True)


# ---------------------------------------------------------------------------------------------- converter
_BERT_RENAMES = (
    ("attention.self.", "self_attn."),
    ("attention.output.dense.", "self_attn.out."),
    ("attention.output.LayerNorm.", "self_attn.norm."),
    ("crossattention.self.", "cross_attn."),
    ("crossattention.output.dense.", "cross_attn.out."),
    ("crossattention.output.LayerNorm.", "cross_attn.norm."),
    ("intermediate_query.dense.", "ffn.fc1."),
    ("output_query.dense.", "ffn.fc2."),
    ("output_query.LayerNorm.", "ffn.norm."),
)
_TOP_RENAMES = {
    "query_tokens": "qformer.queries",
    "reverse_tokens": "image_qformer.queries",
    "quantize.embedding.weight": "quantize.codebook",
    "pos_embed": "causal_pos",
    "pos_embed_image": "image_pos",
}
_PREFIX_RENAMES = (
    ("blocks.", "causal_blocks."),
    ("blocks_image.", "image_blocks."),
    ("distill_image_proj.", "image_proj."),
    ("encode_task_layer.", "encode_task_layer."),
    ("decode_task_layer.", "decode_task_layer."),
    ("image_down.", "image_down."),
    ("ln_vision.", "ln_vision."),
)


def _bert_key(key: str, prefix: str, target: str) -> str | None:
    """A BLIP-2 Q-Former key under ``prefix`` (``Qformer.bert.``) -> the zoo's under ``target``; None for
    the text path (word/position embeddings, text FFN, LM head) that the query-only Q-Former lacks."""
    rest = key[len(prefix) :]
    if rest.startswith("embeddings.LayerNorm."):
        return f"{target}.input_norm.{rest.removeprefix('embeddings.LayerNorm.')}"
    if not rest.startswith("encoder.layer."):
        return None
    index, _, tail = rest.removeprefix("encoder.layer.").partition(".")
    for old, new in _BERT_RENAMES:
        if tail.startswith(old):
            return f"{target}.layers.{index}.{new}{tail.removeprefix(old)}"
    return None


def seed_layout_of(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"mlp"`` (the inference code's ``image_down`` head) or ``"reverse_qformer"`` (the training code's)
    for a SEED checkpoint; a ValueError naming what was found when it holds neither."""
    proj = state_dict.get("distill_image_proj.weight")
    if "image_down.0.weight" in state_dict and proj is not None:
        return "mlp"
    if "reverse_tokens" in state_dict and any(k.startswith("Reverse_Qformer.bert.") for k in state_dict):
        return "reverse_qformer"
    heads = sorted({k.split(".")[0] for k in state_dict})
    raise ValueError(
        "not a SEED tokenizer checkpoint: it has neither the inference decode head (image_down.{0,2,4}.weight "
        "and distill_image_proj [1024, 1024]) nor the training one (Reverse_Qformer.bert.*, reverse_tokens and "
        f"distill_image_proj [1024, 768]); its top-level keys are {heads[:20]}"
    )


def convert_seed(
    state_dict: Mapping[str, torch.Tensor], model: SEED | None = None
) -> dict[str, torch.Tensor]:
    """Map a SEED-2 checkpoint (``seed_quantizer.pt``, or a stage-2 training checkpoint) onto `SEED`.

    The decode-head layout is detected (`seed_layout_of`) and must be the one ``model`` was built with;
    the message names the layout found and the ``decode_head`` to build. Keys no SEED module reads (the
    Q-Former's text path, training-only extras, a vision tower stored alongside) are left out and listed
    in a warning, as upstream loads this file non-strictly; every key the model needs must be present.
    """
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    layout = seed_layout_of(state)
    if model is not None and model.decode_head != layout:
        raise ValueError(
            f"the checkpoint holds the {'inference (image_down MLP)' if layout == 'mlp' else 'training (Reverse Q-Former)'} "
            f"decode head; build SEED with decode_head={layout!r} (e.g. zoo.load_upstream(..., decode_head={layout!r}))"
        )
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in state.items():
        new: str | None
        if key.startswith("Qformer.bert."):
            new = _bert_key(key, "Qformer.bert.", "qformer")
        elif key.startswith("Reverse_Qformer.bert.") and layout == "reverse_qformer":
            new = _bert_key(key, "Reverse_Qformer.bert.", "image_qformer")
        elif key in _TOP_RENAMES and not (key == "reverse_tokens" and layout == "mlp"):
            new = _TOP_RENAMES[key]
        else:
            new = next((n + key[len(o) :] for o, n in _PREFIX_RENAMES if key.startswith(o)), None)
            if key.startswith("image_down.") and layout != "mlp":
                new = None
        if new is None:
            if not key.endswith("embeddings.position_ids"):  # BERT's constant arange buffer
                ignored.append(key)
            continue
        out[new] = value
    if ignored:
        groups = sorted({".".join(k.split(".")[:2]) for k in ignored})
        warnings.warn(
            f"SEED converter ({layout} layout): left out {len(ignored)} keys no SEED module reads, under {groups[:12]}",
            stacklevel=2,
        )
    return out


# ---------------------------------------------------------------------------------------------- registry
_TINY: dict[str, Any] = {
    "resolution": 32,
    "vision": "tiny",
    "vision_args": {"patch_size": 8, "width": 64, "depth": 2, "heads": 4, "mlp_hidden": 128},
    "teacher": "tiny",
    "width": 64,
    "qformer_layers": 2,
    "qformer_heads": 4,
    "num_queries": 8,
    "train_qformer": True,
    "codebook_size": 256,
    "code_dim": 8,
    "vq_args": {"kmeans_init": True, "restart_threshold": 0.05},
    "decode_depth": 1,
    "decode_heads": 4,
    "down_dims": (32, 16, 8),
    "embed_dim": 64,
    "pixel_decoder": {
        "seed_channels": 16,
        "channels": 32,
        "channel_mult": (1, 2, 2, 2),
        "num_res_blocks": 1,
        "attention_stages": (),
        "norm_groups": 8,
    },
}


@register_model(modality="image", family="seed")
def seed(**kwargs: Any) -> SEED:
    """SEED-2: 224 px -> 32 causal ids over 8,192 codes (EVA ViT-g + causal Q-Former), decoded to an unCLIP embedding."""
    return build(SEED, "seed", {}, kwargs)


@register_model(modality="image", family="seed", size="tiny")
def seed_tiny(**kwargs: Any) -> SEED:
    """A 2-layer SEED on a seeded tiny ViT and teacher for CPU tests: 32 px -> 8 ids over 256 codes, with a pixel decoder."""
    return build(SEED, "seed_tiny", _TINY, kwargs)


register_pretrained(
    "seed.ailab",
    PretrainedCfg(
        hf_hub_id="AILab-CVC/seed-tokenizer-2",
        filename="seed_quantizer.pt",
        converter="convert_seed",
        license="apache-2.0",
        paper="arXiv:2310.01218",
        upstream="https://github.com/AILab-CVC/SEED @ 93b3cf4",
        description=(
            "SEED-2 tokenizer (CC3M stage 2); the EVA ViT-g weights (LAVIS eva_vit_g.pth) come separately "
            "through vision_path"
        ),
    ),
)
