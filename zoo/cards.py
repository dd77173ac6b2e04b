"""Model cards: ``README.md`` files rendered from ``model_cards/<family>.md`` templates.

Templates are Jinja (huggingface_hub's ``ModelCard.from_template``); their YAML header comes from
``ModelCardData`` (license, library name, tags, datasets, metrics). A family without a template uses
``model_cards/default.md``. The templates ship inside the package (``zoo._shipped``), so a ``pip install``
renders the same cards as a checkout.
"""

from __future__ import annotations

import json
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ._atomic import atomic_write_text
from ._registry import family_entries, get_entry
from ._shipped import shipped_folder
from .errors import ZooError
from .model import ZooModel


def template_path(family: str) -> Traversable:
    """The family's card template, else the generic ``default.md``."""
    folder = shipped_folder("model_cards")
    for name in (f"{family}.md", "default.md"):
        path = folder / name
        if path.is_file():
            return path
    # no silent generic stand-in: a card without the family's facts would be a wrong card
    raise ZooError(
        f"{folder}: no card template for {family!r} nor default.md (zoo is installed without them)"
    )


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
    template = template_path(variables["family"]).read_text(encoding="utf-8")
    text = str(ModelCard.from_template(card_data, template_str=template, **variables))
    reported = upstream_metrics(model)
    if reported:
        rows = "\n".join(
            f"| `{name}` | {metric} | {value} |"
            for name, values in reported.items()
            for metric, value in values.items()
        )
        section = (
            "As published upstream with these checkpoints (paper or repository), not measured by zoo; what zoo "
            'measured is under "Upstream parity" and "Measured with zoo bench".\n\n'
            f"| checkpoint | metric | value |\n|---|---|---|\n{rows}"
        )
        text = insert_card_section(text, "upstream-metrics", "Reported by upstream", section)
    return text


def upstream_metrics(model: ZooModel) -> dict[str, dict[str, Any]]:
    """The metrics upstream reports for each published checkpoint of ``model``'s family (its paper size's
    tags), by ``arch.tag``."""
    entry = get_entry(model.arch or "")
    out: dict[str, dict[str, Any]] = {}
    for family_entry in family_entries(entry.family):
        for tag, cfg in family_entry.pretrained.items():
            if cfg.metrics:
                out[f"{family_entry.name}.{tag}"] = dict(cfg.metrics)
    return out


def insert_card_section(
    source: str, marker: str, title: str, text: str, *, before: str = "Provenance"
) -> str:
    """``source`` with ``text`` between ``<!-- marker:begin -->`` and ``<!-- marker:end -->``, replacing what was
    there; the first time, under a new ``## title`` heading placed before the ``## before`` section (or at
    the end)."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in source:
        head, _, rest = source.partition(begin)
        _, _, tail = rest.partition(end)
        return head + block + tail
    if f"\n## {before}" in source:
        head, _, tail = source.partition(f"\n## {before}")
        return f"{head}\n## {title}\n\n{block}\n\n## {before}{tail}"
    return f"{source.rstrip()}\n\n## {title}\n\n{block}\n"


def write_card_section(
    card: str | Path, marker: str, title: str, text: str, *, before: str = "Provenance"
) -> None:
    """Put ``text`` into ``card`` between ``<!-- marker:begin -->`` and ``<!-- marker:end -->``, replacing what a
    previous run wrote there; the first time, under a new ``## title`` heading placed before the ``## before``
    section (or at the end). For results that tools measure and record in the templates (upstream parity,
    ``zoo bench``), so rerunning the tool refreshes the card instead of appending to it."""
    card = Path(card)
    atomic_write_text(card, insert_card_section(card.read_text(), marker, title, text, before=before))
