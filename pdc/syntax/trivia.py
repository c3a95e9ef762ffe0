"""Attach comments and blank lines to the items they belong to, so `pdc fmt` can
reorder keys without losing or misplacing a comment.

Rules: a comment on the same line as the end of an item trails it; other comments
lead the next item in the same block; comments after a block's last item stay
before its closing `}`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace
from typing import Sequence

from pdc.syntax.ast import Block, Comment, Item, Trivia


def attach_trivia(items: Sequence[Item], comments: list[Comment], text: str) -> tuple[list[Item], list[Comment]]:
    """Return `items` with trivia set, and the comments left after the last item."""
    lines = text.split("\n")
    return _attach(list(items), sorted(comments, key=lambda c: c.span.start), lines)


def _attach(items: list[Item], comments: list[Comment], lines: list[str]) -> tuple[list[Item], list[Comment]]:
    """`comments` are sorted by offset and `items` are in source order, so each item takes
    the next run of comments (bisected, not filtered: a file of 100k commented entries
    must stay linear)."""
    out: list[Item] = []
    done = 0  # comments[:done] belong to earlier items
    prev_end_line = 0
    for item in items:
        split = bisect_left(comments, item.span.start, lo=done, key=_start)
        end = bisect_left(comments, item.span.end, lo=split, key=_start)
        before, inside, done = comments[done:split], comments[split:end], end
        if out and before and before[0].span.line == out[-1].span.end_line:
            out[-1] = _with_trailing(out[-1], before.pop(0))
        first_line = before[0].span.line if before else item.span.line
        blank = bool(out) and _has_blank(lines, prev_end_line, first_line)
        item = _with_children(item, inside, lines)
        out.append(replace(item, trivia=Trivia(tuple(before), item.trivia.trailing, blank)))
        prev_end_line = item.span.end_line
    pending = comments[done:]
    if out and pending and pending[0].span.line == out[-1].span.end_line:
        out[-1] = _with_trailing(out[-1], pending.pop(0))
    return out, pending


def _start(comment: Comment) -> int:
    return comment.span.start


def _with_children(item: Item, inside: list[Comment], lines: list[str]) -> Item:
    if not isinstance(item, Block):
        # a comment inside an assignment (a multi-line list) trails the assignment
        return replace(item, trivia=replace(item.trivia, trailing=_merge(inside))) if inside else item
    children, closing = _attach(list(item.items), inside, lines)
    return replace(item, items=tuple(children), closing=tuple(closing))


def _merge(comments: list[Comment]) -> Comment:
    return Comment("  ".join(c.text for c in comments), comments[0].span)


def _with_trailing(item: Item, comment: Comment) -> Item:
    previous = item.trivia.trailing
    merged = _merge([previous, comment]) if previous else comment
    return replace(item, trivia=replace(item.trivia, trailing=merged))


def _has_blank(lines: list[str], after_line: int, before_line: int) -> bool:
    """Whether a blank line lies strictly between two 1-based line numbers."""
    return any(not lines[i - 1].strip() for i in range(after_line + 1, before_line) if 0 < i <= len(lines))
