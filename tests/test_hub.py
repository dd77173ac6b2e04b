"""zoo.load / push_to_hub against the loopback Hub: the real huggingface_hub client, nothing mocked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from llamagen_layout import llamagen_vq_shapes

import zoo
from zoo._registry import unregister_pretrained
from zoo.errors import CheckpointError, HubError


@pytest.fixture
def trained(photos) -> zoo.Tokenizer:
    """A tiny VQ-16 after a few real steps, so its outputs are not trivial."""
    model = zoo.create("vq16_tiny").train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    for _ in range(3):
        out = model(photos)
        loss = (out.recon - photos).abs().mean() + sum(out.losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _saved_files(model: zoo.Tokenizer, tmp_path: Path) -> dict[str, bytes]:
    model.save_pretrained(tmp_path / "saved")
    return {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()}


def test_push_then_load_by_repo_id_and_pinned_revision(hub, trained, photos, tmp_path) -> None:
    sha1 = trained.push_to_hub("tester/vq16-tiny")
    assert sha1 == hub.head("tester/vq16-tiny")
    assert set(hub.files("tester/vq16-tiny")) == {"config.json", "model.safetensors", "README.md"}
    assert "library_name: zoo" in hub.files("tester/vq16-tiny")["README.md"].decode()

    loaded = zoo.load("tester/vq16-tiny")
    assert loaded.revision == sha1 and loaded.source == "tester/vq16-tiny"
    expected = trained.decode(trained.encode(photos))
    assert torch.equal(loaded.decode(loaded.encode(photos)), expected)

    # a second push changes main; the pinned first revision still gives the first model
    other = zoo.create("vq16_tiny").eval()
    sha2 = other.push_to_hub("tester/vq16-tiny")
    assert sha2 != sha1
    pinned = zoo.load("tester/vq16-tiny", revision=sha1)
    assert torch.equal(pinned.decode(pinned.encode(photos)), expected)
    also_pinned = zoo.load(f"hf-hub:tester/vq16-tiny@{sha1}")
    assert torch.equal(also_pinned.encode(photos).ids, trained.encode(photos).ids)
    latest = zoo.load("tester/vq16-tiny")
    assert latest.revision == sha2
    assert torch.equal(latest.encode(photos).ids, other.encode(photos).ids)
    tokens = latest.encode(photos)
    assert (tokens.model, tokens.revision) == ("tester/vq16-tiny", sha2)


def test_unknown_repo(hub) -> None:
    with pytest.raises(HubError, match="Hub repo 'tester/absent' not found"):
        zoo.load("tester/absent")


def test_missing_file(hub, trained, tmp_path) -> None:
    files = _saved_files(trained, tmp_path)
    hub.create_repo("tester/no-weights")
    hub.put_files("tester/no-weights", {"config.json": files["config.json"]})
    with pytest.raises(HubError, match="tester/no-weights@.* has no file 'model.safetensors'"):
        zoo.load("tester/no-weights")


def test_unknown_revision(hub, trained) -> None:
    trained.push_to_hub("tester/revs")
    with pytest.raises(HubError, match="revision 'f{40}' not found in Hub repo 'tester/revs'"):
        zoo.load("tester/revs", revision="f" * 40)
    with pytest.raises(HubError, match="revision 'nightly' not found"):
        zoo.load("tester/revs", revision="nightly")


def test_offline_warm_cache_works_and_cold_cache_fails_fast(
    hub, trained, photos, tmp_path, monkeypatch
) -> None:
    trained.push_to_hub("tester/offline")
    warm = tmp_path / "cache"
    zoo.load("tester/offline", cache_dir=warm)
    hub.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = zoo.load("tester/offline", cache_dir=warm)
    assert torch.equal(offline.encode(photos).ids, trained.encode(photos).ids)
    start = time.perf_counter()
    with pytest.raises(HubError, match="not in the local cache and offline mode"):
        zoo.load("tester/offline", cache_dir=tmp_path / "cold")
    assert time.perf_counter() - start < 5
    assert hub.requests == [], "offline mode must not touch the network"


def test_truncated_and_corrupted_weights(hub, trained, tmp_path) -> None:
    files = _saved_files(trained, tmp_path)
    hub.create_repo("tester/broken")
    hub.put_files("tester/broken", files)
    hub.corrupt_file(
        "tester/broken",
        "model.safetensors",
        files["model.safetensors"][: len(files["model.safetensors"]) // 2],
    )
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt or truncated checkpoint"):
        zoo.load("tester/broken")
    hub.corrupt_file("tester/broken", "model.safetensors", b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        zoo.load("tester/broken")


def test_non_finite_weights(hub, trained, tmp_path) -> None:
    trained.quantizer.codebook.data[0, 0] = float("nan")
    trained.push_to_hub("tester/nan")
    with pytest.raises(CheckpointError, match="'quantizer.codebook' contains NaN"):
        zoo.load("tester/nan")


def test_unknown_architecture(hub, trained, tmp_path) -> None:
    files = _saved_files(trained, tmp_path)
    config = json.loads(files["config.json"])
    config["architecture"] = "vq99"
    hub.create_repo("tester/future")
    hub.put_files("tester/future", {**files, "config.json": json.dumps(config).encode()})
    with pytest.raises(CheckpointError, match="names unknown architecture 'vq99'"):
        zoo.load("tester/future")
    config["architecture"] = "vq16_tiny"
    config["model_args"]["no_such_arg"] = 1
    hub.put_files("tester/future", {"config.json": json.dumps(config).encode()})
    with pytest.raises(CheckpointError, match="model_args do not fit 'vq16_tiny'"):
        zoo.load("tester/future")


def test_mismatched_shapes(hub, trained, tmp_path) -> None:
    files = _saved_files(trained, tmp_path)
    config = json.loads(files["config.json"])
    config["model_args"]["codebook_size"] = 128
    hub.create_repo("tester/mismatch")
    hub.put_files("tester/mismatch", {**files, "config.json": json.dumps(config).encode()})
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches: quantizer.codebook: checkpoint \[256, 8\] vs model \[128, 8\]",
    ):
        zoo.load("tester/mismatch")


def test_registered_zoo_format_weights_pinned_to_a_revision(hub, trained, photos) -> None:
    sha = trained.push_to_hub("zoo-test/vq16_tiny.photos")
    zoo.create("vq16_tiny").push_to_hub("zoo-test/vq16_tiny.photos")  # main moves on
    zoo.register_pretrained(
        "vq16_tiny.photos", zoo.PretrainedCfg(hf_hub_id="zoo-test/vq16_tiny.photos", revision=sha)
    )
    try:
        assert "vq16_tiny.photos" in zoo.list_models(pretrained=True)
        model = zoo.load("vq16_tiny")  # the bare name resolves to the default tag
        assert model.revision == sha and model.source == "vq16_tiny.photos"
        assert torch.equal(model.encode(photos).ids, trained.encode(photos).ids)
    finally:
        unregister_pretrained("vq16_tiny.photos")


def test_registered_upstream_checkpoint_goes_through_the_converter(hub, photos) -> None:
    """A Hub repo holding LlamaGen's own `.pt` layout loads through `convert_llamagen`."""
    shapes = llamagen_vq_shapes(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, z_channels=32, codebook_size=256)
    upstream = {k: torch.randn(s) * 0.05 for k, s in shapes.items()}
    buffer = io.BytesIO()
    torch.save({"model": upstream, "args": __import__("argparse").Namespace(lr=1e-4)}, buffer)
    hub.create_repo("upstream/llamagen-tiny")
    hub.put_files("upstream/llamagen-tiny", {"vq_tiny.pt": buffer.getvalue()})
    zoo.register_pretrained(
        "vq16_tiny.upstream",
        zoo.PretrainedCfg(
            hf_hub_id="upstream/llamagen-tiny",
            filename="vq_tiny.pt",
            converter="convert_llamagen",
            checkpoint_key="model",
        ),
    )
    try:
        with pytest.raises(
            CheckpointError, match="does not match VQ16.*unexpected keys: quantizer.initted|missing keys"
        ):
            zoo.load("vq16_tiny.upstream")  # the tiny default adds k-means/usage buffers upstream lacks
        from zoo._registry import get_entry

        entry = get_entry("vq16_tiny")
        original = entry.fn
        entry.fn = lambda **kw: original(**{"kmeans_init": False, "restart_threshold": 0.0, **kw})
        try:
            model = zoo.load("vq16_tiny.upstream")
        finally:
            entry.fn = original
        codebook = torch.nn.functional.normalize(upstream["quantize.embedding.weight"], dim=-1)
        torch.testing.assert_close(model.quantizer.codes(), codebook)
        assert model.decode(model.encode(photos)).shape == photos.shape
    finally:
        unregister_pretrained("vq16_tiny.upstream")


def test_checkpoint_without_expected_key(hub) -> None:
    buffer = io.BytesIO()
    torch.save({"state_dict": {}}, buffer)
    hub.create_repo("upstream/odd")
    hub.put_files("upstream/odd", {"vq.pt": buffer.getvalue()})
    zoo.register_pretrained(
        "vq16_tiny.odd",
        zoo.PretrainedCfg(
            hf_hub_id="upstream/odd", filename="vq.pt", converter="convert_llamagen", checkpoint_key="model"
        ),
    )
    try:
        with pytest.raises(CheckpointError, match="vq.pt: has no 'model' entry"):
            zoo.load("vq16_tiny.odd")
    finally:
        unregister_pretrained("vq16_tiny.odd")


def test_pickles_with_code_are_refused(tmp_path, trained) -> None:
    trained.save_pretrained(tmp_path / "m")
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "hook": subprocess.Popen}, evil)
    from zoo.hub import read_state_dict

    with pytest.raises(
        CheckpointError, match="evil.pt: corrupt or truncated checkpoint.*Unpickl|weights_only"
    ):
        read_state_dict(evil, "model")


def test_local_directory_errors(tmp_path) -> None:
    with pytest.raises(HubError, match="no such directory"):
        zoo.load(tmp_path / "nowhere" / "model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        zoo.load(tmp_path / "empty")


def test_push_cli_and_fresh_process_load(hub, trained, tmp_path) -> None:
    trained.save_pretrained(tmp_path / "export")
    env = {**__import__("os").environ, "ZOO_HF_ENDPOINT": hub.url}
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "push", str(tmp_path / "export"), "tester/cli-push"],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert hub.head("tester/cli-push") in done.stdout
    model = zoo.load("tester/cli-push")
    assert model.config == trained.config


def test_a_tag_not_hosted_on_the_hub_explains_and_takes_the_manual_route(tmp_path, photos) -> None:
    """An off-Hub tag says how to load it by hand, and `zoo.load_upstream` converts that file through the
    tag's converter and checkpoint key; bad files are named, not unpickled blindly."""
    zoo.register_pretrained(
        "vq16_tiny.offhub",
        zoo.PretrainedCfg(
            hf_hub_id=None,
            filename="ckpt.pt",
            converter="convert_llamagen",
            checkpoint_key=("ema", "model"),
            description="Drive only",
        ),
    )
    try:
        with pytest.raises(
            HubError,
            match=r"not hosted on the Hugging Face Hub \(Drive only\).*ckpt\.pt.*zoo\.load_upstream\('vq16_tiny\.offhub'",
        ):
            zoo.load("vq16_tiny.offhub")
        shapes = llamagen_vq_shapes(
            ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, z_channels=32, codebook_size=256
        )
        upstream = {k: torch.randn(s) * 0.05 for k, s in shapes.items()}
        torch.save(
            {"model": upstream, "args": __import__("argparse").Namespace(lr=1e-4)}, tmp_path / "ckpt.pt"
        )
        # the tiny default adds k-means/usage buffers upstream lacks: overrides build the upstream variant
        model = zoo.load_upstream(
            "vq16_tiny.offhub", tmp_path / "ckpt.pt", kmeans_init=False, restart_threshold=0.0
        )
        assert not model.training and model.source == "vq16_tiny.offhub (ckpt.pt)"
        torch.testing.assert_close(model.quantizer.codebook, upstream["quantize.embedding.weight"])
        model.save_pretrained(tmp_path / "converted")
        assert torch.equal(zoo.load(tmp_path / "converted").encode(photos).ids, model.encode(photos).ids)
        with pytest.raises(CheckpointError, match=r"missing \(download ckpt\.pt"):
            zoo.load_upstream(
                "vq16_tiny.offhub", tmp_path / "nope.pt", kmeans_init=False, restart_threshold=0.0
            )
        (tmp_path / "cut.pt").write_bytes((tmp_path / "ckpt.pt").read_bytes()[:5000])
        with pytest.raises(CheckpointError, match=r"cut\.pt: corrupt or truncated"):
            zoo.load_upstream(
                "vq16_tiny.offhub", tmp_path / "cut.pt", kmeans_init=False, restart_threshold=0.0
            )
        torch.save({"weights": upstream}, tmp_path / "other.pt")
        with pytest.raises(CheckpointError, match=r"has no 'ema' or 'model' entry"):
            zoo.load_upstream(
                "vq16_tiny.offhub", tmp_path / "other.pt", kmeans_init=False, restart_threshold=0.0
            )
    finally:
        unregister_pretrained("vq16_tiny.offhub")
