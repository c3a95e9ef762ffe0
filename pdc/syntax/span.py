"""Source positions. Every AST node and every diagnostic carries a `Span`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Span:
    """A half-open region of one source file, 1-based lines and columns.

    `start`/`end` are character offsets, used to slice the source text for
    carets; `line`/`col`/`end_line`/`end_col` are what people read.
    """

    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    start: int = 0
    end: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to(self, other: Span) -> Span:
        """The span covering `self` through `other` (same file)."""
        return Span(self.file, self.line, self.col, other.end_line, other.end_col, self.start, other.end)

    def shifted(self, offset: int, length: int) -> Span:
        """A sub-span `length` characters long starting `offset` characters in.

        Only valid inside a single-line span (site patterns are single-line tokens).
        """
        start = self.start + offset
        return Span(self.file, self.line, self.col + offset, self.line, self.col + offset + length, start, start + length)

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "col": self.col, "end_line": self.end_line, "end_col": self.end_col}


def point(file: str, text: str, offset: int, length: int = 1) -> Span:
    """The span of `length` characters at `offset` in `text` (for errors found by scanning)."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Span(file, line, col, line, col + max(length, 1), offset, offset + max(length, 1))
