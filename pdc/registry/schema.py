"""The shape of the language: which blocks exist, what they contain, how they print.

A `BlockSchema` names a block, documents it, points at the pydantic model of its keys,
and lists its sub-blocks. The validator, the formatter's key order and the generated
docs all walk this one tree, so adding a loss term or a target family is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

from pdc.registry.types import Keys


class LabelKind(str, Enum):
    NONE = "none"  # `train { ... }`
    VARIANT = "variant"  # `target tms { ... }`: the label picks one of `variants`
    NAME = "name"  # `spec tms_5_2 { ... }`: a free identifier
    INSTANCE = "instance"  # `stochastic_recon subset { ... }`: an optional free name; named blocks may repeat


def instance_key(name: str, label: str | None) -> str:
    """How a block that may repeat under names (`LabelKind.INSTANCE`) is keyed among its
    siblings, in the checked spec, the hashes, the IR and the logs: its name alone when
    unnamed (so an unnamed block reads as it always did), else `name.label`."""
    return name if label is None else f"{name}.{label}"


class Entries(str, Enum):
    """Blocks whose items are user-named entries rather than registry keys."""

    SITES = "sites"  # decompose: `pattern { C = 20 }`, in canonical site order of the target
    RULES = "rules"  # shard: `pattern = [dp, _]`, ordered, first match wins
    AXES = "axes"  # mesh: `dp = 8`, ordered (mesh axis order)
    PATTERNS = "patterns"  # eval ci_pattern: `pattern = identity | dense(k)`


class Layout(str, Enum):
    EXPANDED = "expanded"  # always one item per line
    COMPACT = "compact"  # on one line when short, comment-free and at most 3 items


class Determinism(str, Enum):
    """DESIGN.md §3: which hash a top-level block feeds."""

    DECOMPOSITION = "decomposition"
    RUNTIME = "runtime"
    OBSERVATION = "observation"


@dataclass(frozen=True)
class BlockSchema:
    name: str
    doc: str
    keys: type[Keys] | None = None
    children: tuple[BlockSchema, ...] = ()
    variants: tuple[BlockSchema, ...] = ()
    label: LabelKind = LabelKind.NONE
    entries: Entries | None = None
    entry_keys: type[Keys] | None = None  # keys of each SITES entry
    required: bool = False
    layout: Layout = Layout.COMPACT
    determinism: Determinism | None = None
    noun: str = "block"  # how messages name a child of this kind: "loss term", "optimizer"
    exactly_one_child: bool = False  # e.g. an optimizer group holds exactly one optimizer
    examples: tuple[str, ...] = field(default=(), compare=False)

    def child(self, name: str) -> BlockSchema | None:
        return next((c for c in self.children if c.name == name), None)

    def variant(self, label: str) -> BlockSchema | None:
        return next((v for v in self.variants if v.name == label), None)

    def key_names(self) -> list[str]:
        return list(self.keys.model_fields) if self.keys is not None else []

    def item_order(self) -> list[str]:
        """Canonical order of this block's items: keys first (model order), then children."""
        return [k for k in self.key_names() if k != "fn"] + [c.name for c in self.children]

    def walk(self, path: tuple[str, ...] = (), name: str | None = None) -> Iterator[tuple[tuple[str, ...], BlockSchema]]:
        """Every schema below this one with its path (variants appear as `target:tms`)."""
        here = path + (name or self.name,)
        yield here, self
        for variant in self.variants:
            yield from variant.walk(path, f"{self.name}:{variant.name}")
        for child in self.children:
            yield from child.walk(here)


def variant_of(block: BlockSchema, label: str | None) -> BlockSchema:
    """The schema that governs a block's contents: its variant if it has one."""
    if block.label is LabelKind.VARIANT and label is not None:
        return block.variant(label) or block
    return block
