"""SVG reading and writing with XML parsed safely: no entity is ever declared, expanded or fetched.

SVG datasets are scraped from the web, so a file may carry a "billion laughs" entity bomb or an
external entity pointing at a local file. The standard library's ElementTree expands internal
entities, so parsing goes through expat directly with handlers that refuse any entity
declaration, external reference or skipped entity, and parameter entities (the external DTD)
are never read. The usual `<!DOCTYPE svg PUBLIC ... svg11.dtd>` line remains accepted: it
declares nothing, and the DTD it names is not loaded.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

from zoo._atomic import atomic_write_text
from zoo.errors import MediaError

__all__ = ["SVG_NAMESPACE", "parse_svg", "read_svg", "write_svg"]

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


class _Refused(Exception):
    """Raised inside expat callbacks to abort parsing; converted to MediaError by the caller."""


def _qualified(name: str) -> str:
    # expat with namespace_separator="}" reports "uri}local"; ElementTree spells it "{uri}local".
    return "{" + name if "}" in name else name


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_svg(text: str, path: str | Path | None = None) -> ET.Element:
    """Parse SVG text into an ElementTree element, refusing entities and non-SVG roots.

    `path` only labels errors. Comments and processing instructions are dropped, as
    ElementTree's own parser does.
    """
    if not isinstance(text, str):
        raise MediaError(path, f"SVG text must be str, got {type(text).__name__}")
    if not text.strip():
        raise MediaError(path, "is empty; expected an <svg> document")

    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    builder = ET.TreeBuilder()
    seen_root = False

    def entity_decl(name, is_parameter, *_):
        kind = "a parameter entity" if is_parameter else "an entity"
        raise _Refused(f"declares {kind} ({name!r}); refusing to expand them")

    def unparsed_entity_decl(name, *_):
        raise _Refused(f"declares an unparsed entity ({name!r}); refusing to expand them")

    def external_ref(context, base, system_id, public_id):
        raise _Refused(f"references an external entity ({system_id!r}); refusing to load it")

    def skipped_entity(name, is_parameter):
        raise _Refused(f"references an undeclared entity &{name}; refusing to expand it")

    def start(name, attrs):
        nonlocal seen_root
        tag = _qualified(name)
        if not seen_root:
            seen_root = True
            if _local(tag) != "svg" or tag not in ("svg", "{" + SVG_NAMESPACE + "}svg"):
                raise _Refused(f"root element is <{_local(tag)}>, expected <svg>")
        builder.start(tag, {_qualified(k): v for k, v in attrs.items()})

    parser.EntityDeclHandler = entity_decl
    parser.UnparsedEntityDeclHandler = unparsed_entity_decl
    parser.ExternalEntityRefHandler = external_ref
    parser.SkippedEntityHandler = skipped_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda name: builder.end(_qualified(name))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except _Refused as e:
        raise MediaError(path, str(e)) from None
    except expat.ExpatError as e:
        reason = expat.ErrorString(e.code)
        raise MediaError(
            path, f"not well-formed XML at line {e.lineno}, column {e.offset + 1} ({reason})"
        ) from None
    return builder.close()


def read_svg(path: str | Path) -> str:
    """Read a UTF-8 SVG file and return its text once it is known to be safe, well-formed SVG."""
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MediaError(p, f"not UTF-8 text (invalid byte at offset {e.start})") from None
    parse_svg(text, p)
    return text


def write_svg(path: str | Path, text: str | ET.Element) -> None:
    """Validate then write SVG atomically as UTF-8, so nothing unreadable by `read_svg` is ever written."""
    p = Path(path)
    if isinstance(text, ET.Element):
        text = ET.tostring(text, encoding="unicode")
    parse_svg(text, p)
    atomic_write_text(p, text)
