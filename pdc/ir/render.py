"""`pdc graph`: the IR as a picture. DOT is written directly; SVG and PNG go through
Graphviz's `dot` when it is installed (say so, and how to get it, when it is not)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pdc.ir.graph import IR

_COLOURS = {"target": "#dddddd", "mesh": "#cce5ff", "site": "#ffe0b3", "tensor": "#e6f2e6", "ci": "#f2d9f2",
            "schedule": "#fff5cc", "term": "#ffcccc", "group": "#d9e6ff", "rule": "#e0e0f0",
            "sharding": "#f0f0f0", "budget": "#cce5ff"}


def to_dot(ir: IR) -> str:
    lines = [f'digraph "{ir.spec.name}" {{', "  rankdir=LR;", '  node [shape=box, style=filled, fontname="monospace"];']
    for node_id, _ in ir.ordered():
        kind = node_id.partition(":")[0]
        lines.append(f'  "{node_id}" [fillcolor="{_COLOURS.get(kind, "#ffffff")}"];')
    for source, target in sorted(ir.graph.edges, key=lambda e: (ir.sort_key(e[0]), ir.sort_key(e[1]))):
        lines.append(f'  "{source}" -> "{target}";')
    return "\n".join(lines + ["}"]) + "\n"


def write_graph(ir: IR, output: Path) -> str | None:
    """Write the graph; returns a problem description instead of raising."""
    dot = to_dot(ir)
    suffix = output.suffix.lower()
    if suffix == ".dot":
        output.write_text(dot)
        return None
    if suffix not in (".svg", ".png"):
        return f"unknown output format `{suffix}`: use .dot, .svg or .png"
    binary = shutil.which("dot")
    if binary is None:
        return (f"rendering {suffix} needs Graphviz's `dot` (e.g. `apt-get install graphviz`); "
                f"`pdc graph {ir.spec.path} -o {output.with_suffix('.dot')}` writes the DOT text without it")
    run = subprocess.run([binary, f"-T{suffix[1:]}", "-o", str(output)], input=dot, text=True, capture_output=True)
    return None if run.returncode == 0 else f"dot failed: {run.stderr.strip()}"
