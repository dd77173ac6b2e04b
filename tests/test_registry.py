"""Registry, factory and info: names, sizes, parameter counts on the meta device."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import UnknownModelError


def test_list_models_filters() -> None:
    assert {"vq16", "vq16_tiny"} <= set(zoo.list_models())
    assert zoo.list_models("vq16*", modality="image") == ["vq16", "vq16_tiny"]
    assert zoo.list_models(modality="audio") == [] or all(
        zoo.info(n)["modality"] == "audio" for n in zoo.list_models(modality="audio")
    )
    assert "vq16.llamagen_in1k" in zoo.list_models(pretrained=True)


def test_unknown_names_explain_themselves() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'vq17'.*vq16"):
        zoo.create("vq17")
    with pytest.raises(UnknownModelError, match="no pretrained weights.*vq16_tiny"):
        zoo.get_pretrained_cfg("vq16_tiny")
    with pytest.raises(TypeError, match="no argument.*codebook_sise"):
        zoo.create("vq16_tiny", codebook_sise=12)


def test_bare_name_resolves_to_default_tag() -> None:
    name, cfg = zoo.get_pretrained_cfg("vq16")
    assert name == "vq16.llamagen_in1k"
    assert cfg.hf_hub_id == "FoundationVision/LlamaGen" and cfg.converter == "convert_llamagen"


def test_create_overrides_and_config_capture() -> None:
    model = zoo.create("vq16_tiny", codebook_size=64)
    assert model.arch == "vq16_tiny"
    assert model.config["codebook_size"] == 64
    assert model.codebook_sizes == (64,)
    rebuilt = type(model)(**model.config)
    assert rebuilt.config == model.config


def test_info_paper_size_on_meta() -> None:
    facts = zoo.info("vq16")
    # LlamaGen's VQModel(VQ_16) has 71,883,403 parameters (upstream code, commit ce98ec4).
    assert facts["parameters"] == 71_883_403
    assert facts["tokens"]["grid"] == [16, 16] and facts["tokens"]["tokens_per_item"] == 256
    assert facts["tokens"]["codebook_sizes"] == [16384] and facts["tokens"]["bits_per_token"] == 14.0
    assert facts["input"]["resolution"] == 256
    assert facts["sizes"] == ["vq16", "vq16_tiny"]
    pre = facts["pretrained"]["vq16.llamagen_in1k"]
    assert pre["license"] == "mit" and pre["paper"] == "arXiv:2406.06525"


def test_paper_size_is_never_allocated_by_info() -> None:
    with torch.device("meta"):
        model = zoo.create("vq16")
    assert all(p.is_meta for p in model.parameters())


def test_every_family_has_a_model_card_that_renders_for_each_size() -> None:
    from pathlib import Path

    from zoo.cards import render_card

    cards = Path(__file__).resolve().parents[1] / "model_cards"
    for name in zoo.list_models():
        family = zoo.info(name)["family"]
        assert (cards / f"{family}.md").is_file(), f"{name}: no model_cards/{family}.md"
        with torch.device("meta"):
            model = zoo.create(name)
        text = render_card(model, repo_id=f"me/{name}")
        assert text.startswith("---\n") and f"me/{name}" in text and "{{" not in text, name
