"""HiVG: vocabulary order, HiVG's path rules, canvas normalisation, segments, repairing detokeniser,
hostile input, save/load and the Hub, and the encode / decode / fit-segments commands."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import MediaError
from zoo.models.svg.hivg import SVGRepairWarning
from zoo.models.svg.normalize import normalize_svg
from zoo.models.svg.render import ink_iou, on_canvas, psnr, render_svg

SVG = 'xmlns="http://www.w3.org/2000/svg"'
SCENE = (
    f'<svg {SVG} viewBox="0 0 100 50"><g transform="translate(10 5) scale(1.5)">'
    '<g transform="rotate(20 10 10) skewX(10)"><rect x="5" y="5" width="30" height="15" rx="4" ry="3" fill="#c00"/>'
    '</g></g><g transform="matrix(1 0.2 -0.1 1 50 0)"><ellipse cx="10" cy="20" rx="8" ry="5" fill="blue"/>'
    '<circle cx="30" cy="20" r="6" fill="none" stroke="green" stroke-width="2"/></g>'
    '<line x1="0" y1="45" x2="100" y2="40" stroke="black" stroke-width="3"/>'
    '<polygon points="60,40 70,30 80,45" fill="purple"/>'
    '<polyline points="5,45 15,35 25,45" fill="none" stroke="orange" stroke-width="2"/></svg>'
)


@pytest.fixture(scope="module")
def tok() -> zoo.Tokenizer:
    return zoo.create("hivg")


def icons(shared: Path, name: str, n: int) -> list[str]:
    with open(shared / "svg" / name / "icons.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["svg"] for _, line in zip(range(n), f, strict=False)]


def test_vocabulary_is_hivgs_in_its_order(tok) -> None:
    atomic = tok.atomic
    assert len(atomic) == 784 == 56 + 20 + 235 + 469 + 4
    assert atomic[:4] == ["<svg>", "</svg>", "<path>", "</path>"] and atomic[55] == "</feMerge>"
    assert atomic[56:60] == ["<cmd_M>", "<cmd_m>", "<cmd_L>", "<cmd_l>"] and atomic[75] == "<cmd_z>"
    assert atomic[76] == "<P_0>" and atomic[310] == "<P_234>" and atomic[311] == "<d_-234>"
    assert atomic[545] == "<d_0>" and atomic[779] == "<d_234>"
    assert atomic[780:] == ["<large_0>", "<large_1>", "<sweep_0>", "<sweep_1>"]
    assert tok.vocab_size == 784 + 257 and tok.num_segments == 0
    assert zoo.create("hivg_784").num_atomic == 56 + 20 + 795 + 1589 + 4
    assert zoo.create("hivg_1008").num_atomic == 56 + 20 + 1009 + 2017 + 4


def test_path_rules_are_hivgs(tok) -> None:
    """Absolute moveto, relative everything else, rounding against the rounded current point, clamping,
    arcs with text radii and flag tokens, implicit lineto after M, polygons closed by z."""
    svg = (
        f'<svg {SVG} viewBox="0 0 224 224"><path d="M0 0 L0.6 0 L1.2 0 L1.8 0 m 5 5 10 0 H300 v-3'
        ' a1 2 30 01.5 2 Z"/><polygon points="1,2 3,4"/></svg>'
    )
    strings = tok.encode_strings(svg, normalize=False)
    path = strings[strings.index("<path>") + 1 : strings.index("</path>")]
    assert path[:12] == ["<cmd_M>", "<P_0>", "<P_0>"] + ["<cmd_l>", "<d_1>", "<d_0>"] + [
        "<cmd_l>",
        "<d_0>",  # round(1.2 - 1): error does not accumulate
        "<d_0>",
    ] + ["<cmd_l>", "<d_1>", "<d_0>"]  # and the pen ends at round(1.8) = 2
    assert path[12:18] == ["<cmd_M>", "<P_7>", "<P_5>", "<cmd_l>", "<d_10>", "<d_0>"]  # m after implicit l
    assert path[18:20] == ["<cmd_h>", "<d_234>"]  # 300 - 17 clamped to the offset range
    assert path[20:22] == ["<cmd_v>", "<d_-3>"]
    # Arc flags written without separators (a1 2 30 0 1 .5 2) are read by the SVG grammar.
    assert path[22:] == ["<cmd_a>", "1", "2", "30", "<large_0>", "<sweep_1>", "<d_0>", "<d_2>", "<cmd_z>"]
    polygon = strings[strings.index("<polygon>") + 1 : strings.index("</polygon>")]
    assert polygon == ["<cmd_M>", "<P_1>", "<P_2>", "<cmd_l>", "<d_2>", "<d_2>", "<cmd_z>"]
    ids = tok.encode_atomic(svg, normalize=False)
    assert tok.ids_to_strings(ids) == strings and tok.strings_to_ids(strings) == ids


def test_normalisation_puts_any_svg_on_the_canvas_and_draws_the_same() -> None:
    """viewBox, nested translate/scale/rotate/skew/matrix and every basic shape become absolute paths
    in canvas pixels that render like the original; what is not geometry is listed."""
    out = normalize_svg(SCENE)
    assert out.dropped == {}
    assert (
        out.text.count("<path") == 6 and "transform" not in out.text and 'viewBox="0 0 224 224"' in out.text
    )
    original, normalized = render_svg(on_canvas(SCENE, 224), 224), render_svg(out.text, 224)
    assert ink_iou(original, normalized) > 0.97 and psnr(original, normalized) > 28
    texty = f'<svg {SVG} width="24" height="24"><text x="1" y="9">A</text><path d="M2 2h20v20H2z"/></svg>'
    with pytest.warns(SVGRepairWarning, match="text x1"):
        zoo.create("hivg").encode(texty)
    assert 'd="M 18.667 18.667 H 205.333 V 205.333 H 18.667 Z"' in normalize_svg(texty).text


def test_round_trip_draws_the_same_and_reencodes_identically(tok) -> None:
    tokens = tok.encode(SCENE)
    text = tok.decode(tokens, errors="strict")[0]
    assert tok.encode(text, normalize=False).ids.equal(tokens.ids)  # idempotent at the id level
    original, decoded = render_svg(on_canvas(SCENE, 224), 224), render_svg(text, 224)
    assert ink_iou(original, decoded) > 0.95


def test_real_icons_round_trip(tok, shared_data: Path) -> None:
    texts = icons(shared_data, "mdi", 40) + icons(shared_data, "tabler_outline", 40)
    ious = []
    for svg in texts:
        tokens = tok.encode(svg)
        text = tok.decode(tokens, errors="strict")[0]
        assert tok.encode(text, normalize=False).ids.equal(tokens.ids)
        ious.append(ink_iou(render_svg(on_canvas(svg, 224), 224), render_svg(text, 224)))
    assert sum(ious) / len(ious) > 0.9, ious


def test_batches_pad_and_equal_single_items(tok) -> None:
    texts = [SCENE, f'<svg {SVG} viewBox="0 0 8 8"><path d="M1 1h4v4z"/></svg>']
    batch = tok.encode(texts)
    assert batch.ids.shape[0] == 2 and batch.lengths.tolist()[1] < batch.ids.shape[1]
    assert (batch.ids[1, batch.lengths[1] :] == -1).all()
    for i, text in enumerate(texts):
        single = tok.encode(text)
        assert single.ids[0].tolist() == batch.ids[i, : batch.lengths[i]].tolist()
    assert tok.decode(batch) == [tok.decode(tok.encode(t))[0] for t in texts]


def corpus_of_paths() -> list[str]:
    """Icons repeating a few motifs: a frequent single command, a frequent pair, and a pair that only
    ever occurs across two paths (which no segment can span)."""
    out = []
    for k in range(30):
        x = 10 + k % 5
        out.append(
            f'<svg {SVG} viewBox="0 0 224 224"><path d="M{x} 10 c1 2 3 4 5 6 l7 7 l-3 3"/>'
            f'<path d="M50 50 q 9 9 18 0"/><path d="M{x} 90 h 11"/></svg>'
        )
    return out


def test_segments_promote_single_commands_and_never_span_paths() -> None:
    tok = zoo.create("hivg")
    stats = tok.train_segments(corpus_of_paths(), num_merges=20, min_frequency=5, normalize=False)
    segments = [tok.ids_to_strings(row[row >= 0].tolist()) for row in tok.segment_table]
    commands = [[s for s in seg if s.startswith("<cmd_")] for seg in segments]
    assert ["<cmd_c>", "<cmd_l>", "<cmd_l>"] in commands  # pairs merged, then merged again
    assert ["<cmd_h>"] in commands  # a frequent command whose neighbours vary became a segment alone
    assert ["<cmd_M>", "<cmd_q>"] in commands  # a pair at least as frequent as its parts wins
    assert all(c[1:].count("<cmd_M>") == 0 for c in commands)  # nothing runs from one path into the next
    assert stats["geometry_compression"] > 1.5 and stats["segments"] == tok.num_segments
    pair_only = zoo.create("hivg")  # HiVG's own scheme: pair merges only, no attribute segments
    pair_only.train_segments(
        corpus_of_paths(),
        num_merges=20,
        min_frequency=5,
        normalize=False,
        promote_single=False,
        attribute_segments=0,
    )
    assert all(len([s for s in tok.ids_to_strings(r[r >= 0].tolist()) if s.startswith("<cmd_")]) >= 2
               for r in pair_only.segment_table)  # fmt: skip


def test_frequent_attributes_become_segments() -> None:
    styled = [
        f'<svg {SVG} viewBox="0 0 224 224"><path stroke-linecap="round" fill="none" d="M{k} 1 l 2 3"/></svg>'
        for k in range(12)
    ]
    tok = zoo.create("hivg")
    tok.train_segments(styled, num_merges=4, min_frequency=5, normalize=False, attribute_segments=3)
    texts = [tok.ids_to_strings(r[r >= 0].tolist()) for r in tok.segment_table]
    assert ["stroke-linecap=round"] in texts and ["fill=none"] in texts
    ids = tok.encode(styled[0], normalize=False).ids[0].tolist()
    assert len(ids) < len(tok.encode_atomic(styled[0], normalize=False)) - 25
    assert tok.expand_segments(ids) == tok.encode_atomic(styled[0], normalize=False)


def test_segments_decode_exactly_and_round_trip_through_save_and_the_hub(tmp_path: Path, hub) -> None:
    tok = zoo.create("hivg")
    corpus = corpus_of_paths()
    tok.train_segments(corpus, num_merges=20, min_frequency=5, normalize=False)
    for svg in corpus[:5] + [SCENE]:
        tokens = tok.encode(svg, normalize=False)
        ids = tokens.ids[0].tolist()
        assert any(i >= tok.segment_offset for i in ids) or svg == SCENE
        assert tok.expand_segments(ids) == tok.encode_atomic(svg, normalize=False)
        assert tok.decode(tokens)[0] == tok.detokenize(tok.expand_segments(ids))
    tok.save_pretrained(tmp_path / "hivg")
    again = zoo.load(tmp_path / "hivg")
    assert again.num_segments == tok.num_segments and again.config["num_segments"] == tok.num_segments
    assert again.encode(corpus[0], normalize=False).ids.equal(tok.encode(corpus[0], normalize=False).ids)
    sha = tok.push_to_hub("tester/hivg-icons")
    remote = zoo.load(f"hf-hub:tester/hivg-icons@{sha}")
    assert remote.encode(corpus[1], normalize=False).ids.equal(tok.encode(corpus[1], normalize=False).ids)


def test_detokeniser_repairs_or_refuses_what_a_model_may_emit(tok) -> None:
    ids = tok.encode_atomic(
        f'<svg {SVG} viewBox="0 0 224 224"><path d="M1 1 l 2 3 l 4 5"/></svg>', normalize=False
    )
    cut = ids[
        : ids.index(tok.atomic_ids["<cmd_l>"], ids.index(tok.atomic_ids["<cmd_l>"]) + 1) + 2
    ]  # l 4 only
    with pytest.raises(ValueError, match=r"incomplete <cmd_l>"):
        tok.detokenize(cut, errors="strict")
    with pytest.warns(SVGRepairWarning, match=r"incomplete <cmd_l>.*<path> left open.*<svg> left open"):
        text = tok.detokenize(cut)
    assert 'd="M 1 1 l 2 3"' in text  # the complete commands are kept
    stray = [tok.atomic_ids["</g>"], *ids, tok.atomic_ids["<d_3>"]]
    with pytest.warns(SVGRepairWarning, match=r"</g> at 0 closes nothing.*stray parameter <d_3>"):
        tok.detokenize(stray)
    with pytest.raises(ValueError, match=r"outside this HiVG vocabulary"):
        tok.detokenize([*ids, tok.vocab_size])
    unterminated = ids[:-2] + [tok.text_offset + ord("x")]
    with pytest.warns(SVGRepairWarning, match="no end-of-text"):
        tok.detokenize(unterminated)
    bare = [
        tok.atomic_ids["<path>"],
        tok.atomic_ids["<cmd_M>"],
        tok.atomic_ids["<P_3>"],
        tok.atomic_ids["<P_4>"],
    ]
    with pytest.warns(SVGRepairWarning, match="outside <svg>"):
        assert "M 3 4" in tok.detokenize(bare)


HOSTILE = {
    "billion laughs": '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "x"><!ENTITY b "&a;&a;">]>'
    f"<svg {SVG}><text>&b;</text></svg>",
    "external entity": '<?xml version="1.0"?><!DOCTYPE s [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    f"<svg {SVG}><text>&e;</text></svg>",
    "use cycle": f'<svg {SVG} viewBox="0 0 9 9"><g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g></svg>',
    "use bomb": f'<svg {SVG} viewBox="0 0 9 9"><defs><path id="p0" d="M0 0L1 1"/>'
    + "".join(f'<g id="p{i}">' + f'<use href="#p{i - 1}"/>' * 10 + "</g>" for i in range(1, 8))
    + '</defs><use href="#p7"/></svg>',
    "deep nesting": f'<svg {SVG} viewBox="0 0 9 9">' + "<g>" * 10_000 + "</g>" * 10_000 + "</svg>",
    "huge coordinate": f'<svg {SVG} viewBox="0 0 9 9"><path d="M1e308 1e308L1 1"/></svg>',
    "NaN coordinate": f'<svg {SVG} viewBox="0 0 9 9"><path d="M NaN 1 L 1 1"/></svg>',
    "malformed path": f'<svg {SVG} viewBox="0 0 9 9"><path d="M 1 1 L x y"/></svg>',
    "50 MB path": f'<svg {SVG} viewBox="0 0 9 9"><path d="M0 0' + " L1 1" * 10_000_000 + '"/></svg>',
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_input_is_refused_quickly(tok, case: str) -> None:
    start = time.perf_counter()
    with pytest.raises(MediaError):
        tok.encode(HOSTILE[case])
    assert time.perf_counter() - start < 5  # a generous bound: refusals take milliseconds


def test_commands_encode_decode_and_fit_segments(tmp_path: Path, capsys) -> None:
    from zoo.cli import main as zoo_main

    folder = tmp_path / "icons"
    folder.mkdir()
    for i, svg in enumerate(corpus_of_paths()[:6] + [SCENE]):
        (folder / f"{i}.svg").write_text(svg, encoding="utf-8")
    (folder / "bad.svg").write_text("<svg", encoding="utf-8")
    assert zoo_main(["encode", "hivg", str(folder), "-o", str(tmp_path / "tok")]) == 1  # one bad file
    assert "bad.svg" in capsys.readouterr().err
    assert len(list((tmp_path / "tok").glob("*.safetensors"))) == 7
    assert zoo_main(["decode", "hivg", str(tmp_path / "tok"), "-o", str(tmp_path / "out")]) == 0
    outputs = sorted((tmp_path / "out").glob("*.svg"))
    assert len(outputs) == 7 and all(zoo.io.read_svg(p) for p in outputs)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"svg": s}) + "\n" for s in corpus_of_paths()), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = zoo_main(["fit-segments", "hivg", str(corpus), "-o", str(tmp_path / "fit"), "--merges", "10"])
    assert code == 0 and "on 30 SVG(s)" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held_out = ["fit-segments", "hivg", str(corpus), "-o", str(tmp_path / "fit_train"), "--merges", "10"]
        assert zoo_main([*held_out, "--split", "train", "--val-fraction", "0.5"]) == 0
    trained_on = int(capsys.readouterr().out.split(" on ")[1].split()[0])
    assert 5 < trained_on < 25  # the validation half is left out
    fitted = zoo.load(tmp_path / "fit")
    assert fitted.num_segments > 0
    tokens = fitted.encode(corpus_of_paths()[0])
    assert torch.equal(torch.tensor(fitted.expand_segments(tokens.ids[0].tolist())),
                       torch.tensor(fitted.encode_atomic(corpus_of_paths()[0])))  # fmt: skip
