"""NAR: exact likelihood, the proximity mask, 2n - 1 passes, sampling controls, converter and sizes."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import CheckpointError
from zoo.hub import load_weights
from zoo.models.generators.nar import anti_diagonals, convert_nar, proximity_mask
from zoo.sampling import filter_logits


def randomized(model: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Random weights everywhere (the zero-initialised head would make every logit equal)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


@pytest.fixture
def nar() -> zoo.Tokenizer:
    torch.manual_seed(0)
    return randomized(zoo.create("nar_tiny", vocab_size=32, num_classes=4))


def test_paper_sizes_have_upstream_parameter_counts() -> None:
    with torch.device("meta"):
        counts = {name: zoo.create(name).num_parameters() for name in ("nar_b", "nar_l", "nar_xl")}
    # Counted from upstream's own GPT-B/L/XL with the extra vertical block (vocab 16384, 1000 classes).
    assert counts == {"nar_b": 130_551_552, "nar_l": 372_536_320, "nar_xl": 815_991_040}
    info = zoo.info("nar_b")
    assert info["tokens"]["forward_passes"] == 31 and info["tokens"]["codebook_sizes"] == [16384]
    assert info["input"]["tokenizer"] == "vq16"


def test_mask_equals_the_brute_force_definition() -> None:
    for n, prefix in ((4, 1), (8, 1), (5, 3)):
        mask = proximity_mask(n, prefix)
        length = prefix + n * n
        expected = torch.zeros(length, length, dtype=torch.bool)
        for q in range(length):
            for k in range(length):
                if q < prefix:
                    expected[q, k] = k <= q
                elif k < prefix:
                    expected[q, k] = True
                else:
                    (rq, cq), (rk, ck) = divmod(q - prefix, n), divmod(k - prefix, n)
                    expected[q, k] = rk + ck <= rq + cq
        assert torch.equal(mask, expected)


def test_diagonals_cover_the_grid_in_order() -> None:
    diagonals = anti_diagonals(5)
    assert len(diagonals) == 9 and sorted(i for cells in diagonals for i in cells) == list(range(25))
    for d, cells in enumerate(diagonals):
        assert [divmod(i, 5) for i in cells] == sorted((r, d - r) for r in range(5) if 0 <= d - r < 5)


def test_parallel_likelihood_equals_cached_decoding(nar) -> None:
    """Teacher-forced logits of the training forward equal per-diagonal logits from incremental,
    KV-cached decoding fed the same tokens; their log-likelihoods agree to 1e-4."""
    ids = torch.randint(0, 32, (3, 8, 8))
    labels = torch.tensor([0, 2, 3])
    parallel = nar.log_prob(ids, labels)

    seen: dict[int, torch.Tensor] = {}
    original = nar._step

    def recording(h, positions, caches):
        right, below = original(h, positions, caches)
        seen[len(seen)] = (positions.clone(), right, below)
        return right, below

    # Feed the fixed ids instead of samples: greedy decoding over logits that put all mass on them.
    flat = ids.reshape(3, -1)
    total = torch.zeros(3)
    nar._step = recording
    try:
        b, n = 3, 8
        caches = nar._new_caches(b, torch.float32)
        h = nar.cls_embedding(labels)[:, :1]
        right, below = nar._step(h, torch.arange(1), caches)
        logits = ((right[:, -1] + below[:, -1]) / 2).log_softmax(-1)
        total += logits.gather(-1, flat[:, :1])[:, 0]
        diagonals = anti_diagonals(n)
        for d in range(1, 2 * n - 1):
            fed, targets = diagonals[d - 1], diagonals[d]
            right, below = nar._step(nar.tok_embeddings(flat[:, fed]), torch.tensor(fed) + 1, caches)
            parts = [(below[:, :-1] + right[:, 1:]) / 2]
            if len(targets) > len(fed):
                parts = [right[:, :1], *parts, below[:, -1:]]
            step = torch.cat(parts, dim=1).log_softmax(-1)
            total += step.gather(-1, flat[:, targets, None])[..., 0].sum(-1)
    finally:
        del nar._step
    assert len(seen) == 2 * 8 - 1
    torch.testing.assert_close(total, parallel, atol=1e-4, rtol=0)


def test_sampling_takes_2n_minus_1_passes_and_is_reproducible(nar) -> None:
    passes = []
    tokens = nar.sample([0, 1, 2], cfg=2.0, seed=7, callback=passes.append)
    assert len(passes) == 15 == nar.forward_passes()
    assert tokens.ids.shape == (3, 8, 8) and tokens.codebook_sizes == (32,)
    assert tokens.meta["labels"] == [0, 1, 2] and tokens.meta["cfg"] == 2.0
    again = nar.sample([0, 1, 2], cfg=2.0, seed=7)
    assert torch.equal(tokens.ids, again.ids)
    assert not torch.equal(tokens.ids, nar.sample([0, 1, 2], cfg=2.0, seed=8).ids)
    # A batch equals its items drawn alone? No: draws are batched. Greedy decoding is, though.
    greedy = nar.sample([1, 3], temperature=0)
    assert torch.equal(greedy.ids[1:], nar.sample([3], temperature=0).ids)


def test_greedy_samples_are_the_argmax_of_their_own_teacher_forced_logits(nar) -> None:
    tokens = nar.sample([2, 0], temperature=0, cfg=1.0)
    logits = nar.logits(tokens.ids.reshape(2, -1), torch.tensor([2, 0]))
    assert torch.equal(logits.argmax(-1), tokens.ids.reshape(2, -1))


def test_raster_order_is_a_plain_causal_gpt() -> None:
    torch.manual_seed(0)
    gpt = randomized(zoo.create("nar_tiny", order="raster", vocab_size=32, num_classes=4))
    assert not hasattr(gpt, "medusa_output") and gpt.forward_passes() == 64
    passes = []
    tokens = gpt.sample([1, 2], temperature=0, callback=passes.append)
    assert len(passes) == 64
    logits = gpt.logits(tokens.ids.reshape(2, -1), torch.tensor([1, 2]))
    assert torch.equal(logits.argmax(-1), tokens.ids.reshape(2, -1))
    # Causal: changing the last id changes no logit.
    ids = torch.randint(0, 32, (1, 64))
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 32
    labels = torch.tensor([0])
    assert torch.equal(gpt.logits(ids, labels), gpt.logits(changed, labels))


def test_a_later_diagonal_does_not_change_earlier_logits(nar) -> None:
    ids = torch.randint(0, 32, (1, 64))
    changed = ids.clone()
    changed[0, 7 * 8 + 7] = (changed[0, 63] + 1) % 32  # (7, 7): the last diagonal
    labels = torch.tensor([1])
    a, b = nar.logits(ids, labels), nar.logits(changed, labels)
    assert torch.equal(a[:, :63], b[:, :63])


def test_top_k_top_p_filtering() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # Nucleus 0.7 keeps 0.5 and 0.3 (the token that crosses the threshold stays).
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]


def test_cfg_moves_samples_towards_the_class(nar) -> None:
    """With guidance the conditional log-likelihood of samples rises over unguided ones."""
    labels = [1] * 16
    plain = nar.sample(labels, cfg=1.0, seed=0)
    guided = nar.sample(labels, cfg=4.0, seed=0)
    gain = lambda t: (nar.log_prob(t, labels) - nar.log_prob(t, [0] * 16)).mean()
    assert gain(guided) > gain(plain)


def test_training_loss_gradients_and_label_dropout(nar) -> None:
    nar.train()
    batch = {"ids": torch.randint(0, 32, (4, 8, 8)), "labels": torch.tensor([0, 1, 2, 3])}
    out = nar.training_loss(batch)
    out.loss.backward()
    missing = [n for n, p in nar.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    # The null-class row only learns when a label is dropped.
    assert missing in ([], ["cls_embedding.embedding_table.weight"])
    assert 0 <= float(out.stats["accuracy"]) <= 1
    with pytest.raises(ValueError, match=r"\[B, 8, 8\]"):
        nar.training_loss({"ids": torch.zeros(1, 4, 4, dtype=torch.long), "labels": torch.tensor([0])})
    with pytest.raises(ValueError, match="outside"):
        nar.sample([7])


def test_converter_loads_upstream_keys_strictly_and_pins_the_grid(nar) -> None:
    upstream = {f"module.{k}": v.clone() for k, v in nar.state_dict().items()}
    upstream["module.freqs_cis"] = torch.zeros(65, 8, 2)
    fresh = zoo.create("nar_tiny", vocab_size=32, num_classes=4)
    load_weights(fresh, convert_nar(upstream), "upstream")
    ids = torch.randint(0, 32, (2, 8, 8))
    torch.testing.assert_close(fresh.eval().log_prob(ids, [0, 1]), nar.log_prob(ids, [0, 1]))
    # Every parameter is upstream-named; a checkpoint of another size or grid names what does not fit.
    other = zoo.create("nar_tiny", vocab_size=32, num_classes=4, depth=3)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights(other, convert_nar(upstream), "upstream")
    paper_keys = set(zoo.create("nar_tiny", vocab_size=32).state_dict())
    assert {
        "layers.2.attention.wqkv.weight",
        "medusa_output.weight",
        "cls_embedding.embedding_table.weight",
    } <= paper_keys


def test_save_and_load_round_trip(nar, tmp_path) -> None:
    nar.update_config(tokenizer="some/tokenizer")
    nar.save_pretrained(tmp_path / "nar")
    again = zoo.load(tmp_path / "nar")
    assert type(again).__name__ == "NAR" and again.tokenizer_name == "some/tokenizer"
    ids = torch.randint(0, 32, (2, 8, 8))
    torch.testing.assert_close(again.log_prob(ids, [0, 1]), nar.log_prob(ids, [0, 1]))
    assert "generator" in (tmp_path / "nar" / "README.md").read_text()
