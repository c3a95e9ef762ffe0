"""Pass 4 — infer tensor shapes: the frozen target's parameters, V (d_in × C) and
U (C × d_out) per site kind (stacked over layers so the forward can scan), and the
batch. Sites of one kind must share C where they are stacked."""

from __future__ import annotations

from collections import defaultdict

from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode, TensorNode
from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.targets import TargetShape

ADAM_MOMENTS = 2



def run(ir: IR) -> IR:
    shape: TargetShape = ir.facts["target"]
    _target_tensors(ir, shape)
    by_kind: dict[str, list[tuple[str, SiteNode]]] = defaultdict(list)
    for node_id, site in ir.nodes(SiteNode):
        by_kind[site.kind].append((node_id, site))
    for kind, sites in by_kind.items():
        if _uniform_c(ir, kind, sites):
            _component_tensors(ir, kind, sites)
    _batch(ir, shape)
    return ir


def params_dtype(ir: IR) -> str:
    precision = ir.spec.block("precision")
    return precision.get("params") if precision is not None else "f32"


def _target_tensors(ir: IR, shape: TargetShape) -> None:
    target = ir.spec.block("target")
    dtype = target.get("dtype") if target is not None and "dtype" in target.schema.key_names() else "f32"
    for tensor in shape.tensors:
        stacked = tensor.path.startswith(("target.layers.", "target.norms.", "target.hidden_layers"))
        ir.add(f"tensor:{tensor.path}", TensorNode(tensor.path, "target", tensor.shape, dtype,
                                                   "stack" if tensor.path.startswith("target.layers.") else "frozen",
                                                   tensor.dims_from, False, stack_dims=int(stacked)), "target")


def _uniform_c(ir: IR, kind: str, sites: list[tuple[str, SiteNode]]) -> bool:
    first = sites[0][1]
    for _, site in sites[1:]:
        if site.C != first.C:
            ir.error(Diagnostic("PD0305", f"sites of kind `{kind}` have different C ({first.C} and {site.C}); "
                                "sites of one kind are stacked over layers and need one C",
                                site.c_span or site.span, f"C = {site.C}",
                                (Related(first.c_span or first.span, f"C = {first.C} for `{first.path}`"),),
                                (f"use one C for every `{kind}` site",)))
            return False
    return True


def _component_tensors(ir: IR, kind: str, sites: list[tuple[str, SiteNode]]) -> None:
    site = sites[0][1]
    c_from = f"C at {site.c_span}" if site.c_span else "C"
    lead = (len(sites),)  # every kind is stacked over its sites, the layout the layer scan consumes
    lead_from = (f"decomposed `{kind}` sites",)
    dtype = params_dtype(ir)
    deps = [node_id for node_id, _ in sites]
    lead_spans: tuple[None, ...] = (None,)
    for name, shape, dims_from, role, spans in (
        ("V", (site.d_in, site.C), (_d_from(ir, site, "in"), c_from), "v", (None, site.c_span)),
        ("U", (site.C, site.d_out), (c_from, _d_from(ir, site, "out")), "u", (site.c_span, None)),
    ):
        ir.add(f"tensor:components.{kind}.{name}", TensorNode(
            f"components.{kind}.{name}", "components", lead + shape, dtype, role, lead_from + dims_from, True,
            ADAM_MOMENTS, stack_dims=len(lead), dim_spans=lead_spans + spans), *deps)


def _d_from(ir: IR, site: SiteNode, side: str) -> str:
    matrix = ir.facts["target"].matrix(site.path)
    return matrix.d_in_from if side == "in" else matrix.d_out_from


def _check_positions(ir: IR, seq_len: int) -> None:
    """Sequences must fit the RoPE tables the target was built for (`max_positions`)."""
    target, data = ir.spec.block("target"), ir.spec.block("data")
    assert target is not None and data is not None
    positions = ir.facts["target"].dims.get("positions")  # a learned position table (GPT-2): rows it has
    if positions is not None and seq_len > positions:
        where = ir.facts["target"].dims_from.get("positions", "the target")
        ir.error(Diagnostic("PD0315", f"seq_len = {seq_len} exceeds the target's {positions} positions ({where})",
                            data.span_of("seq_len"), "too long"))
    if "max_positions" not in target.schema.key_names() or target.get("config") is not None:
        return  # an HF config's max_position_embeddings is the model's business
    if seq_len > target.get("max_positions"):
        ir.error(Diagnostic("PD0315", f"seq_len = {seq_len} exceeds the target's max_positions = "
                            f"{target.get('max_positions')}", data.span_of("seq_len"), "too long",
                            (Related(target.span_of("max_positions"), "max_positions"),)))


def _batch(ir: IR, shape: TargetShape) -> None:
    data = ir.spec.block("data")
    assert data is not None
    batch = data.get("batch")
    if shape.has_positions:
        seq = data.get("seq_len")
        _check_positions(ir, seq)
        node = TensorNode("batch", "batch", (batch, seq), "int32", "batch",
                          (f"batch at {data.span_of('batch')}", f"seq_len at {data.span_of('seq_len')}"), False)
    else:
        features = shape.dims["features"]
        node = TensorNode("batch", "batch", (batch, features), "f32", "batch",
                          (f"batch at {data.span_of('batch')}", "features"), False)
    ir.add("tensor:batch", node, "target")
