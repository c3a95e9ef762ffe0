"""Pass 9 — determinism hashes (DESIGN.md §3).

The decomposition hash covers what determines the trained weights (target, data,
decompose, ci, loss, optimize, train, plus the resolved target shape); the runtime
hash covers mesh, shard, remat and precision. Observation blocks feed neither. The program
hash (both, the budget, no seeds) is what a compiled step depends on. Both
hash checked *values*, so reformatting, comments, or `10k` vs `10000` change nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pdc.ir.graph import IR
from pdc.syntax.flatten import plain
from pdc.registry.schema import Determinism
from pdc.syntax.checked import Node


def run(ir: IR) -> IR:
    shape = ir.facts.get("target")
    decomposition = _normalised(ir, Determinism.DECOMPOSITION)
    decomposition["__target__"] = [(m.path, m.d_in, m.d_out) for m in shape.matrices] if shape else None
    ir.facts["decomposition_hash"] = _digest(decomposition)
    runtime = _normalised(ir, Determinism.RUNTIME)
    ir.facts["runtime_hash"] = _digest(runtime)
    budget = ir.spec.root.child("budget")
    program = {**decomposition, **runtime, "budget": _node(budget) if budget is not None else None}
    ir.facts["program_hash"] = _digest(_without_seeds(program))
    return ir


def _without_seeds(data: Any) -> Any:
    """The program hash (`pdc compile SWEEP` shares a compile between points that have the
    same one) leaves out every `seed`: a seed changes where training starts, never the
    step's shapes, shardings or ops."""
    if isinstance(data, dict):
        return {k: _without_seeds(v) for k, v in data.items() if k != "seed"}
    if isinstance(data, list):
        return [_without_seeds(v) for v in data]
    return data


def _normalised(ir: IR, determinism: Determinism) -> dict[str, Any]:
    return {node.name: _node(node) for node in ir.spec.blocks_of(determinism)}


def _node(node: Node) -> dict[str, Any]:
    return {
        "label": node.label,
        "keys": node.keys.model_dump(mode="json") if node.keys is not None else None,
        "entries": [[_pattern_key(e.pattern), plain(e.value)] for e in node.entries],
        "children": {name: _node(child) for name, child in node.children.items()},
    }


def node_data(node: Node) -> dict[str, Any]:
    """A checked block's values as the hashes see them (labels, keys with defaults, entries);
    `pdc compile SWEEP` keys its shared compiles on these."""
    return _node(node)


def _pattern_key(pattern: Any) -> str:
    return pattern.text


def _digest(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
