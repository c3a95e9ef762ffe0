"""lark exceptions → diagnostics phrased for people.

lark reports terminal names (`EQUAL`, `$END`); people want "expected `=` after key
`weight`". The phrasing depends on what the parser was in the middle of, which we
read off the expected-token set and the last tokens it consumed.
"""

from __future__ import annotations

import re

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.scan import ScanResult, header_before, scan, top_level_blocks
from pdc.syntax.span import Span, point
from pdc.syntax.suggest import closest
from pdc.syntax.units import ALL_UNITS, SIZE_UNITS

_SHOWN = {
    "EQUAL": "`=`", "LBRACE": "`{`", "RBRACE": "`}`", "LSQB": "`[`", "RSQB": "`]`", "LPAR": "`(`",
    "RPAR": "`)`", "COMMA": "`,`", "NAME": "a name", "PATTERN": "a site pattern", "NUMBER": "a number",
    "STRING": "a string", "UNIT": "a unit", "$END": "end of file",
}
_VALUE_START = {"NUMBER", "STRING", "NAME", "PATTERN", "LSQB"}


def translate(error: LarkError, text: str, path: str, scan: ScanResult) -> Diagnostic:
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, text, path)
    if isinstance(error, UnexpectedEOF) or (isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        return _unexpected_eof(text, path, scan)
    if isinstance(error, UnexpectedToken):
        return _unexpected_token(error, text, path)
    return Diagnostic("PD0102", f"cannot parse spec: {error}", point(path, text, 0))


def _unexpected_character(error: UnexpectedCharacters, text: str, path: str) -> Diagnostic:
    offset = error.pos_in_stream
    char = text[offset] if offset < len(text) else ""
    span = point(path, text, offset)
    if char == '"':
        line_end = text.find("\n", offset)
        length = (len(text) if line_end < 0 else line_end) - offset
        return Diagnostic("PD0104", "unterminated string", point(path, text, offset, length),
                          "string starts here", help=("close the string with `\"` on the same line",))
    alternation = _bad_alternation(text, path, offset + 1 if char == "." else offset)
    if alternation is not None:
        return alternation
    shown = repr(char)[1:-1] if not char.isprintable() or char.isspace() else char
    return Diagnostic("PD0101", f"unexpected character `{shown}`", span, help=_character_help(char))


def _bad_alternation(text: str, path: str, offset: int) -> Diagnostic | None:
    """`layers.{gate_proj,,up_proj}` stops the lexer at the `.` or `{`: the PATTERN token
    only admits well-formed alternations. Say what is wrong inside the braces."""
    end = text.find("}", offset)
    line_end = text.find("\n", offset)
    if not text.startswith("{", offset) or end < 0 or (0 <= line_end < end):
        return None
    options = [o.strip() for o in text[offset + 1:end].split(",")]
    span = point(path, text, offset, end + 1 - offset)
    if any(not o for o in options):
        return Diagnostic("PD0105", "empty alternative in `{...}`", span, "empty alternative",
                          help=("write alternatives as `{q_proj, k_proj}`",))
    bad = next((o for o in options if not re.fullmatch(r"[A-Za-z0-9_]+", o)), None)
    if bad is not None:
        return Diagnostic("PD0105", f"invalid alternative `{bad}` in `{{...}}`", span, "invalid alternative",
                          help=("alternatives are names separated by `,`: `{q_proj, k_proj}`",))
    return None


def _character_help(char: str) -> tuple[str, ...]:
    if char in "[{*.":
        return ("site patterns look like `layers[18..23].mlp.{gate_proj, up_proj}` or `ci.**`",)
    if char in ";:":
        return ("items are separated by spaces or new lines, and keys are set with `=`",)
    if char in "'\u2018\u2019\u201c\u201d":
        return ('strings are written in straight double quotes: `"..."`',)
    if char in "\u2212\u2013\u2014":
        return ("write the ASCII minus sign `-`",)
    return ()


def _unexpected_eof(text: str, path: str, scan: ScanResult) -> Diagnostic:
    span = point(path, text, len(text.rstrip()), 1) if text.strip() else point(path, text, 0)
    if scan.unclosed:
        opener = scan.unclosed[-1]
        closer = {"{": "}", "[": "]", "(": ")"}[opener.char]
        what = f"block `{header_before(text, opener.offset)}`" if opener.char == "{" else f"`{opener.char}`"
        return Diagnostic("PD0103", f"unexpected end of file: {what} is not closed", span, f"expected `{closer}`",
                          related=(Related(point(path, text, opener.offset), f"`{opener.char}` opened"),))
    return Diagnostic("PD0103", "unexpected end of file", span, "the value is missing")


def _unexpected_token(error: UnexpectedToken, text: str, path: str) -> Diagnostic:
    token = error.token
    span = _token_span(path, token)
    expected = set(error.expected)
    history: list[Token] = list(error.token_history or [])
    previous = history[-1] if history else None
    found = _describe(token)
    unit = _misspelled_unit(token, text, path)
    if unit is not None:
        return unit
    if {"EQUAL", "LBRACE"} <= expected and previous is not None:
        return Diagnostic("PD0102", f"expected `=` after key `{previous}`", span, f"found {found}",
                          help=(f"set a value with `{previous} = ...` or open a block with `{previous} {{ ... }}`",))
    if expected == {"LBRACE"} and previous is not None:
        return _missing_brace(error, text, path, span, found, history)
    if _VALUE_START <= expected and previous is not None and previous.type in ("EQUAL", "LSQB", "COMMA", "LPAR"):
        after = "`=`" if previous.type == "EQUAL" else f"`{previous}`"
        return Diagnostic("PD0102", f"expected a value after {after}", span, f"found {found}")
    if "COMMA" in expected:
        inner = scan(text[:token.start_pos or 0]).unclosed
        if inner and inner[-1].char in "[(":
            opener = point(path, text, inner[-1].offset)
            opened = (Related(opener, f"`{inner[-1].char}` opened"),) if opener.line != span.line else ()
            what = "`,` or `)` in call" if inner[-1].char == "(" else "`,` or `]` in list"
            return Diagnostic("PD0102", f"expected {what}", span, f"found {found}", related=opened)
        return _after_value(error, text, path, span, found, bool(inner))
    if token.type == "RBRACE" and {"NAME", "PATTERN"} <= expected:
        return _stray_brace(text, path, span)
    if {"NAME", "PATTERN"} <= expected:
        help_ = ("a key is a name, like `weight`, or a site pattern, like `layers[18].mlp.*`",)
        if token.type == "COMMA":
            help_ = ("`,` separates the values of a list or a call; keys are separated by spaces or new lines",)
        elif token.type == "IMPORT":
            help_ = ("`import` is a keyword (`import \"base.pd\"`, at the top of a file only); it cannot name a key",)
        return Diagnostic("PD0102", f"expected a key or a block, found {found}", span, help=help_)
    wanted = " or ".join(sorted(_SHOWN.get(t, t) for t in expected))
    return Diagnostic("PD0102", f"expected {wanted}, found {found}", span)


def _after_value(error: UnexpectedToken, text: str, path: str, span: Span, found: str, in_block: bool) -> Diagnostic:
    """A key's value is complete and something other than the next key follows it."""
    stack = list(getattr(error.state, "value_stack", None) or [])
    at = max((i for i, v in enumerate(stack) if isinstance(v, Token) and v.type == "EQUAL"), default=-1)
    key = stack[at - 1] if at > 0 else None
    key_text = str(key.children[0]) if isinstance(key, Tree) and key.children else ""
    last = stack[-1] if stack else None
    if (error.token.type == "EQUAL" and at >= 0 and isinstance(last, Token) and last.type in ("NAME", "PATTERN")
            and (last.line or 0) > (stack[at].line or 0)):
        return Diagnostic("PD0102", f"missing value after `{key_text} =`", _token_span(path, stack[at]),
                          "expected a value", help=(f"`{last}` on line {last.line} was read as the value of "
                                                    f"`{key_text}`",))
    help_: tuple[str, ...] = ("a key takes one value; write several as a list: `[a, b]`",)
    if error.token.type == "EQUAL":
        help_ = ()
    elif error.token.type == "NUMBER" and isinstance(last, Token) and last.type == "NUMBER":
        help_ = (f"write a number without spaces: `{last}{error.token}` or `{last}_{error.token}`",)
    closer = " or `}`" if in_block else ""
    after = f" after the value of `{key_text}`" if key_text else ""
    return Diagnostic("PD0102", f"expected a new key{closer}{after}", span, f"found {found}", help=help_)


def _stray_brace(text: str, path: str, span: Span) -> Diagnostic:
    """A `}` at the top level: an extra `}` earlier closed the enclosing block too soon."""
    blocks = [(opened, closed) for opened, closed in top_level_blocks(text[:span.start]) if text[opened] == "{"]
    related: tuple[Related, ...] = ()
    if blocks:
        opened, closed = blocks[0]
        header = header_before(text, opened)
        related = (Related(point(path, text, closed), f"block `{header}` closed" if header else "a block closed"),)
    return Diagnostic("PD0102", "unmatched `}`: no block is open here", span, "unmatched `}`", related=related,
                      help=("an extra `}` closes a block too early; remove it",))


_NUMBER_THEN_NAMES = re.compile(r"[0-9][0-9_.]*(?:[eE][+-]?[0-9]+)?[ \t]+([A-Za-z_][A-Za-z0-9_]*)(?:[ \t]+[A-Za-z_][A-Za-z0-9_]*)?[ \t]*$")


def _misspelled_unit(token: Token, text: str, path: str) -> Diagnostic | None:
    """`80 Gib headroom = 1` parses `Gib` as the next key (or `Gib headroom` as a block
    header); when a near-unit name follows a number on the same line, say so instead."""
    start = token.start_pos or 0
    line_start = text.rfind("\n", 0, start) + 1
    match = _NUMBER_THEN_NAMES.search(text, line_start, start)
    if match is None:
        return None
    name = match.group(1)
    span = point(path, text, match.start(1), len(name))
    if name in ALL_UNITS:  # `10 k`: only size units may stand apart from the number
        if name in SIZE_UNITS and name != "B":
            return None  # lexed as a UNIT: the problem is elsewhere
        digits = text[match.start():match.start(1)].strip()
        return Diagnostic("PD0209", f"unit `{name}` must be written against the number", span, "detached unit",
                          help=(f"write `{digits}{name}`",))
    unit = closest(name, ALL_UNITS)
    if unit is None:
        return None
    return Diagnostic("PD0209", f"unknown unit `{name}` — did you mean `{unit}`?", span,
                      "unknown unit", help=(f"units: {', '.join(ALL_UNITS)}",))


def _missing_brace(error: UnexpectedToken, text: str, path: str, span: Span, found: str,
                   history: list[Token]) -> Diagnostic:
    """`name label` was read as a block header and no `{` follows. When the label is on a
    later line than the name, the `{` is missing at the end of the name's line."""
    stack = list(getattr(error.state, "value_stack", None) or [])
    key, label = (stack[-2], stack[-1]) if len(stack) >= 2 else (None, None)
    if isinstance(key, Tree) and key.children and isinstance(label, Token) and isinstance(key.children[0], Token):
        name = key.children[0]
        if (label.line or 0) > (name.line or 0):
            return Diagnostic("PD0102", f"expected `{{` after `{name}`", point(path, text, name.end_pos or 0),
                              "missing `{`", help=(f"`{label}` on line {label.line} was read as the label of "
                                                  f"`{name}`",))
        header = f"{name} {label}"
        if span.line > (label.line or 0):  # `target tms` and nothing more on its line
            return Diagnostic("PD0102", f"expected `{{` after `{header}`", point(path, text, label.end_pos or 0),
                              "missing `{`", help=("a block is written `name label { ... }`",))
    else:
        header = _header(history)
    return Diagnostic("PD0102", f"expected `{{` after `{header}`", span, f"found {found}",
                      help=("a block is written `name label { ... }`, a key `name = value`",))


def _header(history: list[Token]) -> str:
    return " ".join(str(t) for t in history[-2:])


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    value = str(token)
    return f"`{value[:40]}{'...' if len(value) > 40 else ''}`"


def _token_span(path: str, token: Token) -> Span:
    line, col = token.line or 1, token.column or 1
    end_line = token.end_line or line
    end_col = token.end_column or col + 1
    return Span(path, line, col, end_line, end_col, token.start_pos or 0, token.end_pos or 0)
