"""The IR: a networkx DiGraph of typed payloads plus the checked spec it came from.

Node ids are `kind:name` strings, so `lexicographical_topological_sort` gives one
deterministic order and the printed IR is a golden-file format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeVar

import networkx as nx

from pdc.ir.nodes import PAYLOADS
from pdc.syntax.checked import Spec
from pdc.syntax.diagnostics import Diagnostic

P = TypeVar("P")


@dataclass
class IR:
    spec: Spec
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # pass results that are not nodes (hashes, shape)

    _order: list[tuple[str, Any]] | None = field(default=None, repr=False)  # cached `ordered()`

    def add(self, node_id: str, payload: object, *deps: str) -> str:
        assert isinstance(payload, PAYLOADS), f"unknown payload {type(payload).__name__}"
        self.graph.add_node(node_id, payload=payload)
        for dep in deps:
            self.graph.add_edge(dep, node_id)
        self._order = None
        return node_id

    def payload(self, node_id: str) -> Any:
        return self.graph.nodes[node_id]["payload"]

    def nodes(self, kind: type[P]) -> list[tuple[str, P]]:
        """All nodes with payloads of `kind`, in deterministic order."""
        return [(n, p) for n, p in self.ordered() if isinstance(p, kind)]

    def ordered(self) -> Iterator[tuple[str, Any]]:
        if self._order is None:
            self._order = [(n, self.graph.nodes[n]["payload"])
                           for n in nx.lexicographical_topological_sort(self.graph, key=self.sort_key)]
        return iter(self._order)

    def sort_key(self, node_id: str) -> str:
        """Kind first, then canonical order: sites in site order, CI chunks by index,
        loss terms in registry order; everything else by name."""
        payload = self.graph.nodes[node_id]["payload"]
        rank = getattr(payload, "order", None)
        if rank is None:
            rank = getattr(payload, "index", None) if not node_id.startswith("rule:") else None
        label = ""
        if rank is None and node_id.startswith("term:"):  # a named instance after its kind's unnamed one
            kind, _, label = node_id[5:].partition(".")
            rank = _TERM_ORDER.get(kind)
        key = _sort_key(node_id) if rank is None else f"{_KIND_ORDER[node_id.partition(':')[0]]:02d}:{rank:06d}"
        return key + (f".{label}" if label and rank is not None else "")

    @property
    def spec_dir(self) -> Path:
        """The directory the spec's relative paths resolve against (the working directory for
        spec text that is not a file)."""
        return Path(self.spec.path).resolve().parent if self.spec.path != "<string>" else Path.cwd()

    def options(self, block: str) -> Any:
        """The typed keys of `block` (`"train"`, `"target.pretrain"`), from its `OptionsNode`:
        the registry's defaults when the spec leaves the block out; None for a block that has
        no node (an unwritten `pretrain`, a spec checked without passes)."""
        node = self.options_node(block)
        return node.keys if node is not None else None

    def options_node(self, block: str) -> Any:
        data = self.graph.nodes.get(f"options:{block}")
        return data["payload"] if data is not None else None

    def error(self, diagnostic: Diagnostic) -> None:
        self.diagnostics.append(diagnostic)

    @property
    def failed(self) -> bool:
        return any(d.severity.value == "error" for d in self.diagnostics)


def _sort_key(node_id: str) -> str:
    kind, _, name = node_id.partition(":")
    return f"{_KIND_ORDER.get(kind, 99):02d}:{_natural(name)}"


_KIND_ORDER = {"options": 0, "target": 1, "mesh": 2, "site": 3, "tie": 4, "tensor": 5, "ci": 6, "schedule": 7,
               "term": 8, "group": 9, "rule": 10, "sharding": 11, "budget": 12}


def _term_order() -> dict[str, int]:
    from pdc.registry.loss import TERMS

    return {term.name: i for i, term in enumerate(TERMS)}


_TERM_ORDER = _term_order()


def _natural(name: str) -> str:
    """`layers.10` after `layers.9`: pad integer segments."""
    return ".".join(p.zfill(6) if p.isdigit() else p for p in name.split("."))


def verify(ir: IR) -> list[str]:
    """Structural invariants that must hold between passes (run under the tests)."""
    problems = []
    if not nx.is_directed_acyclic_graph(ir.graph):
        problems.append("IR graph has a cycle")
    for node_id, data in ir.graph.nodes(data=True):
        payload = data.get("payload")
        if not isinstance(payload, PAYLOADS):
            problems.append(f"{node_id}: payload {type(payload).__name__} is not an IR node type")
        elif node_id.partition(":")[0] not in _KIND_ORDER:
            problems.append(f"{node_id}: unknown node kind prefix")
    return problems
