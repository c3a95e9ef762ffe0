"""AST → checked `Spec`: every block, key, label and value against the registry.

All problems of a file are collected (never raised): unknown blocks/keys/labels with
suggestions, duplicates with both positions, missing required keys and blocks, type,
unit and range errors. Structure-level checks that need the target (does a pattern
match a matrix?) belong to the IR passes, not here.
"""

from __future__ import annotations

from typing import Any

from pdc.registry import SHARD_PRESETS, SPEC
from pdc.registry.schema import BlockSchema, Entries, LabelKind, instance_key, variant_of
from pdc.registry.types import CiPattern
from pdc.syntax.ast import Assign, Block, Ident, Item, ListValue, SpecFile, Value
from pdc.syntax.checked import Entry, Node, ShardDims, ShardPreset, Spec
from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.span import Span
from pdc.syntax.suggest import did_you_mean, one_of
from pdc.syntax.values import INVALID, Converter, field_annotation


def validate(source: SpecFile) -> tuple[Spec | None, list[Diagnostic]]:
    """Check a parsed file against the registry."""
    diagnostics: list[Diagnostic] = []
    spec_block = _single_spec_block(source, diagnostics)
    if spec_block is None:
        return None, diagnostics
    root = _Validator(diagnostics).block(SPEC, spec_block)
    if root is None or any(d.severity.value == "error" for d in diagnostics):
        return None, diagnostics
    return Spec(root.label or "", root, source), diagnostics


def _single_spec_block(source: SpecFile, diagnostics: list[Diagnostic]) -> Block | None:
    specs = [i for i in source.items if isinstance(i, Block) and i.key.text == "spec"]
    if not specs:  # one error, not one per block: the wrapper is what is missing
        first = source.items[0].key.span if source.items else Span(source.path, 1, 1, 1, 2)
        wrap = "; wrap the blocks in it" if source.items else ""
        diagnostics.append(Diagnostic("PD0215", "no `spec NAME { ... }` block in this file", first,
                                      "not inside `spec NAME { ... }`" if source.items else "",
                                      help=(f"a spec file holds exactly one `spec NAME {{ ... }}` block{wrap}",)))
        return None
    for item in source.items:
        if item not in specs:
            diagnostics.append(Diagnostic("PD0215", f"`{item.key.text}` outside the `spec` block", item.key.span,
                                          "not inside `spec NAME { ... }`",
                                          help=("everything in a spec file lives inside one `spec NAME { ... }`",)))
    for extra in specs[1:]:
        diagnostics.append(Diagnostic("PD0215", "more than one `spec` block in this file", extra.key.span,
                                      "a second `spec` block", related=(Related(specs[0].key.span, "first `spec` block"),),
                                      help=("write one spec per file",)))
    return specs[0]


class _Validator:
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        self.values = Converter(diagnostics)

    def error(self, code: str, summary: str, span: Span, label: str = "", related: tuple[Related, ...] = (),
              help_: tuple[str, ...] = ()) -> None:
        self.diagnostics.append(Diagnostic(code, summary, span, label, related, help_))

    # ---- blocks -------------------------------------------------------------------

    def block(self, schema: BlockSchema, block: Block) -> Node | None:
        label = self.label(schema, block)
        if label is INVALID:
            return None
        governing = variant_of(schema, label)
        if governing.entries is not None:
            entries = self.entries(governing, block)
            return Node(block.key.text, label, governing, None, {}, tuple(entries), block.span, header=_header(block))
        assigns, blocks = self.split_items(governing, block)
        keys, spans = self.keys(governing, assigns, block)
        children = {name: node for name, child in blocks.items()
                    if (node := self.block(_child(governing, child.key.text), child)) is not None}
        self.required_children(governing, blocks, block)
        ok = keys is not INVALID and len(children) == len(blocks)
        return Node(block.key.text, label, governing, keys if ok else None, _ordered(governing, children),
                    (), block.span, spans, frozenset(assigns), _header(block)) if ok else None

    def label(self, schema: BlockSchema, block: Block) -> Any:
        name = block.key.text
        if schema.label is LabelKind.NONE:
            if block.label is not None:
                self.error("PD0212", f"`{name}` takes no label", block.label.span, "unexpected label",
                           help_=(f"write `{name} {{ ... }}`",))
                return INVALID
            return None
        if schema.label is LabelKind.INSTANCE:
            return block.label.name if block.label is not None else None
        if block.label is None:
            wanted = one_of(v.name for v in schema.variants) if schema.variants else "a name"
            self.error("PD0211", f"`{name}` needs a label: {wanted}", block.key.span, "label missing",
                       help_=(f"write `{name} {schema.variants[0].name if schema.variants else 'NAME'} {{ ... }}`",))
            return INVALID
        if schema.label is LabelKind.VARIANT and schema.variant(block.label.name) is None:
            choices = [v.name for v in schema.variants]
            self.error("PD0210", f"unknown {schema.noun} `{block.label.name}`{did_you_mean(block.label.name, choices)}",
                       block.label.span, f"unknown {schema.noun}", help_=(f"{_plural(schema.noun)}: {one_of(choices)}",))
            return INVALID
        return block.label.name

    def split_items(self, schema: BlockSchema, block: Block) -> tuple[dict[str, Assign], dict[str, Block]]:
        """Sort items into keys and sub-blocks, reporting unknown and duplicate names."""
        assigns: dict[str, Assign] = {}
        blocks: dict[str, Block] = {}
        seen: dict[str, Item] = {}
        for item in block.items:
            name = _item_key(schema, item)
            if name in seen:
                instance = _is_instance(schema, item)
                shown = f"{item.key.text} {item.label.name}" if instance and item.label else item.key.text  # type: ignore[union-attr]
                at = _header(item) if instance else item.key.span  # type: ignore[arg-type]
                first = _header(seen[name]) if instance else seen[name].key.span  # type: ignore[arg-type]
                self.error("PD0203", f"`{shown}` is defined twice in `{block.key.text}`", at, "defined again",
                           (Related(first, "first defined"),), _twice_help(item.key.text, instance))
                continue
            seen[name] = item
            if self.known_item(schema, item, block):
                (assigns if isinstance(item, Assign) else blocks)[name] = item  # type: ignore[index]
        return assigns, blocks

    def known_item(self, schema: BlockSchema, item: Item, block: Block) -> bool:
        name, where = item.key.text, block.key.text
        keys, children = schema.key_names(), [c.name for c in schema.children]
        if isinstance(item, Assign) and name in keys and item.key.is_plain_name:
            return True
        if isinstance(item, Block) and name in children:
            return True
        if isinstance(item, Assign) and name in children:
            self.error("PD0202", f"`{name}` is a block in `{where}`, not a key", item.key.span, "a block",
                       help_=(f"write `{name} {{ ... }}`",))
        elif isinstance(item, Block) and name in keys:
            self.error("PD0201", f"`{name}` is a key in `{where}`, not a block", item.key.span, "a key",
                       help_=(f"write `{name} = ...`",))
        elif isinstance(item, Block):
            self.error("PD0201", f"unknown {schema.noun if schema.noun != 'block' else 'block'} `{name}` in `{where}`"
                       f"{did_you_mean(name, children)}", item.key.span, "unknown " + schema.noun,
                       help_=(_allowed(_plural(schema.noun), children),))
        else:
            self.error("PD0202", f"unknown key `{name}` in `{where}`{did_you_mean(name, keys)}", item.key.span,
                       "unknown key", help_=(_allowed("keys", [k for k in keys if k != "fn"]),))
        return False

    def keys(self, schema: BlockSchema, assigns: dict[str, Assign], block: Block) -> tuple[Any, dict[str, Span]]:
        spans = {name: a.value.span for name, a in assigns.items()}
        if schema.keys is None:
            return None, spans
        values = {name: self.values.convert(name, field_annotation(schema.keys, name), a.value)
                  for name, a in assigns.items()}
        missing = [n for n, f in schema.keys.model_fields.items() if f.is_required() and n not in assigns]
        written = {item.key.text for item in block.items}  # a key written as a block is reported as that
        for name in missing:
            if name in written:
                continue
            self.error("PD0204", f"`{block.key.text}` is missing required key `{name}`", _header(block),
                       f"needs `{name}`", help_=(f"`{name}`: {schema.keys.model_fields[name].description}",))
        if missing or any(v is INVALID for v in values.values()):
            return INVALID, spans
        return self.values.build(schema.keys, values, spans, block.span), spans

    def required_children(self, schema: BlockSchema, blocks: dict[str, Block], block: Block) -> None:
        written = {item.key.text for item in block.items}  # misspelled or mis-written: reported as that
        blocks = {b.key.text: b for b in blocks.values()}  # named instances count for their kind
        if schema.exactly_one_child and not blocks and not any(isinstance(i, Block) for i in block.items):
            names = one_of(c.name for c in schema.children)
            self.error("PD0205", f"`{block.key.text}` needs {_article(schema.noun)} {schema.noun} block: {names}",
                       _header(block), f"no {schema.noun}",
                       help_=(f"e.g. `{schema.children[0].name} {{ lr = 1e-3 }}`",))
        for child in schema.children:
            if child.required and child.name not in blocks and child.name not in written:
                self.error("PD0205", f"`{block.key.text}` is missing required block `{child.name}`", _header(block),
                           f"needs `{child.name}`", help_=(f"`{child.name}`: {child.doc.split('.')[0]}",))

    # ---- entry blocks ---------------------------------------------------------------

    def entries(self, schema: BlockSchema, block: Block) -> list[Entry]:
        out: list[Entry] = []
        seen: dict[str, Item] = {}
        for item in block.items:
            text = item.key.text
            if text in seen:
                self.error("PD0203", f"`{text}` is listed twice in `{block.key.text}`", item.key.span, "listed again",
                           (Related(seen[text].key.span, "first listed"),), ("remove one of the two",))
                continue
            seen[text] = item
            entry = self.entry(schema, item)
            if entry is not None:
                out.append(entry)
        if schema.required and not block.items:
            self.error("PD0205", f"`{block.key.text}` is empty", _header(block), "no entries",
                       help_=(schema.doc.split(". ")[0],))
        return out

    def entry(self, schema: BlockSchema, item: Item) -> Entry | None:
        kind = schema.entries
        if kind is Entries.SITES:
            if not isinstance(item, Block):
                self.error("PD0202", f"`{item.key.text}` needs a block of site options", item.key.span, "not a block",
                           help_=(f"write `{item.key.text} {{ C = 64 }}`",))
                return None
            return self.site_entry(schema, item)
        if not isinstance(item, Assign):
            self.error("PD0201", f"`{schema.name}` holds `name = value` entries, not blocks", item.key.span,
                       "a block", help_=(schema.doc.split(". ")[0],))
            return None
        value = {Entries.RULES: self.shard_value, Entries.AXES: self.axis_size,
                 Entries.PATTERNS: self.ci_pattern}[kind](item)  # type: ignore[index]
        return None if value is INVALID else Entry(item.key, value, item.span)

    def site_entry(self, schema: BlockSchema, block: Block) -> Entry | None:
        if block.label is not None:
            self.error("PD0212", "a site pattern takes no label", block.label.span, "unexpected label",
                       help_=(f"write `{block.key.text} {{ ... }}`",))
            return None
        site_schema = BlockSchema(block.key.text, "", keys=schema.entry_keys)
        assigns, _ = self.split_items(site_schema, block)
        keys, spans = self.keys(site_schema, assigns, block)
        return None if keys is INVALID else Entry(block.key, keys, block.span, spans)

    def axis_size(self, item: Assign) -> Any:
        if not item.key.is_plain_name:
            self.error("PD0216", "a mesh axis name is a plain name", item.key.span, "not a plain name",
                       help_=("e.g. `dp = 8`",))
            return INVALID
        size = self.values.convert(item.key.text, int, item.value)
        if size is not INVALID and size < 1:
            self.error("PD0207", f"mesh axis `{item.key.text}` must have size ≥ 1, found {size}", item.value.span,
                       "out of range")
            return INVALID
        return size

    def ci_pattern(self, item: Assign) -> Any:
        return self.values.convert(item.key.text, CiPattern, item.value)

    def shard_value(self, item: Assign) -> Any:
        value = item.value
        if isinstance(value, Ident):
            if value.name in SHARD_PRESETS:
                return ShardPreset(value.name)
            self.error("PD0208", f"unknown shard preset `{value.name}`{did_you_mean(value.name, SHARD_PRESETS)}",
                       value.span, "unknown preset", help_=(f"presets: {one_of(SHARD_PRESETS)}; or a list like `[dp, _]`",))
            return INVALID
        if not isinstance(value, ListValue):
            self.error("PD0206", "a shard rule is a list of mesh axes like `[dp, _]` or a preset name", value.span,
                       "not a list or preset", help_=(f"presets: {one_of(SHARD_PRESETS)}",))
            return INVALID
        dims = [self.shard_dim(v) for v in value.items]
        return INVALID if any(d is INVALID for d in dims) else ShardDims(tuple(dims))

    def shard_dim(self, value: Value) -> Any:
        if isinstance(value, Ident) and "." not in value.name:
            return () if value.name == "_" else (value.name,)
        if isinstance(value, ListValue) and all(isinstance(v, Ident) and v.name != "_" for v in value.items):
            return tuple(v.name for v in value.items if isinstance(v, Ident))
        self.error("PD0206", "each dimension of a shard rule is a mesh axis, `_`, or a list of axes", value.span,
                   "not a mesh axis", help_=("e.g. `[dp, _]` or `[[dp, fsdp], tp]`",))
        return INVALID


def _child(schema: BlockSchema, name: str) -> BlockSchema:
    child = schema.child(name)
    assert child is not None
    return child


def _ordered(schema: BlockSchema, children: dict[str, Node]) -> dict[str, Node]:
    """Registry order; the instances of one kind unnamed first, then by name (so neither the
    order of blocks in the spec nor `pdc fmt` changes what runs)."""
    order = {c.name: i for i, c in enumerate(schema.children)}
    return dict(sorted(children.items(), key=lambda kv: (order[kv[1].name], kv[1].label is not None, kv[0])))


def _is_instance(schema: BlockSchema, item: Item) -> bool:
    """Whether `item` is a block of a kind that may repeat under names (`LabelKind.INSTANCE`)."""
    child = schema.child(item.key.text) if isinstance(item, Block) else None
    return child is not None and child.label is LabelKind.INSTANCE


def _item_key(schema: BlockSchema, item: Item) -> str:
    """What must be unique among a block's items: the name, or `name.label` for a named
    instance of a repeatable block (`stochastic_recon subset`)."""
    if _is_instance(schema, item) and item.label is not None:  # type: ignore[union-attr]
        return instance_key(item.key.text, item.label.name)  # type: ignore[union-attr]
    return item.key.text


def _twice_help(name: str, instance: bool) -> tuple[str, ...]:
    if instance:
        return (f"remove one of the two, or give each its own name: `{name} all {{ ... }}` and "
                f"`{name} subset {{ ... }}`",)
    return ("remove one of the two",)


def _header(block: Block) -> Span:
    return block.key.span.to(block.label.span) if block.label is not None else block.key.span


def _plural(noun: str) -> str:
    return noun[:-1] + "ies" if noun.endswith("y") else noun + "s"


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def _allowed(kind: str, names: list[str]) -> str:
    return f"{kind} here: {one_of(names)}" if names else f"no {kind} are allowed here"
