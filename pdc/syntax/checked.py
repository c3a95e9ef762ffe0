"""The front end's output: a spec checked against the registry.

Values are registry model instances; every key and entry keeps the span it came from
so later passes (site expansion, sharding) can point at the spec line they judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from pdc.registry.schema import BlockSchema, Determinism
from pdc.registry.types import Keys
from pdc.syntax.ast import Pattern, SpecFile
from pdc.syntax.span import Span


@dataclass(frozen=True)
class ShardDims:
    """`[dp, _, (dp, tp)]`: per tensor dimension the mesh axes it is split over (empty = replicated)."""

    dims: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class ShardPreset:
    name: str


@dataclass(frozen=True)
class Entry:
    """A user-named entry of a SITES/RULES/AXES/PATTERNS block."""

    pattern: Pattern
    value: Any  # SITES: Keys; RULES: ShardDims | ShardPreset; AXES: int; PATTERNS: str | Dense
    span: Span
    key_spans: dict[str, Span] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Node:
    """A checked block: the governing schema (variant resolved), its keys and sub-blocks."""

    name: str
    label: str | None
    schema: BlockSchema
    keys: Keys | None
    children: dict[str, Node]
    entries: tuple[Entry, ...]
    span: Span
    key_spans: dict[str, Span] = field(default_factory=dict, compare=False)
    explicit: frozenset[str] = frozenset()  # keys written in the spec (the rest are defaults)
    header: Span | None = field(default=None, compare=False)  # `target tms`, for "missing ..." messages

    def span_of(self, key: str) -> Span:
        """Where `key` is set, or the block header when it is left at its default."""
        return self.key_spans.get(key) or self.header or self.span

    def child(self, name: str) -> Node | None:
        return self.children.get(name)

    def get(self, key: str) -> Any:
        assert self.keys is not None, f"block `{self.name}` has no keys"
        return getattr(self.keys, key)

    def walk(self, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Node]]:
        here = path + (self.name,)
        yield here, self
        for child in self.children.values():
            yield from child.walk(here)


@dataclass(frozen=True)
class Spec:
    """A checked spec file: `spec NAME { ... }`."""

    name: str
    root: Node
    source: SpecFile

    @property
    def path(self) -> str:
        return self.source.path

    def block(self, name: str) -> Node | None:
        return self.root.child(name)

    def blocks_of(self, determinism: Determinism) -> list[Node]:
        return [n for n in self.root.children.values() if n.schema.determinism is determinism
                or _top_schema_class(self.root.schema, n.name) is determinism]


def _top_schema_class(root: BlockSchema, name: str) -> Determinism | None:
    child = root.child(name)
    return child.determinism if child is not None else None
