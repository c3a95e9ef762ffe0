"""Pass 8 — a shard rule that splits a leading stack axis (the layers a scan walks, CI
chunks or blocks) is legal but costly: the scan reads one slice per iteration, so XLA
gathers the whole stack onto every device first — on Llama-8B, whole 32-layer f32 MLP
stacks (7 GiB a matrix). One warning per rule, with the rule rewritten to shard a
dimension inside each slice instead."""

from __future__ import annotations

from pdc.ir.graph import IR
from pdc.ir.nodes import MeshNode, ShardingNode, ShardRuleNode, TensorNode
from pdc.syntax.diagnostics import Diagnostic, Severity



def run(ir: IR) -> IR:
    rules = {r.index: r for _, r in ir.nodes(ShardRuleNode)}
    tensors = {t.path: t for _, t in ir.nodes(TensorNode)}
    sizes = dict(next(p for _, p in ir.nodes(MeshNode)).axes)
    flagged: dict[int, list[tuple[TensorNode, ShardingNode]]] = {}
    for _, sharding in ir.nodes(ShardingNode):
        tensor = tensors[sharding.tensor]
        if sharding.rule >= 0 and any(sharding.dims[d] for d in range(tensor.stack_dims)):
            flagged.setdefault(sharding.rule, []).append((tensor, sharding))
    for index, hits in flagged.items():
        ir.error(_warning(rules[index], hits, sizes))
    return ir


def _warning(rule: ShardRuleNode, hits: list[tuple[TensorNode, ShardingNode]], sizes: dict[str, int]) -> Diagnostic:
    tensor, sharding = hits[0]
    axes = [a for d in range(tensor.stack_dims) for a in sharding.dims[d]]
    names = ", ".join(f"`{t.path}`" for t, _ in hits[:3]) + (", ..." if len(hits) > 3 else "")
    return Diagnostic(
        "PD0326", f"rule `{rule.pattern}` splits the stacked layer axis of {names} over `{'×'.join(axes)}`",
        rule.span, "splits a stack axis the scan reads one slice at a time",
        help=("each scan step reads one layer, so XLA all-gathers the whole stack onto every device first",
              f"shard a dimension inside each layer instead: `{rule.pattern} = {_fix(tensor, sharding, sizes)}`"),
        severity=Severity.WARNING)


def _fix(tensor: TensorNode, sharding: ShardingNode, sizes: dict[str, int]) -> str:
    """The rule with the stack axes' mesh axes moved to the largest free dimension they divide."""
    dims = [list(axes) for axes in sharding.dims]
    moved = [a for d in range(tensor.stack_dims) for a in dims[d]]
    for d in range(tensor.stack_dims):
        dims[d] = []
    n = 1
    for axis in moved:
        n *= sizes.get(axis, 1)
    free = [d for d in range(tensor.stack_dims, len(dims)) if not dims[d] and tensor.shape[d] % n == 0]
    if free:
        dims[max(free, key=lambda d: tensor.shape[d])] = moved
    text = ", ".join("_" if not axes else axes[0] if len(axes) == 1 else "(" + ", ".join(axes) + ")" for axes in dims)
    return f"[{text}]"
