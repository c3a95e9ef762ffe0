"""The spec AST: frozen dataclasses, one per syntactic construct, each with a `Span`.

The grammar is generic (blocks, assignments, values); which blocks and keys exist
is the registry's business. Comments and blank lines are kept as trivia on the
items they precede so that `pdc fmt` can move an item together with its comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Union

from pdc.syntax.span import Span


@dataclass(frozen=True)
class Comment:
    text: str  # including the leading '#'
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Trivia:
    """What surrounds an item in the source: comment lines above it, a comment after it
    on the same line, and whether a blank line separated it from the previous item."""

    leading: tuple[Comment, ...] = ()
    trailing: Comment | None = None
    blank_before: bool = False


# ---- values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A numeric literal with its optional unit: `20`, `1e-3`, `20k`, `80 GiB`, `10%`."""

    text: str  # the digits as written, without the unit: "20", "1e-3", "2.5"
    unit: str  # "" when none: "k", "M", "%", "GiB", ...
    span: Span = field(compare=False)

    @property
    def is_integral_text(self) -> bool:
        return not any(ch in self.text for ch in ".eE")


@dataclass(frozen=True)
class String:
    value: str  # unescaped
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Ident:
    """A bare name used as a value: `true`, `bf16`, `uniform_k_subset`, `_`, or a dotted name."""

    name: str
    span: Span = field(compare=False)


@dataclass(frozen=True)
class ListValue:
    items: tuple[Value, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: Value
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Call:
    """A named call such as a schedule: `cosine(1e-3, final = 0.1)`."""

    name: str
    args: tuple[Value, ...]
    kwargs: tuple[Kwarg, ...]
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


@dataclass(frozen=True)
class ParamRef:
    """`$lr`: the value of a `param lr { ... }` declaration, substituted when the file's
    imports and parameters are resolved (`pdc.syntax.family`), before validation."""

    name: str  # without the `$`
    span: Span = field(compare=False)


Value = Union[Number, String, Ident, ListValue, Call, ParamRef]


# ---- site patterns ----------------------------------------------------------------


@dataclass(frozen=True)
class Alt:
    """One path segment written as alternatives with a shared suffix: `{q, k, v}_proj`."""

    options: tuple[str, ...]
    suffix: str = ""


@dataclass(frozen=True)
class IndexRange:
    """`[18]` or `[18..23]` (inclusive) after a segment, meaning `.18` ... `.23`."""

    first: int
    last: int


@dataclass(frozen=True)
class Segment:
    """One dot-separated part of a pattern: a name, an integer, `*`, `**` or an `Alt`,
    optionally followed by index ranges (`layers[18..23, 30]`)."""

    part: str | Alt  # "*" and "**" are wildcards
    indices: tuple[IndexRange, ...] = ()
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Pattern:
    """A dotted key or site pattern. A plain key is a one-segment pattern."""

    text: str
    segments: tuple[Segment, ...]
    span: Span = field(compare=False)

    @property
    def is_plain_name(self) -> bool:
        return len(self.segments) == 1 and isinstance(self.segments[0].part, str) and not self.segments[0].indices \
            and self.segments[0].part not in ("*", "**")


# ---- items ------------------------------------------------------------------------


@dataclass(frozen=True)
class Assign:
    key: Pattern
    value: Value
    span: Span = field(compare=False)
    trivia: Trivia = field(default=Trivia(), compare=False)


@dataclass(frozen=True)
class Block:
    """`key label? { items }`. `key` is a plain name for registry blocks (`target`, `loss`)
    and a site pattern for decompose entries."""

    key: Pattern
    label: Ident | None
    items: tuple[Item, ...]
    span: Span = field(compare=False)
    trivia: Trivia = field(default=Trivia(), compare=False)
    closing: tuple[Comment, ...] = field(default=(), compare=False)  # comments before `}`


Item = Union[Assign, Block]


@dataclass(frozen=True)
class Import:
    """`import "base.pd"` at the top of a file (the path as written, relative to the file)."""

    path: String
    span: Span = field(compare=False)
    trivia: Trivia = field(default=Trivia(), compare=False)


@dataclass(frozen=True)
class SpecFile:
    items: tuple[Item, ...]
    path: str
    text: str = field(compare=False, repr=False)
    closing: tuple[Comment, ...] = field(default=(), compare=False)  # comments after the last item
    imports: tuple[Import, ...] = ()  # `import "..."` lines, in source order


def key_text(item: Item) -> str:
    return item.key.text


def strip_spans(node: Any) -> Any:
    """A span- and trivia-free copy of `node` as nested tuples, for structural comparison.

    A pattern compares by its segments, not its text (`{a,b}` and `{a, b}` are equal)."""
    if isinstance(node, tuple):
        return tuple(strip_spans(n) for n in node)
    if is_dataclass(node) and not isinstance(node, type):
        skip = _TRIVIA_FIELDS | ({"text"} if isinstance(node, (Pattern, SpecFile)) else set())
        return (type(node).__name__,) + tuple(
            strip_spans(getattr(node, f.name)) for f in fields(node) if f.name not in skip)
    return node


_TRIVIA_FIELDS = {"span", "trivia", "closing", "name_span", "path"}


__all__ = [
    "Comment", "Trivia", "Number", "String", "Ident", "ListValue", "Kwarg", "Call", "ParamRef", "Value", "Import",
    "Alt", "IndexRange", "Segment", "Pattern", "Assign", "Block", "Item", "SpecFile", "strip_spans", "replace",
]
