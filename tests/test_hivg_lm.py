"""HiVG LM: cached decoding, sampling controls, exact likelihood, curriculum, recipe training, zoo sample."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.cli import main as zoo_main
from zoo.data.svg_tokens import (
    CurriculumBatchSampler,
    SVGTokenDataModule,
    TokenSequences,
    collate_sequences,
    learn_segments,
    stage_limits,
    tokenize_texts,
)
from zoo.models.generators.hivg_lm import HIVG_VOCAB, pad_sequences
from zoo.sampling import filter_logits
from zoo.training.cli import export, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("single_thread")
VOCAB = 40  # a small vocabulary for the network tests: logits stay cheap and every id gets sampled


def randomized(model: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Random weights everywhere (the zero-initialised head would make every logit equal)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


@pytest.fixture
def lm() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomized(zoo.create("hivg_lm_tiny", tokenizer=None, vocab_size=VOCAB, max_length=24))


def sequences(*lengths: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return pad_sequences([torch.randint(VOCAB, (n,), generator=g) for n in lengths])


def test_sizes_layout_and_special_ids() -> None:
    facts = zoo.info("hivg_lm_tiny")
    assert facts["family"] == "hivg_lm" and facts["sizes"] == ["hivg_lm_small", "hivg_lm_tiny"]
    assert facts["tokens"]["codebook_sizes"] == [HIVG_VOCAB] and facts["input"]["tokenizer"] == "hivg"
    with torch.device("meta"):
        small = zoo.create("hivg_lm_small")
    assert small.num_parameters() > 100 * zoo.create("hivg_lm_tiny").num_parameters()
    model = zoo.create("hivg_lm_tiny", vocab_size=10)
    assert (model.eos_id, model.bos_id) == (10, 11)
    assert model.tok_embeddings.num_embeddings == 12 and model.output.out_features == 11  # never predicts BOS


def test_cached_incremental_logits_equal_the_full_forward(lm) -> None:
    ids = sequences(7, 12, 3)
    full, _ = lm.logits(ids)
    cached = lm.cached_logits(ids)
    assert cached.shape == full.shape == (3, 13, VOCAB + 1)
    for b, n in enumerate((7, 12, 3)):  # positions up to each item's EOS prediction
        torch.testing.assert_close(cached[b, : n + 1], full[b, : n + 1], atol=1e-4, rtol=1e-4)


def test_log_prob_is_the_summed_cross_entropy_with_eos(lm) -> None:
    ids = sequences(5, 9, 1)
    lengths = torch.tensor([5, 9, 1])
    logp = lm.log_prob(ids)
    # Independently: cross-entropy of every next id of [BOS, ids] and of EOS, through the cached path.
    logits = lm.cached_logits(ids)
    expected = []
    for b, n in enumerate(lengths.tolist()):
        targets = torch.cat([ids[b, :n], torch.tensor([lm.eos_id])])
        expected.append(-F.cross_entropy(logits[b, : n + 1], targets, reduction="sum"))
    torch.testing.assert_close(logp, torch.stack(expected), atol=1e-3, rtol=1e-5)
    # Padding is invisible: each item alone scores the same, and Tokens with lengths give the same.
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(lm.log_prob(ids[b : b + 1, :n]), logp[b : b + 1], atol=1e-4, rtol=1e-5)
    tokens = zoo.Tokens(ids=ids.clamp(min=0), grid=(9,), codebook_sizes=(VOCAB,), lengths=lengths)
    torch.testing.assert_close(lm.log_prob(tokens), logp)
    # The training loss is the same sum, averaged over the 18 targets (15 ids + 3 EOS).
    loss = lm.training_loss({"ids": ids, "lengths": lengths, "labels": torch.zeros(3, dtype=torch.long)}).loss
    torch.testing.assert_close(loss, -logp.sum() / 18, atol=1e-4, rtol=1e-5)


def test_scoring_and_sampling_turn_dropout_off() -> None:
    torch.manual_seed(0)
    lm = randomized(zoo.create("hivg_lm_tiny", tokenizer=None, vocab_size=VOCAB, max_length=24, dropout=0.5))
    ids = sequences(6, 3)
    expected, drawn = lm.log_prob(ids), lm.sample(n=2, seed=0).ids
    lm.train()
    torch.testing.assert_close(lm.log_prob(ids), expected)
    assert torch.equal(lm.sample(n=2, seed=0).ids, drawn) and lm.training  # and the mode is restored


def test_inputs_outside_the_vocabulary_or_too_long_are_refused(lm) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.log_prob(torch.tensor([[1, VOCAB]]))
    with pytest.raises(ValueError, match="longer than max_length 24"):
        lm.log_prob(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="padding"):
        lm.log_prob(zoo.Tokens(ids=torch.tensor([[1, -1, 2]]), grid=(3,), codebook_sizes=(VOCAB,)))
    with pytest.raises(ValueError, match="unconditional"):
        lm.sample(n=1, cfg=2.0)


def drawn_targets(lm: torch.nn.Module, tokens: zoo.Tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-forward logits and the ids sampling drew: EOS only for items that reached it (a cut item's
    implied EOS was never drawn)."""
    logits, targets = lm.logits(tokens.ids, tokens.lengths)
    for b, ended in enumerate(tokens.meta["ended"]):
        if not ended:
            targets[b, tokens.lengths[b]] = -1
    return logits, targets


def test_sampling_is_seeded_and_respects_its_controls(lm) -> None:
    first = lm.sample(n=6, seed=3, max_length=16)
    again = lm.sample([0] * 6, seed=3, max_length=16)
    other = lm.sample(n=6, seed=4, max_length=16)
    assert torch.equal(first.ids, again.ids) and not torch.equal(first.ids, other.ids)
    assert first.ids.shape == (6, 16) and first.grid == (16,) and first.codebook_sizes == (VOCAB,)
    for b, n in enumerate(first.lengths.tolist()):
        row = first.ids[b]
        assert (row[:n] >= 0).all() and (row[:n] < VOCAB).all() and (row[n:] == -1).all()
        assert first.meta["ended"][b] == (n < 16)
    assert any(first.meta["ended"]) and not all(first.meta["ended"])  # some stop at EOS, some are cut
    # Greedy three ways: temperature 0, top-k 1 and a tiny nucleus draw the argmax of the full forward.
    greedy = lm.sample(n=2, temperature=0, max_length=16)
    assert torch.equal(lm.sample(n=2, top_k=1, seed=1, max_length=16).ids, greedy.ids)
    assert torch.equal(lm.sample(n=2, top_p=1e-6, seed=2, max_length=16).ids, greedy.ids)
    logits, targets = drawn_targets(lm, greedy)
    valid = targets >= 0
    assert torch.equal(logits.argmax(-1)[valid], targets[valid])
    # Top-k and top-p: every drawn id (EOS included) lies in the filtered set of the full forward
    # (the nucleus is taken after the temperature, as LlamaGen's sampler does).
    for options in ({"top_k": 3}, {"top_p": 0.5}):
        drawn = lm.sample(n=8, seed=5, max_length=16, temperature=1.5, **options)
        logits, targets = drawn_targets(lm, drawn)
        valid = targets >= 0
        kept = filter_logits(logits[valid] / 1.5, options.get("top_k", 0), options.get("top_p", 1.0))
        assert torch.isfinite(kept.gather(-1, targets[valid][:, None])).all(), options


class BoostAfter(torch.nn.Module):
    """Wraps the head: adds a large logit to one id once the input sequence reaches ``after`` positions."""

    def __init__(self, head: torch.nn.Module, index: int, after: int) -> None:
        super().__init__()
        self.head, self.index, self.after = head, index, after
        self.position = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.head(h)
        positions = torch.arange(self.position, self.position + h.shape[1])
        logits[:, positions >= self.after, self.index] += 100.0
        self.position += h.shape[1]
        return logits


def test_sampling_stops_at_eos(lm) -> None:
    lm.output = BoostAfter(lm.output, lm.eos_id, after=5)  # EOS becomes certain from the 6th position on
    tokens = lm.sample(n=4, seed=0)
    assert tokens.lengths.tolist() == [5] * 4 and tokens.meta["ended"] == [True] * 4
    assert (tokens.ids[:, :5] >= 0).all() and (tokens.ids[:, 5:] == -1).all()
    assert lm.output.position == 6  # one pass per position, and none after every row ended


def test_vocabulary_follows_the_tokenizer_and_mismatches_are_caught(tmp_path: Path) -> None:
    tok = zoo.create("hivg")
    gen = zoo.create("hivg_lm_tiny")  # built for plain hivg: 784 atomic + 257 text ids
    assert gen.vocab_size == tok.vocab_size == HIVG_VOCAB
    gen.check_tokenizer(tok)
    assert gen.load_tokenizer().vocab_size == HIVG_VOCAB  # "hivg" has no weights: built, not downloaded
    svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M2 2H20V20Z M4 4L8 8"/></svg>'
    tok.train_segments([svg] * 3, num_merges=2, min_frequency=2)
    assert tok.vocab_size > HIVG_VOCAB
    with pytest.raises(ValueError, match="vocabulary"):
        gen.check_tokenizer(tok)
    saved = tok.save_pretrained(tmp_path / "tok")
    fitted = zoo.create("hivg_lm_tiny", tokenizer=str(saved), vocab_size=None)
    assert fitted.vocab_size == tok.vocab_size and fitted.config["vocab_size"] == tok.vocab_size
    fitted.check_tokenizer(fitted.load_tokenizer())


def test_save_and_load_round_trip(lm, tmp_path: Path) -> None:
    lm.tokenizer_name = "some/svg-tokenizer"
    ids = sequences(4, 8)
    out = lm.save_pretrained(tmp_path / "lm")
    back = zoo.load(out)
    assert back.arch == "hivg_lm_tiny" and back.tokenizer_name == "some/svg-tokenizer"
    assert back.vocab_size == VOCAB and back.max_length == 24
    torch.testing.assert_close(back.log_prob(ids), lm.log_prob(ids))
    assert torch.equal(back.sample(n=3, seed=0).ids, lm.sample(n=3, seed=0).ids)


# ---------------------------------------------------------------------------------------------- curriculum
def test_curriculum_stages_admit_longer_sequences_over_steps() -> None:
    lengths = torch.arange(1, 101)  # atomic lengths 1..100
    limits = stage_limits(lengths, [0.25, 0.5, 1.0])
    assert limits == [26, 51, 100]
    sampler = CurriculumBatchSampler(lengths, limits, [5, 5], batch_size=8, seed=0)
    seen = [lengths[sampler.batch(step)].max().item() for step in range(40)]
    assert max(seen[:5]) <= 26 and max(seen[5:10]) <= 51 and max(seen[10:]) > 51
    assert max(seen[5:10]) > 26
    # Within a stage, batches walk through a permutation of the pool: nothing repeats before it is used up.
    first_stage = [i for step in range(3) for i in sampler.batch(step)]
    assert len(set(first_stage)) == 24 and all(lengths[i] <= 26 for i in first_stage)
    # A batch follows from its number alone: a resumed sampler continues the same stream.
    stream = list(iter(sampler))[:7]
    resumed = CurriculumBatchSampler(lengths, limits, [5, 5], batch_size=8, seed=0)
    resumed.step = len(stream) + 3
    assert next(iter(resumed)) == sampler.batch(len(stream) + 3)
    assert stream[:3] == [sampler.batch(s) for s in range(3)]
    with pytest.raises(ValueError, match="stage_steps"):
        CurriculumBatchSampler(lengths, limits, [5], batch_size=8)


def test_collate_pads_with_minus_one_and_marks_unconditional() -> None:
    data = TokenSequences([[1, 2, 3], [4]], [3, 9])
    batch = collate_sequences([data[0], data[1]])
    assert batch["ids"].tolist() == [[1, 2, 3], [4, -1, -1]]
    assert batch["lengths"].tolist() == [3, 1] and batch["atomic_lengths"].tolist() == [3, 9]
    assert batch["labels"].tolist() == [0, 0]


def test_tokenize_texts_skips_what_the_tokenizer_refuses() -> None:
    tok = zoo.create("hivg")
    good = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M2 2H20V20Z"/></svg>'
    sequences, atomic, failures = tokenize_texts(tok, [good, "<svg", good], batch_size=8)
    assert [i for i, _ in failures] == [1] and sequences[1] == [] and sequences[0] == sequences[2]
    assert sequences[0] == tok.encode(good).ids[0].tolist() and atomic[0] == len(sequences[0])


@pytest.fixture(scope="module")
def mdi(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 600 Material Design Icons (real icons; a part keeps validation and encoding quick)."""
    lines = (shared_data / "svg/mdi/icons.jsonl").read_text(encoding="utf-8").splitlines()[:600]
    path = tmp_path_factory.mktemp("mdi") / "icons.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_data_module_drops_long_icons_caches_and_follows_the_curriculum(mdi: Path, tmp_path: Path) -> None:
    options = {
        "tokenizer": "hivg",
        "max_length": 160,
        "batch_size": 8,
        "limit": 120,
        "val_fraction": 0.1,
        "stage_quantiles": [0.5, 1.0],
        "stage_steps": [4],
    }
    dm = SVGTokenDataModule(str(mdi), cache_dir=str(tmp_path), **options)
    with pytest.warns(UserWarning, match=r"dropped \d+ of \d+ icons longer than max_length 160"):
        dm.setup("fit")
    assert dm.dropped["train"] and len(list(tmp_path.glob("svg-tokens-*.safetensors"))) == 2
    assert dm.cache_index["codebook_sizes"] == [HIVG_VOCAB]
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader())
    assert all(int(b["lengths"].max()) <= 160 for b in batches)
    assert all(int(b["atomic_lengths"].max()) <= dm.limits[0] for b in batches[:4])
    assert max(int(b["atomic_lengths"].max()) for b in batches[4:]) > dm.limits[0]
    assert dm.state_dict() == {"curriculum_step": len(batches)}
    # A second module reads the cached ids (same tokens, no re-encoding) and resumes the curriculum.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = SVGTokenDataModule(str(mdi), cache_dir=str(tmp_path), **options)
        again.load_state_dict(dm.state_dict())
        again.setup("fit")
    assert [s.tolist() for s in again.train_dataset.dataset.sequences] == [
        s.tolist() for s in dm.train_dataset.dataset.sequences
    ]
    assert again.sampler.step == len(batches)
    val = next(iter(dm.val_dataloader()))
    assert val["ids"].shape[0] == min(8, len(dm.val_dataset))


# ---------------------------------------------------------------------------------------------- recipe
def test_tiny_recipe_trains_on_real_icons_then_samples_svg_files(mdi: Path, tmp_path: Path) -> None:
    """The recipe itself, on a segment tokenizer learned from the training icons: the loss falls, the
    export names that tokenizer, and `zoo sample` writes SVG files that parse."""
    tokenizer = learn_segments(mdi, tmp_path / "tokenizer", num_merges=100)
    vocab = zoo.load(tokenizer).vocab_size
    assert vocab > HIVG_VOCAB
    steps = 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dropped icons, Lightning's small-dataset notes
        train(
            [
                str(ROOT / "recipes" / "hivg_lm_tiny.yaml"),
                "--model.init_args.model_args", f"{{tokenizer: {tokenizer}, vocab_size: null, max_length: 256}}",
                "--data.init_args.path", str(mdi),
                "--data.init_args.tokenizer", str(tokenizer),
                "--data.init_args.max_length", "256",
                "--data.init_args.batch_size", "16",
                "--data.init_args.cache_dir", str(tmp_path / "cache"),
                "--data.init_args.stage_steps", "[10, 10]",
                "--trainer.max_steps", str(steps),
                "--trainer.default_root_dir", str(tmp_path),
                "--trainer.log_every_n_steps", "1",
                "--trainer.val_check_interval", str(steps),
                "--trainer.limit_val_batches", "2",
                "--model.init_args.sample_every", str(steps),
                "--trainer.enable_progress_bar", "false",
                "--model.init_args.warmup_steps", "5",
                "--model.init_args.ema_decay", "null",
            ]
        )  # fmt: skip
    with open(tmp_path / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    losses = [float(row["train/loss"]) for row in rows]
    assert len(losses) == steps
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5, losses
    grid = tmp_path / "samples" / f"step{steps:07d}_samples.png"  # SVG samples rendered at validation
    assert grid.is_file() and zoo.io.read_image(grid).shape[0] == 3
    out = export(tmp_path, tmp_path / "export")
    generator = zoo.load(out)
    assert generator.tokenizer_name == str(tokenizer) and generator.vocab_size == vocab
    samples = tmp_path / "drawn"
    code = zoo_main(["sample", str(out), "--n", "3", "--top-k", "20", "--seed", "0", "-o", str(samples)])
    assert code == 0
    files = sorted(samples.glob("*.svg"))
    assert [f.name for f in files] == ["class0000_000.svg", "class0000_001.svg", "class0000_002.svg"]
    for f in files:
        root = zoo.io.parse_svg(f.read_text())
        assert root.tag.endswith("svg")
    tokens = zoo.Tokens.load(samples / "samples.tokens.safetensors")
    assert len(tokens) == 3 and tokens.codebook_sizes == (vocab,)
