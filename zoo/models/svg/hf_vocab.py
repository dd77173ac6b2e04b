"""HiVG tokens inside a Hugging Face language model: the smart-space text format and HMN initialisation.

HiVG trains an off-the-shelf LLM on SVG token strings, so two pieces sit between the zoo's tokenizer and
``transformers``:

- **Smart-space strings** (`tokens_to_string`, `string_to_tokens`). HiVG writes a token list as one
  string with no separators, except a single space between two consecutive *plain* tokens (attribute
  strings ``name=value`` and bare numbers such as the arc radii). Angle-bracket tokens delimit
  themselves, so dropping their spaces saves LLM tokens while the text stays parseable. The behaviour
  here matches ``hivg_tokenizer.tokenizer.tokens_to_string`` / ``string_to_tokens`` (ximinng/HiVG @
  2ada95d), including its ambiguities, so strings written by either side read the same on the other.
- **Vocabulary extension** (`extend_lm`). The 784 atomic tokens and the ``<SEG_k>`` segment tokens are
  added to the LLM's tokenizer as special tokens and their embedding rows are initialised from what the
  model already knows (Hierarchical Mean-Noise), since HiVG's own HMN code is not released; the
  formulas are the zoo's, documented on `extend_lm`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from zoo.models.svg.vocab import atomic_tokens, token_descriptions

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["INIT_MODES", "extend_lm", "is_plain_token", "string_to_tokens", "tokens_to_string"]

INIT_MODES = ("hmn", "mean", "random")

# ---------------------------------------------------------------------------------------------------------
# Smart-space strings
# ---------------------------------------------------------------------------------------------------------

# A space that begins the next attribute: " name=" where the name is HiVG's [A-Za-z][\w-]*.
_NEXT_ATTRIBUTE = re.compile(r" (?=[A-Za-z][\w-]*=)")


def _number_end(text: str, start: int) -> int:
    """Index after the number ``[+-]digits[.digits]`` that begins at ``start``; ``start`` when there is no
    digit (a lone sign or dot is not a number)."""
    i, n = start, len(text)
    if i < n and text[i] in "+-":
        i += 1
    digits = 0
    while i < n and text[i].isdigit():
        i, digits = i + 1, digits + 1
    if i < n and text[i] == ".":
        i += 1
        while i < n and text[i].isdigit():
            i, digits = i + 1, digits + 1
    return i if digits else start


def _is_attribute(token: str) -> bool:
    return "=" in token and not token.startswith("<")


def _is_number(token: str) -> bool:
    if token.startswith("<") or "=" in token:
        return False
    text = token.strip()
    return bool(text) and _number_end(text, 0) == len(text)


def is_plain_token(token: str) -> bool:
    """Whether ``token`` is written with a space before a following plain token: an attribute ``name=value``
    that does not start with ``<``, or a bare number (``12``, ``-3``, ``4.5``, ``.5``, ``5.``)."""
    return _is_attribute(token) or _is_number(token)


def tokens_to_string(tokens: Sequence[str]) -> str:
    """Join ``tokens`` in HiVG's smart-space format: no separator, except one space between two
    consecutive plain tokens (see `is_plain_token`), which would otherwise run into each other.

    ``["<path>", "fill=#fff", "opacity=0.5", "<cmd_a>", "3", "4", "0", "<large_0>"]`` becomes
    ``"<path>fill=#fff opacity=0.5<cmd_a>3 4 0<large_0>"``.
    """
    parts: list[str] = []
    previous_plain = False
    for token in tokens:
        plain = is_plain_token(token)
        if parts and previous_plain and plain:
            parts.append(" ")
        parts.append(token)
        previous_plain = plain
    return "".join(parts)


def string_to_tokens(text: str) -> list[str]:
    """Parse a smart-space string back into tokens, reading HiVG's grammar left to right.

    - ``<`` starts a special token that runs through the next ``>`` (or to the end of the text);
    - a letter starts an attribute when an ``=`` follows before any ``<``; its value runs to the next
      ``<``, or to a space followed by the start of another attribute (``name=``), and loses trailing
      whitespace;
    - a digit, sign or dot starts a bare number ``[+-]digits[.digits]``;
    - anything else (the separating spaces, stray characters) is skipped.

    ``string_to_tokens(tokens_to_string(t)) == t`` for every list a HiVG tokenizer writes. The format is
    ambiguous, exactly as HiVG's is, for lists that it never writes; these come back differently but
    stably (parsing, joining and parsing again changes nothing):

    - an attribute value containing a space followed by ``name=`` (``text=a b=c``) splits in two;
    - trailing whitespace of an attribute value is lost (``fill=red `` -> ``fill=red``);
    - a ``<`` inside an attribute value (``text=a<b``, possible from a ``&lt;`` in the SVG) ends the value
      and starts a special token;
    - a bare number right after an attribute joins that attribute's value (``fill=red``, ``3`` ->
      ``fill=red 3``); HiVG only writes bare numbers after ``<cmd_a>``, never after an attribute;
    - characters before an attribute name's first letter are dropped (``_x=1`` -> ``x=1``), and tokens
      that are neither special, attribute nor number (``1e5``, ``px``) do not survive.
    """
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "<":
            close = text.find(">", i)
            end = n if close < 0 else close + 1
            tokens.append(text[i:end])
            i = end
        elif char.isalpha():
            equals = text.find("=", i)
            if equals < 0 or text.find("<", i, equals) >= 0:
                i += 1
                continue
            stop = text.find("<", equals + 1)
            stop = n if stop < 0 else stop
            split = _NEXT_ATTRIBUTE.search(text, equals + 1, stop)
            end = stop if split is None else split.start()
            tokens.append(text[i:end].rstrip())
            i = end
        elif char in "0123456789+-.":
            end = _number_end(text, i)
            if end > i:
                tokens.append(text[i:end])
                i = end
            else:
                i += 1
        else:
            i += 1
    return tokens


# ---------------------------------------------------------------------------------------------------------
# Vocabulary extension
# ---------------------------------------------------------------------------------------------------------

_COORD = re.compile(r"<P_(\d+)>")
_OFFSET = re.compile(r"<d_(-?\d+)>")
_COMMAND = re.compile(r"<cmd_[A-Za-z]>")
_FLAG = re.compile(r"<(?:large|sweep)_[01]>")
# A combination of existing rows: row index -> weight. _MEAN_ROW stands for the mean of all existing rows.
Recipe = dict[int, float]
_MEAN_ROW = -1
# Numbers are interpolated between the numerals of their decade, 10k and 10k + 10.
_DECADE = 10


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "extending a language model with HiVG tokens needs `transformers`: pip install 'zoo[reasoning]'"
        ) from exc
    return transformers


def _mix(parts: Sequence[tuple[float, Recipe]]) -> Recipe:
    out: Recipe = {}
    for weight, recipe in parts:
        for row, w in recipe.items():
            out[row] = out.get(row, 0.0) + weight * w
    return out


def _mean(recipes: Sequence[Recipe]) -> Recipe:
    """Mean of the non-empty recipes (an empty one is text the tokenizer turned into no ids)."""
    kept = [r for r in recipes if r]
    return _mix([(1.0 / len(kept), r) for r in kept]) if kept else {_MEAN_ROW: 1.0}


def _kind(token: str, segments: Mapping[str, Sequence[str]], described: Mapping[str, object]) -> str:
    if token in segments:
        return "segment"
    if _COORD.fullmatch(token):
        return "coordinate"
    if _OFFSET.fullmatch(token):
        return "offset"
    if _COMMAND.fullmatch(token) and token in described:
        return "command"
    if _FLAG.fullmatch(token) and token in described:
        return "flag"
    if token in described:
        return "element"
    return "other"


class _Recipes:
    """Builds each new token's row as a linear combination of existing rows (the noise-free HMN mean), so
    the same recipe initialises the input table and, when untied, the output table."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        vocab: Mapping[str, int],
        requested: Sequence[str],
        segments: Mapping[str, Sequence[str]],
    ) -> None:
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.segments = segments
        self.described = token_descriptions()
        coords = [int(m.group(1)) for t in requested if (m := _COORD.fullmatch(t))]
        offsets = [abs(int(m.group(1))) for t in requested if (m := _OFFSET.fullmatch(t))]
        self.coord_range = max(coords, default=0)
        self.offset_range = max(offsets, default=0)
        self._text: dict[str, Recipe] = {}
        self._token: dict[str, Recipe] = {}

    def prefetch(self, texts: Sequence[str]) -> None:
        """Tokenize many texts in one batch (before the new tokens exist, so no text splits into them).

        Each text is read as it is and after a space, and the reading in fewer pieces is kept (the first
        on a tie): byte-level BPEs such as GPT-2's hold most words and numbers as one piece only after a
        space, as they occur in running text, and a piece the model has seen whole is the better prior."""
        todo = sorted({t for t in texts if t not in self._text})
        if not todo:
            return
        as_is = self.tokenizer(todo, add_special_tokens=False)["input_ids"]
        spaced = self.tokenizer([" " + t for t in todo], add_special_tokens=False)["input_ids"]
        for text, a, b in zip(todo, as_is, spaced, strict=True):
            ids = b if b and (not a or len(b) < len(a)) else a
            self._text[text] = _mix([(1.0 / len(ids), {i: 1.0}) for i in ids]) if ids else {}

    def text(self, text: str) -> Recipe:
        """Mean of the existing subword rows of ``text`` (see `prefetch`)."""
        if text not in self._text:
            self.prefetch([text])
        return self._text[text]

    def texts_for(self, token: str) -> list[str]:
        """The texts `token`'s recipe reads, for `prefetch`."""
        if token in self.described:
            return list(self.described[token])
        if m := _COORD.fullmatch(token):
            return ["absolute coordinate", *self._numerals(int(m.group(1)), self.coord_range)]
        if m := _OFFSET.fullmatch(token):
            return ["relative offset", *self._numerals(int(m.group(1)), self.offset_range)]
        if token in self.segments:
            return []  # a segment reads its constituents' texts, prefetched as tokens of their own
        return [_plain_text(token)]

    @staticmethod
    def _spans(value: int, top: int) -> list[tuple[int, int]]:
        """The two spans ``|value|`` is interpolated on: its decade ``[10k, 10k + 10]`` (the last one ends
        at ``top``) and the whole range ``[0, top]``."""
        low = min(abs(value) // _DECADE * _DECADE, top)
        return [(low, min(low + _DECADE, top)), (0, top)]

    def _numerals(self, value: int, top: int) -> list[str]:
        sign = -1 if value < 0 else 1
        return [str(value), *(str(sign * end) for span in self._spans(value, top) for end in span)]

    def _between(self, value: int, low: int, high: int) -> Recipe:
        """Linear interpolation between the numerals ``low`` and ``high`` (signed like ``value``) at
        ``|value|``: rows change by a small step from one value to the next."""
        sign = -1 if value < 0 else 1
        if high == low:
            return self.text(str(sign * low))
        f = (abs(value) - low) / (high - low)
        return _mix([(1.0 - f, self.text(str(sign * low))), (f, self.text(str(sign * high)))])

    def _number(self, category: str, value: int, top: int) -> Recipe:
        parts = [self.text(category), self.text(str(value))]
        return _mean(parts + [self._between(value, *span) for span in self._spans(value, top)])

    def __call__(self, token: str, _stack: tuple[str, ...] = ()) -> Recipe:
        if token in self._token:
            return self._token[token]
        if token in self.segments:
            if token in _stack:
                raise ValueError(f"segment {token} contains itself: {' -> '.join((*_stack, token))}")
            parts = self.segments[token]
            if not parts:
                raise ValueError(f"segment {token} has no constituent tokens")
            recipe = _mean([self._part(p, (*_stack, token)) for p in parts])
        elif token in self.described:
            recipe = _mean([self.text(level) for level in self.described[token]])
        elif m := _COORD.fullmatch(token):
            recipe = self._number("absolute coordinate", int(m.group(1)), self.coord_range)
        elif m := _OFFSET.fullmatch(token):
            recipe = self._number("relative offset", int(m.group(1)), self.offset_range)
        else:
            recipe = _mean([self.text(_plain_text(token))])
        self._token[token] = recipe
        return recipe

    def _part(self, token: str, stack: tuple[str, ...]) -> Recipe:
        """A segment constituent: an existing token keeps its own row, a new one its recipe."""
        if token in self.vocab:
            return {self.vocab[token]: 1.0}
        return self(token, stack)


def _plain_text(token: str) -> str:
    """The words of an undescribed token (``<image>`` -> ``image``), or the token itself."""
    words = re.sub(r"[<>/_]+", " ", token).strip()
    return words or token


def _row_stats(
    weight: torch.Tensor, rows: torch.Tensor, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of ``weight[rows]`` in chunks (a 150k x 4k table is never copied whole)."""
    total = torch.zeros(weight.shape[1], dtype=torch.float64, device=weight.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(rows), chunk):
        block = weight[rows[start : start + chunk]].double()
        total += block.sum(0)
        squares += block.square().sum(0)
    n = len(rows)
    mean = total / n
    var = (squares - n * mean.square()) / max(n - 1, 1)
    return mean.float(), var.clamp_min(0).sqrt().float()


@torch.no_grad()
def _combine(weight: torch.Tensor, recipes: Sequence[Recipe], mean_row: torch.Tensor) -> torch.Tensor:
    """The rows the recipes describe, as float32 ``[len(recipes), dim]``."""
    index = [(r, row, w) for r, recipe in enumerate(recipes) for row, w in recipe.items()]
    device = weight.device
    targets = torch.tensor([r for r, _, _ in index], dtype=torch.long, device=device)
    sources = torch.tensor([max(row, 0) for _, row, _ in index], dtype=torch.long, device=device)
    weights = torch.tensor([w for _, _, w in index], dtype=torch.float32, device=device)
    is_mean = torch.tensor([row == _MEAN_ROW for _, row, _ in index], dtype=torch.bool, device=device)
    gathered = torch.where(is_mean[:, None], mean_row, weight[sources].float())
    values = torch.zeros(len(recipes), weight.shape[1], device=device)
    return values.index_add_(0, targets, gathered * weights[:, None])


@torch.no_grad()
def _initialise(
    weight: torch.Tensor,
    new_rows: torch.Tensor,
    recipes: Sequence[Recipe],
    old_rows: torch.Tensor,
    init: str,
    noise_scale: float,
    generator: torch.Generator,
    chunk: int = 256,
) -> None:
    """Write the new rows of one table, ``chunk`` tokens at a time (recipes only read old rows)."""
    mean_row, std = _row_stats(weight, old_rows)
    noise = torch.randn(len(new_rows), weight.shape[1], generator=generator)
    for start in range(0, len(new_rows), chunk):
        eps = noise[start : start + chunk].to(weight.device)
        if init == "random":
            values = eps * std
        else:
            values = _combine(weight, recipes[start : start + chunk], mean_row)
            if init == "hmn":
                values += eps * (noise_scale * std)
        weight[new_rows[start : start + chunk]] = values.to(weight.dtype)


def extend_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tokens: Sequence[str] | None = None,
    *,
    segments: Mapping[str, Sequence[str]] | None = None,
    init: str = "hmn",
    noise_scale: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Add HiVG tokens to a ``transformers`` causal LM and its tokenizer, initialising the new rows.

    ``tokens`` defaults to all of `atomic_tokens()`; the keys of ``segments`` (``{"<SEG_0>": [atomic
    token, ...]}``) are added too. Tokens the tokenizer already has are left alone. The others become
    special tokens (never split, never normalised), the model is resized to ``len(tokenizer)`` (never
    shrunk: padded tables such as Qwen's keep their size when the ids fit), and the new rows of the input
    embedding are initialised, and those of the output embedding when it is not tied to the input one
    (a bias, if any, gets the mean of the old biases). Existing rows are never changed.

    ``init="hmn"`` (Hierarchical Mean-Noise) starts each token from what its name means to the model, so
    fine-tuning begins from a sensible place rather than from noise. With ``s(text)`` the mean of the
    existing rows of ``text``'s subword ids (the same table being initialised; ``text`` read as it is or
    after a space, whichever gives fewer subwords, so GPT-2-style BPEs see " 37" as the one word it is in
    running text rather than as "3" "7"), ``R`` and ``D`` the largest
    ``<P_N>`` and ``|<d_N>|`` requested, and ``σ`` the per-dimension std of the existing rows:

    - element, command, flag: ``(s(level1) + s(level2) + s(level3)) / 3`` over `token_descriptions()`;
    - ``<P_N>``: ``(s("absolute coordinate") + s("N") + decade_N + range_N) / 4``, where, writing
      ``lerp(a, b) = (1 - f) s("a") + f s("b")`` with ``f = (N - a) / (b - a)``,
      ``decade_N = lerp(10k, min(10k + 10, R))`` for ``10k <= N`` the decade below N and
      ``range_N = lerp(0, R)``;
    - ``<d_N>``: the same with ``"relative offset"``, the signed numeral ``s("-5")`` and ``|N|`` on the
      spans ``[10k, 10k + 10]`` and ``[0, D]``, whose numerals carry N's sign (``lerp(0, -10)`` for ``-5``);
    - ``<SEG_k>``: the mean of its constituents' noise-free rows (an existing token's own row, the subwords
      of a bare number such as an arc radius);
    - anything else: ``s`` of its name's words (``<image>`` -> ``s("image")``);
    - then ``+ N(0, (noise_scale σ)^2)`` per dimension, drawn from a generator seeded with ``seed``.

    For numbers, ``s("N")`` carries what the model already knows about that numeral, and the two
    interpolations make the row a piecewise-linear function of N: one step of N moves it by a tenth of a
    decade and by ``1/R`` of the range, while values a decade or more apart share nothing of their decade
    term. So neighbouring values get nearer rows than distant ones even where numeral embeddings are
    unordered (random ones, or a digit-level tokenizer to which "12" and "21" are the same bag of digits).

    ``init="mean"`` is HMN without the noise, ``init="random"`` draws ``N(0, σ^2)`` per dimension
    (seeded); both are for ablations. Returns a report: ``added``, ``already_present``, ``init``,
    ``tied``, ``vocab_size``, ``rows`` (input rows initialised per token kind), ``output_rows``.
    """
    _require_transformers()
    if init not in INIT_MODES:
        raise ValueError(f"init must be one of {INIT_MODES}, got {init!r}")
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    segments = dict(segments or {})
    requested = list(atomic_tokens() if tokens is None else tokens) + list(segments)
    requested = list(dict.fromkeys(requested))
    vocab = tokenizer.get_vocab()
    new = [t for t in requested if t not in vocab]

    embedding = model.get_input_embeddings()
    old_size = embedding.weight.shape[0]
    old_rows = torch.tensor(sorted(i for i in set(vocab.values()) if i < old_size), dtype=torch.long)
    recipes = _Recipes(tokenizer, vocab, requested, segments)
    if init != "random":
        recipes.prefetch([text for t in new for text in recipes.texts_for(t)])
        token_recipes = [recipes(t) for t in new]
    else:
        token_recipes = [{} for _ in new]

    if new:
        # The second argument is `replace_additional_special_tokens` (4.x) / `replace_extra_special_tokens`
        # (5.x): False extends the list instead of replacing it.
        tokenizer.add_special_tokens({"additional_special_tokens": new}, False)
    ids = tokenizer.convert_tokens_to_ids(new)
    taken = set(vocab.values())
    if len(set(ids)) != len(new) or any(i is None or i in taken for i in ids):
        raise RuntimeError("the tokenizer did not give the new tokens fresh ids")
    size = max(len(tokenizer), old_size, max(ids, default=-1) + 1)
    if size != old_size:
        model.resize_token_embeddings(size, mean_resizing=False)

    input_weight = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = (
        output is None or output.weight is input_weight or output.weight.data_ptr() == input_weight.data_ptr()
    )
    generator = torch.Generator().manual_seed(seed)
    new_rows = torch.tensor(ids, dtype=torch.long)
    kinds: dict[str, int] = {}
    for t in new:
        kind = _kind(t, segments, recipes.described)
        kinds[kind] = kinds.get(kind, 0) + 1
    if new:
        device = input_weight.device
        _initialise(
            input_weight,
            new_rows.to(device),
            token_recipes,
            old_rows.to(device),
            init,
            noise_scale,
            generator,
        )
        if not tied:
            device = output.weight.device
            _initialise(
                output.weight,
                new_rows.to(device),
                token_recipes,
                old_rows.to(device),
                init,
                noise_scale,
                generator,
            )
            bias = getattr(output, "bias", None)
            if bias is not None and bias.shape[0] == output.weight.shape[0]:
                with torch.no_grad():
                    bias[new_rows.to(bias.device)] = (
                        bias[old_rows.to(bias.device)].float().mean().to(bias.dtype)
                    )
    return {
        "added": len(new),
        "already_present": len(requested) - len(new),
        "init": init,
        "tied": tied,
        "vocab_size": len(tokenizer),
        "rows": kinds,
        "output_rows": 0 if tied else len(new),
    }
