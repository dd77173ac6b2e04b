"""HiVG's atomic SVG vocabulary: element, path-command, coordinate and arc-flag tokens, in HiVG's id order.

The order is the one HiVG's ``tokens.yaml`` builds (arXiv:2604.05072; ximinng/HiVG @ 2ada95d), so atomic
id ``i`` here is atomic token ``i`` there:

1. an open and a close token per element, interleaved (``<svg>``, ``</svg>``, ``<path>``, ...), 28 elements;
2. the 20 command tokens, absolute then relative per command (``<cmd_M>``, ``<cmd_m>``, ``<cmd_L>``, ...);
3. absolute positions ``<P_0>`` .. ``<P_R>`` (``R = coord_range``);
4. offsets ``<d_-D>`` .. ``<d_D>`` (``D = relative_range``);
5. the arc flags ``<large_0>``, ``<large_1>``, ``<sweep_0>``, ``<sweep_1>``.

config_224 (``R = D = 234``) gives 56 + 20 + 235 + 469 + 4 = 784 tokens. Every element, command and flag
token also carries a three-level description (category, role, gloss), written for the zoo, from which
`zoo.models.svg.hf_vocab` initialises new embeddings of a language model (Hierarchical Mean-Noise).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ARC_FLAGS",
    "COMMANDS",
    "ELEMENTS",
    "Command",
    "atomic_tokens",
    "token_descriptions",
]

# element -> (role, gloss); order is HiVG's.
ELEMENTS: dict[str, tuple[str, str]] = {
    "svg": ("document root", "the drawing canvas and its coordinate system"),
    "path": ("path shape", "an outline drawn by a sequence of pen commands"),
    "defs": ("definitions", "holds reusable items that are not drawn directly"),
    "style": ("stylesheet", "CSS rules that style other elements"),
    "linearGradient": ("linear gradient", "colours blended along a straight axis"),
    "radialGradient": ("radial gradient", "colours blended outward from a centre"),
    "stop": ("gradient stop", "one colour at one offset of a gradient"),
    "g": ("group", "a container whose attributes apply to its children"),
    "rect": ("rectangle", "an axis-aligned box, optionally with rounded corners"),
    "circle": ("circle", "a round shape given by a centre and a radius"),
    "ellipse": ("ellipse", "an oval given by a centre and two radii"),
    "line": ("line", "one straight segment between two points"),
    "polyline": ("polyline", "an open chain of straight segments"),
    "polygon": ("polygon", "a closed shape of straight edges"),
    "text": ("text", "characters drawn in a font"),
    "use": ("reference", "draws a copy of another element"),
    "clipPath": ("clip path", "limits drawing to the inside of a shape"),
    "mask": ("mask", "sets transparency from the brightness of a drawing"),
    "pattern": ("pattern", "a tile repeated to fill a shape"),
    "filter": ("filter", "a pipeline of raster effects"),
    "marker": ("marker", "a symbol placed at the vertices of a line"),
    "symbol": ("symbol", "a template drawn only where it is referenced"),
    "feGaussianBlur": ("blur effect", "softens its input with a Gaussian kernel"),
    "feOffset": ("offset effect", "moves its input by a displacement"),
    "feBlend": ("blend effect", "mixes two inputs with a blend mode"),
    "feColorMatrix": ("colour matrix effect", "transforms colours with a matrix"),
    "feComposite": ("composite effect", "combines two inputs with a Porter-Duff operator"),
    "feMerge": ("merge effect", "stacks several inputs on top of each other"),
}


@dataclass(frozen=True)
class Command:
    """A path command: its SVG letter pair, parameter count and descriptions."""

    letter: str
    params: int
    role: str
    gloss: str


COMMANDS: tuple[Command, ...] = (
    Command("M", 2, "move to", "lifts the pen and starts a new subpath at a point"),
    Command("L", 2, "line to", "draws a straight segment to a point"),
    Command("H", 1, "horizontal line", "draws a straight segment changing only x"),
    Command("V", 1, "vertical line", "draws a straight segment changing only y"),
    Command("C", 6, "cubic curve", "a Bezier curve with two control points and an end point"),
    Command("S", 4, "smooth cubic curve", "a cubic curve whose first control point mirrors the last one"),
    Command("Q", 4, "quadratic curve", "a Bezier curve with one control point and an end point"),
    Command("T", 2, "smooth quadratic curve", "a quadratic curve whose control point mirrors the last one"),
    Command(
        "A", 7, "elliptical arc", "part of an ellipse given by radii, rotation, two flags and an end point"
    ),
    Command("Z", 0, "close path", "returns to the start of the subpath"),
)

# flag -> (role, gloss)
ARC_FLAGS: dict[str, tuple[str, str]] = {
    "large_0": ("small arc", "the arc spans less than half the ellipse"),
    "large_1": ("large arc", "the arc spans more than half the ellipse"),
    "sweep_0": ("anticlockwise sweep", "the arc turns in the negative angle direction"),
    "sweep_1": ("clockwise sweep", "the arc turns in the positive angle direction"),
}


def atomic_tokens(coord_range: int = 234, relative_range: int = 234) -> list[str]:
    """Every atomic token string, in HiVG's id order (784 for config_224)."""
    tokens: list[str] = []
    for element in ELEMENTS:
        tokens += [f"<{element}>", f"</{element}>"]
    for command in COMMANDS:
        tokens += [f"<cmd_{command.letter}>", f"<cmd_{command.letter.lower()}>"]
    tokens += [f"<P_{i}>" for i in range(coord_range + 1)]
    tokens += [f"<d_{i}>" for i in range(-relative_range, relative_range + 1)]
    tokens += [f"<{flag}>" for flag in ARC_FLAGS]
    return tokens


def token_descriptions() -> dict[str, tuple[str, str, str]]:
    """Three-level descriptions (category, role, gloss) of the element, command and flag tokens."""
    out: dict[str, tuple[str, str, str]] = {}
    for element, (role, gloss) in ELEMENTS.items():
        out[f"<{element}>"] = ("SVG element opening tag", f"start of {role}", gloss)
        out[f"</{element}>"] = ("SVG element closing tag", f"end of {role}", gloss)
    for command in COMMANDS:
        out[f"<cmd_{command.letter}>"] = ("SVG path command", f"absolute {command.role}", command.gloss)
        out[f"<cmd_{command.letter.lower()}>"] = (
            "SVG path command",
            f"relative {command.role}",
            command.gloss,
        )
    for flag, (role, gloss) in ARC_FLAGS.items():
        out[f"<{flag}>"] = ("SVG arc flag", role, gloss)
    return out
