"""TokenBridge's generator: upstream sizes and keys, the channel head's exact likelihood, the sampler's
schedule and seeding, training from the recipe on a real token cache, save/load and `zoo sample`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from test_generator_training import LabelledPhotos
from tokenbridge_gen_layout import parameter_count, tokenbridge_gen_shapes

import zoo
from zoo.cli import main as zoo_main
from zoo.data import build_token_cache
from zoo.errors import CheckpointError
from zoo.hub import load_weights
from zoo.models.generators.tokenbridge_gen import convert_tokenbridge_gen, truncated_mask_ratio
from zoo.models.image.tokenbridge import CHANNEL_ORDER
from zoo.training.cli import export, train

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[1]
TINY = {"dim": 64, "encoder_depth": 2, "decoder_depth": 2, "channel_dim": 64, "channel_depth": 1, "channels": 4,
        "levels": 16, "grid": 8, "buffer_size": 4, "num_classes": 10, "channel_heads": 4}  # fmt: skip


@pytest.fixture
def gen() -> zoo.Generator:
    torch.manual_seed(0)
    model = zoo.create("tokenbridge_gen_tiny")
    with torch.no_grad():  # upstream zeroes the AdaLN outputs; make every path matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_paper_sizes_have_upstream_parameter_counts_and_layout() -> None:
    with torch.device("meta"):
        large, huge = zoo.create("tokenbridge_gen_l"), zoo.create("tokenbridge_gen_h")
    assert large.num_parameters() == parameter_count(tokenbridge_gen_shapes()) == 486_889_472
    huge_shapes = tokenbridge_gen_shapes(dim=1280, encoder_depth=20, decoder_depth=20, channel_depth=6)
    assert huge.num_parameters() == parameter_count(huge_shapes) == 910_040_576
    converted = convert_tokenbridge_gen(
        {k: torch.empty(s, device="meta") for k, s in tokenbridge_gen_shapes(buffers=False).items()}, large
    )
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in large.state_dict().items()
    }
    tokens = zoo.info("tokenbridge_gen_l")["tokens"]
    assert (
        tokens["channel_order"] == list(CHANNEL_ORDER) == zoo.info("tokenbridge")["tokens"]["channel_order"]
    )
    assert tokens["channel_steps"] == 256 * 16 and tokens["codebook_sizes"] == [64] * 16


def test_converter_loads_an_upstream_layout_strictly() -> None:
    torch.manual_seed(1)
    for buffers, prefix in ((False, ""), (True, "module.")):  # model_ema (parameters only), then model
        upstream = {
            prefix + k: torch.randn(s) for k, s in tokenbridge_gen_shapes(**TINY, buffers=buffers).items()
        }
        model = zoo.create("tokenbridge_gen_tiny")
        load_weights(model, convert_tokenbridge_gen(upstream, model), "upstream")
        state = model.state_dict()
        assert torch.equal(state["head.channel_heads.3.bias"], upstream[prefix + "channel_heads.3.bias"])
        assert torch.equal(state["fake_latent"], upstream[prefix + "fake_latent"])
        assert torch.equal(state["ptq.high"], torch.full((4,), 5.0))  # rebuilt: upstream's fixed range
    upstream = {k: torch.randn(s) for k, s in tokenbridge_gen_shapes(**TINY, buffers=False).items()}
    upstream["token_embeddings.3.weight"] = torch.randn(16, 64)  # one table too many
    with pytest.raises(CheckpointError, match="token_embeddings.3"):
        load_weights(zoo.create("tokenbridge_gen_tiny"), convert_tokenbridge_gen(upstream), "upstream")


def test_teacher_forced_channel_likelihood_equals_step_by_step_sampling(gen) -> None:
    features = torch.randn(7, 64)
    g = torch.Generator().manual_seed(0)
    ids, logp = gen.head.sample(features, generator=g)
    assert ids.shape == (7, 4) and int(ids.max()) < 16
    logits = gen.head.logits(features, ids, sampling=True).log_softmax(-1)
    torch.testing.assert_close(logits.gather(-1, ids[..., None])[..., 0].sum(-1), logp, atol=1e-5, rtol=1e-5)
    # upstream's training forward feeds the bare condition first, its sampler condition + step embedding
    trained = gen.head.logits(features, ids).log_softmax(-1)
    assert not torch.allclose(trained[:, 0], logits[:, 0])


def test_log_prob_is_the_samplers_likelihood_under_the_same_order(gen, monkeypatch) -> None:
    drawn = []
    original = gen.head.sample
    monkeypatch.setattr(gen.head, "sample", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    labels = [2, 7]
    tokens = gen.sample(labels, steps=5, seed=11)
    positions = sum(len(ids) for ids, _ in drawn)
    assert positions == 2 * 64
    sampled = sum(float(logp.sum()) for _, logp in drawn)
    log_prob = gen.log_prob(tokens, labels, steps=5, seed=11)
    assert log_prob.shape == (2,)
    assert float(log_prob.sum()) == pytest.approx(sampled, rel=1e-5)
    assert float(gen.log_prob(tokens, labels, steps=5, seed=12).sum()) != pytest.approx(sampled, rel=1e-5)


@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_channel_steps_per_image_are_positions_times_channels(gen, cfg: float) -> None:
    calls: list[tuple[int, int, int]] = []
    gen.sample(
        [1, 3, 5], cfg=cfg, steps=6, seed=0, callback=lambda s, c, logits: calls.append((s, c, len(logits)))
    )
    assert len(calls) == 6 * 4 and [c for _, c, _ in calls] == list(range(4)) * 6
    assert sum(n for _, _, n in calls) == 3 * 64 * 4  # every position once, one head step per channel
    # the cosine schedule reveals few positions first and most last
    per_step = [n for _, c, n in calls if c == 0]
    assert per_step[0] < per_step[-1] and sum(per_step) == 3 * 64


def test_sampling_is_deterministic_under_a_seed_and_decodes(gen) -> None:
    a = gen.sample([1, 2], cfg=2.0, steps=4, temperature=0.9, seed=3)
    assert a.ids.shape == (2, 4, 8, 8) and a.ids.dtype == torch.long and int(a.ids.max()) < 16
    assert torch.equal(a.ids, gen.sample([1, 2], cfg=2.0, steps=4, temperature=0.9, seed=3).ids)
    assert not torch.equal(a.ids, gen.sample([1, 2], cfg=2.0, steps=4, temperature=0.9, seed=4).ids)
    greedy = gen.sample([1, 2], steps=4, temperature=0.0, seed=3)
    assert not torch.equal(a.ids, greedy.ids)
    tok = zoo.create("tokenbridge_tiny").eval()
    gen.check_tokenizer(tok)
    assert tok.decode(a).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="steps"):
        gen.sample([1], steps=65)
    with pytest.raises(ValueError, match="cannot model"):
        gen.check_tokenizer(zoo.create("vq16_tiny"))


def test_training_loss_and_mask_ratio(gen) -> None:
    ratios = [truncated_mask_ratio(0.7) for _ in range(2000)]
    assert 0.7 <= min(ratios) and max(ratios) <= 1.0 and 0.85 < sum(ratios) / len(ratios) < 0.9
    gen.train()
    batch = {"ids": torch.randint(0, 16, (4, 4, 8, 8)), "labels": torch.tensor([0, 1, 2, 9])}
    out = gen.training_loss(batch)
    out.loss.backward()
    assert [n for n, p in gen.named_parameters() if p.grad is None] == []
    assert 1.5 < float(out.loss.detach()) < 5.0  # near log(16) = 2.77 for random ids
    with pytest.raises(ValueError, match=r"\[B, 4, 8, 8\]"):
        gen.training_loss({"ids": torch.zeros(1, 16, 8, 8, dtype=torch.long), "labels": torch.tensor([0])})


def test_save_load_round_trip(gen, tmp_path: Path) -> None:
    out = gen.save_pretrained(tmp_path / "tb")
    loaded = zoo.load(out)
    assert loaded.arch == "tokenbridge_gen_tiny"
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), gen.state_dict().values(), strict=True)
    )
    assert torch.equal(loaded.sample([4], steps=3, seed=0).ids, gen.sample([4], steps=3, seed=0).ids)


def test_recipe_trains_on_a_real_token_cache_then_zoo_sample(photos: torch.Tensor, tmp_path: Path) -> None:
    """tokenbridge_tiny ids of real photos; the tiny recipe's loss falls; the export samples with `zoo sample`."""
    torch.manual_seed(0)
    tok = zoo.create("tokenbridge_tiny").eval()
    tok.fit_levels([photos])
    saved = tok.save_pretrained(tmp_path / "tok")
    cache = build_token_cache(
        tok, LabelledPhotos(photos), tmp_path / "cache", tokenizer_source=str(saved), progress=False
    )
    steps = 40
    train(
        [
            str(ROOT / "recipes" / "tokenbridge_gen_tiny.yaml"),
            "--data.init_args.path", str(cache),
            "--data.init_args.val_path", "null",
            "--data.init_args.batch_size", "16",
            "--trainer.max_steps", str(steps),
            "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.log_every_n_steps", "1",
            "--trainer.val_check_interval", "1000",
            "--trainer.enable_progress_bar", "false",
            "--model.init_args.warmup_steps", "5",
            "--model.init_args.sample_every", "0",
        ]
    )  # fmt: skip
    with open(tmp_path / "run" / "metrics.csv") as handle:
        losses = [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert len(losses) == steps
    assert sum(losses[-8:]) / 8 < 0.85 * sum(losses[:8]) / 8, losses
    out = export(tmp_path / "run", tmp_path / "export")
    assert zoo.load(out).tokenizer_name == str(saved)
    samples = tmp_path / "samples"
    args = ["sample", str(out), "--labels", "0,1", "--n", "2", "--cfg", "2.0", "--steps", "4", "-o", str(samples)]  # fmt: skip
    assert zoo_main(args) == 0
    assert len(list(samples.glob("class*.png"))) == 4
    tokens = zoo.Tokens.load(samples / "samples.tokens.safetensors")
    assert tokens.ids.shape == (4, 4, 8, 8) and tokens.meta["labels"] == [0, 0, 1, 1]
