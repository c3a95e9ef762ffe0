"""Diagnostics are data: every stage returns a list of them instead of raising.

Rendering follows DESIGN.md §4: `path:line:col: error[PDnnnn]: summary`, the source
line with the subject span underlined, related spans as notes, then `help:` lines.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable

from pdc.syntax.span import Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Related:
    """A second place that explains the error ("first defined here")."""

    span: Span
    note: str


@dataclass(frozen=True)
class Diagnostic:
    code: str
    summary: str
    span: Span
    label: str = ""  # printed after the carets
    related: tuple[Related, ...] = ()
    help: tuple[str, ...] = ()
    severity: Severity = Severity.ERROR

    @property
    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.span.file, self.span.line, self.span.col, self.code)

    def to_json(self) -> dict[str, object]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "summary": clip(self.summary),
            "span": self.span.to_json(),
            "label": clip(self.label),
            "related": [{"span": r.span.to_json(), "note": clip(r.note)} for r in self.related],
            "help": [clip(h) for h in self.help],
        }


class SpecError(Exception):
    """Raised by API entry points (`pdc.load_spec`) that cannot return diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None) -> None:
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(render_all(diagnostics, self.sources))


def sorted_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted by position, exact duplicates removed."""
    unique = {(d.sort_key, d.summary): d for d in diagnostics}
    return [unique[k] for k in sorted(unique)]


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


# ---- human rendering ----------------------------------------------------------------

_MAX_MESSAGE = 500  # messages quote names and values: a 2 MB identifier is cut in the middle


def clip(message: str) -> str:
    """`message`, cut in the middle when a quoted name or value makes it too long to print."""
    if len(message) <= _MAX_MESSAGE:
        return message
    return f"{message[:320]}...{message[-160:]}"


def _text(message: str) -> str:
    """A message for the terminal: clipped, and a control character it quotes from the
    source (`\\r`, `\\x85`, `\\u2028`) escaped so it cannot break or overwrite the line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in clip(message))


@functools.lru_cache(maxsize=4)
def _lines(text: str) -> list[str]:
    """A file's lines, split once however many diagnostics it has (read-only)."""
    return text.split("\n")


def _source_line(text: str, line: int) -> str:
    lines = _lines(text)
    return lines[line - 1] if 0 < line <= len(lines) else ""


_MAX_SHOWN = 120  # long lines are cut around the span so a 2 MB line prints as one short row


def _excerpt(source_line: str, col: int, end_col: int) -> tuple[str, int, int]:
    """Cut `source_line` to at most _MAX_SHOWN characters around columns [col, end_col)."""
    if len(source_line) <= _MAX_SHOWN:
        return source_line, col, end_col
    start = max(0, col - 1 - 40)
    cut = source_line[start:start + _MAX_SHOWN]
    prefix = "..." if start else ""
    shift = start - len(prefix)
    shown = prefix + cut + ("..." if start + _MAX_SHOWN < len(source_line) else "")
    return shown, col - shift, min(end_col - shift, len(shown) + 1)  # carets stop where the row does


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in text).replace("\t", " ")


def render_snippet(span: Span, text: str, label: str) -> list[str]:
    """The numbered source line of `span` with `^^^` under it and the label after the carets."""
    raw = _source_line(text, span.line)
    end_col = span.end_col if span.end_line == span.line else len(raw) + 1
    shown, col, end_col = _excerpt(raw, span.col, max(end_col, span.col + 1))
    shown = _printable(shown)  # after cutting: one character for one, so columns still line up
    gutter = " " * len(str(span.line))
    carets = "^" * max(1, end_col - col)
    return [
        f"{span.line} | {shown}",
        f"{gutter} | {' ' * (col - 1)}{carets}{(' ' + label) if label else ''}",
    ]


def render(diagnostic: Diagnostic, sources: dict[str, str]) -> str:
    """One diagnostic in the human form of DESIGN.md §4."""
    d = diagnostic
    lines = [f"{d.span}: {d.severity.value}[{d.code}]: {_text(d.summary)}"]
    text = sources.get(d.span.file)
    if text:  # an empty or unreadable file has no line to show
        lines += ["   " + row for row in render_snippet(d.span, text, _text(d.label))]
    for rel in d.related:
        lines.append(f"   note: {_text(rel.note)} at {rel.span}")
        rel_text = sources.get(rel.span.file)
        if rel_text is not None:
            lines += ["   " + row for row in render_snippet(rel.span, rel_text, "")]
    lines += [f"   help: {_text(h)}" for h in d.help]
    return "\n".join(lines)


def render_all(diagnostics: Iterable[Diagnostic], sources: dict[str, str]) -> str:
    return "\n\n".join(render(d, sources) for d in diagnostics)


def render_json(diagnostics: Iterable[Diagnostic], ok_files: Iterable[str] = ()) -> str:
    """The `--format json` document: a versioned envelope bots can rely on."""
    diags = [d.to_json() for d in diagnostics]
    return json.dumps({"schema": "pdc.diagnostics/1", "ok": not diags or all(
        x["severity"] != "error" for x in diags), "files_ok": sorted(ok_files), "diagnostics": diags}, indent=2)
