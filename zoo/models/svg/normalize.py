"""Normalise any SVG onto HiVG's canvas: one ``<path>`` per drawn shape, in canvas pixels, styles explicit.

HiVG quantizes path coordinates to integers on a fixed canvas (224 px for config_224) but ships no code to
put an SVG there. This does it with `svgelements` (viewBox and ``preserveAspectRatio``, nested
``transform`` lists, ``<use>`` references, basic shapes, arcs under transforms, inherited styles), after
`zoo.io.parse_svg` has refused entities and this module has refused hostile structure:

- text longer than ``max_chars`` (checked before parsing, so a 50 MB path costs nothing);
- elements nested deeper than ``max_depth`` or more than ``max_elements`` of them;
- ``<use>`` references that form a cycle, or whose expansion would exceed ``max_elements``;
- coordinates that are NaN or infinite after transformation (1e308 scaled by a viewBox overflows).

The output draws what the input draws: every rendered shape becomes a ``<path>`` whose ``d`` holds only
absolute ``M L C Q A Z`` commands in canvas pixels, with its computed fill, stroke, stroke width (scaled
by the transform), opacities, fill rule, line caps and joins. What is not geometry (``<text>``,
``<image>``, gradient and pattern paints, filters, masks, clip paths) is left out and listed in
`Normalized.dropped`, which `HiVG.encode` turns into a warning: nothing is lost silently.
"""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ...errors import MediaError
from ...io.svg import SVG_NAMESPACE, parse_svg
from .pathdata import NUMBER, lex_path

__all__ = ["Normalized", "normalize_svg"]

XLINK = "{http://www.w3.org/1999/xlink}href"
_STYLE_KEYS = ("fill-rule", "stroke-linecap", "stroke-linejoin", "stroke-miterlimit")
_NOT_GEOMETRY = {"text", "image", "foreignObject", "video", "audio"}
_EFFECTS = {"filter", "mask", "clipPath"}  # drawn only through references the output does not keep


@dataclass
class Normalized:
    """A normalised SVG document and what normalising it left out (element names with counts)."""

    text: str
    dropped: dict[str, int] = field(default_factory=dict)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _check_structure(root: ET.Element, where: object, max_depth: int, max_elements: int) -> None:
    """Depth, size and ``<use>`` expansion limits, checked iteratively (no recursion to exhaust)."""
    count = 0
    ids: dict[str, ET.Element] = {}
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        count += 1
        if depth > max_depth:
            raise MediaError(
                where, f"elements are nested more than {max_depth} deep; refusing to normalise it"
            )
        if count > max_elements:
            raise MediaError(where, f"has more than {max_elements} elements; refusing to normalise it")
        if element.get("id"):
            ids[element.get("id")] = element
        stack.extend((child, depth + 1) for child in element)
    # Expanded size of each element with <use> resolved; a cycle or an explosion is refused.
    sizes: dict[int, int] = {}
    state: dict[int, int] = {}  # 1: being expanded, 2: done

    def target(element: ET.Element) -> ET.Element | None:
        href = element.get("href") or element.get(XLINK) or ""
        return ids.get(href[1:]) if href.startswith("#") else None

    order: list[tuple[ET.Element, bool]] = [(root, False)]
    while order:
        element, finished = order.pop()
        key = id(element)
        if finished:
            total = 1 + sum(sizes[id(child)] for child in element)
            ref = target(element) if _local(element.tag) == "use" else None
            if ref is not None:
                total += sizes[id(ref)]
            sizes[key], state[key] = total, 2
            if total > max_elements:
                raise MediaError(
                    where, f"expands to more than {max_elements} elements through <use>; refusing it"
                )
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            raise MediaError(where, "has <use> references that form a cycle")
        state[key] = 1
        order.append((element, True))
        dependencies = list(element)
        ref = target(element) if _local(element.tag) == "use" else None
        if ref is not None:
            dependencies.append(ref)
        for dependency in dependencies:
            dkey = id(dependency)
            if state.get(dkey) == 1:
                raise MediaError(where, "has <use> references that form a cycle")
            if state.get(dkey) != 2:
                order.append((dependency, False))


def _check_points(points: str, where: object) -> None:
    rest = NUMBER.sub(" ", points).replace(",", " ").strip()
    if rest:
        raise MediaError(where, f"points is malformed near {rest[:20]!r}")
    if any(not math.isfinite(float(m.group())) for m in NUMBER.finditer(points)):
        raise MediaError(where, "points has a non-finite number")


def _canvas_root(root: ET.Element, canvas: int, where: object) -> None:
    """Make the root viewport ``canvas`` px square, keeping (or deriving) the viewBox it shows."""
    if not root.get("viewBox"):
        try:
            width = float(str(root.get("width", "")).rstrip("px") or "nan")
            height = float(str(root.get("height", "")).rstrip("px") or "nan")
        except ValueError:
            width = height = math.nan
        if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
            raise MediaError(
                where, "has neither a viewBox nor numeric width and height; its canvas is unknown"
            )
        root.set("viewBox", f"0 0 {width:g} {height:g}")
    root.set("width", str(canvas))
    root.set("height", str(canvas))


def _fmt(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _path_d(shape: object, where: object) -> str:
    import svgelements as se

    path = abs(se.Path(shape))
    parts: list[str] = []
    for segment in path:
        if isinstance(segment, se.Move):
            parts.append(f"M {_point(segment.end, where)}")
        elif isinstance(segment, se.Close):
            parts.append("Z")
        elif isinstance(segment, se.Line):
            start, end = segment.start, segment.end
            if start is not None and end.y == start.y and end.x != start.x:
                parts.append(f"H {_number(end.x, where)}")  # kept axis-aligned, as icons draw them
            elif start is not None and end.x == start.x and end.y != start.y:
                parts.append(f"V {_number(end.y, where)}")
            else:
                parts.append(f"L {_point(end, where)}")
        elif isinstance(segment, se.CubicBezier):
            points = " ".join(_point(p, where) for p in (segment.control1, segment.control2, segment.end))
            parts.append(f"C {points}")
        elif isinstance(segment, se.QuadraticBezier):
            parts.append(f"Q {_point(segment.control, where)} {_point(segment.end, where)}")
        elif isinstance(segment, se.Arc):
            rotation = segment.get_rotation().as_degrees
            sweep = int(segment.sweep > 0)
            radii = " ".join(_number(v, where) for v in (segment.rx, segment.ry, rotation))
            # An arc over half its ellipse is split at its middle: a nearly closed arc's end point is close
            # to its start, and rounding that chord to integers would collapse the whole arc.
            ends = [segment.point(0.5), segment.end] if abs(segment.sweep) > math.pi else [segment.end]
            for end in ends:
                parts.append(f"A {radii} 0 {sweep} {_point(end, where)}")
    return " ".join(parts)


def _number(value: float, where: object) -> str:
    if not math.isfinite(value):
        raise MediaError(where, "has a coordinate that is NaN or infinite once placed on the canvas")
    return _fmt(value)


def _point(point: object, where: object) -> str:
    return f"{_number(point.x, where)} {_number(point.y, where)}"


def _style(shape: object) -> dict[str, str]:
    import svgelements as se

    attrs: dict[str, str] = {}
    fill, stroke = shape.fill, shape.stroke
    attrs["fill"] = fill.hexrgb if isinstance(fill, se.Color) and fill.value is not None else "none"
    if isinstance(fill, se.Color) and fill.value is not None and fill.opacity < 1:
        attrs["fill-opacity"] = _fmt(fill.opacity)
    if isinstance(stroke, se.Color) and stroke.value is not None:
        attrs["stroke"] = stroke.hexrgb
        if stroke.opacity < 1:
            attrs["stroke-opacity"] = _fmt(stroke.opacity)
        width = shape.implicit_stroke_width
        attrs["stroke-width"] = _fmt(width if width is not None and math.isfinite(width) else 1.0)
    values = shape.values
    for key in _STYLE_KEYS:
        if key in values and values[key] not in (None, "", "inherit"):
            attrs[key] = str(values[key])
    opacity = values.get("opacity")
    if opacity not in (None, "", "1", 1, 1.0):
        attrs["opacity"] = str(opacity)
    return attrs


def normalize_svg(
    text: str,
    *,
    canvas: int = 224,
    path: object = None,
    max_chars: int = 4_000_000,
    max_depth: int = 128,
    max_elements: int = 20_000,
) -> Normalized:
    """Put ``text`` on a ``canvas``-pixel square canvas as one absolute ``<path>`` per drawn shape.

    ``path`` only labels errors. Raises `MediaError` for unsafe or hostile input (see the module docstring).
    """
    import svgelements as se

    if not isinstance(text, str):
        raise MediaError(path, f"SVG text must be str, got {type(text).__name__}")
    if len(text) > max_chars:
        raise MediaError(
            path, f"is {len(text):,} characters long, over the limit of {max_chars:,}; refusing it"
        )
    root = parse_svg(text, path)
    _check_structure(root, path, max_depth, max_elements)
    _canvas_root(root, canvas, path)
    dropped: dict[str, int] = {}
    for element in root.iter():
        name = _local(element.tag)
        if name in _NOT_GEOMETRY or name in _EFFECTS:
            dropped[name] = dropped.get(name, 0) + 1
        elif name == "path" and element.get("d"):
            lex_path(element.get("d"), path)  # a geometry library would stop at an error silently
        elif name in ("polygon", "polyline") and element.get("points"):
            _check_points(element.get("points"), path)
    try:
        document = se.SVG.parse(io.StringIO(ET.tostring(root, encoding="unicode")), reify=True, color="black")
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - svgelements reports malformed lengths in many ways
        raise MediaError(path, f"cannot be read as SVG geometry: {type(exc).__name__}: {exc}") from None
    out = ET.Element(
        "svg",
        {
            "xmlns": SVG_NAMESPACE,
            "viewBox": f"0 0 {canvas} {canvas}",
            "width": str(canvas),
            "height": str(canvas),
        },
    )
    for element in document.elements():
        if not isinstance(element, se.Shape):
            continue
        if element.values.get("visibility") == "hidden" or element.values.get("display") == "none":
            continue
        try:
            d = _path_d(element, path)
        except MediaError:
            raise
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            raise MediaError(path, f"has a shape whose geometry cannot be computed: {exc}") from None
        if not d:
            continue
        style = _style(element)
        if style["fill"] == "none" and "stroke" not in style:
            continue  # draws nothing (icon sets use such paths as bounding boxes)
        paint = [element.values.get(k, "") for k in ("fill", "stroke")]
        for value in paint:
            if isinstance(value, str) and value.startswith("url("):
                dropped["paint server (gradient/pattern)"] = (
                    dropped.get("paint server (gradient/pattern)", 0) + 1
                )
        out.append(ET.Element("path", {**style, "d": d}))
    return Normalized(ET.tostring(out, encoding="unicode"), dropped)
