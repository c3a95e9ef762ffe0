"""A character-level pre-scan run before lark: nesting depth and unclosed brackets.

LALR parsing itself is iterative, but everything downstream of it walks the AST
recursively, so nesting is bounded here (PD0002) before a tree is ever built. The
same scan remembers where each unclosed `{` was opened, which the syntax-error
translator uses for "block `target` is not closed" notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

MAX_DEPTH = 64
_OPEN = {"{": "}", "[": "]", "(": ")"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_KEY_BEFORE = re.compile(r"([A-Za-z_][A-Za-z0-9_.*\[\]{}, \t]*?)[ \t]*(?:[A-Za-z_][A-Za-z0-9_]*)?[ \t]*$")


@dataclass(frozen=True)
class Opener:
    char: str
    offset: int


@dataclass(frozen=True)
class ScanResult:
    too_deep_at: int | None  # offset of the first bracket past MAX_DEPTH
    unclosed: tuple[Opener, ...]  # innermost last


def _brackets(text: str) -> Iterator[tuple[int, str]]:
    """(offset, bracket) of every bracket outside strings and comments."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if ch == '"':
            i = _skip_string(text, i)
            continue
        if ch in _OPEN or ch in _CLOSE:
            yield i, ch
        i += 1


def scan(text: str) -> ScanResult:
    """Track bracket nesting outside strings and comments."""
    stack: list[Opener] = []
    for i, ch in _brackets(text):
        if ch in _OPEN:
            stack.append(Opener(ch, i))
            if len(stack) > MAX_DEPTH:
                return ScanResult(i, tuple(stack))
        elif stack and stack[-1].char == _CLOSE[ch]:
            stack.pop()
    return ScanResult(None, tuple(stack))


def top_level_blocks(text: str) -> list[tuple[int, int]]:
    """(opening, closing) offsets of each closed top-level bracket pair, outside strings and
    comments: where an extra `}` ended `spec NAME { ... }` early."""
    pairs: list[tuple[int, int]] = []
    depth, opened = 0, 0
    for i, ch in _brackets(text):
        if ch in _OPEN:
            opened = i if depth == 0 else opened
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                pairs.append((opened, i))
    return pairs


def _skip_string(text: str, i: int) -> int:
    j = i + 1
    while j < len(text) and text[j] not in '"\n':
        j += 2 if text[j] == "\\" else 1
    return j + 1


def header_before(text: str, offset: int) -> str:
    """The block header written before the `{` at `offset` (`target tms`), for messages."""
    line_start = text.rfind("\n", 0, offset) + 1
    header = text[line_start:offset].strip()
    if not header and line_start > 0:  # `{` on a line of its own: the header is on the line above
        above = text.rfind("\n", 0, line_start - 1) + 1
        header = text[above:line_start - 1].split("#")[0].strip()
    return header.split("=")[-1].strip()[-60:] if header else ""
