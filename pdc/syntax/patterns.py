"""Site patterns: the inner structure of a dotted key.

The lexer matches a whole pattern as one PATTERN token (so `{q,k,v}_proj` needs no
whitespace rules in the grammar); this module splits it into segments and reports
structural mistakes with spans pointing inside the token.

    layers[18..23].self_attn.{q_proj, k_proj}   ranges, alternations
    components.*.U                              `*`: exactly one segment
    ci.**                                       `**`: any number of segments
"""

from __future__ import annotations

import functools
import re
from typing import Iterator

from pdc.syntax.ast import Alt, IndexRange, Pattern, Segment
from pdc.syntax.diagnostics import Diagnostic
from pdc.syntax.span import Span

_SEGMENT = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\*\*?)"
    r"|\{(?P<alt>[^}]*)\}(?P<suffix>[A-Za-z0-9_]*)"
)
_INDEX = re.compile(r"\[(?P<body>[^\]]*)\]")
_RANGE = re.compile(r"\s*([0-9]+)\s*(?:\.\.\s*([0-9]+)\s*)?$")
_ALT_OPTION = re.compile(r"[A-Za-z0-9_]+$")


def parse_pattern(text: str, span: Span, diagnostics: list[Diagnostic]) -> Pattern:
    """Split a PATTERN token into segments; appends a PD0105 diagnostic per mistake."""
    segments: list[Segment] = []
    pos = 0
    while pos <= len(text):
        segment, pos = _parse_segment(text, pos, span, diagnostics)
        segments.append(segment)
        if pos >= len(text) or text[pos] != ".":
            break
        pos += 1
    return Pattern(render_pattern_segments(segments) if segments else text, tuple(segments), span)


def plain_key(name: str, span: Span) -> Pattern:
    return Pattern(name, (Segment(name, (), span),), span)


def _parse_segment(text: str, pos: int, span: Span, diagnostics: list[Diagnostic]) -> tuple[Segment, int]:
    match = _SEGMENT.match(text, pos)
    if match is None:  # the lexer's regex guarantees this cannot happen; stay total anyway
        diagnostics.append(_bad(span.shifted(pos, 1), f"unexpected `{text[pos:pos + 1]}` in site pattern"))
        return Segment("*", (), span.shifted(pos, 1)), len(text)
    part: str | Alt
    if match.group("name") is not None:
        part = match.group("name")
    else:
        part = _parse_alt(match.group("alt"), match.group("suffix"), span.shifted(pos, match.end() - pos), diagnostics)
    end = match.end()
    indices: list[IndexRange] = []
    for index in _iter_indices(text, end):
        indices += _parse_ranges(index.group("body"), span.shifted(index.start(), index.end() - index.start()), diagnostics)
        end = index.end()
    return Segment(part, tuple(indices), span.shifted(pos, end - pos)), end


def _iter_indices(text: str, pos: int) -> Iterator[re.Match[str]]:
    while (match := _INDEX.match(text, pos)) is not None:
        yield match
        pos = match.end()


def _parse_alt(body: str, suffix: str, span: Span, diagnostics: list[Diagnostic]) -> Alt:
    options = tuple(option.strip() for option in body.split(","))
    if any(not _ALT_OPTION.match(option) for option in options):
        diagnostics.append(_bad(span, "empty alternative in `{...}`", "write alternatives as `{q_proj, k_proj}`",
                                label="empty alternative"))
    twice = next((o for i, o in enumerate(options) if o and o in options[:i]), None)
    if twice is not None:
        diagnostics.append(_bad(span, f"`{twice}` is listed twice in `{{...}}`", "list each alternative once",
                                label="listed twice"))
    return Alt(tuple(o for o in options if o), suffix)


def _parse_ranges(body: str, span: Span, diagnostics: list[Diagnostic]) -> list[IndexRange]:
    ranges: list[IndexRange] = []
    for chunk in body.split(","):
        match = _RANGE.match(chunk)
        if match is None:
            diagnostics.append(_bad(span, f"invalid index `[{body}]`", "write an index as `[18]`, `[18..23]` or `[0, 2..4]`",
                                    label="invalid index"))
            return ranges
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            diagnostics.append(_bad(span, f"empty range `{first}..{last}`", f"ranges are inclusive and ascending: `{last}..{first}`",
                                    label="empty range"))
        ranges.append(IndexRange(first, last))
    return ranges


def _bad(span: Span, summary: str, *help_lines: str, label: str = "") -> Diagnostic:
    return Diagnostic("PD0105", summary, span, label, help=tuple(help_lines))


# ---- rendering and matching -----------------------------------------------------------


def render_segment(segment: Segment) -> str:
    part = segment.part
    text = part if isinstance(part, str) else "{" + ", ".join(part.options) + "}" + part.suffix
    if segment.indices:
        text += "[" + ", ".join(str(r.first) if r.first == r.last else f"{r.first}..{r.last}" for r in segment.indices) + "]"
    return text


def render_pattern_segments(segments: list[Segment] | tuple[Segment, ...]) -> str:
    """Canonical text of a pattern (what `pdc fmt` writes)."""
    return ".".join(render_segment(s) for s in segments)


Atom = tuple[str, object]  # ("name", str) | ("alt", Alt) | ("*", None) | ("**", None) | ("index", ranges)


def _atoms(pattern: Pattern) -> list[Atom]:
    atoms: list[Atom] = []
    for segment in pattern.segments:
        part = segment.part
        if isinstance(part, Alt):
            atoms.append(("alt", part))
        elif part in ("*", "**"):
            atoms.append((part, None))
        else:
            atoms.append(("name", part))
        if segment.indices:
            atoms.append(("index", segment.indices))
    return atoms


def _atom_matches(atom: Atom, part: str) -> bool:
    kind, data = atom
    if kind == "*":
        return True
    if kind == "name":
        return part == data
    if kind == "alt":
        assert isinstance(data, Alt)
        return any(part == option + data.suffix for option in data.options)
    assert isinstance(data, tuple)
    return part.isdigit() and any(r.first <= int(part) <= r.last for r in data)


def _match_atoms(atoms: tuple[Atom, ...] | list[Atom], parts: list[str]) -> bool:
    if not atoms:
        return not parts
    if not parts:
        return False
    if atoms[0][0] == "**":  # one or more segments
        return any(_match_atoms(atoms[1:], parts[n:]) for n in range(1, len(parts) + 1))
    return _atom_matches(atoms[0], parts[0]) and _match_atoms(atoms[1:], parts[1:])


def matches(pattern: Pattern, path: str) -> bool:
    """Whether the dotted `path` is named by `pattern`. `layers[1, 3..4]` names
    `layers.1`, `layers.3` and `layers.4`; `*` is one segment, `**` one or more."""
    return _match_atoms(_compiled(pattern), path.split("."))


def literal_path(pattern: Pattern) -> str | None:
    """The one path a pattern without wildcards, alternatives or ranges names, else None
    (lets a caller look such patterns up instead of matching every path)."""
    parts: list[str] = []
    for kind, data in _compiled(pattern):
        if kind == "name":
            parts.append(str(data))
        elif kind == "index" and len(data) == 1 and data[0].first == data[0].last:  # type: ignore[index]
            parts.append(str(data[0].first))  # type: ignore[index]
        else:
            return None
    return ".".join(parts)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: Pattern) -> tuple[Atom, ...]:
    return tuple(_atoms(pattern))
