"""HiVG tokens in a Hugging Face LM: smart-space strings and vocabulary extension with HMN initialisation.

The LMs are tiny random Llama / GPT-2 models and the tokenizer a byte-level BPE trained here on a few
strings, both saved and reloaded from local folders, so nothing is downloaded.
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo.models.svg.hf_vocab import extend_lm, is_plain_token, string_to_tokens, tokens_to_string
from zoo.models.svg.vocab import atomic_tokens, token_descriptions

# ---------------------------------------------------------------------------------------------------------
# Smart-space strings
# ---------------------------------------------------------------------------------------------------------

ICON = [
    "<svg>", "viewBox=0 0 224 224", "width=224", "height=224",
    "<defs>", "<linearGradient>", "id=grad-1", "x1=0%", "y2=100.5%",
    "<stop>", "offset=0", "stop-color=#ff0000", "</stop>",
    "<stop>", "offset=.5", "stop-color=rgb(0, 128, 255)", "stop-opacity=0.75", "</stop>",
    "</linearGradient>", "</defs>",
    "<g>", "transform=translate(12 -3.5) rotate(45)", "style=fill: red; stroke: #000",
    "<path>", "fill=url(#grad-1)", "fill-rule=evenodd",
    "<cmd_M>", "<P_10>", "<P_234>", "<cmd_l>", "<d_-3>", "<d_0>",
    "<cmd_a>", "12", "-3", "45", "<large_1>", "<sweep_0>", "<d_5>", "<d_-234>", "<cmd_z>",
    "</path>",
    "<rect>", "x=1.5", "y=-2", "rx=3", "</rect>",
    "<text>", "font-size=12", "text=Hello world 42", "</text>",
    "</g>",
    "<style>", "css=.a{fill:#fff} .b > .c{opacity:0.5}", "</style>",
    "</svg>",
]  # fmt: skip


def test_smart_space_string_of_an_icon() -> None:
    text = tokens_to_string(ICON)
    assert text.startswith("<svg>viewBox=0 0 224 224 width=224 height=224<defs><linearGradient>id=grad-1 ")
    assert "<cmd_M><P_10><P_234><cmd_l><d_-3><d_0><cmd_a>12 -3 45<large_1>" in text
    assert "<style>css=.a{fill:#fff} .b > .c{opacity:0.5}</style></svg>" in text
    assert string_to_tokens(text) == ICON


def test_plain_tokens() -> None:
    for token in ["fill=#fff", "x=", "12", "-3", "+4", "4.5", ".5", "5.", "a=b=c", "text=<not special"]:
        assert is_plain_token(token), token
    for token in ["<svg>", "<P_1>", "<x=1>", "1e5", "-", ".", "px", "", "12px"]:
        assert not is_plain_token(token), token


def _random_hivg_list(rng: random.Random) -> list[str]:
    """A token list with HiVG's grammar: elements with attributes (values with spaces, '#', '-', '.'),
    path commands with coordinates and arcs with bare integer radii."""
    values = ["#a0b1c2", "0 0 224 224", "-1.5", ".25", "url(#p-1)", "a b c", "1 -2 3.5", "x", "", "none"]
    names = ["fill", "stroke-width", "viewBox", "id", "opacity", "transform", "text", "css", "x1"]
    out = []
    for _ in range(rng.randint(1, 6)):
        element = rng.choice(["svg", "path", "g", "rect", "stop", "text"])
        out.append(f"<{element}>")
        out += [f"{rng.choice(names)}={rng.choice(values)}" for _ in range(rng.randint(0, 3))]
        for _ in range(rng.randint(0, 4)):
            if rng.random() < 0.3:
                radii = [str(rng.randint(-300, 300)) for _ in range(3)]
                out += ["<cmd_a>", *radii, "<large_0>", "<sweep_1>", "<d_1>", "<d_-2>"]
            else:
                out += ["<cmd_M>", f"<P_{rng.randint(0, 234)}>", f"<d_{rng.randint(-234, 234)}>"]
        out.append(f"</{element}>")
    return out


def test_smart_space_round_trips_hivg_lists() -> None:
    rng = random.Random(0)
    for _ in range(500):
        tokens = _random_hivg_list(rng)
        assert string_to_tokens(tokens_to_string(tokens)) == tokens


@pytest.mark.parametrize("icons", ["mdi", "tabler_outline"])
def test_smart_space_round_trips_real_icons(shared_data: Path, icons: str) -> None:
    """The lists the zoo's HiVG tokenizer writes for real icons (normalised, both with and without)."""
    import zoo

    path = shared_data / "svg" / icons / "icons.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    tok = zoo.create("hivg")
    lines = path.read_text().splitlines()
    lines = lines[:: max(1, len(lines) // 60)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for line in lines:
            svg = json.loads(line)["svg"]
            for normalize in (True, False):
                tokens = tok.encode_strings(svg, normalize=normalize)
                assert string_to_tokens(tokens_to_string(tokens)) == tokens


@pytest.mark.parametrize(
    ("tokens", "parsed"),
    [
        # a value with " name=" inside splits in two
        (["<text>", "text=a b=c", "</text>"], ["<text>", "text=a", "b=c", "</text>"]),
        # trailing whitespace of a value is lost
        (["fill=red ", "<cmd_M>"], ["fill=red", "<cmd_M>"]),
        # "<" inside a value ends it and starts a special token
        (["<text>", "text=a<b", "</text>"], ["<text>", "text=a", "<b</text>"]),
        # a bare number after an attribute joins its value (HiVG never writes this order)
        (["fill=red", "3", "<cmd_M>"], ["fill=red 3", "<cmd_M>"]),
        # characters before an attribute name's first letter are dropped
        (["<g>", "_x=1"], ["<g>", "x=1"]),
        # tokens that are neither special, attribute nor number do not survive
        (["<cmd_a>", "1e5", "<large_0>"], ["<cmd_a>", "1", "5", "<large_0>"]),
        (["<g>", "px", "</g>"], ["<g>", "</g>"]),
        # an unclosed special token swallows the rest up to the next ">"
        (["<oops", "12", "<P_1>"], ["<oops12<P_1>"]),
    ],
)
def test_ambiguous_lists_are_stable(tokens: list[str], parsed: list[str]) -> None:
    once = string_to_tokens(tokens_to_string(tokens))
    assert once == parsed
    assert string_to_tokens(tokens_to_string(once)) == once


def test_edge_cases_that_do_round_trip() -> None:
    for tokens in [
        [],
        ["x=", "y=", "<g>"],  # empty values
        ["a= b", "c=d"],  # a value with a leading space
        ["a=b=c", "<g>"],  # "=" in a value
        ["css=a>b", "</style>"],  # ">" in a value
        ["5.", ".5", "-0", "+7"],  # numbers HiVG's grammar accepts
        ["<P_1>", "12", "<d_-1>", "fill=#fff"],
    ]:
        assert string_to_tokens(tokens_to_string(tokens)) == tokens


def test_every_parse_is_a_fixed_point() -> None:
    """Whatever string an LM samples, its parse joins and re-parses to itself."""
    rng = random.Random(1)
    alphabet = "<>= -+.0123456789abZ_#/"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        tokens = string_to_tokens(text)
        assert string_to_tokens(tokens_to_string(tokens)) == tokens, text


def test_parser_details() -> None:
    assert string_to_tokens("") == []
    assert string_to_tokens("<svg>viewBox=0 0 24 24<path>fill=#fff opacity=0.5<cmd_M>") == [
        "<svg>", "viewBox=0 0 24 24", "<path>", "fill=#fff", "opacity=0.5", "<cmd_M>",
    ]  # fmt: skip
    assert string_to_tokens("  <a>  1 -2\t.5  ") == ["<a>", "1", "-2", ".5"]
    assert string_to_tokens("ab cd=1<x") == ["ab cd=1", "<x"]  # a name runs from a letter to "="
    assert string_to_tokens("abc<g>-") == ["<g>"]  # no "=" before "<": letters skipped, lone sign too


# ---------------------------------------------------------------------------------------------------------
# Vocabulary extension
# ---------------------------------------------------------------------------------------------------------


def _corpus() -> list[str]:
    """Text for the tiny BPE: description words and plain path text with numbers."""
    rng = random.Random(0)
    texts = [" ".join(levels) for levels in token_descriptions().values()]
    texts += ["absolute coordinate", "relative offset", "viewBox fill stroke path svg"]
    for _ in range(300):
        texts.append(
            f"M {rng.randint(0, 234)} {rng.randint(0, 234)} l {rng.randint(-234, 234)} "
            f"{rng.randint(-234, 234)} z fill=#{rng.randint(0, 0xFFF):03x}"
        )
    return texts


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer and three tiny LMs (Llama tied and untied, GPT-2), each saved to its own folder."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    root = tmp_path_factory.mktemp("hf")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.save_pretrained(root / "tokenizer")
    vocab = len(tok)
    torch.manual_seed(0)
    for tied in (True, False):
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=tied,
        )
        LlamaForCausalLM(config).save_pretrained(root / f"llama_{'tied' if tied else 'untied'}")
    gpt2 = GPT2Config(
        vocab_size=vocab, n_embd=32, n_layer=1, n_head=2, n_positions=256, bos_token_id=0, eos_token_id=0
    )
    GPT2LMHeadModel(gpt2).save_pretrained(root / "gpt2")
    return root


def _load(saved: Path, model: str = "llama_untied") -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(saved / model), AutoTokenizer.from_pretrained(
        saved / "tokenizer"
    )


def _s(weight: torch.Tensor, tok: object, text: str) -> torch.Tensor:
    """Mean existing row of ``text``'s subwords, recomputed by hand: ``text`` as it is or after a space,
    whichever is fewer subwords."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    spaced = tok(" " + text, add_special_tokens=False)["input_ids"]
    if len(spaced) < len(ids):
        ids = spaced
    return weight[ids].float().mean(0)


def test_texts_are_read_in_fewest_subwords(saved: Path) -> None:
    model, tok = _load(saved)
    pieces = {n: (len(tok(str(n))["input_ids"]), len(tok(f" {n}")["input_ids"])) for n in range(11, 235)}
    n = next(n for n, (as_is, spaced) in pieces.items() if spaced == 1 < as_is and n % 10)  # a word after " "
    weight = model.get_input_embeddings().weight.detach().clone()
    extend_lm(model, tok, [f"<P_{n}>", "<P_234>"], init="mean")
    low = n // 10 * 10

    def expected(s: Callable[[str], torch.Tensor]) -> torch.Tensor:
        decade = (1 - n % 10 / 10) * s(str(low)) + (n % 10 / 10) * s(str(low + 10))
        whole = (1 - n / 234) * s("0") + (n / 234) * s("234")
        return (s("absolute coordinate") + s(str(n)) + decade + whole) / 4

    row = model.get_input_embeddings().weight[tok.convert_tokens_to_ids(f"<P_{n}>")].detach()
    assert torch.allclose(row, expected(lambda text: _s(weight, tok, text)), atol=1e-6)
    as_is = expected(lambda text: weight[tok(text)["input_ids"]].mean(0))
    assert not torch.allclose(row, as_is, atol=1e-4)


@pytest.mark.parametrize("name", ["llama_tied", "llama_untied", "gpt2"])
def test_extend_adds_every_token_once(saved: Path, name: str) -> None:
    model, tok = _load(saved, name)
    old_len = len(tok)
    before = model.get_input_embeddings().weight.detach().clone()
    out_before = model.get_output_embeddings().weight.detach().clone()
    segments = {"<SEG_0>": ["<cmd_l>", "<d_1>", "<d_2>"], "<SEG_1>": ["<cmd_a>", "12", "3", "0", "<large_0>"]}
    report = extend_lm(model, tok, segments=segments)

    n_new = len(atomic_tokens()) + 2
    assert report["added"] == n_new and report["already_present"] == 0
    assert report["rows"] == {
        "element": 56, "command": 20, "coordinate": 235, "offset": 469, "flag": 4, "segment": 2,
    }  # fmt: skip
    assert report["tied"] == (name != "llama_untied")
    assert report["output_rows"] == (n_new if name == "llama_untied" else 0)
    assert len(tok) == report["vocab_size"] == old_len + n_new
    ids = tok.convert_tokens_to_ids([*atomic_tokens(), "<SEG_0>", "<SEG_1>"])
    assert sorted(ids) == list(range(old_len, old_len + n_new))
    assert all(t in tok.all_special_tokens for t in ["<svg>", "<P_234>", "<SEG_1>"])
    weight = model.get_input_embeddings().weight
    assert weight.shape == (old_len + n_new, before.shape[1])
    assert torch.equal(weight[:old_len], before)  # old rows untouched
    assert torch.isfinite(weight).all()
    out = model.get_output_embeddings().weight
    assert out.shape[0] == old_len + n_new
    assert torch.equal(out[:old_len], out_before)
    assert (out.data_ptr() == weight.data_ptr()) == report["tied"]

    again = extend_lm(model, tok, segments=segments)  # nothing new: nothing added, nothing resized
    assert again["added"] == 0 and again["already_present"] == n_new and again["rows"] == {}
    assert len(tok) == old_len + n_new and model.get_input_embeddings().weight.shape[0] == old_len + n_new


def test_mean_rows_are_the_documented_means(saved: Path) -> None:
    model, tok = _load(saved, "llama_untied")
    _, plain = _load(saved)
    e_in = model.get_input_embeddings().weight.detach().clone()
    e_out = model.get_output_embeddings().weight.detach().clone()
    segments = {"<SEG_0>": ["<cmd_l>", "<d_1>", "<d_-2>"], "<SEG_1>": ["<cmd_a>", "12", "<large_0>"]}
    extend_lm(model, tok, segments=segments, init="mean")
    w_in = model.get_input_embeddings().weight.detach()
    w_out = model.get_output_embeddings().weight.detach()

    for table, new in ((e_in, w_in), (e_out, w_out)):

        def row(token: str, new: torch.Tensor = new) -> torch.Tensor:
            return new[tok.convert_tokens_to_ids(token)]

        def s(text: str, table: torch.Tensor = table) -> torch.Tensor:
            return _s(table, plain, text)

        levels = token_descriptions()["<cmd_M>"]
        assert torch.allclose(row("<cmd_M>"), sum(s(t) for t in levels) / 3, atol=1e-6)

        def lerp(a: str, b: str, f: float) -> torch.Tensor:
            return (1 - f) * s(a) + f * s(b)

        p = s("absolute coordinate") + s("13") + lerp("10", "20", 0.3) + lerp("0", "234", 13 / 234)
        assert torch.allclose(row("<P_13>"), p / 4, atol=1e-6)
        p = s("absolute coordinate") + s("232") + lerp("230", "234", 0.5) + lerp("0", "234", 232 / 234)
        assert torch.allclose(row("<P_232>"), p / 4, atol=1e-6)
        d = s("relative offset") + s("-5") + lerp("0", "-10", 0.5) + lerp("0", "-234", 5 / 234)
        assert torch.allclose(row("<d_-5>"), d / 4, atol=1e-6)
        seg0 = (row("<cmd_l>") + row("<d_1>") + row("<d_-2>")) / 3
        assert torch.allclose(row("<SEG_0>"), seg0, atol=1e-6)
        seg1 = (row("<cmd_a>") + s("12") + row("<large_0>")) / 3  # "12" is no new token: its subwords
        assert torch.allclose(row("<SEG_1>"), seg1, atol=1e-6)
    assert not torch.allclose(w_in[-1], w_out[-1])  # each table from its own rows


@pytest.mark.parametrize("init", ["hmn", "mean"])
def test_numeric_order_shows_in_the_rows(saved: Path, init: str) -> None:
    model, tok = _load(saved)
    extend_lm(model, tok, init=init)
    weight = model.get_input_embeddings().weight.detach()

    def cos(a: str, b: str) -> float:
        ia, ib = tok.convert_tokens_to_ids([a, b])
        return F.cosine_similarity(weight[ia], weight[ib], dim=0).item()

    assert cos("<P_10>", "<P_11>") > cos("<P_10>", "<P_200>")
    assert cos("<d_-5>", "<d_-4>") > cos("<d_-5>", "<d_100>")
    # Over all coordinates: the next value is nearer than values 20 or more away, nearly always (numerals
    # that share subwords, such as 12 and 120, can stay similar through their numeral term).
    rows = F.normalize(weight[tok.convert_tokens_to_ids([f"<P_{n}>" for n in range(235)])], dim=1)
    cosine = rows @ rows.T
    n = torch.arange(235)
    far = (n[:, None] - n[None, :]).abs() >= 20
    nearer = cosine[n[:-1], n[:-1] + 1][:, None] > cosine[:-1]
    assert nearer[far[:-1]].float().mean().item() > 0.9


def test_init_modes_and_seeds(saved: Path) -> None:
    rows = {}
    for init, seed in [("mean", 0), ("hmn", 0), ("hmn", 0), ("hmn", 1), ("random", 0), ("random", 0)]:
        model, tok = _load(saved)
        old = len(tok)
        old_rows = model.get_input_embeddings().weight.detach()[:old].clone()
        extend_lm(model, tok, init=init, seed=seed, noise_scale=0.1)
        rows.setdefault((init, seed), []).append(model.get_input_embeddings().weight.detach()[old:].clone())
    std = old_rows.std(0)
    assert torch.equal(*rows["hmn", 0]) and torch.equal(*rows["random", 0])  # seeds reproduce
    assert not torch.allclose(rows["hmn", 0][0], rows["hmn", 1][0])
    noise = rows["hmn", 0][0] - rows["mean", 0][0]
    assert (noise.std(0) / std).mean().item() == pytest.approx(0.1, rel=0.15)  # noise_scale * std
    random_rows = rows["random", 0][0]
    assert not torch.allclose(random_rows, rows["mean", 0][0], atol=1e-3)
    assert (random_rows.std(0) / std).mean().item() == pytest.approx(1.0, rel=0.15)
    assert random_rows.mean(0).abs().max().item() < 0.5 * std.max().item()


def test_subset_and_errors(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = _load(saved, "llama_tied")
    old = len(tok)
    with pytest.raises(ValueError, match="init"):
        extend_lm(model, tok, init="zeros")
    with pytest.raises(ValueError, match="itself"):
        extend_lm(model, tok, ["<g>"], segments={"<SEG_0>": ["<SEG_1>"], "<SEG_1>": ["<SEG_0>"]})
    assert len(tok) == old  # a failed call adds nothing
    report = extend_lm(model, tok, ["<g>", "</g>", "<image>", "<|endoftext|>"], init="mean")
    assert report["added"] == 3 and report["already_present"] == 1
    assert report["rows"] == {"element": 2, "other": 1}
    weight = model.get_input_embeddings().weight.detach()
    assert weight.shape[0] == old + 3
    _, plain = _load(saved)
    assert torch.allclose(weight[tok.convert_tokens_to_ids("<image>")], _s(weight, plain, "image"), atol=1e-6)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"zoo\[reasoning\]"):
        extend_lm(model, tok)


@pytest.mark.parametrize("name", ["llama_tied", "llama_untied"])
def test_extended_model_tokenizes_runs_and_trains(saved: Path, name: str, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    model, tok = _load(saved, name)
    old = len(tok)
    extend_lm(model, tok, segments={"<SEG_0>": ["<cmd_l>", "<d_1>", "<d_2>"]})
    tokens = ["<svg>", "viewBox=0 0 224 224", "<path>", "fill=#fff", "opacity=0.5", "<cmd_M>", "<P_10>",
              "<P_20>", "<SEG_0>", "<cmd_a>", "12", "7", "<large_1>", "<sweep_0>", "<d_-3>", "<d_4>",
              "<cmd_z>", "</path>", "</svg>"]  # fmt: skip
    text = tokens_to_string(tokens)
    special = [t for t in tokens if t.startswith("<")]
    tok.save_pretrained(tmp_path)
    for t in (tok, AutoTokenizer.from_pretrained(tmp_path)):
        ids = t(text, add_special_tokens=False)["input_ids"]
        assert [i for i in ids if i >= old] == t.convert_tokens_to_ids(special)
        assert t.decode(ids) == text
        assert string_to_tokens(t.decode(ids)) == tokens

    batch = torch.tensor([ids, ids[::-1]])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        loss = model(input_ids=batch, labels=batch).loss
        assert torch.isfinite(loss)
        loss.backward()
        grad = model.get_input_embeddings().weight.grad
        assert grad[tok.convert_tokens_to_ids("<P_10>")].abs().sum() > 0
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[1] < losses[0]
