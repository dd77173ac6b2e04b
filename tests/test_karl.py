"""KARL: parameter count, adaptive-length tokens, halting masks, the two-pass training step, converter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from karl_layout import karl_shapes
from mage_layout import mage_vqgan_shapes
from tokenizer_checks import assert_every_parameter_has_a_gradient, assert_training_reduces_loss

import zoo
from zoo.hub import load_weights
from zoo.models.image.karl import QUALITY_BINS, convert_karl, error_bin, isolation_mask


@pytest.fixture(scope="module")
def trained(photos) -> zoo.Tokenizer:
    """karl_tiny after 80 two-pass steps on the photos (base frozen), with its halting threshold set
    between two images' probabilities for one token, so that one pass gives them different lengths."""
    torch.manual_seed(0)
    model = zoo.create("karl_tiny")
    model.base.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    for step in range(80):
        loss = sum(model.training_output(photos, step).losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        tokens, _ = model.image_tokens(varied_inputs(photos))
        halt, _ = model.encode_latents(tokens, model._bins(0.05, len(tokens)), model.token_budget)
        probs = torch.sigmoid(halt)
        j = int((probs.max(0).values - probs.min(0).values).argmax())
        ordered = probs[:, j].sort().values  # halfway between two images: far from either's probability
        model.threshold = float((ordered[2] + ordered[3]) / 2)
    model.update_config(halting_threshold=model.threshold)  # saved with the model
    return model


def varied_inputs(photos: torch.Tensor) -> torch.Tensor:
    return torch.cat([photos, torch.full_like(photos[:1], 0.5), photos.flip(-1)[:1]])


def test_paper_size_counts_on_meta() -> None:
    shapes = karl_shapes()
    assert len(shapes) == 223 and sum(math.prod(s) for s in shapes.values()) == 216_395_533
    with torch.device("meta"):
        model = zoo.create("karl")
        total, base = model.num_parameters(), model.base.num_parameters()
        upstream = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        upstream |= {
            f"base_tokenizer.vqgan.{k}": torch.empty(s, device="meta") for k, s in mage_vqgan_shapes().items()
        }
        converted = convert_karl(upstream)
    assert base == 54_515_587 and total - base == 216_395_533  # upstream's karl_small without its base
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    assert model.token_budget == 256 and model.codebook_sizes == (4096,) and len(model.train_budgets) == 23


def test_error_bins_round_up() -> None:
    bins = torch.tensor(QUALITY_BINS)
    got = error_bin(torch.tensor([0.0, 0.005, 0.045, 0.05, 0.08, 0.381, 5.0]), bins)
    assert got.tolist() == [0, 0, 5, 5, 8, 18, 18]
    assert len(QUALITY_BINS) == 19 and 0.08 not in QUALITY_BINS


def test_isolation_mask() -> None:
    hidden = torch.tensor([[False, True, False]])
    mask = isolation_mask(hidden)[0]
    assert mask.tolist() == [[False, True, False], [True, False, True], [False, True, False]]


def test_encode_gives_each_image_its_own_length_and_decode_honours_it(trained, photos) -> None:
    tiny, photos = trained, varied_inputs(photos)
    tokens = tiny.encode(photos, target_error=0.05)
    assert tokens.ids.shape == (6, 32) and tokens.lengths is not None and tokens.codebook_sizes == (256,)
    lengths = tokens.lengths
    assert len(set(lengths.tolist())) > 1 and bool((lengths > 0).all())  # per-image counts differ
    positions = tokens.side["positions"]
    for i, n in enumerate(lengths.tolist()):
        assert bool((tokens.ids[i, n:] == -1).all()) and bool((positions[i, n:] == -1).all())
        kept = positions[i, :n]
        assert bool((kept.diff() > 0).all())  # kept tokens stay in latent order
    images = tiny.decode(tokens)
    assert images.shape == photos.shape and torch.isfinite(images).all()
    # Decoding only the kept tokens equals masking the halted ones in a full decode (upstream's way).
    hidden, q, budget = tiny._encode(photos[:1], 0.05, None)
    full = tiny.decode_latents(q.quantized.transpose(1, 2), torch.arange(budget)[None], (8, 8), hidden)[2]
    torch.testing.assert_close(images[:1], full, atol=1e-4, rtol=1e-4)


def test_batch_equals_single_items_with_different_lengths(trained, photos) -> None:
    tiny, photos = trained, varied_inputs(photos)
    batch = tiny.encode(photos)
    assert len(set(batch.lengths.tolist())) > 1
    decoded = tiny.decode(batch)
    for i in range(len(photos)):
        single = tiny.encode(photos[i : i + 1])
        assert torch.equal(single.ids, batch.ids[i : i + 1]) and torch.equal(
            single.lengths, batch.lengths[i : i + 1]
        )
        torch.testing.assert_close(tiny.decode(single), decoded[i : i + 1], atol=1e-4, rtol=1e-4)


def test_asking_for_a_larger_error_keeps_fewer_tokens_after_training(trained, photos) -> None:
    """The two-pass step teaches the halting head: conditioned on a coarse error, fewer tokens survive."""
    fine = trained.encode(photos, target_error=0.005).lengths.float().mean()
    coarse = trained.encode(photos, target_error=0.38).lengths.float().mean()
    assert coarse < fine


def test_training_step_losses_and_gradients(photos) -> None:
    model = zoo.create("karl_tiny").train()
    model.base.requires_grad_(False)
    out = model.training_output(photos, 0)
    assert set(out.losses) == {"rec/base_ce", "rec/code_mse", "vq/commit", "vq/codebook", "halt/bce"}
    sum(out.losses.values()).backward()
    for name, p in model.named_parameters():
        if name.startswith("base."):
            assert p.grad is None
    trainable = torch.nn.Module()
    trainable.parts = torch.nn.ModuleList(m for n, m in model.named_children() if n != "base")
    assert_every_parameter_has_a_gradient(trainable)
    assert 0 < float(out.stats["kept_tokens"]) <= 32


def test_training_steps_reduce_the_loss(photos) -> None:
    torch.manual_seed(0)
    model = zoo.create("karl_tiny")
    model.base.requires_grad_(False)
    assert_training_reduces_loss(model, photos, reconstruction=None, lr=2e-3, ratio=0.8)


def karl_upstream_state(model: zoo.Tokenizer) -> dict[str, torch.Tensor]:
    """Our weights in upstream's layout: base under base_tokenizer.vqgan (MAGE names), the latent VQ's
    codebook as quantize.embedding.weight, a stage-2 discriminator key that must be ignored."""
    torch.manual_seed(1)
    base_shapes = mage_vqgan_shapes(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, embed_dim=32, n_embed=256)
    state = {f"base_tokenizer.vqgan.{k}": torch.randn(s) * 0.05 for k, s in base_shapes.items()}
    for key, value in model.state_dict().items():
        if not key.startswith("base."):
            state["quantize.embedding.weight" if key == "quantize.codebook" else key] = value.clone()
    state["gan_losses.0.discriminator.main.0.weight"] = torch.zeros(3)
    return state


def test_converter_loads_a_karl_checkpoint_strictly(trained) -> None:
    tiny = trained
    upstream = karl_upstream_state(tiny)
    plain = {
        "kmeans_init": False,
        "restart_threshold": 0.0,
    }  # upstream's base has no k-means or usage buffers
    fresh = zoo.create("karl_tiny", base_args=plain)
    load_weights(fresh, convert_karl(upstream), "karl")
    base = zoo.create("vqgan_mage_tiny", **plain)
    from zoo.models.image.vqgan_mage import convert_mage

    load_weights(base, convert_mage(upstream), "base")
    assert all(
        torch.equal(a, b)
        for a, b in zip(fresh.base.state_dict().values(), base.state_dict().values(), strict=True)
    )
    torch.testing.assert_close(fresh.quantize.codebook, tiny.quantize.codebook)


def test_init_parts_starts_the_base_from_a_saved_tokenizer(tmp_path: Path, photos) -> None:
    from zoo.training import TokenizerModule

    base = zoo.create("vqgan_mage_tiny").eval()
    base.save_pretrained(tmp_path / "base")
    module = TokenizerModule(
        "karl_tiny", losses={}, init_parts={"base": str(tmp_path / "base")}, freeze=["base"]
    )
    assert torch.equal(module.tokenizer.base.encode(photos).ids, base.encode(photos).ids)
    assert not any(p.requires_grad for p in module.tokenizer.base.parameters())
    with pytest.raises(ValueError, match="no submodule"):
        TokenizerModule("karl_tiny", losses={}, init_parts={"bass": str(tmp_path / "base")})


def test_save_load_round_trip(trained, photos, tmp_path: Path) -> None:
    tiny = trained
    tiny.save_pretrained(tmp_path / "karl")
    again = zoo.load(tmp_path / "karl")
    tokens = again.encode(photos)
    assert torch.equal(tokens.ids, tiny.encode(photos).ids)
    tokens.save(tmp_path / "t.tokens.safetensors")
    loaded = zoo.Tokens.load(tmp_path / "t.tokens.safetensors")
    torch.testing.assert_close(again.decode(loaded), tiny.decode(tokens))


def test_encode_and_decode_commands(trained, photos, tmp_path: Path) -> None:
    from zoo.cli import main as zoo_main
    from zoo.io import write_image

    trained.save_pretrained(tmp_path / "karl")
    for i, image in enumerate(varied_inputs(photos)):
        write_image(tmp_path / "images" / f"{i}.png", image)
    assert (
        zoo_main(["encode", str(tmp_path / "karl"), str(tmp_path / "images"), "-o", str(tmp_path / "tokens")])
        == 0
    )
    lengths = {int(zoo.Tokens.load(f).lengths[0]) for f in (tmp_path / "tokens").glob("*.safetensors")}
    assert len(lengths) > 1  # each file keeps its own token count
    assert (
        zoo_main(["decode", str(tmp_path / "karl"), str(tmp_path / "tokens"), "-o", str(tmp_path / "out")])
        == 0
    )
    assert len(list((tmp_path / "out").glob("*.png"))) == 6


def test_stage_two_judges_both_passes_by_bucket_and_alternates_updates(tmp_path: Path) -> None:
    """Stage 2: the base trains too; each pass's image goes to the PatchGAN of its token-count bucket;
    with the GAN on, only every third iteration updates the tokenizer, and every iteration counts."""
    import lightning as L
    from training_data import RandomImages

    from zoo.nn import KeyedDiscriminator
    from zoo.training import TokenizerModule

    torch.manual_seed(0)
    model = zoo.create("karl_tiny", train_stage=2)
    assert [model.bucket(n) for n in (4, 8, 12, 28, 32, 44)] == [0, 1, 2, 6, 7, 7]
    out = model.training_output(torch.rand(2, 3, 32, 32), 0)
    assert set(out.losses) == {"halt/bce", "vq/commit", "vq/codebook"}  # no distillation terms
    assert [key for _, key in out.judged] == [model.bucket(int(out.stats["first_budget"]))] * 2

    module = TokenizerModule(
        "karl_tiny",
        model_args={"train_stage": 2},
        losses={"l1": 1.0},
        discriminator=KeyedDiscriminator(8, norm="group"),
        gan_weight=0.2,
        late_gan_weight=0.8,
        late_gan_start=4,
        generator_every=3,
        lr=1e-3,
    )
    assert [module.gan_weight_at(s) for s in (0, 3, 4)] == [0.2, 0.2, 0.8]
    updates: list[int] = []
    base_before = {k: v.clone() for k, v in module.tokenizer.base.state_dict().items()}
    members_before = [m.to_logits.weight.clone() for m in module.discriminator.members]

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.before = pl_module.tokenizer.latent_tokens.detach().clone()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if not torch.equal(self.before, pl_module.tokenizer.latent_tokens):
                updates.append(batch_idx)

    trainer = L.Trainer(
        max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
        use_distributed_sampler=False, callbacks=[Watch()],
    )  # fmt: skip
    trainer.fit(module, RandomImages(num_images=24, batch_size=4))
    assert trainer.global_step == 6 and updates == [2, 5]
    assert any(not torch.equal(base_before[k], v) for k, v in module.tokenizer.base.state_dict().items())
    changed = [
        not torch.equal(a, m.to_logits.weight) for a, m in zip(members_before, module.discriminator.members)
    ]
    assert 1 <= sum(changed) < 8  # only the buckets the sampled budgets fell in were trained


def test_hub_round_trip(trained, photos, hub) -> None:
    trained.push_to_hub("tester/karl-tiny")
    again = zoo.load("tester/karl-tiny")
    tokens = again.encode(photos)
    assert torch.equal(tokens.ids, trained.encode(photos).ids) and torch.equal(
        tokens.lengths, trained.encode(photos).lengths
    )
    torch.testing.assert_close(again.decode(tokens), trained.decode(tokens))


@pytest.mark.parametrize("name", ["karl_tiny", "vqgan_mage_tiny"])
def test_prepare_equals_upstream_demo_transform(tmp_path, name: str) -> None:
    """KARL's demo and evaluate.py read a photo with torchvision's ``Resize(S, BICUBIC, antialias=True)``
    + ``CenterCrop(S)`` + ``ToTensor`` on the PIL image, also for its base, MAGE's VQGAN: the zoo's reader +
    ``prepare`` must give exactly that tensor on 8-bit files, whether read as float or as uint8 (what
    ``zoo encode`` reads); the ADM crop and torch's bicubic both differ (other sizes, rounding, offsets)."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    from zoo.io import read_media
    from zoo.io.image import read_image

    model = zoo.create(name)
    size = model.resolution
    reference = transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
        ]
    )
    gen = np.random.default_rng(0)
    # wide and tall, reduced and enlarged, odd crops (torchvision truncates the long side, rounds the offset)
    for h, w in ((75, 131), (130, 47), (21, 29), (64, 99)):
        yy, xx = np.mgrid[0:h, 0:w]
        array = np.stack([xx * 255 / w, yy * 255 / h, ((xx * 3 + yy) % 29) * 8.0], -1)
        array = np.clip(array + gen.normal(0, 25, array.shape), 0, 255).astype(np.uint8)
        file = tmp_path / f"photo_{h}x{w}.png"
        Image.fromarray(array).save(file)
        wanted = reference(Image.open(file).convert("RGB"))
        ours = model.prepare(read_media(file, modality="image"))
        assert ours.shape == (1, 3, size, size)
        assert torch.equal(ours[0], wanted), f"{h}x{w}: max diff {(ours[0] - wanted).abs().max():.4f}"
        assert torch.equal(model.prepare(read_image(file, keep_uint8=True))[0], wanted)
    # the other crops stay selectable, and differ
    file = tmp_path / "photo_75x131.png"
    adm = model.prepare(read_media(file, modality="image"), resize="adm")
    assert adm.shape == (1, 3, size, size) and not torch.equal(
        adm[0], reference(Image.open(file).convert("RGB"))
    )
