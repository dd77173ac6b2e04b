"""TokenBridge: KL-16 + per-channel PTQ; upstream's ids, layout, fitting levels, converter, CLI and Hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mar_layout import mar_kl_shapes
from tokenizer_checks import assert_batch_equals_single_items

import zoo
from zoo.cli import main as zoo_main
from zoo.hub import load_weights
from zoo.io import read_image, write_image
from zoo.models.image.kl16 import KL16
from zoo.models.image.tokenbridge import CHANNEL_ORDER, convert_tokenbridge
from zoo.quantizers import tokenbridge_levels


@pytest.fixture
def tiny() -> zoo.Tokenizer:
    torch.manual_seed(0)
    return zoo.create("tokenbridge_tiny").eval()


def test_paper_size_layout_on_meta() -> None:
    with torch.device("meta"):
        model = zoo.create("tokenbridge")
    assert model.num_parameters() == 66_456_019  # MAR's KL-16: the quantizer has no parameters
    layout = model.token_layout()
    assert layout["grid"] == [16, 16] and layout["tokens_per_item"] == 256 * 16
    assert layout["codebook_sizes"] == [64] * 16 and layout["bits_per_token"] == 96
    assert (
        layout["channel_order"]
        == list(CHANNEL_ORDER)
        == [8, 1, 10, 9, 6, 12, 4, 0, 3, 11, 7, 14, 2, 15, 13, 5]
    )


def upstream_ptq(latents: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's quantize, restated: [-5, 5] onto [-3, 3], argmin over its float32 table, mapped back."""
    levels = tokenbridge_levels(bits)
    u = ((latents + 5) / 10 * 6 - 3).clamp(-3, 3)
    ids = (u[..., None] - levels).abs().argmin(-1)
    return ids, (levels[ids] + 3) / 6 * 10 - 5


def test_ids_are_upstreams_ptq_of_the_scaled_latents(photos) -> None:
    torch.manual_seed(0)
    model = zoo.create("tokenbridge_tiny", bits=6, scale_factor=8.0).eval()  # latents that use the range
    latents = KL16.encode(model, photos).latents
    tokens = model.encode(photos)
    ids, dequant = upstream_ptq(latents, 6)
    assert tokens.ids.shape == (4, 4, 8, 8) and tokens.codebook_sizes == (64,) * 4
    assert torch.equal(tokens.ids, ids) and len(ids.unique()) > 16
    torch.testing.assert_close(model.dequantize(tokens), dequant)
    recon = model.decode(tokens)
    torch.testing.assert_close(recon, model._reconstruct(dequant / 8.0))
    sampled = model.encode(photos, sample=True)
    assert not torch.equal(sampled.ids, tokens.ids)  # upstream's posterior-sample tokenization


def test_batch_equals_single_items_and_bad_tokens(tiny, photos) -> None:
    assert_batch_equals_single_items(tiny, photos)
    tokens = tiny.encode(photos)
    tokens.ids[0, 0, 0, 0] = 16
    with pytest.raises(ValueError, match="outside the codebook"):
        tiny.decode(tokens)


def test_fitted_levels_reproduce_latents_within_the_quantization_error(tiny, photos) -> None:
    latents = KL16.encode(tiny, photos).latents
    fixed_error = (tiny.dequantize(tiny.encode(photos)) - latents).abs()
    tiny.fit_levels([photos[:2], photos[2:]])
    torch.testing.assert_close(tiny.ptq.loc, latents.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    dequant = tiny.dequantize(tiny.encode(photos))
    error = (dequant - latents).abs()
    # Within the clipped range every value lies within its quantization cell: half the widest gap
    # between levels, or the distance from the outermost level to the clip edge.
    levels = tiny.ptq.levels
    cell = torch.maximum(levels.diff().max() / 2, tiny.ptq.std_range - levels[-1])
    step = (2 * cell * tiny.ptq.scale).view(1, -1, 1, 1)
    inside = (latents >= tiny.ptq.low.view(1, -1, 1, 1)) & (latents <= tiny.ptq.high.view(1, -1, 1, 1))
    assert inside.float().mean() > 0.98
    assert bool((error[inside] <= (step / 2).expand_as(error)[inside] + 1e-6).all())
    assert error.mean() < 0.5 * fixed_error.mean()  # the tiny VAE's latents are far narrower than [-5, 5]


def test_fit_levels_command_saves_a_loadable_tokenizer(tiny, photos, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for i, image in enumerate(photos):
        write_image(folder / f"{i}.png", image)
    tiny.save_pretrained(tmp_path / "raw")
    out = tmp_path / "fitted"
    assert (
        zoo_main(["fit-levels", str(tmp_path / "raw"), str(folder), "-o", str(out), "--batch-size", "2"]) == 0
    )
    fitted = zoo.load(out)
    stored = torch.stack([read_image(folder / f"{i}.png") for i in range(4)])  # as 8-bit PNGs hold them
    reference = zoo.load(tmp_path / "raw").fit_levels([stored])
    torch.testing.assert_close(fitted.ptq.low, reference.ptq.low)
    torch.testing.assert_close(fitted.ptq.high, reference.ptq.high)
    assert not torch.equal(fitted.ptq.low, tiny.ptq.low)
    # Round trip through zoo encode / zoo decode with the fitted tokenizer.
    assert zoo_main(["encode", str(out), str(folder), "-o", str(tmp_path / "tokens")]) == 0
    assert zoo_main(["decode", str(out), str(tmp_path / "tokens"), "-o", str(tmp_path / "decoded")]) == 0
    assert len(list((tmp_path / "decoded").glob("*.png"))) == 4
    assert zoo_main(["fit-levels", "vq16_tiny", str(folder), "-o", str(tmp_path / "x")]) == 2


def test_converter_takes_mars_vae_and_adds_the_fixed_ranges() -> None:
    shapes = mar_kl_shapes(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, embed_dim=4)
    upstream = {k: torch.randn(s) * 0.05 for k, s in shapes.items()}
    upstream["loss.logvar"] = torch.zeros(())
    model = zoo.create("tokenbridge_tiny")
    load_weights(model, convert_tokenbridge(upstream, model), "upstream")
    assert torch.equal(model.ptq.low, torch.full((4,), -5.0)) and torch.equal(
        model.ptq.high, torch.full((4,), 5.0)
    )
    with torch.device("meta"):
        paper = zoo.create("tokenbridge")
        full = {k: torch.empty(s, device="meta") for k, s in mar_kl_shapes().items()}
        assert set(convert_tokenbridge(full, paper)) == set(paper.state_dict())


def test_save_load_and_hub_round_trip(hub, tiny, photos) -> None:
    tiny.fit_levels([photos])
    tiny.push_to_hub("tester/tokenbridge-tiny")
    again = zoo.load("tester/tokenbridge-tiny")
    assert torch.equal(again.encode(photos).ids, tiny.encode(photos).ids)
    torch.testing.assert_close(again.decode(tiny.encode(photos)), tiny.decode(tiny.encode(photos)))


def test_training_forward_reports_ptq_usage(photos) -> None:
    model = zoo.create("tokenbridge_tiny").train()
    out = model(photos)
    assert out.ids.shape == (4, 4, 8, 8) and "ptq/usage" in out.stats and "vq/kl" in out.losses


def test_prepare_is_reconstruction_py_centre_crop(tmp_path: Path) -> None:
    """reconstruction.py's ``CenterCropTransform``: PIL box halving while the short side is at least twice
    the target, PIL bicubic to ``round(side * scale)``, centre square at ``(size - S) // 2``, ``ToTensor``;
    computed here with PIL alone, it must equal the zoo's reader + ``prepare`` on 8-bit files."""
    import numpy as np
    from PIL import Image

    def center_crop_transform(image: Image.Image, size: int) -> torch.Tensor:
        while min(image.size) >= 2 * size:
            image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
        scale = size / min(image.size)
        image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
        array = np.asarray(image)
        top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
        crop = array[top : top + size, left : left + size]
        return torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255

    model = zoo.create("tokenbridge_tiny")
    assert model.resize == "adm"
    size = model.resolution
    gen = np.random.default_rng(0)
    for h, w in ((150, 77), (40, 90), (33, 33)):  # halving once, enlarging, square
        yy, xx = np.mgrid[0:h, 0:w]
        array = np.stack([xx * 255 / w, yy * 255 / h, ((xx + 2 * yy) % 23) * 11.0], -1)
        array = np.clip(array + gen.normal(0, 20, array.shape), 0, 255).astype(np.uint8)
        file = tmp_path / f"photo_{h}x{w}.png"
        Image.fromarray(array).save(file)
        wanted = center_crop_transform(Image.open(file).convert("RGB"), size)
        ours = model.prepare(read_image(file))
        assert torch.equal(ours[0], wanted), f"{h}x{w}: max diff {(ours[0] - wanted).abs().max():.4f}"
