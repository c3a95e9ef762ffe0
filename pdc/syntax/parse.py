"""Text → AST. Never raises on bad input: returns the AST (or None) and diagnostics.

lark (LALR, strict) builds the parse tree; `_Builder` turns it into the frozen AST of
`pdc.syntax.ast`; `attach_trivia` hangs comments on the items they belong to; lark's
exceptions are turned into phrased diagnostics by `pdc.syntax.syntax_errors`.
"""

from __future__ import annotations

import functools
import math
import re
from contextvars import ContextVar
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import LarkError

from pdc.syntax import scan as scanner
from pdc.syntax.ast import (
    Assign, Block, Call, Comment, Ident, Import, Item, Kwarg, ListValue, Number, ParamRef, Pattern, SpecFile, String,
    Value,
)
from pdc.syntax.diagnostics import Diagnostic
from pdc.syntax.patterns import parse_pattern, plain_key
from pdc.syntax.span import Span, point
from pdc.syntax.syntax_errors import translate
from pdc.syntax.trivia import attach_trivia

GRAMMAR_PATH = Path(__file__).with_name("pdc.lark")  # the one grammar file, shipped in the package
MAX_FILE_BYTES = 16 * 1024 * 1024
_comments: ContextVar[list[Token]] = ContextVar("_comments")
_NUMBER = re.compile(r"([+-]?[0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)([A-Za-z%]*)")


def _on_comment(token: Token) -> None:
    _comments.get().append(token)


def _grammar_text() -> str:
    return GRAMMAR_PATH.read_text()


@functools.cache
def parser() -> Lark:
    """The one lark parser (built once; strict mode fails on any grammar conflict)."""
    return build_parser(cache=True)


def build_parser(cache: bool = False) -> Lark:
    """A fresh parser; `cache=False` always rebuilds the tables and re-runs the strict
    checks (and keeps `.grammar`, which hypothesis's `from_lark` reads)."""
    return Lark(_grammar_text(), parser="lalr", strict=True, propagate_positions=True, maybe_placeholders=False,
                lexer_callbacks={"COMMENT": _on_comment}, cache=_cache_path() if cache else False)


def _cache_path() -> str | bool:
    """lark's pickled parser, keyed by the grammar's hash: a fresh `pdc check` then skips
    building the LALR tables and the strict collision checks (~0.15 s). The tables are
    built — and strictly checked — whenever the grammar changes; `tests/test_grammar.py`
    also builds them uncached. A read-only home falls back to building every time."""
    import hashlib
    import os

    digest = hashlib.sha256(_grammar_text().encode()).hexdigest()[:16]
    directory = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pdc"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return str(directory / f"grammar-{digest}.lark")


def parse_text(text: str, path: str = "<string>") -> tuple[SpecFile | None, list[Diagnostic]]:
    """Parse one spec file's text. Diagnostics are syntax-level only (PD00xx/PD01xx)."""
    scan = scanner.scan(text)
    if scan.too_deep_at is not None:
        return None, [Diagnostic("PD0002", f"brackets nested more than {scanner.MAX_DEPTH} deep",
                                 point(path, text, scan.too_deep_at), "too deep",
                                 help=("a spec needs a handful of levels; look for unclosed brackets",))]
    comments: list[Token] = []
    token = _comments.set(comments)
    try:
        tree = parser().parse(text)
    except LarkError as error:
        return None, [translate(error, text, path, scan)]
    finally:
        _comments.reset(token)
    diagnostics: list[Diagnostic] = []
    builder = _Builder(path, diagnostics)
    imports = [builder.import_(c) for c in tree.children if c.data == "import_stmt"]
    items = builder.items([c for c in tree.children if c.data != "import_stmt"])
    spec_comments = [Comment(str(c).rstrip(), _span(path, c)) for c in comments]
    attached, closing = attach_trivia([*imports, *items], spec_comments, text)  # type: ignore[list-item]
    imports, items = attached[:len(imports)], attached[len(imports):]
    return SpecFile(tuple(items), path, text, tuple(closing), tuple(imports)), diagnostics  # type: ignore[arg-type]


def read_source(path: str) -> tuple[str | None, list[Diagnostic]]:
    """Read a spec file as UTF-8; unreadable files become PD0001 diagnostics."""
    origin = Span(path, 1, 1, 1, 2)
    try:
        data = Path(path).read_bytes()
    except (OSError, ValueError) as error:  # ValueError: a path holding a NUL byte
        return None, [Diagnostic("PD0001", f"cannot read spec file: {getattr(error, 'strerror', None) or error}",
                                 origin)]
    if len(data) > MAX_FILE_BYTES:
        return None, [Diagnostic("PD0001", f"spec file is {len(data) / 2**20:.1f} MiB; the limit is "
                                 f"{MAX_FILE_BYTES // 2**20} MiB", origin)]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as error:
        text = data[:error.start].decode("utf-8", errors="replace")
        return None, [Diagnostic("PD0001", "spec file is not valid UTF-8 text",
                                 point(path, text, len(text)), f"invalid byte 0x{data[error.start]:02x}",
                                 help=("save the file as UTF-8",))]


def _span(path: str, token: Token) -> Span:
    return Span(path, token.line or 1, token.column or 1, token.end_line or 1, token.end_column or 1,
                token.start_pos or 0, token.end_pos or 0)


def _tree_span(path: str, tree: Tree) -> Span:
    m = tree.meta
    return Span(path, m.line, m.column, m.end_line, m.end_column, m.start_pos, m.end_pos)


class _Builder:
    """lark parse tree → AST nodes (recursion is bounded by the pre-scan's depth limit)."""

    def __init__(self, path: str, diagnostics: list[Diagnostic]) -> None:
        self.path = path
        self.diagnostics = diagnostics

    def items(self, children: list[Tree]) -> list[Item]:
        return [self.item(child) for child in children]

    def import_(self, tree: Tree) -> Import:
        token = tree.children[0]
        return Import(String(_unescape(str(token)), _span(self.path, token)), _tree_span(self.path, tree))

    def item(self, tree: Tree) -> Item:
        span = _tree_span(self.path, tree)
        if tree.data == "assign":
            key, value = tree.children
            return Assign(self.key(key), self.value(value), span)
        key, *rest = tree.children
        label = None
        if rest and isinstance(rest[0], Tree) and rest[0].data == "label":
            token = rest.pop(0).children[0]
            label = Ident(str(token), _span(self.path, token))
        return Block(self.key(key), label, tuple(self.items(rest)), span)

    def key(self, tree: Tree) -> Pattern:
        token = tree.children[0]
        span = _span(self.path, token)
        if tree.data == "name_key":
            return plain_key(str(token), span)
        return parse_pattern(str(token), span, self.diagnostics)

    def value(self, node: Tree | Token) -> Value:
        if isinstance(node, Token):  # ?value inlined a bare terminal (never happens: all aliased)
            return Ident(str(node), _span(self.path, node))
        kind = node.data
        if kind == "quantity":
            return self.number(node.children)
        token = node.children[0] if node.children else None
        if kind == "string":
            assert isinstance(token, Token)
            return String(_unescape(str(token)), _span(self.path, token))
        if kind == "param_ref":
            assert isinstance(token, Token)
            return ParamRef(str(token)[1:], _span(self.path, token))
        if kind in ("ident", "dotted"):
            assert isinstance(token, Token)
            return Ident(str(token), _span(self.path, token))
        if kind == "list":
            return ListValue(tuple(self.value(c) for c in node.children), _tree_span(self.path, node))
        return self.call(node)

    def number(self, tokens: list[Token]) -> Number:
        digits, suffix = _NUMBER.fullmatch(str(tokens[0])).groups()  # type: ignore[union-attr]
        span = _span(self.path, tokens[0])
        if len(tokens) == 2:
            if suffix:  # `80k GiB`: the second unit would silently replace the first
                self.diagnostics.append(Diagnostic(
                    "PD0209", f"`{tokens[0]}` already has a unit; `{tokens[1]}` is a second one",
                    _span(self.path, tokens[1]), "second unit",
                    help=(f"write `{digits} {tokens[1]}` or `{tokens[0]}`",)))
            suffix, span = str(tokens[1]), span.to(_span(self.path, tokens[1]))
        if not _finite(digits):
            why = "underscores may only separate digits: `10_000`" if "_" in digits else "the number is too large"
            self.diagnostics.append(Diagnostic("PD0106", f"invalid number `{digits}`", span, help=(why,)))
        return Number(digits, suffix, span)

    def call(self, node: Tree) -> Call:
        name, *args = node.children
        positional: list[Value] = []
        kwargs: list[Kwarg] = []
        for arg in args:
            if isinstance(arg, Tree) and arg.data == "kwarg":
                kname, kvalue = arg.children
                kwargs.append(Kwarg(str(kname), self.value(kvalue), _tree_span(self.path, arg)))
            else:
                positional.append(self.value(arg))
        return Call(str(name), tuple(positional), tuple(kwargs), _tree_span(self.path, node), _span(self.path, name))


def _finite(digits: str) -> bool:
    try:
        return math.isfinite(float(digits))  # float() also rejects misplaced underscores
    except ValueError:
        return False


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unescape(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def parse_file(path: str) -> tuple[SpecFile | None, str | None, list[Diagnostic]]:
    """Read and parse one file: (ast, text, diagnostics)."""
    text, diagnostics = read_source(path)
    if text is None:
        return None, None, diagnostics
    spec, diagnostics = parse_text(text, path)
    return spec, text, diagnostics
