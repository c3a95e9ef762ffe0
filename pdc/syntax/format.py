"""`pdc fmt`: one canonical layout, no options, idempotent, comments kept.

- Keys and sub-blocks are sorted into the registry's order; user-named entries
  (decompose sites, shard rules, mesh axes) keep their order, which can be semantic.
- A block prints on one line when its schema allows it (`Layout.COMPACT`), it holds
  at most three items and no comments, and the line fits in 100 columns.
- Two-space indentation, single spaces around `=`, `[a, b]`, `f(x, k = v)`, size
  units after a space (`80 GiB`), other units attached (`20k`, `10%`).
- At most one blank line between items, kept where the author put one.
"""

from __future__ import annotations

from typing import Sequence

from pdc.registry import SPEC
from pdc.registry.schema import BlockSchema, Entries, Layout, variant_of
from pdc.syntax.ast import (
    Assign, Block, Call, Comment, Ident, Import, Item, ListValue, Number, ParamRef, SpecFile, String, Value,
)
from pdc.syntax.patterns import render_pattern_segments
from pdc.syntax.units import SIZE_UNITS

MAX_WIDTH = 100
MAX_COMPACT_ITEMS = 3
_INDENT = "  "


def format_spec(spec: SpecFile) -> str:
    """The canonical text of a parsed file: its imports, then `param`, `spec`/`base` and
    `sweep` blocks in that order (each file of a family is formatted on its own)."""
    from pdc.syntax.family import FILE_SCHEMA

    lines = _imports(spec.imports)
    body = _items(spec.items, FILE_SCHEMA, 0)
    if lines and body:
        lines.append("")  # one blank line always separates the imports from the blocks
    lines += body
    lines += [c.text for c in spec.closing]
    return "\n".join(lines).rstrip("\n") + "\n" if lines else ""


def _items(items: Sequence[Item], schema: BlockSchema | None, depth: int) -> list[str]:
    lines: list[str] = []
    ordered = _ordered(items, schema)
    widths = _rule_widths(ordered) if schema is not None and schema.entries is Entries.RULES else None
    for i, item in enumerate(ordered):
        if i and item.trivia.blank_before:
            lines.append("")
        lines += [_INDENT * depth + c.text for c in item.trivia.leading]
        if widths is not None and isinstance(item, Assign):
            rendered = [_INDENT * depth + assign_text(item, widths[i])]
        else:
            rendered = _item(item, schema, depth)
        if item.trivia.trailing is not None:
            rendered[-1] += "  " + item.trivia.trailing.text
        lines += rendered
    return lines


def _imports(imports: Sequence[Import]) -> list[str]:
    lines: list[str] = []
    for i, item in enumerate(imports):
        if i and item.trivia.blank_before:
            lines.append("")
        lines += [c.text for c in item.trivia.leading]
        lines.append(f"import {value_text(item.path)}" + (f"  {item.trivia.trailing.text}" if item.trivia.trailing
                                                            else ""))
    return lines


def _rule_widths(items: list[Item]) -> list[int]:
    """Shard rules align their `=` within each run of rules not separated by a blank line."""
    widths = [0] * len(items)
    start = 0
    for end in range(1, len(items) + 1):
        if end == len(items) or items[end].trivia.blank_before:
            width = max(len(render_pattern_segments(it.key.segments)) for it in items[start:end])
            widths[start:end] = [width] * (end - start)
            start = end
    return widths


def _ordered(items: Sequence[Item], schema: BlockSchema | None) -> list[Item]:
    """Registry order for known names; entries and unknown names keep source order, after."""
    if schema is None or schema.entries is not None:
        return list(items)
    order = {name: i for i, name in enumerate(schema.item_order())}
    return sorted(items, key=lambda item: order.get(item.key.text, len(order)))


def _child_schema(parent: BlockSchema | None, block: Block) -> BlockSchema | None:
    if parent is None:
        return None
    if parent.entries is Entries.SITES:
        return BlockSchema(block.key.text, "", keys=parent.entry_keys)
    child = parent.child(block.key.text)
    return variant_of(child, block.label.name if block.label else None) if child is not None else None


def _item(item: Item, parent: BlockSchema | None, depth: int) -> list[str]:
    indent = _INDENT * depth
    if isinstance(item, Assign):
        return [f"{indent}{assign_text(item)}"]
    schema = _child_schema(parent, item)
    header = render_pattern_segments(item.key.segments) + (f" {item.label.name}" if item.label else "")
    compact = _compact(item, schema, header, depth)
    if compact is not None:
        return [indent + compact]
    body = _items(item.items, schema, depth + 1)
    body += [_INDENT * (depth + 1) + c.text for c in item.closing]
    if not body:
        return [f"{indent}{header} {{}}"]
    return [f"{indent}{header} {{", *body, f"{indent}}}"]


def _compact(block: Block, schema: BlockSchema | None, header: str, depth: int) -> str | None:
    """The one-line form of a block, or None when it must be expanded."""
    if schema is not None and schema.layout is Layout.EXPANDED:
        return None
    if block.closing or len(block.items) > MAX_COMPACT_ITEMS or not block.items:
        return None
    parts: list[str] = []
    for item in _ordered(block.items, schema):
        if item.trivia.leading or item.trivia.trailing is not None:
            return None
        if isinstance(item, Assign):
            parts.append(assign_text(item))
            continue
        child_header = render_pattern_segments(item.key.segments) + (f" {item.label.name}" if item.label else "")
        inner = _compact(item, _child_schema(schema, item), child_header, depth + 1)
        if inner is None:
            return None
        parts.append(inner)
    text = f"{header} {{ {' '.join(parts)} }}"
    return text if len(_INDENT * depth + text) <= MAX_WIDTH else None


def assign_text(assign: Assign, key_width: int = 0) -> str:
    return f"{render_pattern_segments(assign.key.segments):<{key_width}} = {value_text(assign.value)}"


def value_text(value: Value) -> str:
    """Canonical text of a value."""
    if isinstance(value, Number):
        if value.unit in SIZE_UNITS and value.unit != "B":
            return f"{value.text} {value.unit}"
        return value.text + value.unit
    if isinstance(value, String):
        escaped = value.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, Ident):
        return value.name
    if isinstance(value, ParamRef):
        return f"${value.name}"
    if isinstance(value, ListValue):
        return "[" + ", ".join(value_text(v) for v in value.items) + "]"
    assert isinstance(value, Call)
    args = [value_text(a) for a in value.args] + [f"{k.name} = {value_text(k.value)}" for k in value.kwargs]
    return f"{value.name}({', '.join(args)})"


def comment_text(comment: Comment) -> str:
    return comment.text.rstrip()
