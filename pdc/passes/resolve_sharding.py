"""Pass 7 — resolve shard rules: for every tensor, the first rule whose pattern matches
its path decides its sharding; every tensor must match a rule; a rule that only ever
matches tensors earlier rules took is an error; one mesh axis may shard only one
dimension of a tensor; every sharded dimension must divide by its axes' sizes.

A rule lists one entry per dimension. Leading stack axes (layers, CI chunks, CI
blocks — what a scan iterates over) may be left out: `[dp, tp]` on a stacked
(L, d_in, C) tensor shards d_in and C and keeps the layer axis whole; a rule as long
as the full rank shards the stack axis too. Missing trailing entries are replicated. Presets pick per tensor
role (DESIGN.md §11.2 v2); they use axes named `dp` and `tp` when the mesh has them.
Without a `shard` block: the batch on the first mesh axis, everything else replicated.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pdc.ir.graph import IR
from pdc.ir.nodes import MeshNode, ShardingNode, ShardRuleNode, SiteNode, TensorNode
from pdc.syntax.ast import Pattern, Segment
from pdc.syntax.checked import Entry, ShardDims, ShardPreset
from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.patterns import matches
from pdc.syntax.suggest import did_you_mean

Dims = tuple[tuple[str, ...], ...]
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")



class _Reports:
    """One diagnostic per (code, rule, cause), naming every tensor it affects: a rule
    that fails for 32 stacked kinds is one mistake, reported once."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, int, str], tuple[Diagnostic, list[str]]] = {}

    def error(self, key: tuple[str, int, str], tensor: str, diagnostic: Diagnostic) -> None:
        self.found.setdefault(key, (diagnostic, []))[1].append(tensor)

    def emit(self, ir: IR) -> None:
        for diagnostic, tensors in self.found.values():
            if len(tensors) > 1:
                shown = ", ".join(f"`{t}`" for t in tensors[1:6]) + (", ..." if len(tensors) > 6 else "")
                diagnostic = replace(diagnostic, help=diagnostic.help + (f"the same holds for {shown}",))
            ir.error(diagnostic)


def run(ir: IR) -> IR:
    mesh = _mesh(ir)
    rules = _rules(ir, mesh)
    taken: dict[int, list[str]] = {r.index: [] for _, r in rules}
    matched: dict[int, list[str]] = {r.index: [] for _, r in rules}
    reports = _Reports()
    for tensor_id, tensor in ir.nodes(TensorNode):
        hits = [(rid, r) for rid, r in rules if matches(_pattern(r), tensor.path)]
        for _, rule in hits:
            matched[rule.index].append(tensor.path)
        if not hits:
            reports.error(("PD0320", -1, ""), tensor.path, _unmatched(ir, tensor))
            continue
        rule_id, rule = hits[0]
        taken[rule.index].append(tensor.path)
        dims = _expand(reports, rule, tensor, mesh)
        if dims is not None and _valid(reports, rule, tensor, dims, mesh):
            per_device = tuple(size // _product(mesh, axes) for size, axes in zip(tensor.shape, dims))
            ir.add(f"sharding:{tensor.path}", ShardingNode(tensor.path, rule.index, dims, per_device),
                   tensor_id, rule_id)
    reports.emit(ir)
    _presets_that_shard_nothing(ir, rules, mesh)
    _shadowed(ir, rules, taken, matched)
    _heads_vs_tp(ir, mesh)
    return ir


# ---- mesh and rules --------------------------------------------------------------------


def _mesh(ir: IR) -> MeshNode:
    block = ir.spec.block("mesh")
    axes = tuple((e.pattern.text, int(e.value)) for e in block.entries) if block is not None and block.entries \
        else (("dp", 1),)
    devices = ir.facts.get("devices")
    if devices is not None:  # `pdc compile --devices N`: the first axis takes what the others leave
        axes = ((axes[0][0], devices // math.prod(n for _, n in axes[1:])),) + axes[1:]
    mesh = MeshNode(axes)
    ir.add("mesh", mesh)
    return mesh


def _rules(ir: IR, mesh: MeshNode) -> list[tuple[str, ShardRuleNode]]:
    block = ir.spec.block("shard")
    if block is None:
        first = mesh.axes[0][0]
        defaults = [ShardRuleNode(-2, "batch", ((first,),), ir.spec.root.span),
                    ShardRuleNode(-1, "**", "replicated", ir.spec.root.span)]
        return [(ir.add(f"rule:default{i}", r, "mesh"), r) for i, r in enumerate(defaults)]
    return [(ir.add(f"rule:{i:03d}", _rule_node(i, e), "mesh"), _rule_node(i, e)) for i, e in enumerate(block.entries)]


def _rule_node(index: int, entry: Entry) -> ShardRuleNode:
    value = entry.value
    spec = value.name if isinstance(value, ShardPreset) else value.dims
    return ShardRuleNode(index, entry.pattern.text, spec, entry.span)


_PATTERNS: dict[str, Pattern] = {}


def _pattern(rule: ShardRuleNode) -> Pattern:
    """The parsed pattern of a rule (rules keep their text; `**` alone is the catch-all)."""
    if rule.pattern not in _PATTERNS:
        from pdc.syntax.patterns import parse_pattern

        _PATTERNS[rule.pattern] = parse_pattern(rule.pattern, rule.span, []) if rule.pattern != "**" \
            else Pattern("**", (Segment("**"),), rule.span)
    return _PATTERNS[rule.pattern]


# ---- per tensor -------------------------------------------------------------------------


def _expand(reports: _Reports, rule: ShardRuleNode, tensor: TensorNode, mesh: MeshNode) -> Dims | None:
    rank = len(tensor.shape)
    if isinstance(rule.spec, str):
        return _preset(rule.spec, tensor, mesh)
    spec = tuple(rule.spec)
    if len(spec) == rank:
        return spec
    logical = rank - tensor.stack_dims
    if len(spec) > logical:
        reports.error(("PD0324", rule.index, ""), tensor.path, Diagnostic(
            "PD0324", f"rule `{rule.pattern}` gives {len(spec)} dims, and `{tensor.path}` has {_rank_text(tensor)}",
            rule.span, "too many dims", help=("write one entry per dimension; leading stack axes may be left out",)))
        return None
    return ((),) * tensor.stack_dims + spec + ((),) * (logical - len(spec))


def _rank_text(tensor: TensorNode) -> str:
    shape = list(tensor.shape)
    if tensor.stack_dims:
        return f"rank {len(shape)} {shape}, {tensor.stack_dims} of them leading stack axes"
    return f"rank {len(shape)} {shape}"


def preset_axes(mesh: MeshNode) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The presets' data and model axes: the axes named `dp` and `tp`, else the mesh's first
    and second axes whatever their names (`mesh { data = 4 model = 2 }`)."""
    names = [a for a, _ in mesh.axes]
    data = "dp" if "dp" in names else names[0]
    model = "tp" if "tp" in names else next((a for a in names[1:] if a != data), None)
    return (data,), (model,) if model is not None else ()


def _preset(name: str, tensor: TensorNode, mesh: MeshNode) -> Dims:
    rank = len(tensor.shape)
    dims: list[tuple[str, ...]] = [()] * rank
    dp, tp = preset_axes(mesh)
    role = tensor.role
    if name == "dp" or (role == "batch" and name != "replicated"):
        dims[0] = dp
    elif name == "fsdp" and dp:
        divisible = [i for i, s in enumerate(tensor.shape) if s % mesh.size(dp[0]) == 0]
        if divisible:
            dims[max(divisible, key=lambda i: tensor.shape[i])] = dp
    elif name in ("tp", "fsdp_tp") and rank >= 2:
        layout = _TP_LAYOUT.get(role)
        if layout is not None:
            for offset, kind in layout:
                dims[rank + offset] = tp if kind == "tp" else (dp if name == "fsdp_tp" else ())
    return tuple(dims)


def _presets_that_shard_nothing(ir: IR, rules: list[tuple[str, ShardRuleNode]], mesh: MeshNode) -> None:
    """A sharding preset over axes with more than one device that leaves most of its tensors'
    bytes whole (`ci.** = fsdp` on `dp = 3`: no dimension divisible) would silently replicate
    them; say so. Small tensors left whole (biases) are what FSDP does anyway."""
    shapes = {t.path: t.shape for _, t in ir.nodes(TensorNode)}
    by_rule: dict[int, list[ShardingNode]] = {}
    for _, node in ir.nodes(ShardingNode):
        by_rule.setdefault(node.rule, []).append(node)
    dp, tp = preset_axes(mesh)
    for _, rule in rules:
        nodes = by_rule.get(rule.index, [])
        if not isinstance(rule.spec, str) or rule.spec in ("replicated", "dp") or rule.pattern == "batch" or not nodes:
            continue
        axes = [a for a in (dp if rule.spec == "fsdp" else tp + dp) if mesh.size(a) > 1]
        whole = [n for n in nodes if not any(n.dims)]
        size = {n.tensor: math.prod(shapes[n.tensor]) for n in nodes}
        if not axes or 2 * sum(size[n.tensor] for n in whole) <= sum(size.values()):
            continue
        largest = max(whole, key=lambda n: size[n.tensor])
        ir.error(Diagnostic(
            "PD0327", f"rule `{rule.pattern} = {rule.spec}` leaves {len(whole)} of its {len(nodes)} tensors "
            f"({100 * sum(size[n.tensor] for n in whole) // sum(size.values())}% of their elements) replicated: no "
            f"dimension divides {', '.join(f'{a} = {mesh.size(a)}' for a in axes)}", rule.span, "would replicate them",
            help=("write `replicated` to keep them whole on purpose, or size the mesh axis to divide their dimensions "
                  f"(the largest, `{largest.tensor}`, is {list(shapes[largest.tensor])})",)))


# role → (dim offset from the end, "tp" | "dp") for the tp/fsdp_tp presets
_TP_LAYOUT = {
    "column": ((-2, "dp"), (-1, "tp")), "stack": ((-2, "dp"), (-1, "tp")), "v": ((-2, "dp"), (-1, "tp")),
    "row": ((-2, "tp"), (-1, "dp")), "u": ((-2, "tp"), (-1, "dp")), "per_component": ((-3, "tp"),),
}


def _product(mesh: MeshNode, axes: tuple[str, ...]) -> int:
    return math.prod(mesh.size(a) for a in axes)


def _valid(reports: _Reports, rule: ShardRuleNode, tensor: TensorNode, dims: Dims, mesh: MeshNode) -> bool:
    names = [a for a, _ in mesh.axes]
    flat = [a for axes in dims for a in axes]
    for axis in flat:
        if axis not in names:
            reports.error(("PD0323", rule.index, axis), tensor.path, Diagnostic(
                "PD0323", f"rule `{rule.pattern}` names mesh axis `{axis}`, which the mesh does not have"
                f"{did_you_mean(axis, names)}", rule.span, "unknown axis", help=(f"mesh axes: {', '.join(names)}",)))
            return False
    for axis in sorted({a for a in flat if flat.count(a) > 1}):
        reports.error(("PD0322", rule.index, axis), tensor.path, Diagnostic(
            "PD0322", f"mesh axis `{axis}` shards two dimensions of `{tensor.path}`", rule.span,
            f"`{axis}` used twice", help=("an axis can split a tensor along one dimension only",)))
        return False
    ok = True
    for dim, (size, axes) in enumerate(zip(tensor.shape, dims)):
        if axes and size % _product(mesh, axes):
            source = tensor.dims_from[dim] if dim < len(tensor.dims_from) else ""
            reports.error(("PD0310", rule.index, f"{source}/{size}/{axes}"), tensor.path,
                          _indivisible(rule, tensor, dim, axes, mesh))
            ok = False
    return ok


def _indivisible(rule: ShardRuleNode, tensor: TensorNode, dim: int, axes: tuple[str, ...], mesh: MeshNode) -> Diagnostic:
    size, n = tensor.shape[dim], _product(mesh, axes)
    source = tensor.dims_from[dim] if dim < len(tensor.dims_from) else "the tensor's shape"
    what = " × ".join(f"{a}={mesh.size(a)}" for a in axes)
    divisors = [d for d in range(1, 65) if size % d == 0]
    padded = math.ceil(size / n) * n
    extra = (padded - size) / size * 100
    related = ()
    spans = tensor.dim_spans
    if dim < len(spans) and spans[dim] is not None:
        related = (Related(spans[dim], f"dim {dim} ({size}) is set"),)
    return Diagnostic(
        "PD0310", f"dim {dim} of `{tensor.path}` (size {size}) is not divisible by mesh axis {what}",
        rule.span, f"shards dim {dim} on {'×'.join(axes)}", related,
        (f"size {size} comes from {source}",
         f"axis sizes dividing {size}: {{{', '.join(str(d) for d in divisors[:10])}{', ...' if len(divisors) > 10 else ''}}}; "
         f"or pad to {padded} (+{extra:.3g}% memory for this tensor)"))


def _unmatched(ir: IR, tensor: TensorNode) -> Diagnostic:
    block = ir.spec.block("shard")
    span = (block.header or block.span) if block is not None else ir.spec.root.span
    return Diagnostic("PD0320", f"tensor `{tensor.path}` {list(tensor.shape)} matches no shard rule", span,
                      "no rule for it", help=(f"add a rule such as `{tensor.path} = replicated`, or end the rules "
                                              "with a catch-all `** = replicated`",))


def _shadowed(ir: IR, rules: list[tuple[str, ShardRuleNode]], taken: dict[int, list[str]],
              matched: dict[int, list[str]]) -> None:
    by_index = {r.index: r for _, r in rules}
    for index, tensors in matched.items():
        if tensors and not taken[index]:
            rule = by_index[index]
            earlier = next(r for r in by_index.values() if r.index < index and tensors[0] in taken[r.index])
            ir.error(Diagnostic("PD0321", f"rule `{rule.pattern}` is shadowed: every tensor it matches is taken by an "
                                "earlier rule", rule.span, "never applies",
                                (Related(earlier.span, f"`{tensors[0]}` is taken by the rule"),),
                                ("the first matching rule wins: move this rule up, or remove it",)))


def _heads_vs_tp(ir: IR, mesh: MeshNode) -> None:
    axes = dict(mesh.axes)
    tp = axes.get("tp", 1)
    shape = ir.facts["target"]
    if tp == 1 or not any(s.kind in _ATTENTION for _, s in ir.nodes(SiteNode)):
        return
    block = ir.spec.block("mesh")
    span = next(e.span for e in block.entries if e.pattern.text == "tp") if block is not None else ir.spec.root.span
    for name in ("heads", "kv_heads"):
        count = shape.dims[name]
        if count % tp:
            ir.error(Diagnostic("PD0325", f"tp = {tp} does not divide the {count} {name.replace('_', '-')} of the "
                                "attention sites", span, "tensor-parallel degree",
                                help=(f"{count} {name.replace('_', '-')} come from {shape.dims_from.get(name, name)}; "
                                      f"tp in {{{', '.join(str(d) for d in range(1, count + 1) if count % d == 0)}}} "
                                      "divides them",)))
