"""SEED-2's tokenizer against AILab-CVC/SEED @ 93b3cf4: the causal Q-Former over an EVA ViT, 32 ids per
image, and the ids' 1024-d unCLIP image embedding.

Upstream's official tokenization is ``models/seed_llama_tokenizer.py``: ``SeedLlamaTokenizer.encode_image(
image_path=...)`` opens the file with PIL (``convert("RGB")``) and runs ``ImageTokenizer.processor``
(torchvision ``Resize((224, 224), interpolation=3)``, i.e. PIL bicubic, a stretch without crop;
``ToTensor``; ``Normalize`` with CLIP's mean and std), then ``ImageTokenizer.encode`` ->
``Blip2QformerQuantizer.get_codebook_indices`` (``models/seed_qformer/qformer_quantizer.py``).
``get_codebook_entry(ids)`` is the embedding unCLIP decodes (compared as the latent; the zoo's
``decode_embedding``). The model is built with ``from_pretrained``'s arguments in fp32 (``fp16=False``: CPU),
and its checkpoint is a plain state dict without the ViT, like ``seed_quantizer.pt``; the ViT's weights
travel as LAVIS's ``eva_vit_g.pth`` does and reach the zoo through ``attach_vision`` (``vision_path``).

Size: everything is at the paper configuration (BERT-base causal Q-Former, VQ 8192 x 32, both block
stacks, the MLP image head) except the EVA ViT-g's depth: 39 blocks of width 1408 are 1 B parameters,
4 GB in fp32 per copy, too much for a shared 2-core box. By default the tower keeps EVA-g's width, patch,
heads and MLP and reads real 224 px inputs (257 tokens), with ``--option vit_depth=2`` blocks;
``--option vit_depth=39`` runs the paper ViT-g.

Shims to run upstream's code offline under transformers 5 (none changes a forward pass):
- ``bert-base-uncased`` is never downloaded: ``BertConfig.from_pretrained`` gets its published config values,
  ``BertLMHeadModel.from_pretrained`` builds the model from that config (its weights are then replaced by
  the random ones anyway), and the text tokenizer, which encoding never uses, is not built;
- ``create_eva_vit_g`` builds upstream's own ``eva_vit.VisionTransformer`` with its arguments but does not
  download LAVIS's weights (random weights are given instead);
- transformers 5 dropped helpers the 2023 Q-Former code imports or inherits (``apply_chunking_to_forward``,
  ``prune_linear_layer``, ``find_pruneable_heads_and_indices`` from ``modeling_utils``;
  ``invert_attention_mask``, ``get_head_mask`` and ``init_weights``' old behaviour on ``PreTrainedModel``):
  they are supplied with transformers 4's behaviour for what SEED calls (no chunking, no head mask,
  an all-ones encoder mask).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .common import Adapter, Output, randomize, state_dict_of, through_converter

TAG = "seed.ailab"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# bert-base-uncased's config.json (what BertConfig.from_pretrained would fetch)
BERT_BASE_UNCASED = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}


def _transformers_v4_helpers() -> None:
    """Put back the ``modeling_utils`` names the Q-Former imports (moved or removed in transformers 5)."""
    import transformers.modeling_utils as mu
    import transformers.pytorch_utils as pu

    def apply_chunking_to_forward(forward_fn: Any, chunk_size: int, chunk_dim: int, *inputs: Any) -> Any:
        if chunk_size:
            raise NotImplementedError("SEED's Q-Former runs unchunked (chunk_size_feed_forward 0)")
        return forward_fn(*inputs)

    def find_pruneable_heads_and_indices(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("head pruning is not part of SEED's tokenization")

    for name, value in (
        ("apply_chunking_to_forward", getattr(pu, "apply_chunking_to_forward", apply_chunking_to_forward)),
        ("prune_linear_layer", getattr(pu, "prune_linear_layer", None)),
        ("find_pruneable_heads_and_indices", find_pruneable_heads_and_indices),
    ):
        if not hasattr(mu, name):
            setattr(mu, name, value)


def _invert_attention_mask(self: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    ext = mask[:, None, :, :] if mask.dim() == 3 else mask[:, None, None, :]
    ext = ext.to(dtype=self.dtype)
    return (1.0 - ext) * torch.finfo(self.dtype).min


def _get_head_mask(self: nn.Module, head_mask: Any, num_hidden_layers: int, *args: Any) -> list[None]:
    if head_mask is not None:
        raise NotImplementedError("SEED passes no head mask")
    return [None] * num_hidden_layers


@contextlib.contextmanager
def _offline_build(blip2: Any, qformer: Any, eva_vit: Any, vit_depth: int) -> Iterator[None]:
    """While upstream's model is built: no downloads (see the module docstring)."""
    patched = [
        (qformer.BertConfig, "from_pretrained"),
        (qformer.BertLMHeadModel, "from_pretrained"),
        (blip2.Blip2Base, "init_tokenizer"),
        (blip2, "create_eva_vit_g"),
        (qformer.BertPreTrainedModel, "init_weights"),
    ]
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name in patched]

    def config_from_pretrained(cls: type, name: str, **kwargs: Any) -> Any:
        if name != "bert-base-uncased":
            raise ValueError(name)
        return cls(**BERT_BASE_UNCASED, **kwargs)

    def lm_from_pretrained(cls: type, name: str, config: Any = None, **kwargs: Any) -> Any:
        return cls(config)

    def create_eva_vit_g(
        img_size: int = 224,
        drop_path_rate: float = 0.4,
        use_checkpoint: bool = False,
        precision: str = "fp16",
    ) -> nn.Module:
        # create_eva_vit_g's own arguments, depth aside; no weight download, fp32
        return eva_vit.VisionTransformer(
            img_size=img_size,
            patch_size=14,
            use_mean_pooling=False,
            embed_dim=1408,
            depth=vit_depth,
            num_heads=1408 // 88,
            mlp_ratio=4.3637,
            qkv_bias=True,
            drop_path_rate=drop_path_rate,
            norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
            use_checkpoint=use_checkpoint,
        )

    qformer.BertConfig.from_pretrained = classmethod(config_from_pretrained)
    qformer.BertLMHeadModel.from_pretrained = classmethod(lm_from_pretrained)
    blip2.Blip2Base.init_tokenizer = classmethod(lambda cls, truncation_side="right": None)
    blip2.create_eva_vit_g = create_eva_vit_g
    # transformers 4's init_weights (5's also ties weights through attributes this 2023 model lacks)
    qformer.BertPreTrainedModel.init_weights = lambda self: self.apply(self._init_weights)
    try:
        yield
    finally:
        for owner, name, value in saved:
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


class SEEDAdapter(Adapter):
    model = "seed"
    tag = TAG
    card = "seed"
    modality = "image"
    upstream_files = (
        "models/seed_qformer/qformer_quantizer.py",
        "models/seed_qformer/qformer_causual.py",
        "models/seed_qformer/blip2.py",
        "models/seed_qformer/eva_vit.py",
        "models/seed_qformer/vit.py",
    )
    description = (
        "SEED-2 (EVA-g width, --option vit_depth=2 of 39), ImageTokenizer.processor + get_codebook_indices"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vit_depth = int(self.options.get("vit_depth", 2))

    def build(self) -> tuple[Any, Any]:
        _transformers_v4_helpers()
        with self.imports():
            from models.seed_qformer import blip2, eva_vit
            from models.seed_qformer import qformer_causual as qformer
            from models.seed_qformer.qformer_quantizer import Blip2QformerQuantizer
        for cls in (qformer.BertModel, qformer.BertLMHeadModel):
            if not hasattr(cls, "invert_attention_mask"):
                cls.invert_attention_mask = _invert_attention_mask
            if not hasattr(cls, "get_head_mask"):
                cls.get_head_mask = _get_head_mask
        torch.manual_seed(self.seed)
        with _offline_build(blip2, qformer, eva_vit, self.vit_depth):
            # Blip2QformerQuantizer.from_pretrained's arguments, fp32 (ImageTokenizer(fp16=False))
            model = Blip2QformerQuantizer(
                vit_model="eva_clip_g",
                img_size=224,
                drop_path_rate=0,
                use_grad_checkpoint=False,
                vit_precision="fp32",
                freeze_vit=True,
                num_query_token=32,
                cross_attention_freq=2,
                max_txt_len=32,
            )
        model = model.float().eval()
        randomize(model, self.seed)
        gen = torch.Generator().manual_seed(self.seed + 1)
        with torch.no_grad():
            # the codebook's U(+-1/8192) init makes every query pick nearly the same code
            table = model.quantize.embedding.weight
            table.copy_(torch.randn(table.shape, generator=gen) * 0.25)
            model.ln_vision.weight.copy_(1 + 0.1 * torch.randn(model.ln_vision.weight.shape, generator=gen))
        state = state_dict_of(model)
        checkpoint = {k: v for k, v in state.items() if not k.startswith("visual_encoder.")}
        vit = {
            k.removeprefix("visual_encoder."): v for k, v in state.items() if k.startswith("visual_encoder.")
        }
        zoo_model = through_converter(self.tag, checkpoint, vision_args={"depth": self.vit_depth})
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "eva_vit_g.pth"
            torch.save(vit, file)
            zoo_model.attach_vision(file)  # what vision_path=... does on first use
        return model, zoo_model

    def run_upstream(self, model: Any, path: Path) -> Output:
        from PIL import Image
        from torchvision import transforms

        processor = transforms.Compose(
            [
                transforms.Resize((224, 224), interpolation=3),
                transforms.ToTensor(),
                transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
            ]
        )
        image = processor(Image.open(path).convert("RGB"))[None]
        ids, _ = model.get_codebook_indices(image)
        ids = ids.view(image.shape[0], -1)
        return Output(ids=ids, latent=model.get_codebook_entry(ids))

    def run_zoo(self, model: Any, path: Path) -> Output:
        from zoo.io import read_media

        x = model.prepare(read_media(path, modality="image"), path=path)
        tokens = model.encode(x)
        return Output(ids=tokens.ids, latent=model.decode_embedding(tokens))


ADAPTERS = {"seed": SEEDAdapter}
