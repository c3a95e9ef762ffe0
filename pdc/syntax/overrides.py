"""`--set path=value`: change a parsed spec from the command line, before validation.

An override is one `path = value` item in the spec language itself, parsed by the same
grammar (so `2 GiB`, `10k`, `2.5%`, `cosine(1e-3, final = 0.0)` and lists all work) from a
pseudo-file named `<--set N>` (N counts the `--set` flags from 1). Its path walks the
spec's blocks by registry name (`train.steps`, `loss.importance_minimality.weight`); in an
entry block the rest of the path names the entry (`mesh.dp`, `decompose.linear1.C`,
`shard.components.*.V`). A key or block that the registry allows but the spec leaves out
is added. Because the rewrite happens on the AST, the validator, the passes and the
determinism hashes all see the overridden spec, and every problem is an ordinary
diagnostic whose span points into the command-line argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from pdc.registry import SPEC
from pdc.registry.schema import BlockSchema, Entries, LabelKind, variant_of
from pdc.syntax.ast import Assign, Block, Item, Pattern, Segment, SpecFile
from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.format import value_text
from pdc.syntax.parse import parse_text
from pdc.syntax.patterns import plain_key, render_pattern_segments
from pdc.syntax.span import Span
from pdc.syntax.suggest import did_you_mean, one_of


@dataclass(frozen=True)
class Override:
    """One applied override, as the run directory records it (provenance of a run)."""

    arg: str  # as typed: "train.steps=500"
    path: str  # canonical: "train.steps"
    value: str  # canonical spec text of the new value: "500"
    was: str | None  # canonical text of the spec's value, None when the key was absent

    def to_json(self) -> dict[str, str | None]:
        return {"arg": self.arg, "path": self.path, "value": self.value, "was": self.was}


def source_name(index: int) -> str:
    """The pseudo-file of the `index`-th (1-based) `--set`: what its diagnostics point into."""
    return f"<--set {index}>"


def override_sources(args: Sequence[str]) -> dict[str, str]:
    """Pseudo-file name → argument text, so a renderer can underline inside an argument."""
    return {source_name(i): arg for i, arg in enumerate(args, 1)}


def apply_overrides(source: SpecFile, args: Sequence[str]) -> tuple[SpecFile, list[Override], list[Diagnostic]]:
    """`source` with every override applied in order; those applied, and the problems."""
    diagnostics: list[Diagnostic] = []
    applied: list[Override] = []
    first: dict[str, Assign] = {}
    for index, arg in enumerate(args, 1):
        assign = parse_override(arg, source_name(index), diagnostics)
        if assign is None:
            continue
        path = assign.key.text
        if path in first:  # a silent "last one wins" would hide a typo in a long command line
            diagnostics.append(Diagnostic("PD0203", f"`{path}` is set twice on the command line", assign.key.span,
                                          "set again", (Related(first[path].key.span, "first set"),),
                                          ("remove one of the two",)))
            continue
        first[path] = assign
        result = _apply(source, assign, diagnostics)
        if result is not None:
            source, was = result
            applied.append(Override(arg, path, value_text(assign.value), was))
    return source, applied, diagnostics


def apply_assigns(source: SpecFile, assigns: Sequence[Assign]) -> tuple[SpecFile, list[Override], list[Diagnostic]]:
    """Like `apply_overrides` for items already parsed elsewhere (a sweep point's keys, whose
    spans point into the sweep file)."""
    diagnostics: list[Diagnostic] = []
    applied: list[Override] = []
    for assign in assigns:
        result = _apply(source, assign, diagnostics)
        if result is not None:
            source, was = result
            applied.append(Override(f"{assign.key.text}={value_text(assign.value)}", assign.key.text,
                                    value_text(assign.value), was))
    return source, applied, diagnostics


def parse_override(arg: str, name: str, diagnostics: list[Diagnostic]) -> Assign | None:
    """One `path = value` item parsed from `arg`; None after appending why it is not one."""
    whole = Span(name, 1, 1, 1, len(arg) + 1 if arg else 2, 0, len(arg))
    if "=" not in arg or not arg.partition("=")[2].strip():
        what, label = ("no `=`", "needs `path=value`") if "=" not in arg else ("no value after `=`", "needs a value")
        diagnostics.append(Diagnostic("PD0102", f"`--set {arg}` has {what}", whole, label,
                                      help=("write `--set train.steps=500` (the value in spec syntax)",)))
        return None
    parsed, problems = parse_text(arg, name)
    diagnostics += problems
    if parsed is None or problems:
        return None
    if len(parsed.items) != 1 or not isinstance(parsed.items[0], Assign):
        diagnostics.append(Diagnostic("PD0102", "a `--set` override is exactly one `path = value`", whole,
                                      "not one `path = value`",
                                      help=("use one `--set` per key: `--set train.steps=500 --set train.seed=1`",)))
        return None
    return parsed.items[0]


# ---- walking the AST ---------------------------------------------------------------------


def _apply(source: SpecFile, assign: Assign, diagnostics: list[Diagnostic]) -> tuple[SpecFile, str | None] | None:
    """Set `assign` inside the file's `spec` block; None when it cannot be (reported)."""
    index = next((i for i, item in enumerate(source.items) if isinstance(item, Block) and item.key.text == "spec"),
                 None)
    if index is None:
        return None  # no `spec` block: the validator reports that, and there is nothing to set
    spec = source.items[index]
    assert isinstance(spec, Block)
    result = _set(spec, SPEC, assign.key.segments, assign, diagnostics)
    if result is None:
        return None
    block, was = result
    return replace(source, items=_with_item(source.items, index, block)), was


_Result = tuple[Block, "str | None"] | None


def _set(block: Block, schema: BlockSchema, segments: Sequence[Segment], assign: Assign,
         diagnostics: list[Diagnostic]) -> _Result:
    """`block` with the key that `segments` names (relative to it) set to `assign.value`."""
    schema = variant_of(schema, block.label.name if block.label is not None else None)
    if schema.entries is not None:
        return _set_entry(block, schema, segments, assign, diagnostics)
    head, rest = segments[0], segments[1:]
    name = _plain(head, diagnostics)
    if name is None:
        return None
    if not rest:
        return _set_key(block, schema, head, name, assign, diagnostics)
    child_schema = schema.child(name)
    if child_schema is None:
        _not_a_block(schema, block, head, name, diagnostics)
        return None
    index, child = _find(block.items, name, Block)
    if child_schema.label is LabelKind.INSTANCE:  # `loss.stochastic_recon.subset.weight`: a named instance
        index, child, rest = _instance(block.items, name, rest)
    if child is None:
        if child_schema.label is not LabelKind.NONE and child_schema.label is not LabelKind.INSTANCE:
            diagnostics.append(Diagnostic("PD0211", f"`{name}` is not in the spec, and `--set` cannot add it: it needs "
                                          "a label", head.span, "not in the spec",
                                          help=(f"write the `{name}` block in the spec file",)))
            return None
        child = Block(plain_key(name, head.span), None, (), head.span)
    result = _set(child, child_schema, rest, assign, diagnostics)
    if result is None:
        return None
    new_child, was = result
    return replace(block, items=_with_item(block.items, index, new_child)), was


def _set_key(block: Block, schema: BlockSchema, head: Segment, name: str, assign: Assign,
             diagnostics: list[Diagnostic]) -> _Result:
    keys = [k for k in schema.key_names() if k != "fn"]
    where = block.key.text
    if name not in keys:
        if schema.child(name) is not None:
            diagnostics.append(Diagnostic("PD0202", f"`{name}` is a block in `{where}`, not a key", head.span,
                                          "a block", help=(f"set one of its keys: `{assign.key.text}.KEY=value`",)))
        else:
            diagnostics.append(Diagnostic("PD0202", f"unknown key `{name}` in `{where}`{did_you_mean(name, keys)}",
                                          head.span, "unknown key",
                                          help=(f"keys here: {one_of(keys)}" if keys else f"`{where}` has no keys",)))
        return None
    index, old = _find(block.items, name, Assign)
    if old is None:
        new = Assign(plain_key(name, head.span), assign.value, assign.span)
        return replace(block, items=_with_item(block.items, None, new)), None
    return replace(block, items=_with_item(block.items, index, replace(old, value=assign.value))), \
        value_text(old.value)


def _set_entry(block: Block, schema: BlockSchema, segments: Sequence[Segment], assign: Assign,
               diagnostics: list[Diagnostic]) -> _Result:
    """In an entry block the rest of the path names the entry (the last segment is the
    option of a `decompose` entry): `decompose.layers[0].mlp_in.C`, `mesh.dp`."""
    if schema.entries is not Entries.SITES:
        pattern = _pattern(segments)
        index, old = _find(block.items, pattern.text, Assign)
        new = Assign(pattern, assign.value, assign.span) if old is None else replace(old, value=assign.value)
        return replace(block, items=_with_item(block.items, index, new)), \
            None if old is None else value_text(old.value)
    if len(segments) < 2:
        diagnostics.append(Diagnostic("PD0202", f"`{render_pattern_segments(segments)}` needs "
                                      "a block of site options", _cover(segments), "not a site option",
                                      help=(f"set one option: `{assign.key.text}.C=20`",)))
        return None
    pattern, option = _pattern(segments[:-1]), segments[-1]
    name = _plain(option, diagnostics)
    if name is None:
        return None
    index, entry = _find(block.items, pattern.text, Block)
    entry = entry if entry is not None else Block(pattern, None, (), pattern.span)
    result = _set_key(entry, BlockSchema(pattern.text, "", keys=schema.entry_keys), option, name, assign, diagnostics)
    if result is None:
        return None
    new_entry, was = result
    return replace(block, items=_with_item(block.items, index, new_entry)), was


def _not_a_block(schema: BlockSchema, block: Block, head: Segment, name: str, diagnostics: list[Diagnostic]) -> None:
    where = block.key.text
    if name in schema.key_names():
        diagnostics.append(Diagnostic("PD0201", f"`{name}` is a key in `{where}`, not a block", head.span, "a key",
                                      help=(f"the path ends at the key: `...{name}=value`",)))
        return
    children = [c.name for c in schema.children]
    diagnostics.append(Diagnostic("PD0201", f"unknown {schema.noun if where != 'spec' else 'block'} `{name}` in "
                                  f"`{where}`{did_you_mean(name, children)}", head.span, "unknown block",
                                  help=(f"blocks here: {one_of(children)}" if children else f"`{where}` has no blocks",)))


# ---- small helpers -------------------------------------------------------------------------


def _plain(segment: Segment, diagnostics: list[Diagnostic]) -> str | None:
    """A block or key segment must be a plain name (patterns only name entries)."""
    part = segment.part
    if isinstance(part, str) and not segment.indices and part not in ("*", "**") and not part.isdigit():
        return part
    assert segment.span is not None
    diagnostics.append(Diagnostic("PD0216", "a block or key name in a `--set` path is a plain name", segment.span,
                                  "not a plain name", help=("e.g. `--set train.steps=500`",)))
    return None


def _pattern(segments: Sequence[Segment]) -> Pattern:
    return Pattern(render_pattern_segments(segments), tuple(segments), _cover(segments))


def _cover(segments: Sequence[Segment]) -> Span:
    first, last = segments[0].span, segments[-1].span
    assert first is not None and last is not None
    return first.to(last)


def _instance(items: Sequence[Item], name: str, rest: Sequence[Segment]
              ) -> tuple[int | None, Item | None, Sequence[Segment]]:
    """The block of a repeatable kind that a path names: `NAME.LABEL.…` names the instance
    LABEL when the spec has one (the path goes on after it); otherwise the unnamed block."""
    if len(rest) > 1:
        label = rest[0].part if isinstance(rest[0].part, str) and not rest[0].indices else None
        for i, item in enumerate(items):
            if isinstance(item, Block) and item.key.text == name and item.label is not None \
                    and item.label.name == label:
                return i, item, rest[1:]
    for i, item in enumerate(items):
        if isinstance(item, Block) and item.key.text == name and item.label is None:
            return i, item, rest
    return None, None, rest


def _find(items: Sequence[Item], text: str, kind: type) -> tuple[int | None, Item | None]:
    """The first item of type `kind` whose key is `text` (canonical pattern text)."""
    return next(((i, item) for i, item in enumerate(items) if isinstance(item, kind) and item.key.text == text),
                (None, None))


def _with_item(items: Sequence[Item], index: int | None, item: Item) -> tuple[Item, ...]:
    """`items` with `item` at `index`, or appended when `index` is None."""
    if index is None:
        return (*items, item)
    return (*items[:index], item, *items[index + 1:])


__all__ = ["Override", "apply_assigns", "apply_overrides", "override_sources", "parse_override", "source_name"]
