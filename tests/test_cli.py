"""The `zoo` command over real photos, through the loopback Hub; bad files are skipped, not fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.io import read_image, write_image
from zoo.tokens import Tokens


@pytest.fixture
def photo_dir(tmp_path, photos):
    folder = tmp_path / "photos"
    for i, photo in enumerate(photos):
        write_image(folder / f"photo{i}.png", photo)
    # a larger, non-square real photo: resized and centre-cropped to the model's resolution on encode
    big = torch.nn.functional.interpolate(photos[:1], size=(48, 72), mode="bilinear")[0]
    write_image(folder / "wide.jpg", big)
    return folder


@pytest.fixture
def published(hub, photos) -> zoo.Tokenizer:
    model = zoo.create("vq16_tiny").eval()
    model.push_to_hub("tester/cli-vq")
    return model


def test_list_and_info(capsys) -> None:
    assert main(["list", "vq16*"]) == 0
    assert capsys.readouterr().out.split() == ["vq16", "vq16_tiny"]
    assert main(["list", "--pretrained"]) == 0
    assert "vq16.llamagen_in1k" in capsys.readouterr().out
    assert main(["info", "vq16", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["parameters"] == 71_883_403
    assert main(["info", "vq16"]) == 0
    assert "71,883,403" in capsys.readouterr().out
    assert main(["info", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_encode_decode_round_trip_skips_bad_files(published, photo_dir, tmp_path, photos, capsys) -> None:
    (photo_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    tokens_dir, out_dir = tmp_path / "tokens", tmp_path / "out"
    code = main(
        [
            "encode",
            "tester/cli-vq",
            str(photo_dir / "*.png"),
            str(photo_dir / "wide.jpg"),
            str(photo_dir / "missing.png"),
            "-o",
            str(tokens_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "skipped" in err and "broken.png" in err and "missing.png" in err
    assert "encoded 5 file(s), 2 failed" in err
    written = sorted(p.name for p in tokens_dir.iterdir())
    assert written == [f"photo{i}.tokens.safetensors" for i in range(4)] + ["wide.tokens.safetensors"]

    tokens = Tokens.load(tokens_dir / "photo0.tokens.safetensors")
    assert tokens.ids.shape == (1, 8, 8) and tokens.model == "tester/cli-vq"
    assert tokens.revision is not None
    # the CLI's tokens equal the Python API's on the same (PNG round-tripped) image
    x = published.prepare(read_image(photo_dir / "photo0.png"))
    assert torch.equal(published.encode(x).ids, tokens.ids)

    assert main(["decode", "tester/cli-vq", str(tokens_dir), "-o", str(out_dir)]) == 0
    images = sorted(p.name for p in out_dir.iterdir())
    assert images == [f"photo{i}.png" for i in range(4)] + ["wide.png"]
    decoded = read_image(out_dir / "photo0.png")
    expected = published.decode(tokens)[0].clamp(0, 1)
    assert (decoded - expected).abs().max() <= 1 / 255 + 1e-6  # only 8-bit rounding
    assert read_image(out_dir / "wide.png").shape == (3, 32, 32)


def test_decode_reports_corrupt_token_files(published, tmp_path, capsys) -> None:
    good = published.encode(torch.rand(1, 3, 32, 32))
    good.save(tmp_path / "good.tokens.safetensors")
    (tmp_path / "bad.tokens.safetensors").write_bytes(b"garbage")
    code = main(
        ["decode", "tester/cli-vq", str(tmp_path / "*.tokens.safetensors"), "-o", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 1 and "bad.tokens.safetensors" in err and "not a readable token file" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


def test_native_resolution_keeps_size(published, photo_dir, tmp_path) -> None:
    assert (
        main(
            [
                "encode",
                "tester/cli-vq",
                str(photo_dir / "wide.jpg"),
                "-o",
                str(tmp_path / "t"),
                "--resolution",
                "native",
            ]
        )
        == 0
    )
    assert Tokens.load(tmp_path / "t" / "wide.tokens.safetensors").grid == (12, 18)


def test_card_for_directory_and_name(tmp_path, capsys) -> None:
    zoo.create("vq16_tiny").save_pretrained(tmp_path / "m", card=False)
    assert (
        main(["card", str(tmp_path / "m"), "-o", str(tmp_path / "m" / "README.md"), "--repo-id", "me/x"]) == 0
    )
    text = (tmp_path / "m" / "README.md").read_text()
    assert text.startswith("---\n") and "library_name: zoo" in text and 'zoo.load("me/x")' in text
    assert main(["card", "vq16"]) == 0
    out = capsys.readouterr().out
    assert "71,883,403" in out and "arxiv:2406.06525" in out


def test_console_script_entry_point(published, photo_dir, tmp_path, hub) -> None:
    env = {**os.environ, "ZOO_HF_ENDPOINT": hub.url}
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "encode", "tester/cli-vq", str(photo_dir), "-o", str(tmp_path / "t")],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "t").glob("*.tokens.safetensors"))) == 5


def test_eeg_encode_picks_channels_and_decode_restores_the_recording(shared_data, tmp_path, capsys) -> None:
    """`zoo encode --channels` on real EEG of another rate and montage; a file with a saturated status
    channel is reported by channel name; `zoo decode` writes the recording back with its names and units."""
    from zoo.io import read_eeg

    model_dir = tmp_path / "biocodec"
    zoo.create("biocodec_tiny").eval().save_pretrained(model_dir)
    edf = shared_data / "eeg/mne_testing/EDF/test_edf_overlapping_annotations.edf"
    bdf = shared_data / "eeg/eeglab/test.bdf"
    tokens_dir, out_dir = tmp_path / "tokens", tmp_path / "out"
    code = main(["encode", str(model_dir), str(edf), str(bdf), "-o", str(tokens_dir)])
    err = capsys.readouterr().err
    assert code == 1 and "test.bdf" in err and "Status: stair-step" in err
    channels = ["Cz", "fc3", "Pz.."]  # matched loosely; the recording's names come back
    assert (
        main(
            [
                "encode",
                str(model_dir),
                str(edf),
                "--channels",
                ",".join(channels),
                "-o",
                str(tokens_dir),
                "--overwrite",
            ]
        )
        == 0
    )
    tokens = Tokens.load(tokens_dir / "test_edf_overlapping_annotations.tokens.safetensors")
    names = ["Cz..", "Fc3.", "Pz.."]
    assert tokens.grid[0] == 3 and tokens.meta["channel_names"] == names
    assert set(tokens.side) == {"offset", "gain"}
    assert main(["decode", str(model_dir), str(tokens_dir), "-o", str(out_dir)]) == 0
    decoded = read_eeg(out_dir / "test_edf_overlapping_annotations.npz")
    source = read_eeg(edf).pick(channels).resample(250.0)
    assert decoded.channel_names == names and decoded.sample_rate == 250.0
    assert decoded.data.shape == source.data.shape
    # an untrained codec, but the per-channel offset and gain put the output in the recording's units
    torch.testing.assert_close(
        decoded.data.mean(1), source.data.mean(1), atol=float(source.data.std()), rtol=0
    )
