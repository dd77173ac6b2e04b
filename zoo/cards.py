"""Model cards: ``README.md`` files rendered from ``model_cards/<family>.md`` templates.

Templates are Jinja (huggingface_hub's ``ModelCard.from_template``); their YAML header comes from
``ModelCardData`` (license, library name, tags, datasets, metrics). A family without a template
uses ``model_cards/default.md``; outside a source checkout a built-in copy of it is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._registry import family_entries, get_entry
from .model import ZooModel

CARDS_DIR = Path(__file__).resolve().parent.parent / "model_cards"

_FALLBACK = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

| | |
|---|---|
| architecture | `{{ arch }}` |
| modality | {{ modality }} |
| parameters | {{ parameters }} |
{% for k, v in layout.items() %}| {{ k }} | {{ v }} |
{% endfor %}
"""


def template_path(family: str) -> Path | None:
    for name in (f"{family}.md", "default.md"):
        path = CARDS_DIR / name
        if path.is_file():
            return path
    return None


def card_variables(model: ZooModel, **extra: Any) -> dict[str, Any]:
    entry = get_entry(model.arch or "")
    pretrained = next(iter(entry.pretrained.values()), None) if entry.pretrained else None
    if entry.size != "paper":
        family_entry = next((e for e in family_entries(entry.family) if e.size == "paper"), None)
        pretrained = pretrained or (
            next(iter(family_entry.pretrained.values()), None) if family_entry else None
        )
    doc = (type(model).__doc__ or "").strip().splitlines()
    layout = {
        k.replace("_", " "): (json.dumps(v) if isinstance(v, (list, dict)) else v)
        for k, v in model.token_layout().items()
    }
    return {
        "model_name": extra.pop("model_name", None) or model.arch,
        "arch": model.arch,
        "family": entry.family,
        "modality": model.modality,
        "summary": doc[0] if doc else "",
        "parameters": f"{model.num_parameters():,}",
        "layout": layout,
        "input_spec": model.input_spec,
        "paper": pretrained.paper if pretrained else None,
        "upstream": pretrained.upstream if pretrained else None,
        "upstream_license": pretrained.license if pretrained else None,
        "metrics": extra.pop("metrics", None) or {},
        "training": extra.pop("training", None),
        # the usage example loads what can be loaded: the repo, the registry name when it has published
        # weights, else the folder this card sits in (a tiny size's `zoo.load("vq16_tiny")` would fail)
        "repo_id": extra.pop("repo_id", None) or (None if entry.pretrained else "path/to/this/folder"),
        **extra,
    }


def render_card(
    model: ZooModel, *, license: str = "apache-2.0", datasets: list[str] | None = None, **extra: Any
) -> str:
    """Render the model card text for ``model`` (extra keyword arguments reach the template)."""
    from huggingface_hub import ModelCard, ModelCardData

    variables = card_variables(model, **extra)
    kind = "generator" if model.modality == "generator" else "tokenizer"
    tags = ["zoo", kind, model.modality, variables["family"]]
    if variables["paper"] and str(variables["paper"]).startswith("arXiv:"):
        tags.append("arxiv:" + str(variables["paper"]).split(":", 1)[1])
    card_data = ModelCardData(
        library_name="zoo",
        license=license,
        tags=tags,
        datasets=datasets or None,
        metrics=sorted(variables["metrics"]) or None,
    )
    path = template_path(variables["family"])
    if path is None:
        card = ModelCard.from_template(card_data, template_str=_FALLBACK, **variables)
    else:
        card = ModelCard.from_template(card_data, template_path=str(path), **variables)
    return str(card)
