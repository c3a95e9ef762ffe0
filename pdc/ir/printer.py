"""`pdc check --print-ir`: the IR as text, one node per line in deterministic
topological order, with its dependencies. A golden-file format: stable across runs,
free of spans and absolute paths."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields
from typing import Any

from pydantic import BaseModel

from pdc.ir.graph import IR

MAX_LISTED_DEPS = 4


def print_ir(ir: IR) -> str:
    lines = [f"# IR of spec `{ir.spec.name}`: {len(ir.graph)} nodes, {ir.graph.number_of_edges()} edges"]
    for node_id, payload in ir.ordered():
        lines.append(f"{node_id} = {_payload(payload)}")
        deps = sorted(ir.graph.predecessors(node_id), key=ir.sort_key)
        if deps:
            lines.append(f"    <- {_deps(deps)}")
    for key in ("decomposition_hash", "runtime_hash"):
        if key in ir.facts:
            lines.append(f"# {key.replace('_', ' ')}: {ir.facts[key]}")
    return "\n".join(lines) + "\n"


def _payload(payload: Any) -> str:
    parts = [f"{f.name}={_value(getattr(payload, f.name))}" for f in fields(payload) if f.compare]
    return f"{type(payload).__name__}({', '.join(parts)})"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, BaseModel):  # a block's typed keys
        return "{" + ", ".join(f"{k}={_value(getattr(value, k))}" for k in type(value).model_fields) + "}"
    if isinstance(value, list):
        return _value(tuple(value))
    return str(value)


def _deps(deps: list[str]) -> str:
    """Long dependency lists are summarised per kind: `site:* (224)`."""
    if len(deps) <= MAX_LISTED_DEPS:
        return ", ".join(deps)
    by_kind: dict[str, list[str]] = defaultdict(list)
    for dep in deps:
        by_kind[dep.partition(":")[0]].append(dep)
    return ", ".join(v[0] if len(v) == 1 else f"{k}:* ({len(v)})" for k, v in by_kind.items())
