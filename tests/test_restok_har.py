"""ResTok's HAR generator: sequence layout, block-causal mask, 9-pass cached sampling, controls, converter,
training on a real token cache, save/load and `zoo sample`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from restok_har_layout import restok_har_shapes

import zoo
from zoo.cli import main as zoo_main
from zoo.errors import CheckpointError
from zoo.hub import load_weights
from zoo.models.generators.restok_har import (
    convert_restok_har,
    har_inputs,
    har_mask,
    har_schedule,
    step_cfg_schedule,
)

ROOT = Path(__file__).resolve().parents[1]
PAPER_LAYOUT = {"num_tokens": 128, "ar_tokens": 4, "vocab_size": 64, "num_classes": 4}


def randomized(model: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Random weights everywhere (the zero-initialised head would make every logit equal)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread) -> None:
    """Tiny tensors: one intra-op thread is fastest on the shared machine."""


@pytest.fixture
def har() -> zoo.ZooModel:
    torch.manual_seed(0)
    return randomized(zoo.create("restok_har_tiny", vocab_size=32, num_classes=4))


@pytest.fixture
def har128() -> zoo.ZooModel:
    """The released sequence layout (128 ids, 4 drawn one by one) at the tiny width."""
    torch.manual_seed(0)
    return randomized(zoo.create("restok_har_tiny", **PAPER_LAYOUT))


def test_paper_size_has_upstream_parameter_count_and_layout() -> None:
    with torch.device("meta"):
        model = zoo.create("restok_har_l")
    # Counted from upstream's GPT-L HAR Transformer (vocab 8192, 1000 classes + null, 127 placeholders);
    # upstream's README rounds it to 326M.
    assert model.num_parameters() == 326_263_808
    info = zoo.info("restok_har_l")
    assert info["tokens"]["forward_passes"] == 9 and info["tokens"]["codebook_sizes"] == [8192]
    assert info["tokens"]["levels"] == [1, 1, 2, 4, 8, 16, 32, 64] and info["input"]["tokenizer"] == "restok"
    # The paper tokenizer's and the tiny tokenizer's tokens are exactly what each size models.
    restok, tiny = zoo.info("restok")["tokens"], zoo.info("restok_tiny")["tokens"]
    assert model.layout_problems(restok["grid"], restok["codebook_sizes"], None) == []
    assert restok["levels"] == info["tokens"]["levels"]
    gen = zoo.create("restok_har_tiny")
    assert gen.layout_problems(tiny["grid"], tiny["codebook_sizes"], None) == []
    assert tiny["levels"] == gen.token_layout()["levels"] and gen.forward_passes() == 5


def test_sequence_layout_equals_upstream_training_sequence() -> None:
    """[cls, t0..t3, s0..s2, t4..t7, s3..s6, t8..t15, s7..s14, ..., t32..t63, s31..s62]: each level block
    reads the previous level's ids followed by as many placeholders."""
    tok = lambda a, b: list(range(a, b))
    ph = lambda a, b: [-1 - j for j in range(a, b)]
    expected = [0] + tok(0, 4) + ph(0, 3)
    for m in (8, 16, 32, 64):
        expected += tok(m // 2, m) + ph(m // 2 - 1, m - 1)
    assert har_inputs(128, 4).tolist() == expected
    # restok_tiny's 16 ids with 2 drawn one by one: [cls, t0, t1, s0, t2, t3, s1, s2, t4..t7, s3..s6].
    assert har_inputs(16, 2).tolist() == [0, 0, 1, -1, 2, 3, -2, -3, *tok(4, 8), *ph(3, 7)]
    steps = har_schedule(128, 4)
    assert len(steps) == 9 and [len(s) for s in steps] == [1, 1, 1, 1, 4, 8, 16, 32, 64]
    assert [p for step in steps for p in step] == list(range(128))


def test_mask_equals_the_brute_force_definition() -> None:
    for n, a in ((128, 4), (16, 2), (16, 4), (8, 1), (8, 8)):
        blocks = [0] + [p.bit_length() for p in range(1, n)]  # level blocks 1, 1, 2, 4, ...
        expected = torch.zeros(n, n, dtype=torch.bool)
        for q in range(n):
            for k in range(n):
                expected[q, k] = k <= q if q < a and k < a else blocks[k] <= blocks[q]
        assert torch.equal(har_mask(n, a), expected), (n, a)
    with pytest.raises(ValueError, match="power-of-two"):
        har_mask(12, 4)


@pytest.mark.parametrize("fixture", ["har", "har128"])
def test_cached_incremental_logits_equal_the_full_forward(fixture: str, request) -> None:
    gen = request.getfixturevalue(fixture)
    n, v = gen.num_tokens, gen.vocab_size
    ids = torch.randint(0, v, (3, n))
    labels = torch.tensor([0, 2, 3])
    full = gen.logits(ids, labels)
    caches = gen._new_caches(3, torch.float32)
    for positions in har_schedule(n, gen.ar_tokens):
        step = gen._step(labels, ids, positions, caches)
        torch.testing.assert_close(step, full[:, positions], atol=1e-5, rtol=1e-5)
    # The exact likelihood is the sum of those per-position log-probabilities.
    manual = full.log_softmax(-1).gather(-1, ids[..., None])[..., 0].sum(-1)
    torch.testing.assert_close(gen.log_prob(ids, labels), manual)


def test_a_finer_level_never_changes_coarser_logits(har128) -> None:
    ids = torch.randint(0, 64, (1, 128))
    labels = torch.tensor([1])
    base = har128.logits(ids, labels)
    for changed_at, first_affected in ((2, 3), (3, 4), (5, 8), (40, 64), (70, 128)):
        other = ids.clone()
        other[0, changed_at] = (other[0, changed_at] + 1) % 64
        logits = har128.logits(other, labels)
        assert torch.equal(logits[:, :first_affected], base[:, :first_affected]), changed_at
        if first_affected < 128:
            assert not torch.equal(logits[:, first_affected:], base[:, first_affected:])


def test_sampling_takes_exactly_9_passes_and_is_reproducible(har128) -> None:
    calls = []
    hook = har128.layers[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        passes = []
        tokens = har128.sample([0, 1, 2], cfg=2.0, seed=7, callback=passes.append)
        assert len(calls) == 9 == len(passes) == har128.forward_passes()
        calls.clear()
        har128.sample([3], cfg=1.0, seed=7)
        assert len(calls) == 9
    finally:
        hook.remove()
    assert tokens.ids.shape == (3, 128) and tokens.grid == (128,) and tokens.codebook_sizes == (64,)
    assert tokens.meta["labels"] == [0, 1, 2] and tokens.meta["cfg"] == 2.0
    assert torch.equal(tokens.ids, har128.sample([0, 1, 2], cfg=2.0, seed=7).ids)
    assert not torch.equal(tokens.ids, har128.sample([0, 1, 2], cfg=2.0, seed=8).ids)
    with pytest.raises(ValueError, match="exactly 9 passes"):
        har128.sample([0], steps=128)


def test_greedy_top_k_and_top_p_controls(har) -> None:
    greedy = har.sample([2, 0], temperature=0)
    logits = har.logits(greedy.ids, torch.tensor([2, 0]))
    assert torch.equal(logits.argmax(-1), greedy.ids)  # each id is the argmax given its own context
    assert torch.equal(har.sample([2, 0], top_k=1, seed=3).ids, greedy.ids)
    assert torch.equal(har.sample([2, 0], top_p=1e-6, seed=4).ids, greedy.ids)
    # A wider nucleus or larger k draws other ids again.
    assert not torch.equal(
        har.sample([2, 0] * 4, top_k=8, seed=3).ids, har.sample([2, 0] * 4, temperature=0).ids
    )


def test_cfg_moves_samples_towards_the_class(har) -> None:
    labels = [1] * 24
    gain = lambda t: (har.log_prob(t, labels) - har.log_prob(t, [0] * 24)).mean()
    plain, guided = har.sample(labels, cfg=1.0, seed=0), har.sample(labels, cfg=4.0, seed=0)
    assert gain(guided) > gain(plain)
    stepped = har.sample(labels, cfg=4.0, seed=0, cfg_schedule="step", cfg_start=0.5)
    assert stepped.meta["cfg_schedule"] == "step" and not torch.equal(stepped.ids, guided.ids)
    # Upstream's step schedule: nearly unguided (1 + 1e-4) before the start fraction of the passes.
    assert [step_cfg_schedule(3.75, s, 9, 0.25) for s in (0, 1, 2, 8)] == [1.0001, 1.0001, 3.75, 3.75]
    with pytest.raises(ValueError, match="cfg_schedule"):
        har.sample([1], cfg=2.0, cfg_schedule="linear")


def test_training_loss_gradients_and_checks(har) -> None:
    har.train()
    out = har.training_loss({"ids": torch.randint(0, 32, (4, 16)), "labels": torch.tensor([0, 1, 2, 3])})
    out.loss.backward()
    missing = [n for n, p in har.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    # The null-class row learns only when a label is dropped; placeholders 7.. are never read (as upstream).
    assert set(missing) <= {"cls_embedding.embedding_table.weight", "placeholders.weight"}
    assert har.placeholders.weight.grad[:7].abs().sum() > 0 and not har.placeholders.weight.grad[7:].any()
    with pytest.raises(ValueError, match=r"\[B, 16\]"):
        har.training_loss({"ids": torch.zeros(1, 8, dtype=torch.long), "labels": torch.tensor([0])})
    with pytest.raises(ValueError, match="outside"):
        har.sample([7])


def test_converter_loads_an_upstream_layout_state_dict_strictly(tmp_path: Path) -> None:
    # Paper size, on meta: every upstream key maps onto a zoo parameter of the same shape, and back.
    with torch.device("meta"):
        model = zoo.create("restok_har_l")
        upstream = {k: torch.empty(s) for k, s in restok_har_shapes().items()}
    converted = convert_restok_har({f"_orig_mod.{k}": v for k, v in upstream.items()}, model)
    ours = model.state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    # The released layout at the tiny width: random upstream tensors load strictly and give the same outputs.
    shapes = restok_har_shapes(dim=64, depth=2, heads=4, vocab_size=64, num_classes=4, multiple_of=32)
    upstream = {k: torch.randn(s) * 0.3 for k, s in shapes.items()}
    gen = zoo.create("restok_har_tiny", **PAPER_LAYOUT)
    load_weights(gen, convert_restok_har(upstream, gen), "upstream")
    assert torch.equal(gen.placeholders.weight, upstream["spe_tok_embeddings.special_embeddings.weight"])
    # Through the registered tag, from a file as the Hub release stores it.
    from safetensors.torch import save_file

    save_file(upstream, tmp_path / "model.safetensors")
    loaded = zoo.load_upstream(
        "restok_har_l.in1k_256", tmp_path / "model.safetensors", arch="restok_har_tiny", **PAPER_LAYOUT
    )
    ids = torch.randint(0, 64, (2, 128))
    torch.testing.assert_close(loaded.log_prob(ids, [0, 3]), gen.eval().log_prob(ids, [0, 3]))
    # Another layout would read the checkpoint misaligned; a wrong size names what does not fit.
    with pytest.raises(CheckpointError, match="128 ResTok ids"):
        convert_restok_har(upstream, zoo.create("restok_har_tiny", vocab_size=64, num_classes=4))
    with pytest.raises(CheckpointError, match="missing keys"):
        deeper = zoo.create("restok_har_tiny", depth=3, **PAPER_LAYOUT)
        load_weights(deeper, convert_restok_har(upstream, deeper), "upstream")


def test_save_load_round_trip_and_decoding_by_the_tokenizer(har, tmp_path: Path, photos) -> None:
    tokenizer = zoo.create("restok_tiny", codebook_size=32).eval()
    har.update_config(tokenizer=str(tokenizer.save_pretrained(tmp_path / "tok")))
    har.save_pretrained(tmp_path / "har")
    again = zoo.load(tmp_path / "har")
    assert type(again).__name__ == "HAR" and again.forward_passes() == 5
    ids = torch.randint(0, 32, (2, 16))
    torch.testing.assert_close(again.log_prob(ids, [0, 1]), har.log_prob(ids, [0, 1]))
    assert torch.equal(again.sample([1, 2], seed=0).ids, har.sample([1, 2], seed=0).ids)
    images = again.load_tokenizer().decode(again.sample([1, 2], cfg=2.0, seed=0))
    assert images.shape == (2, 3, 32, 32)
    # Real ResTok tokens fit: encode photos, score them.
    tokens = tokenizer.encode(photos)
    assert torch.isfinite(again.log_prob(tokens, [0, 1, 2, 3])).all()


def test_recipe_trains_on_a_real_restok_cache_then_zoo_sample(shared_data: Path, tmp_path: Path) -> None:
    """The tiny recipe trains on a token cache of real CIFAR-10 images by restok_tiny, its loss falls,
    the export names the cache's tokenizer and `zoo sample` decodes with it."""
    from zoo.data import CifarNpz, build_token_cache
    from zoo.data._common import Subsample
    from zoo.training.cli import export, train

    torch.manual_seed(0)
    tokenizer = zoo.create("restok_tiny").eval()
    saved = tokenizer.save_pretrained(tmp_path / "restok_tiny")
    images = Subsample(CifarNpz(shared_data / "images/cifar10/test.npz"), 256)
    cache = build_token_cache(
        tokenizer, images, tmp_path / "cache", tokenizer_source=str(saved), progress=False
    )
    steps = 40
    train(
        [
            str(ROOT / "recipes" / "restok_har_tiny.yaml"),
            "--data.init_args.path", str(cache),
            "--data.init_args.val_path", "null",
            "--data.init_args.batch_size", "32",
            "--trainer.max_steps", str(steps),
            "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.log_every_n_steps", "1",
            "--trainer.val_check_interval", "1000",
            "--trainer.enable_progress_bar", "false",
            "--model.init_args.warmup_steps", "5",
        ]
    )  # fmt: skip
    with open(tmp_path / "run" / "metrics.csv") as handle:
        losses = [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert len(losses) == steps
    assert sum(losses[-8:]) / 8 < 0.85 * sum(losses[:8]) / 8, losses
    out = export(tmp_path / "run", tmp_path / "export")
    generator = zoo.load(out)
    assert generator.tokenizer_name == str(saved)
    samples = tmp_path / "samples"
    args = ["sample", str(out), "--labels", "0,3", "--n", "2", "--cfg", "2.0", "--top-p", "0.95"]
    assert zoo_main([*args, "--seed", "3", "-o", str(samples)]) == 0
    assert len(list(samples.glob("class*.png"))) == 4 and (samples / "grid.png").is_file()
    tokens = zoo.Tokens.load(samples / "samples.tokens.safetensors")
    assert tokens.ids.shape == (4, 16) and tokens.meta["labels"] == [0, 0, 3, 3]
