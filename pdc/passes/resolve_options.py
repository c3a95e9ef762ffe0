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
from pdc.registry.schema import BlockSchema
from pdc.registry.spec import SPEC
from pdc.syntax.checked import Node

# Blocks read whole by the lowering and the run; `decompose`, `loss`, `optimize`'s groups,
# `mesh`, `shard` and `budget` have node kinds of their own (sites, terms, groups, mesh, rules).
TOP_BLOCKS = ("target", "data", "ci", "train", "remat", "precision", "checkpoint", "log", "eval")
# sub-blocks read whole, and whether the registry's defaults stand in when one is left out: a
# missing faithfulness warmup is "no warmup"; a missing `pretrain` means the target has weights,
# a missing `wandb` no wandb run
CHILD_BLOCKS = (("target", "pretrain", False), ("optimize", "faithfulness_warmup", True), ("log", "wandb", False))


def run(ir: IR) -> IR:
    base = ir.spec_dir
    for name in TOP_BLOCKS:
        _add(ir, name, ir.spec.block(name), SPEC.child(name), base)
    for parent, name, defaults in CHILD_BLOCKS:
        holder = ir.spec.block(parent)
        child = holder.child(name) if holder is not None else None
        schema = SPEC.child(parent)
        if child is not None or defaults:
            _add(ir, f"{parent}.{name}", child, schema.child(name) if schema is not None else None, base)
    return ir


def _add(ir: IR, block: str, node: Node | None, schema: BlockSchema | None, base: Path) -> None:
    """The block's node: its checked keys, relative paths resolved against the spec's
    directory (an imported file's paths are already rewritten relative to it); a block left
    out gets its schema's defaults (blocks with a label — target, data, ci — are required, so
    a default never needs one)."""
    if node is not None:
        ir.add(f"options:{block}", OptionsNode(block, node.label, node.keys, base=str(base),
                                               span=node.header or node.span))
    elif schema is not None and schema.keys is not None:
        ir.add(f"options:{block}", OptionsNode(block, None, schema.keys(), base=str(base), written=False))
