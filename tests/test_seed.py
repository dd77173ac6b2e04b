"""SEED-2: paper-size layout, converter and its two decode heads, the frozen parts kept out of the weights,
causal ids, stage-2 training, both decode paths (zoo pixel decoder and a real diffusers unCLIP pipeline)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from seed_layout import seed_shapes
from tokenizer_checks import (
    assert_batch_equals_single_items,
    assert_round_trips,
    assert_training_reduces_loss,
    random_state_dict,
)

import zoo
from zoo.errors import MediaError, MissingPartError
from zoo.hub import load_weights
from zoo.models.image.seed import convert_seed, seed_layout_of
from zoo.nn.image_teachers import EVAVisionTower, RandomImageEmbedTeacher

# A SEED small enough to build for real but with upstream's layout rules (BERT Q-Former, two block stacks,
# both heads): the converter tests run on random state dicts of this shape.
SMALL = {
    "resolution": 32,
    "vision": "tiny",
    "vision_args": {"patch_size": 8, "width": 48, "depth": 1, "heads": 4, "mlp_hidden": 96},
    "teacher": "tiny",
    "width": 32,
    "qformer_layers": 4,
    "qformer_heads": 4,
    "num_queries": 6,
    "codebook_size": 64,
    "code_dim": 8,
    "decode_depth": 2,
    "decode_heads": 4,
    "down_dims": (16, 8, 4),
    "embed_dim": 40,
    "reverse_layers": 2,
}
SMALL_SHAPES = {
    "width": 32,
    "layers": 4,
    "vision_width": 48,
    "queries": 6,
    "codebook_size": 64,
    "code_dim": 8,
    "depth": 2,
    "down": (16, 8, 4),
    "embed_dim": 40,
    "reverse_layers": 2,
}


def small_upstream(head: str, seed: int = 0) -> dict[str, torch.Tensor]:
    state = random_state_dict(seed_shapes(head=head, **SMALL_SHAPES), seed)
    for key in [k for k in state if k.endswith("position_ids")]:
        state[key] = torch.arange(512)[None]
    return state


def test_paper_size_equals_upstreams_layout_on_meta() -> None:
    shapes = seed_shapes()
    assert len(shapes) == 370  # every non-ViT key of upstream's inference model
    assert sum(math.prod(s) for k, s in shapes.items() if not k.endswith("position_ids")) == 164_104_000
    with torch.device("meta"):
        model = zoo.create("seed")
        upstream = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the released layout converts with nothing left out
            converted = convert_seed(upstream, model)
        tower = EVAVisionTower()
    assert model.num_parameters() == 164_104_000 and model.pixel_decoder is None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    # The frozen EVA ViT-g (39 blocks, no final norm) is timm's Eva and never part of the saved weights.
    assert len(tower.vit.state_dict()) == 511 and sum(p.numel() for p in tower.parameters()) == 985_894_528
    assert not any(k.startswith(("vit.", "visual_encoder.")) for k in model.state_dict())
    layout = model.token_layout()
    assert layout["tokens_per_item"] == 32 and model.codebook_sizes == (8192,) and model.resolution == 224
    with torch.device("meta"):
        training = zoo.create("seed", decode_head="reverse_qformer")
    assert training.num_parameters() == sum(
        math.prod(s) for k, s in seed_shapes(head="reverse_qformer").items() if not k.endswith("position_ids")
    )


@pytest.mark.parametrize("head", ["mlp", "reverse_qformer"])
def test_converter_maps_every_upstream_tensor_unchanged(head: str) -> None:
    upstream = small_upstream(head)
    model = zoo.create("seed", **SMALL, decode_head=head).eval()
    assert seed_layout_of(upstream) == head
    converted = convert_seed(upstream, model)
    load_weights(model, converted, "upstream")
    own = model.state_dict()
    # Each converted tensor is an upstream tensor, untouched, and no upstream parameter is lost.
    values = {id(v): k for k, v in upstream.items()}
    assert all(id(v) in values for v in converted.values())
    used = {values[id(v)] for v in converted.values()}
    assert set(upstream) - used == {"Qformer.bert.embeddings.position_ids"} | (
        {"Reverse_Qformer.bert.embeddings.position_ids"} if head != "mlp" else set()
    )
    assert torch.equal(own["qformer.queries"], upstream["query_tokens"])
    assert torch.equal(own["quantize.codebook"], upstream["quantize.embedding.weight"])
    assert torch.equal(
        own["qformer.layers.2.cross_attn.key.weight"],
        upstream["Qformer.bert.encoder.layer.2.crossattention.self.key.weight"],
    )
    assert "qformer.layers.1.cross_attn.key.weight" not in own  # cross-attention in every second layer
    assert torch.equal(own["image_blocks.1.attn.qkv.bias"], upstream["blocks_image.1.attn.qkv.bias"])
    # Upstream's get_codebook_entry for the MLP head, written out: codes -> up -> blocks -> down -> proj.
    if head == "mlp":
        ids = torch.randint(0, 64, (3, 6))
        up = model.decode_task_layer(upstream["quantize.embedding.weight"][ids]) + upstream["pos_embed_image"]
        for block in model.image_blocks:
            up = block(up)
        h = up
        for i in (0, 2, 4):
            h = h @ upstream[f"image_down.{i}.weight"].T
            h = F.relu(h) if i < 4 else h
        want = h.flatten(1) @ upstream["distill_image_proj.weight"].T + upstream["distill_image_proj.bias"]
        torch.testing.assert_close(model.embedding_from_ids(ids), want)


def test_converter_names_the_layout_and_refuses_others() -> None:
    training = small_upstream("reverse_qformer")
    model = zoo.create("seed", **SMALL)
    with pytest.raises(
        ValueError, match=r"training \(Reverse Q-Former\) decode head.*decode_head='reverse_qformer'"
    ):
        convert_seed(training, model)
    neither = {k: v for k, v in training.items() if not k.startswith(("Reverse_Qformer", "reverse_tokens"))}
    with pytest.raises(ValueError, match="neither the inference decode head.*nor the training one"):
        convert_seed(neither, model)
    # Extra keys (the Q-Former's text path, a stored ViT) are left out and listed, as upstream loads non-strictly.
    extra = small_upstream("mlp") | {
        "Qformer.bert.encoder.layer.0.intermediate.dense.weight": torch.zeros(4, 4),
        "visual_encoder.cls_token": torch.zeros(1, 1, 48),
    }
    with pytest.warns(UserWarning, match=r"left out 2 keys.*visual_encoder\.cls_token"):
        load_weights(model, convert_seed(extra, model), "upstream")
    broken = small_upstream("mlp")
    del broken["encode_task_layer.2.bias"]
    with pytest.raises(Exception, match="encode_task_layer.2.bias"):
        load_weights(model, convert_seed(broken, model), "upstream")


def test_load_upstream_reads_a_seed_quantizer_file(tmp_path: Path) -> None:
    path = tmp_path / "seed_quantizer.pt"
    # The released file holds 146 keys beyond the inference model's (the text path, training heads).
    torch.save(small_upstream("mlp") | {"Qformer.cls.predictions.bias": torch.zeros(10)}, path)
    with pytest.warns(UserWarning, match=r"left out 1 keys.*Qformer\.cls"):
        model = zoo.load_upstream("seed.ailab", path, arch="seed", **SMALL)
    assert not model.training
    tokens = model.encode(torch.rand(2, 3, 32, 32))
    assert tokens.ids.shape == (2, 6) and model.decode_embedding(tokens).shape == (2, 40)


def test_query_i_depends_only_on_queries_up_to_i() -> None:
    model = zoo.create("seed_tiny").eval()
    features = model.vision_features(torch.rand(2, 3, 32, 32))
    before = model.qformer(features)
    with torch.no_grad():
        model.qformer.queries[:, 5] += 1.0
    after = model.qformer(features)
    change = (after - before).abs().amax(dim=(0, 2))
    assert change[:5].max() == 0 and change[5:].min() > 0
    model.qformer.causal = False  # the bidirectional Q-Former of BLIP-2 mixes every query
    assert (model.qformer(features) - after)[:, :5].abs().max() > 0


def test_frozen_parts_stay_out_of_weights_and_are_shared_by_copies() -> None:
    import copy

    model = zoo.create("seed_tiny")
    assert not any("vit" in k or "teacher" in k for k in model.state_dict())
    twin = copy.deepcopy(model)
    assert twin._teachers["vision"] is model._teachers["vision"]
    again = zoo.create("seed_tiny")  # regenerated from the seed: the same tower and teacher
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(again.vision_features(x), model.vision_features(x))
    assert torch.equal(again._teachers["teacher"](x), model._teachers["teacher"](x))
    model.train()
    assert not model._teachers["vision"].training and not any(
        p.requires_grad for p in model._teachers["vision"].parameters()
    )


def test_paper_size_needs_the_user_supplied_parts() -> None:
    model = zoo.create("seed", **{**SMALL, "vision": "eva_vit_g", "teacher": "clip"})
    with pytest.raises(MissingPartError, match="vision_path.*eva_vit_g.pth"):
        model.encode(torch.rand(1, 3, 32, 32))
    model.attach_vision(EVAVisionTower.seeded(0, **model.vision_args))
    model.train()
    with pytest.raises(MissingPartError, match="teacher_path.*CLIP-ViT-H-14"):
        model.training_output(torch.rand(1, 3, 32, 32), 0)
    model.attach_teacher(RandomImageEmbedTeacher(40, image_size=32))
    assert "rec/image_embed_mse" in model.training_output(torch.rand(1, 3, 32, 32), 0).losses
    with pytest.raises(ValueError, match="embeds to 8 dims"):
        model.attach_teacher(RandomImageEmbedTeacher(8))
    with pytest.raises(MissingPartError, match="no pixel decoder and no unCLIP"):
        model.eval().decode(model.encode(torch.rand(1, 3, 32, 32)))


def test_vision_tower_loads_lavis_weights_and_names_bad_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    args = {"image_size": 32, "patch_size": 8, "width": 48, "depth": 1, "heads": 4, "mlp_hidden": 96}
    source = EVAVisionTower.seeded(3, **args)
    state = {k: v.clone() for k, v in source.vit.state_dict().items()}
    # LAVIS's file holds a 40th block and EVA-CLIP's final norm, which BLIP-2 drops.
    extra = {"blocks.1.norm1.weight": torch.ones(48), "norm.weight": torch.ones(48)}
    save_file(state | extra, str(tmp_path / "eva.safetensors"))
    with pytest.warns(UserWarning, match="ignored 2 keys"):
        tower = EVAVisionTower.from_file(tmp_path / "eva.safetensors", **args)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(tower(x), source(x)) and tower(x).shape == (2, 17, 48)
    del state["blocks.0.attn.q_bias"]
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match=r"broken.safetensors.*missing \['blocks.0.attn.q_bias'\]"):
        EVAVisionTower.from_file(tmp_path / "broken.safetensors", **args)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        EVAVisionTower.from_file(tmp_path / "absent.pth", **args)
    (tmp_path / "cut.pth").write_bytes(b"\x80\x02truncated")
    with pytest.raises(ValueError, match="cut.pth"):
        EVAVisionTower.from_file(tmp_path / "cut.pth", **args)


def test_prepare_stretches_without_cropping() -> None:
    model = zoo.create("seed_tiny")
    wide = torch.zeros(3, 40, 80)
    wide[:, :, :8] = 1.0  # a stripe at the left edge survives a stretch, not a centre crop
    x = model.prepare(wide)
    assert x.shape == (1, 3, 32, 32) and x[0, :, :, 0].min() > 0.9
    assert torch.equal(x * 255, (x * 255).round())  # 8-bit steps, as PIL's resize gives
    with pytest.raises(MediaError, match="3-channel"):
        model.prepare(torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match="reads 32x32 images"):
        model.encode(torch.rand(1, 3, 64, 64))


def test_prepare_equals_upstream_processor_on_8bit_images(tmp_path: Path) -> None:
    """SEED's processor is torchvision's ``Resize((S, S), BICUBIC)`` on the PIL image, then ``ToTensor``:
    on an 8-bit file the zoo's reader + ``prepare`` must give that tensor exactly (torch's antialiased
    bicubic is up to several 8-bit steps away and flipped ids)."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    from zoo.io import read_media

    model = zoo.create("seed_tiny")
    size = model.resolution
    gen = np.random.default_rng(0)
    # smooth gradients plus noise and hard edges: both enlarging and reducing, odd sizes
    for shape in ((77, 129), (19, 23), (250, 61)):
        h, w = shape
        yy, xx = np.mgrid[0:h, 0:w]
        array = np.stack([(xx * 255 / w), (yy * 255 / h), ((xx + yy) % 37) * 7.0], -1)
        array = np.clip(array + gen.normal(0, 20, array.shape), 0, 255).astype(np.uint8)
        file = tmp_path / f"photo_{h}x{w}.png"
        Image.fromarray(array).save(file)
        reference = transforms.Compose(
            [
                transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.ToTensor(),
            ]
        )(Image.open(file).convert("RGB"))
        ours = model.prepare(read_media(file, modality="image"))
        assert ours.shape == (1, 3, size, size)
        assert torch.equal(ours[0], reference), f"{shape}: max diff {(ours[0] - reference).abs().max():.4f}"
    # a 16-bit image keeps its precision (torch's bicubic, not PIL on values cut to 8 bits)
    deep = torch.rand(3, 40, 50)
    assert model.prepare(deep).shape == (1, 3, size, size)


def test_stage_two_losses_gradients_and_frozen_qformer(photos) -> None:
    torch.manual_seed(0)
    model = zoo.create("seed_tiny", train_qformer=False).train()  # upstream's stage 2: Q-Former frozen
    out = model.training_output(photos, 0)
    assert set(out.losses) == {"vq/commit", "vq/codebook", "rec/causal_cosine", "rec/image_embed_mse"}
    # Legacy placement, times 5: commitment weight 1, codebook weight 0.25.
    torch.testing.assert_close(out.losses["vq/codebook"], 0.25 * out.losses["vq/commit"])
    (sum(out.losses.values()) + F.l1_loss(out.recon, photos)).backward()
    no_grad = sorted({n.split(".")[0] for n, p in model.named_parameters() if p.grad is None})
    assert no_grad == ["ln_vision", "qformer"]
    assert all(p.grad is not None for p in model.pixel_decoder.parameters())
    tiny = zoo.create("seed_tiny").train()  # no stage-1 Q-Former to start from: stage 2 trains it too
    tiny_out = tiny.training_output(photos, 0)
    (sum(tiny_out.losses.values()) + F.l1_loss(tiny_out.recon, photos)).backward()
    assert sorted({n.split(".")[0] for n, p in tiny.named_parameters() if p.grad is None}) == ["ln_vision"]
    # The pixel decoder learns from the detached embedding: its loss alone moves nothing upstream of it.
    model.zero_grad()
    F.l1_loss(model.training_output(photos, 1).recon, photos).backward()
    assert model.image_proj.weight.grad is None and model.pixel_decoder.to_grid.weight.grad is not None


def test_tiny_trains_on_real_photos(photos) -> None:
    torch.manual_seed(0)
    model = zoo.create("seed_tiny")
    losses = assert_training_reduces_loss(model, photos, steps=60, lr=2e-3, ratio=0.6)
    assert losses[-1] < losses[0]
    model.eval()
    out = model(photos)
    assert out.stats["embed_cosine"] > 0.5  # the embedding head moved towards the teacher's


def test_encode_decode_batch_and_round_trips(photos, hub, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create("seed_tiny").eval()
    tokens = model.encode(photos)
    assert tokens.ids.shape == (4, 8) and tokens.grid == (8,)
    images = model.decode(tokens)
    assert images.shape == (4, 3, 32, 32) and model.last_decode_path == "pixel_decoder"
    assert_batch_equals_single_items(model, photos)
    assert_round_trips(tmp_path, model, photos, repo_id="tester/seed-tiny")


def test_unclip_decode_through_a_real_diffusers_pipeline(tmp_path: Path, photos) -> None:
    pytest.importorskip("diffusers")
    from unclip_pipeline import save_tiny_unclip

    folder = save_tiny_unclip(tmp_path, embed_dim=64)
    model = zoo.create("seed_tiny", unclip_path=str(folder), unclip_steps=3).eval()
    assert model.decode_path == "unclip"
    tokens = model.encode(photos[:2])
    images = model.decode(tokens)
    assert model.last_decode_path == "unclip" and images.shape == (2, 3, 8, 8)
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    torch.testing.assert_close(
        model.decode(tokens[1:2])[0], images[1], atol=1e-5, rtol=0
    )  # seeded, per image
    assert model.decode(tokens, path="pixel_decoder").shape == (2, 3, 32, 32)
    assert model.last_decode_path == "pixel_decoder"


def test_encode_and_decode_commands_say_which_decoder_ran(photos, tmp_path: Path, capsys) -> None:
    from zoo.cli import main as zoo_main
    from zoo.io import write_image

    zoo.create("seed_tiny").eval().save_pretrained(tmp_path / "seed")
    for i, image in enumerate(photos):
        write_image(tmp_path / "images" / f"{i}.png", image)
    write_image(tmp_path / "images" / "wide.png", torch.rand(3, 20, 50))
    assert (
        zoo_main(["encode", str(tmp_path / "seed"), str(tmp_path / "images"), "-o", str(tmp_path / "tok")])
        == 0
    )
    assert len(list((tmp_path / "tok").glob("*.safetensors"))) == 5
    assert (
        zoo_main(["decode", str(tmp_path / "seed"), str(tmp_path / "tok"), "-o", str(tmp_path / "out")]) == 0
    )
    assert len(list((tmp_path / "out").glob("*.png"))) == 5
    assert "decoded through pixel_decoder" in capsys.readouterr().err


def test_trainer_takes_parts_of_a_saved_seed_and_trains_without_pixels(tmp_path: Path) -> None:
    """Stage 2 starts from another SEED's frozen Q-Former; a SEED without a pixel decoder trains and
    validates on its own losses (its output is an embedding, not an image)."""
    import lightning as L
    from training_data import RandomImages

    from zoo.training import TokenizerModule

    donor = zoo.create("seed_tiny", teacher_seed=5)
    with torch.no_grad():
        donor.qformer.queries.normal_()
    donor.save_pretrained(tmp_path / "donor")
    module = TokenizerModule(
        "seed_tiny",
        model_args={"pixel_decoder": None, "train_qformer": False},
        losses={},
        init_parts={"qformer": str(tmp_path / "donor")},
    )
    assert torch.equal(module.tokenizer.qformer.queries, donor.qformer.queries)
    before = module.tokenizer.quantize.codebook.detach().clone()
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        val_check_interval=3,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=RandomImages(num_images=16, batch_size=4))
    assert not torch.equal(module.tokenizer.quantize.codebook, before)
    assert torch.equal(module.tokenizer.qformer.queries, donor.qformer.queries)  # frozen
    assert {"val/loss", "val/rec/image_embed_mse"} <= set(module.last_metrics)


def test_clip_teacher_reads_a_local_transformers_folder(tmp_path: Path) -> None:
    """The stage-2 teacher: a CLIP vision model with projection from a local folder, its ``image_embeds``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=16,
        projection_dim=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
    )
    clip = CLIPVisionModelWithProjection(config).eval()
    clip.save_pretrained(tmp_path / "clip")
    model = zoo.create("seed_tiny", teacher="clip", teacher_path=str(tmp_path / "clip")).train()
    x = torch.rand(2, 3, 32, 32)
    out = model.training_output(x, 0)
    with torch.no_grad():
        wanted = clip(pixel_values=model.normalize(x)).image_embeds
    embedding = model.image_embedding(model._up(model.quantize.lookup(out.ids).transpose(1, 2)))
    torch.testing.assert_close(out.losses["rec/image_embed_mse"], 0.5 * F.mse_loss(embedding, wanted))
    assert not any(p.requires_grad for p in model._teachers["teacher"].parameters())
    with pytest.raises(FileNotFoundError, match="not a directory"):
        zoo.create(
            "seed_tiny", teacher="clip", teacher_path=str(tmp_path / "absent")
        ).train().training_output(x, 0)
