"""The parity command's machinery, without any upstream checkout (CI has none): importing from a checkout
and recording the files, stubs for training-only dependencies, the comparison, the card section, and one
whole run of the command with an adapter whose "upstream" is a small checkout written here."""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import parity
import upstream_parity
from parity import common


def write_checkout(root: Path) -> Path:
    """A tiny "upstream repository": a package that imports a training-only logger at top level."""
    (root / "fakenet").mkdir(parents=True)
    (root / "fakenet" / "__init__.py").write_text("")
    (root / "fakenet" / "model.py").write_text(
        textwrap.dedent(
            """
            import torch
            import zoo_missing_logger  # training only

            def encode(x):
                return (x * 4).round().long()
            """
        )
    )
    (root / "unused.py").write_text("raise RuntimeError('never imported')\n")
    return root


def test_imports_record_the_checkout_files_and_stub_missing_training_deps(tmp_path: Path) -> None:
    root = write_checkout(tmp_path / "up")
    with common.upstream_imports(root, stubs=["zoo_missing_logger"], keep=False) as log:
        from fakenet import model

        assert model.encode(torch.tensor([0.26])).item() == 1
        stub = sys.modules["zoo_missing_logger"]
        with pytest.raises(RuntimeError, match="stub"):
            stub.Logger()
    assert log.files == {"fakenet/__init__.py", "fakenet/model.py"}
    # keep=False leaves nothing behind for the next checkout
    assert "fakenet" not in sys.modules and "zoo_missing_logger" not in sys.modules
    assert str(root.resolve()) not in sys.path


def test_an_importable_dependency_is_never_stubbed(tmp_path: Path) -> None:
    with common.upstream_imports(write_checkout(tmp_path / "up"), stubs=["json"], keep=False):
        assert sys.modules["json"] is json


def test_compare_reports_equal_ids_and_largest_differences() -> None:
    a = common.Output(ids=torch.tensor([[1, 2, 3, 4]]), latent=torch.zeros(2, 3), decoded=torch.ones(5))
    b = common.Output(
        ids=torch.tensor([[1, 2, 0, 4]]), latent=torch.full((2, 3), 1e-3), decoded=torch.ones(5)
    )
    row = common.compare(Path("x.wav"), a, 1.0, b, 2.0)
    assert row.ids_equal == pytest.approx(75.0)
    assert row.latent_diff == pytest.approx(1e-3)
    assert row.decode_diff == 0.0
    assert row.time_ratio == pytest.approx(2.0)
    # ids of different sizes are 0 % equal, said in the note, never broadcast
    short = common.compare(Path("x.wav"), a, 1.0, common.Output(ids=torch.tensor([[1, 2, 3]])), 1.0)
    assert short.ids_equal == 0.0 and "differ" in short.note
    # further id streams count towards the worst case
    extra = common.compare(
        Path("x.wav"),
        common.Output(ids=a.ids, extra={"semantic": torch.tensor([1, 1])}),
        1.0,
        common.Output(ids=a.ids, extra={"semantic": torch.tensor([1, 0])}),
        1.0,
    )
    assert extra.ids_equal == pytest.approx(50.0) and "semantic ids 50.00 %" in extra.note
    # a column whose scale random weights make arbitrary is reported relative to upstream's magnitude
    big = common.Output(decoded=torch.tensor([2e5, -1e5], dtype=torch.float64))
    near = common.Output(decoded=torch.tensor([2e5 + 0.2, -1e5], dtype=torch.float64))
    assert common.compare(Path("x.png"), big, 1.0, near, 1.0).decode_diff == pytest.approx(0.2, rel=1e-3)
    rel = common.compare(Path("x.png"), big, 1.0, near, 1.0, relative=(False, True))
    assert rel.decode_diff == pytest.approx(1e-6, rel=1e-3) and "relative" in rel.note


def test_recorded_commit_is_read_from_the_registry_string() -> None:
    assert common.recorded_commit("https://github.com/a/b @ 5cf440d (file x)") == "5cf440d"
    assert common.recorded_commit("https://github.com/a/b") is None


def test_card_section_is_inserted_once_then_replaced(tmp_path: Path) -> None:
    card = tmp_path / "m.md"
    card.write_text("# m\n\n## Results\n\nx\n\n## Provenance\n\n- here\n")
    upstream_parity.write_card(card, "first")
    upstream_parity.write_card(card, "second")
    text = card.read_text()
    assert text.count("## Upstream parity") == 1 and "second" in text and "first" not in text
    assert text.index("## Upstream parity") < text.index("## Provenance")


def test_every_adapter_names_a_registered_tag_with_a_recorded_commit_and_a_card() -> None:
    import zoo

    names = parity.available()
    assert {"vq16", "kl16", "restok", "retok", "wavtokenizer", "cat", "reasoningcodec", "sqcodec"} <= set(
        names
    )
    assert {"tfm_tokenizer", "biocodec"} <= set(names)
    for name in names:
        cls = parity.adapter_class(name)  # importing an adapter must not import upstream code
        # the registry records the commit checked against; a model without weights (HiVG) names its own
        upstream = zoo.get_pretrained_cfg(cls.tag)[1].upstream if cls.tag else cls.upstream_ref
        assert common.recorded_commit(upstream), f"{name}: no recorded upstream commit"
        assert (ROOT / "model_cards" / f"{cls.card or name}.md").is_file(), name
        assert cls.upstream_files, f"{name}: list the upstream files the adapter imports"


class FakeAdapter(common.Adapter):
    """'Upstream' is the checkout written by write_checkout; the 'zoo side' rounds the same way except
    for one value, so the command must report less than 100 %."""

    model = "vq16_tiny"
    tag = "vq16.llamagen_in1k"
    card = "fake"
    modality = "image"
    upstream_files = ("fakenet/model.py",)
    stubs = ("zoo_missing_logger",)

    def build(self) -> tuple[object, object]:
        with self.imports():
            from fakenet import model

        return model, None

    def files(self, data: Path, limit: int) -> list[Path]:
        return [Path("a.png"), Path("b.png")][:limit]

    def run_upstream(self, upstream_model: object, path: Path) -> common.Output:
        return common.Output(ids=upstream_model.encode(torch.linspace(0, 1, 8)))

    def run_zoo(self, zoo_model: object, path: Path) -> common.Output:
        ids = (torch.linspace(0, 1, 8) * 4).round().long()
        if path.name == "b.png":
            ids[0] = 3
        return common.Output(ids=ids)


def test_the_command_runs_an_adapter_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_checkout(tmp_path / "up")
    module = types.ModuleType("parity.fake")
    module.ADAPTERS = {"fake": FakeAdapter}
    monkeypatch.setitem(sys.modules, "parity.fake", module)
    monkeypatch.setitem(parity.MODULES, "fake", ("fake",))
    monkeypatch.setattr(upstream_parity, "REPO_ROOT", tmp_path)
    (tmp_path / "model_cards").mkdir()
    (tmp_path / "model_cards" / "fake.md").write_text("# fake\n\n## Provenance\n")
    out = tmp_path / "rows.json"
    try:
        code = upstream_parity.main(
            ["fake", "--upstream", str(root), "--json", str(out), "--card", "--threads", "1"]
        )
    finally:
        sys.path[:] = [p for p in sys.path if p != str(root.resolve())]
        for name in [m for m in sys.modules if m == "fakenet" or m.startswith("fakenet.")]:
            del sys.modules[name]
        sys.modules.pop("zoo_missing_logger", None)
    assert code == 0
    printed = capsys.readouterr().out
    assert "not a git work tree" in printed and "`fakenet/model.py`" in printed
    result = json.loads(out.read_text())
    assert [r["ids_equal"] for r in result["rows"]] == [100.0, 87.5]
    assert result["summary"]["min_ids_equal"] == 87.5
    card = (tmp_path / "model_cards" / "fake.md").read_text()
    assert "| b.png | 87.50 % |" in card and "Rerun: `python benchmarks/upstream_parity.py fake" in card


def test_training_without_dropout_zeroes_every_rate_and_restores_them() -> None:
    """Upstream's teacher-forced branch runs in train mode with no dropout; the net comes back as it was."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.3))
    net.label_drop_prob = 0.1
    net.eval()
    with common.training_without_dropout(net, [(net, "label_drop_prob")]):
        assert net.training and net[1].p == 0.0 and net.label_drop_prob == 0.0
        x = torch.ones(64, 2)
        assert torch.equal(net(x), net[0](x))  # nothing dropped in train mode
    assert not net.training and net[1].p == 0.3 and net.label_drop_prob == 0.1
