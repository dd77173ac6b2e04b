"""Checks every tokenizer's tests share: real training steps, save/load, token files and the Hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import zoo
from zoo.tokens import Tokens


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Small random tensors in an upstream layout (key -> shape), for converter tests."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


def assert_every_parameter_has_a_gradient(model: torch.nn.Module) -> None:
    """After a backward pass, every parameter has a finite gradient: nothing is disconnected by accident."""
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"


def assert_batch_equals_single_items(tiny: zoo.Tokenizer, inputs: torch.Tensor) -> None:
    """Encoding and decoding a batch gives each item what encoding it alone gives: ids exactly,
    continuous latents and decodes to float tolerance."""
    batch = tiny.encode(inputs)
    singles = [tiny.encode(inputs[i : i + 1]) for i in range(len(inputs))]
    if batch.ids is not None:
        assert torch.equal(torch.cat([s.ids for s in singles]), batch.ids)
    if batch.latents is not None:
        latents = torch.cat([s.latents for s in singles])
        torch.testing.assert_close(latents, batch.latents, atol=1e-6, rtol=1e-5)
    decoded = tiny.decode(batch)
    for i, single in enumerate(singles):
        torch.testing.assert_close(tiny.decode(single)[0], decoded[i], atol=1e-5, rtol=1e-5)


def assert_training_reduces_loss(
    model: zoo.Tokenizer,
    inputs: torch.Tensor,
    *,
    steps: int = 40,
    lr: float = 1e-3,
    ratio: float = 0.7,
    reconstruction: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = F.l1_loss,
    optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
    betas: tuple[float, float] = (0.9, 0.999),
    grad_clip: float | None = None,
) -> list[float]:
    """Optimizer steps on real data through ``training_output``: ``reconstruction(recon, inputs)`` (``None``:
    the model scores itself) plus the model's own losses, over its trainable parameters, with optional
    gradient-norm clipping. The last 5 losses must average below ``ratio`` times the first 5."""
    model.train()
    opt = optimizer([p for p in model.parameters() if p.requires_grad], lr=lr, betas=betas)
    losses = []
    for step in range(steps):
        out = model.training_output(inputs, step)
        loss = sum(out.losses.values())
        if reconstruction is not None:
            loss = reconstruction(out.recon, inputs) + loss
        opt.zero_grad()
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < ratio * sum(losses[:5]) / 5, losses
    return losses


def assert_round_trips(
    tmp_path: Path,
    tiny: zoo.Tokenizer,
    images: torch.Tensor,
    *,
    repo_id: str | None = None,
    encode: Callable[[zoo.Tokenizer, torch.Tensor], Tokens] | None = None,
) -> Any:
    """save_pretrained -> zoo.load, token files, and (with ``repo_id``) a push and pinned Hub load all
    reproduce the same tokens and decodes. Returns the Hub commit sha (or None)."""
    encode = encode or (lambda model, x: model.encode(x))
    tiny.eval()
    tiny.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "README.md"}
    loaded = zoo.load(tmp_path / "m")
    assert type(loaded) is type(tiny) and loaded.config == tiny.config and not loaded.training
    tokens = encode(tiny, images)
    assert encode(loaded, images).equal(tokens)
    assert torch.equal(loaded.decode(tokens), tiny.decode(tokens))
    saved = tokens.save(tmp_path / "t.safetensors")
    assert torch.equal(loaded.decode(Tokens.load(saved or tmp_path / "t.safetensors")), tiny.decode(tokens))
    if repo_id is None:
        return None
    sha = tiny.push_to_hub(repo_id)
    from_hub = zoo.load(f"hf-hub:{repo_id}@{sha}")
    assert from_hub.revision == sha and encode(from_hub, images).equal(tokens)
    return sha
