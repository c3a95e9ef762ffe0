"""Pass 0 — the typed options of every block the lowering and the run read.

Each block below becomes an `OptionsNode` holding the registry's checked `Keys` model, with
the registry's defaults when the spec leaves the block out. Past this pass nothing reads the
spec text: `pdc.lower`, `pdc.run` and `pdc.inspect` read these nodes (and the site, term,
group and sharding nodes the other passes write), so a default lives in the registry only.
"""

from __future__ import annotations

from pathlib import Path

from pdc.ir.graph import IR
from pdc.ir.nodes import OptionsNode
from pdc.registry.spec import SPEC
from pdc.syntax.checked import Node

# Blocks read whole by the lowering and the run; `decompose`, `loss`, `optimize`'s groups,
# `mesh`, `shard` and `budget` have node kinds of their own (sites, terms, groups, mesh, rules).
TOP_BLOCKS = ("target", "data", "ci", "train", "remat", "precision", "checkpoint", "log", "eval")
CHILD_BLOCKS = (("target", "pretrain"), ("optimize", "faithfulness_warmup"))


def run(ir: IR) -> IR:
    base = _spec_dir(ir)
    for name in TOP_BLOCKS:
        _add(ir, name, ir.spec.block(name), base)
    for parent, name in CHILD_BLOCKS:
        holder = ir.spec.block(parent)
        child = holder.child(name) if holder is not None else None
        if child is not None or _default_schema(parent, name, holder) is not None:
            _add(ir, f"{parent}.{name}", child, base, holder)
    return ir


def _spec_dir(ir: IR) -> Path:
    return Path(ir.spec.path).resolve().parent if ir.spec.path != "<string>" else Path.cwd()


def _add(ir: IR, block: str, node: Node | None, base: Path, holder: Node | None = None) -> None:
    """The block's node; a missing block gets its schema's defaults (or no node when the
    schema has no keys, e.g. the `pretrain` of a target that names its weights)."""
    if node is not None:
        where = Path(node.span.file).resolve().parent if node.span.file not in ("", "<string>") else base
        ir.add(f"options:{block}", OptionsNode(block, node.label, node.keys, base=str(where)))
        return
    schema = _default_schema(*block.split("."), holder) if "." in block else SPEC.child(block)
    if schema is None or schema.keys is None:
        return
    ir.add(f"options:{block}", OptionsNode(block, None, schema.keys(), base=str(base), written=False))


def _default_schema(parent: str, name: str, holder: Node | None) -> object:
    """The schema of an optional child block whose defaults apply when it is left out:
    `optimize.faithfulness_warmup` (no warmup); a target without `pretrain` has none."""
    if parent == "optimize":
        optimize = SPEC.child("optimize")
        return optimize.child(name) if optimize is not None else None
    return None

