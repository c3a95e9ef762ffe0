"""Spec families: `import`, `param`/`params` and `$name` resolved into one spec, before validation.

    import "tms_base.pd"                         # path relative to this file, inside the project
    param C { type = int default = 20 doc = "components per site" }
    params { hidden = 2 }                        # binds a parameter declared here or in an import
    spec tms_5_2 { decompose { linear1 { C = $C } } train { seed = 1 } }

The imported file's `spec` (or `base`: a partial spec meant only to be imported) is merged
key by key under this file's own block, later wins: a key replaces the key, a block merges
into the block of the same name (a block with another label, `data tokens` over `data
corpus`, replaces it whole), an entry (a site, a shard rule, a mesh axis) merges into the
entry written the same way, new ones are appended. Nothing is executed: an import is read
and parsed like any spec file. Every item of the merged spec keeps the span of the file it
was written in, so a diagnostic points into the file that holds the text and the span of a
value *is* its provenance. `--set` overrides apply to the merged spec, then `$name`
references are replaced by their parameter's value (its binding, else its default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from pdc.registry import SPEC
from pdc.registry.schema import BlockSchema, LabelKind, Layout, instance_key, variant_of
from pdc.registry.types import Unit
from pdc.syntax.ast import (
    Assign, Block, Call, Ident, Import, Item, Kwarg, ListValue, Number, ParamRef, SpecFile, String, Value,
)
from pdc.syntax.diagnostics import Diagnostic, Related, Severity
from pdc.syntax.overrides import Override, apply_assigns, apply_overrides
from pdc.syntax.parse import parse_text, read_source
from pdc.syntax.patterns import plain_key
from pdc.syntax.span import Span
from pdc.syntax.suggest import did_you_mean, one_of
from pdc.syntax.values import field_annotation, union_arms

ROOT_MARKERS = (".git", "pyproject.toml", "pdc.toml")
PARAM_TYPES = ("int", "float", "bool", "string", "name", "any")
_TOP = ("spec", "base")  # the blocks an import merges

PARAM = BlockSchema("param", "A parameter: `param NAME { type = float default = 1e-3 doc = \"...\" }`; `$NAME` "
                    "uses its value.")
PARAMS = BlockSchema("params", "Values for parameters declared here or in an imported file: `params { lr = 3e-3 }`.")
BASE = replace(SPEC, name="base", doc="A partial spec, only imported: `base NAME { ... }`.", required=False)
SWEEP = BlockSchema("sweep", "A family of runs: `sweep NAME { grid { train.seed = [0, 1] } zip { ... } }`.",
                    layout=Layout.EXPANDED)
FILE_SCHEMA = BlockSchema("<file>", "", children=(PARAM, PARAMS, SPEC, BASE, SWEEP))  # pdc fmt's top-level order


@dataclass(frozen=True)
class Param:
    """One `param` declaration with the value in force (its default unless bound)."""

    name: str
    type: str
    default: Value
    doc: str
    span: Span  # the declaration's name
    value: Value  # the default, a `params { }` binding, or a sweep point's


@dataclass(frozen=True)
class Resolved:
    """The root file resolved: one `spec` block (params substituted, overrides applied)."""

    source: SpecFile | None
    sources: dict[str, str]  # every imported file's text, for the renderer
    sweeps: tuple[Block, ...] = ()
    is_base: bool = False  # the root holds a `base`: checked only through the specs importing it
    params: dict[str, Param] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    files: tuple[str, ...] = ()  # the family's files, each import before its importer (the root last)


def project_root(spec_path: str) -> Path:
    """The nearest directory at or above the root spec holding `.git`, `pyproject.toml` or
    `pdc.toml`; else the spec's own directory. Imports may not leave it."""
    start = (Path(spec_path).resolve().parent if spec_path not in ("<string>", "<stdin>") else Path.cwd())
    for directory in (start, *start.parents):
        if any((directory / marker).exists() for marker in ROOT_MARKERS):
            return directory
    return start


def is_plain(source: SpecFile) -> bool:
    """A file with no imports, no family blocks and no `$name`: resolution leaves it as is."""
    return not source.imports and not any(isinstance(i, Block) and i.key.text in ("param", "params", "base", "sweep")
                                          for i in source.items) and "$" not in source.text


def resolve(source: SpecFile, overrides: Sequence[str] = (), point: Sequence[Assign] = ()
            ) -> tuple[Resolved, list[Diagnostic]]:
    """Imports merged, a sweep `point`'s keys then the `--set` `overrides` applied, then
    parameters (bound by `params` blocks, then by the point's `params.NAME`) substituted."""
    diagnostics: list[Diagnostic] = []
    bindings = [replace(a, key=replace(a.key, text=a.key.text.removeprefix("params."),
                                       segments=a.key.segments[1:], span=a.key.segments[-1].span or a.key.span))
                for a in point if a.key.text.startswith("params.")]
    keys = [a for a in point if not a.key.text.startswith("params.")]
    if is_plain(source) and not point:
        if overrides:
            source, applied, more = apply_overrides(source, overrides)
            return Resolved(source, {}, overrides=tuple(applied), files=(source.path,)), more
        return Resolved(source, {}, files=(source.path,)), []
    loader = _Loader(project_root(source.path), _resolved(source.path).parent, diagnostics)
    top = loader.load(source, [])
    others = [i for i in source.items if not (isinstance(i, Block) and i.key.text in (*_TOP, "param", "params", "sweep"))]
    sweeps = tuple(i for i in source.items if isinstance(i, Block) and i.key.text == "sweep")
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return Resolved(None, loader.texts, sweeps, files=loader.order), diagnostics
    if top is None:  # nothing to merge: the validator says a `spec` block is missing
        return Resolved(replace(source, items=tuple(others), imports=()), loader.texts, sweeps,
                        files=loader.order), diagnostics
    is_base = top.key.text == "base"  # validated as a spec, its missing keys forgiven (`pdc.syntax.load`)
    header = source.imports[0].trivia.leading if source.imports else ()  # the file's header comment
    top = replace(top, key=plain_key("spec", top.key.span),
                  trivia=replace(top.trivia, leading=(*header, *top.trivia.leading)))
    merged = replace(source, items=(top, *others), imports=())
    params, broken = _params(loader, bindings, diagnostics)
    used: set[str] = set()
    merged = replace(merged, items=tuple(_substitute(i, params, used, broken, diagnostics) for i in merged.items))
    applied: list[Override] = []  # applied to the substituted spec, so `was` is a value, not a `$name`
    if keys and not is_base:
        merged, applied, more = apply_assigns(merged, keys)
        diagnostics += more
    if overrides and not is_base:
        merged, more_applied, more = apply_overrides(merged, overrides)
        applied, diagnostics = applied + more_applied, diagnostics + more
    if applied:  # an override's value may itself be a `$name`
        more = []
        merged = replace(merged, items=tuple(_substitute(i, params, used, broken, more) for i in merged.items))
        reported = {d.span for d in diagnostics}
        diagnostics += [d for d in more if d.span not in reported]
    for name, param in params.items():
        if name not in used and not any(d.code == "PD0602" for d in diagnostics):
            diagnostics.append(Diagnostic("PD0605", f"parameter `{name}` is never used", param.span, "never used",
                                          help=(f"use it as `${name}`, or remove the declaration",),
                                          severity=Severity.WARNING))
    return Resolved(merged, loader.texts, sweeps, is_base, params, tuple(applied), loader.order), diagnostics


# ---- imports -------------------------------------------------------------------------


class _Loader:
    """Reads the import graph depth first; each file once (a diamond is not a cycle)."""

    def __init__(self, root: Path, root_dir: Path, diagnostics: list[Diagnostic]) -> None:
        self.root = root
        self.root_dir = root_dir  # the root spec's directory: what its paths are relative to
        self.diagnostics = diagnostics
        self.texts: dict[str, str] = {}
        self.done: dict[Path, Block | None] = {}
        self.files: list[SpecFile] = []  # in dependency order: imports before importers
        self.order: tuple[str, ...] = ()

    def load(self, source: SpecFile, stack: list[tuple[Path, Import | None]]) -> Block | None:
        """The file's `spec`/`base` block with its imports merged underneath."""
        here = _resolved(source.path)
        stack = [*stack, (here, None)]
        merged: Block | None = None
        for item in source.imports:
            stack[-1] = (here, item)
            block = self.imported(source, item, stack)
            if block is not None:
                merged = block if merged is None else merge(merged, block)
        self.files.append(source)
        self.order = (*self.order, source.path) if source.path not in self.order else self.order
        own = next((i for i in source.items if isinstance(i, Block) and i.key.text in _TOP), None)
        if own is None:
            return merged
        if here.parent != self.root_dir:  # each file's own paths, once, before they merge
            own = rebase(own, SPEC, here.parent, self.root_dir)
        return own if merged is None else replace(merge(merged, own), key=own.key, label=own.label)

    def imported(self, importer: SpecFile, item: Import, stack: list[tuple[Path, Import | None]]) -> Block | None:
        try:
            path = (_resolved(importer.path).parent / item.path.value).resolve()
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
            self.error("PD0606", f"cannot import `{item.path.value}`: not a file name", item.path.span, "not a path")
            return None
        if not path.is_relative_to(self.root):
            self.error("PD0603", f"`{item.path.value}` is outside the project root", item.path.span,
                       "outside the project", help_=("imports stay inside the project root: the nearest directory "
                                                     "above the root spec holding .git, pyproject.toml or pdc.toml",))
            return None
        cycle = [i for i, (p, _) in enumerate(stack) if p == path]
        if cycle:
            chain = stack[cycle[0]:]
            first = chain[0][1]
            assert first is not None
            names = " → ".join(_display(p) for p, _ in chain) + f" → {_display(path)}"
            related = tuple(Related(i.path.span, "imported again here") for _, i in chain[1:] if i is not None)
            self.error("PD0601", f"import cycle: {names}", first.path.span, "starts a cycle", related,
                       ("a family is a tree: move what both files need into a third `base` file they both import",))
            return None
        if path in self.done:
            return self.done[path]
        text, problems = read_source(str(path))
        name = _display(path)
        if text is None:
            self.error("PD0606", f"cannot import `{item.path.value}`: {problems[0].summary}", item.path.span,
                       "cannot be read", help_=("an import's path is relative to the file that holds it",))
            self.done[path] = None
            return None
        source, problems = parse_text(text, name)
        self.texts[name] = text
        self.diagnostics.extend(problems)
        if source is None or problems:
            self.done[path] = None
            return None
        block = self.load(source, stack)
        if block is None:
            self.error("PD0606", f"`{item.path.value}` holds no `spec` or `base` block to import", item.path.span,
                       "nothing to import", help_=("an imported file holds `spec NAME { ... }` or `base NAME { ... }`",))
        self.done[path] = block
        return block

    def error(self, code: str, summary: str, span: Span, label: str = "", related: tuple[Related, ...] = (),
              help_: tuple[str, ...] = ()) -> None:
        self.diagnostics.append(Diagnostic(code, summary, span, label, related, help_))


def _resolved(path: str) -> Path:
    return Path(path).resolve() if path not in ("<string>", "<stdin>") else Path.cwd() / path


def _display(path: Path) -> str:
    """How messages name an imported file: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else str(path)


def rebase(block: Block, schema: BlockSchema, origin: Path, root_dir: Path) -> Block:
    """`block` (written in a file in `origin`) with its relative file paths (`weights`,
    `path`, `tokenizer`) rewritten against `root_dir`, the root spec's directory, which the
    passes and the run directory resolve them against."""
    schema = variant_of(schema, block.label.name if block.label is not None else None)
    items: list[Item] = []
    for item in block.items:
        if isinstance(item, Block):
            child = schema.child(item.key.text)
            items.append(rebase(item, child, origin, root_dir) if child is not None else item)
        elif isinstance(item.value, String) and is_path(schema, item.key.text) and \
                not Path(item.value.value).is_absolute():
            moved = os.path.relpath(origin / item.value.value, root_dir)
            items.append(replace(item, value=replace(item.value, value=moved)))
        else:
            items.append(item)
    return replace(block, items=tuple(items))


def is_path(schema: BlockSchema, key: str) -> bool:
    if schema.keys is None or key not in schema.keys.model_fields:
        return False
    annotation = field_annotation(schema.keys, key)
    arms = union_arms(annotation) or (annotation,)
    return any(isinstance(m, Unit) and m.kind == "path" for arm in arms for m in getattr(arm, "__metadata__", ()))


def merge(base: Block, over: Block, schema: BlockSchema | None = SPEC) -> Block:
    """`over`'s items merged into `base`'s, key by key (later wins; see the module doc). The
    named instances of a repeatable block (`stochastic_recon subset`) are keyed by name and
    label, so an importer's `stochastic_recon subset { ... }` adds to an imported
    `stochastic_recon all { ... }` rather than replacing it."""
    schema = variant_of(schema, base.label.name if base.label is not None else None) if schema is not None else None
    items = list(base.items)
    index = {_merge_key(schema, item): i for i, item in enumerate(items)}
    for item in over.items:
        at = index.get(_merge_key(schema, item))
        if at is None:
            index[_merge_key(schema, item)] = len(items)
            items.append(item)
            continue
        old = items[at]
        same_block = isinstance(old, Block) and isinstance(item, Block) and \
            (old.label.name if old.label else None) == (item.label.name if item.label else None)
        if same_block:  # the block keeps its place; comments written over it win
            merged = merge(old, item, schema.child(item.key.text) if schema is not None else None)  # type: ignore[arg-type]
            commented = item.trivia.leading or item.trivia.trailing is not None
            items[at] = replace(merged, trivia=item.trivia if commented else old.trivia)
        else:
            items[at] = item
    return replace(base, items=tuple(items))


def _merge_key(schema: BlockSchema | None, item: Item) -> str:
    child = schema.child(item.key.text) if schema is not None and isinstance(item, Block) else None
    if child is not None and child.label is LabelKind.INSTANCE and item.label is not None:  # type: ignore[union-attr]
        return instance_key(item.key.text, item.label.name)  # type: ignore[union-attr]
    return item.key.text


# ---- parameters ----------------------------------------------------------------------


def _params(loader: _Loader, bindings: Sequence[Assign], diagnostics: list[Diagnostic]
            ) -> tuple[dict[str, Param], set[str]]:
    """Declarations of every file of the family (one per name), then their bindings: the
    imports' `params` blocks, the importers' (later wins), then `bindings`."""
    params: dict[str, Param] = {}
    broken: set[str] = set()
    for source in loader.files:
        for block in _blocks(source, "param"):
            param = _declaration(block, diagnostics)
            if param is None:  # reported; its uses are not reported again as undeclared
                if block.label is not None:
                    broken.add(block.label.name)
                continue
            if param.name in params:
                first = params[param.name].span
                diagnostics.append(Diagnostic(
                    "PD0604", f"parameter `{param.name}` is declared twice in this family", param.span,
                    "declared again", (Related(first, "first declared"),),
                    (f"bind the existing one instead: `params {{ {param.name} = ... }}`",)))
                continue
            params[param.name] = param
    binds = [a for source in loader.files for block in _blocks(source, "params") for a in _binds(block, diagnostics)]
    for assign in [*binds, *bindings]:
        name = assign.key.text
        if name in broken:
            continue
        if name not in params:
            diagnostics.append(Diagnostic("PD0602", f"parameter `{name}` is not declared{did_you_mean(name, params)}",
                                          assign.key.span, "not declared",
                                          help=(_declare_help(name, params),)))
            continue
        if _check_type(params[name].type, assign.value, name, diagnostics):
            params[name] = replace(params[name], value=assign.value)
    return params, broken


def _blocks(source: SpecFile, name: str) -> list[Block]:
    return [i for i in source.items if isinstance(i, Block) and i.key.text == name]


def _binds(block: Block, diagnostics: list[Diagnostic]) -> list[Assign]:
    out = []
    for item in block.items:
        if isinstance(item, Assign) and item.key.is_plain_name:
            out.append(item)
        else:
            diagnostics.append(Diagnostic("PD0607", "`params` holds `NAME = value` bindings", item.key.span,
                                          "not a binding", help=("e.g. `params { lr = 3e-3 }`",)))
    return out


def _declaration(block: Block, diagnostics: list[Diagnostic]) -> Param | None:
    """`param NAME { type = T default = V doc = "..." }`, checked."""
    def bad(summary: str, span: Span, label: str, help_: str) -> None:
        diagnostics.append(Diagnostic("PD0607", summary, span, label, help=(help_,)))

    example = "param lr { type = float default = 1e-3 doc = \"peak learning rate\" }"
    if block.label is None:
        bad("a `param` needs a name", block.key.span, "no name", f"e.g. `{example}`")
        return None
    keys = {i.key.text: i for i in block.items if isinstance(i, Assign)}
    for item in block.items:
        if not isinstance(item, Assign) or item.key.text not in ("type", "default", "doc"):
            bad(f"unknown key `{item.key.text}` in `param {block.label.name}`", item.key.span, "unknown key",
                "keys here: `type`, `default`, `doc`")
            return None
    kind = keys.get("type")
    if kind is None or not isinstance(kind.value, Ident) or kind.value.name not in PARAM_TYPES:
        span = kind.value.span if kind is not None else block.label.span
        bad(f"`param {block.label.name}` needs a type: {one_of(PARAM_TYPES)}", span, "no type" if kind is None
            else "unknown type", f"e.g. `{example}`")
        return None
    default = keys.get("default")
    if default is None:
        bad(f"`param {block.label.name}` needs a default", block.label.span, "no default", f"e.g. `{example}`")
        return None
    doc = keys.get("doc")
    if doc is not None and not isinstance(doc.value, String):
        bad("a parameter's `doc` is a string", doc.value.span, "not a string", f"e.g. `{example}`")
        return None
    if not _check_type(kind.value.name, default.value, block.label.name, diagnostics):
        return None
    text = doc.value.value if doc is not None and isinstance(doc.value, String) else ""
    return Param(block.label.name, kind.value.name, default.value, text, block.label.span, default.value)


def _check_type(kind: str, value: Value, name: str, diagnostics: list[Diagnostic]) -> bool:
    ok = {"int": lambda v: isinstance(v, Number) and v.is_integral_text and v.unit not in ("%",),
          "float": lambda v: isinstance(v, Number),
          "bool": lambda v: isinstance(v, Ident) and v.name in ("true", "false"),
          "string": lambda v: isinstance(v, String),
          "name": lambda v: isinstance(v, Ident),
          "any": lambda v: not isinstance(v, ParamRef)}[kind](value)
    if not ok:
        article = "an" if kind[0] in "aeiou" else "a"
        diagnostics.append(Diagnostic("PD0607", f"parameter `{name}` is {article} `{kind}`", value.span,
                                      f"not {article} {kind}",
                                      help=("a parameter's value is a literal of its type",)))
    return ok


def _declare_help(name: str, params: dict[str, Param]) -> str:
    declared = f"; declared: {one_of(params)}" if params else ""
    return f"declare it at the top of the file: `param {name} {{ type = TYPE default = VALUE }}`{declared}"


def _substitute(item: Item, params: dict[str, Param], used: set[str], broken: set[str],
                diagnostics: list[Diagnostic]) -> Item:
    """`item` with every `$name` replaced by its parameter's value (`used` collects names)."""
    if isinstance(item, Assign):
        return replace(item, value=_value(item.value, params, used, broken, diagnostics))
    return replace(item, items=tuple(_substitute(i, params, used, broken, diagnostics) for i in item.items))


def _value(value: Value, params: dict[str, Param], used: set[str], broken: set[str],
           diagnostics: list[Diagnostic]) -> Value:
    if isinstance(value, ParamRef):
        used.add(value.name)
        if value.name in params:
            return params[value.name].value
        if value.name in broken:  # its declaration is reported already
            return value
        diagnostics.append(Diagnostic("PD0602", f"parameter `${value.name}` is used but never declared"
                                      f"{did_you_mean(value.name, params)}", value.span, "not declared",
                                      help=(_declare_help(value.name, params),)))
        return value
    if isinstance(value, ListValue):
        return replace(value, items=tuple(_value(v, params, used, broken, diagnostics) for v in value.items))
    if isinstance(value, Call):
        return replace(value, args=tuple(_value(v, params, used, broken, diagnostics) for v in value.args),
                       kwargs=tuple(Kwarg(k.name, _value(k.value, params, used, broken, diagnostics), k.span)
                                    for k in value.kwargs))
    return value


# ---- provenance ----------------------------------------------------------------------


def provenance(source: SpecFile) -> dict[str, str]:
    """Every key written in the resolved spec → where its value comes from: `file:line`, or
    `--set N` for a command-line override (keys left at their defaults are absent)."""
    out: dict[str, str] = {}
    for item in source.items:
        if isinstance(item, Block) and item.key.text == "spec":
            _walk(item.items, (), out)
    return out


def _walk(items: Sequence[Item], path: tuple[str, ...], out: dict[str, str]) -> None:
    for item in items:
        here = (*path, item.key.text)
        if isinstance(item, Block):
            _walk(item.items, here, out)
        else:
            out[".".join(here)] = where(item.value.span)


def where(span: Span) -> str:
    """`file:line`, or `--set N` for the N-th command-line override."""
    if span.file.startswith("<--set "):
        return span.file[1:-1]
    return f"{span.file}:{span.line}"


__all__ = ["FILE_SCHEMA", "Param", "Resolved", "merge", "project_root", "provenance", "resolve", "where"]
