"""`zoo encode` / `zoo decode` under a user's mistakes: one line naming the file or option, a non-zero
exit status, the rest of the batch kept, and nothing silently overwritten or decoded by the wrong model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.io import write_image
from zoo.tokens import Tokens


@pytest.fixture
def setup(tmp_path: Path, photos: torch.Tensor) -> dict[str, Path]:
    folder = tmp_path / "photos"
    for i, photo in enumerate(photos[:3]):
        write_image(folder / f"p{i}.png", photo)
    torch.manual_seed(0)
    zoo.create("vq16_tiny").eval().save_pretrained(tmp_path / "vq_a")
    torch.manual_seed(1)
    zoo.create("vq16_tiny").eval().save_pretrained(tmp_path / "vq_b")
    torch.manual_seed(2)
    zoo.create("kl16_tiny").eval().save_pretrained(tmp_path / "kl")
    return {
        "photos": folder,
        "a": tmp_path / "vq_a",
        "b": tmp_path / "vq_b",
        "kl": tmp_path / "kl",
        "tmp": tmp_path,
    }


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_a_second_run_never_overwrites_silently_and_skip_existing_resumes(setup, capsys) -> None:
    out = setup["tmp"] / "tokens"
    assert run(capsys, "encode", setup["a"], setup["photos"], "-o", out)[0] == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = run(capsys, "encode", setup["b"], setup["photos"], "-o", out)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # nothing replaced
    (out / "p1.tokens.safetensors").unlink()  # an interrupted batch: resume it
    code, err = run(capsys, "encode", setup["a"], setup["photos"], "-o", out, "--skip-existing")
    assert code == 0 and "encoded 1 file(s), 0 failed, 2 kept" in err
    assert run(capsys, "encode", setup["b"], setup["photos"], "-o", out, "--overwrite")[0] == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} != first
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_decoding_with_other_weights_or_another_model_is_refused_unless_forced(setup, capsys) -> None:
    tokens = setup["tmp"] / "tokens"
    assert run(capsys, "encode", setup["a"], setup["photos"] / "p0.png", "-o", tokens)[0] == 0
    code, err = run(capsys, "decode", setup["b"], tokens, "-o", setup["tmp"] / "out_b")
    assert code == 1 and "other weights" in err and str(setup["a"]) in err and str(setup["b"]) in err
    code, err = run(capsys, "decode", setup["kl"], tokens, "-o", setup["tmp"] / "out_kl")
    assert code == 1 and "vq16_tiny" in err and "kl16_tiny" in err
    assert run(capsys, "decode", setup["b"], tokens, "-o", setup["tmp"] / "out_f", "--force")[0] == 0
    assert run(capsys, "decode", setup["a"], tokens, "-o", setup["tmp"] / "out_a")[0] == 0


def test_any_per_file_failure_is_one_line_and_the_batch_goes_on(setup, capsys, monkeypatch) -> None:
    tokens = setup["tmp"] / "tokens"
    assert run(capsys, "encode", setup["a"], setup["photos"], "-o", tokens)[0] == 0
    # a truncated .npz token file (BadZipFile) and a model error (RuntimeError) in one batch
    bad = tokens / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    original = zoo.models.image.vq16.VQ16.decode

    def exploding(self, t: Tokens) -> torch.Tensor:
        if t.meta.get("source_file") == "p1.png":
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
        return original(self, t)

    monkeypatch.setattr(zoo.models.image.vq16.VQ16, "decode", exploding)
    code, err = run(capsys, "decode", setup["a"], tokens, "-o", setup["tmp"] / "out")
    assert code == 1
    assert "bad.npz: not a readable token file (BadZipFile" in err
    assert "p1.tokens.safetensors: RuntimeError: CUDA out of memory." in err and "Tried" not in err
    assert "decoded 2 file(s), 2 failed" in err and "Traceback" not in err
    assert sorted(p.name for p in (setup["tmp"] / "out").iterdir()) == ["p0.png", "p2.png"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resolution", "-32"], "--resolution -32: must be a positive"),
        (["--resolution", "big"], "--resolution big: expected a positive integer"),
        (["--channels", "Fz,Cz,Fz"], "--channels names Fz more than once"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--device", "potato"], "--device potato: not a device name"),
        (["--revision", "main"], "is a local folder, which has no revisions"),
    ],
)
def test_bad_options_are_one_line_errors(setup, capsys, argv, message) -> None:
    if argv[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    code, err = run(capsys, "encode", setup["a"], setup["photos"], "-o", setup["tmp"] / "t", *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_misplaced_options_and_empty_inputs_are_errors(setup, capsys) -> None:
    file_out = setup["tmp"] / "taken"
    file_out.write_text("x")
    code, err = run(capsys, "encode", setup["a"], setup["photos"], "-o", file_out)
    assert code == 2 and "exists and is not a directory" in err
    empty = setup["tmp"] / "empty"
    empty.mkdir()
    code, err = run(capsys, "encode", setup["a"], empty, "-o", setup["tmp"] / "t")
    assert code == 2 and "no input files found" in err
    code, err = run(
        capsys, "encode", setup["a"], setup["photos"], "-o", setup["tmp"] / "t", "--channels", "Cz"
    )
    assert code == 2 and "--channels picks EEG channels" in err


def test_an_interrupt_prints_what_was_done(setup, capsys, monkeypatch) -> None:
    calls = []
    original = zoo.models.image.vq16.VQ16.encode

    def interrupting(self, x: torch.Tensor) -> Tokens:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(zoo.models.image.vq16.VQ16, "encode", interrupting)
    out = setup["tmp"] / "tokens"
    code, err = run(capsys, "encode", setup["a"], setup["photos"], "-o", out)
    assert code == 130 and "encoded 1 file(s), 0 failed; interrupted" in err
    assert [p.name for p in out.iterdir()] == ["p0.tokens.safetensors"]


def test_atomic_write_leaves_no_temporary_file_when_interrupted(tmp_path: Path) -> None:
    from zoo._atomic import atomic_path

    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_weights_fingerprint_follows_the_weights() -> None:
    torch.manual_seed(0)
    a = zoo.create("vq16_tiny")
    torch.manual_seed(0)
    same = zoo.create("vq16_tiny")
    first = a.weights_fingerprint()
    assert first == same.weights_fingerprint() and len(first) == 16
    with torch.no_grad():
        next(a.parameters()).mul_(1.5)  # an in-place update (a training step) invalidates the cache
    assert a.weights_fingerprint() != first
    with torch.device("meta"):
        assert zoo.create("vq16").weights_fingerprint()  # no data needed for a meta model


def test_a_file_of_another_modality_is_named_and_eeg_arrays_take_a_rate(tmp_path: Path, capsys) -> None:
    import numpy as np

    zoo.create("biocodec_tiny").eval().save_pretrained(tmp_path / "bio")
    wav = tmp_path / "speech.wav"
    wav.write_bytes(b"RIFF")
    code, err = run(capsys, "encode", tmp_path / "bio", wav, "-o", tmp_path / "t")
    assert code == 1 and "model (eeg) reads" in err and ".edf" in err and "not .wav" in err
    array = tmp_path / "rec.npy"
    np.save(array, np.random.default_rng(0).normal(size=(2, 1300)).astype(np.float32) * 20)
    code, err = run(capsys, "encode", tmp_path / "bio", array, "-o", tmp_path / "t2")
    assert code == 1 and "zoo encode --sample-rate" in err
    assert (
        run(capsys, "encode", tmp_path / "bio", array, "-o", tmp_path / "t3", "--sample-rate", "250")[0] == 0
    )
    assert Tokens.load(tmp_path / "t3" / "rec.tokens.safetensors").grid[0] == 2


def test_an_unwritable_output_and_a_closed_pipe_are_not_tracebacks(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys; from zoo.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "card", "vq16_tiny", "-o", "/proc/zoo-nowhere/README.md"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "zoo card: error: /proc/zoo-nowhere" in done.stderr
    assert "Traceback" not in done.stderr
    # `zoo info ... | head -1`: the reader closes the pipe after one line
    piped = subprocess.run(
        f"{sys.executable} -c '{code}' info vq16 --json | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert piped.stdout == "{\n" and "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr


def test_resize_option_reaches_prepare(setup, capsys) -> None:
    big = setup["tmp"] / "big"
    write_image(big / "wide.png", torch.rand(3, 90, 140))
    assert run(capsys, "encode", setup["a"], big, "-o", setup["tmp"] / "adm")[0] == 0
    assert run(capsys, "encode", setup["a"], big, "-o", setup["tmp"] / "bic", "--resize", "bicubic")[0] == 0
    adm = Tokens.load(setup["tmp"] / "adm" / "wide.tokens.safetensors")
    bic = Tokens.load(setup["tmp"] / "bic" / "wide.tokens.safetensors")
    model = zoo.load(setup["a"])
    x = zoo.io.read_image(big / "wide.png")
    assert torch.equal(adm.ids, model.encode(model.prepare(x)).ids)
    assert torch.equal(bic.ids, model.encode(model.prepare(x, resize="bicubic")).ids)
