"""lark exceptions → diagnostics phrased for people.

lark reports terminal names (`EQUAL`, `$END`); people want "expected `=` after key
`weight`". The phrasing depends on what the parser was in the middle of, which we
read off the expected-token set and the last tokens it consumed.
"""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.scan import ScanResult, header_before, scan
from pdc.syntax.span import Span, point
from pdc.syntax.suggest import closest
from pdc.syntax.units import ALL_UNITS

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
    shown = repr(char)[1:-1] if not char.isprintable() or char.isspace() else char
    return Diagnostic("PD0101", f"unexpected character `{shown}`", span, help=_character_help(char))


def _character_help(char: str) -> tuple[str, ...]:
    if char in "[{*":
        return ("site patterns look like `layers[18..23].mlp.{gate_proj, up_proj}` or `ci.**`",)
    if char in ";:":
        return ("items are separated by spaces or new lines, and keys are set with `=`",)
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
        return Diagnostic("PD0102", f"expected `{{` after `{_header(history)}`", span, f"found {found}")
    if _VALUE_START <= expected and previous is not None and previous.type in ("EQUAL", "LSQB", "COMMA", "LPAR"):
        after = "`=`" if previous.type == "EQUAL" else f"`{previous}`"
        return Diagnostic("PD0102", f"expected a value after {after}", span, f"found {found}")
    if "COMMA" in expected:
        inner = scan(text[:token.start_pos or 0]).unclosed
        if inner and inner[-1].char == "(":
            return Diagnostic("PD0102", "expected `,` or `)` in call", span, f"found {found}")
        return Diagnostic("PD0102", "expected `,` or `]` in list", span, f"found {found}")
    if {"NAME", "PATTERN"} <= expected:
        help_ = ("a key is a name, like `weight`, or a site pattern, like `layers[18].mlp.*`",)
        stray = "`}` with no open block" if token.type == "RBRACE" else found
        return Diagnostic("PD0102", f"expected a key or a block, found {stray}", span, help=help_)
    wanted = " or ".join(sorted(_SHOWN.get(t, t) for t in expected))
    return Diagnostic("PD0102", f"expected {wanted}, found {found}", span)


_NUMBER_THEN_NAMES = re.compile(r"[0-9][0-9_.]*(?:[eE][+-]?[0-9]+)?[ \t]+([A-Za-z_][A-Za-z0-9_]*)(?:[ \t]+[A-Za-z_][A-Za-z0-9_]*)?[ \t]*$")


def _misspelled_unit(token: Token, text: str, path: str) -> Diagnostic | None:
    """`80 Gib headroom = 1` parses `Gib` as the next key (or `Gib headroom` as a block
    header); when a near-unit name follows a number on the same line, say so instead."""
    start = token.start_pos or 0
    line_start = text.rfind("\n", 0, start) + 1
    match = _NUMBER_THEN_NAMES.search(text, line_start, start)
    if match is None:
        return None
    unit = closest(match.group(1), ALL_UNITS)
    if unit is None:
        return None
    span = point(path, text, match.start(1), len(match.group(1)))
    return Diagnostic("PD0209", f"unknown unit `{match.group(1)}` — did you mean `{unit}`?", span,
                      "unknown unit", help=(f"units: {', '.join(ALL_UNITS)}",))


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
