"""Pass 1 — resolve the target: the `target` block (and an HF config.json, if named)
→ the module tree and every matrix's shape. No weight file is opened."""

from __future__ import annotations

from pdc.ir.graph import IR
from pdc.ir.nodes import TargetNode
from pdc.syntax.diagnostics import Diagnostic
from pdc.targets import TargetConfigError, target_shape



def run(ir: IR) -> IR:
    node = ir.spec.block("target")
    assert node is not None and node.label is not None and node.keys is not None
    spec_dir = ir.spec_dir
    try:
        shape = target_shape(node.label, node.keys, spec_dir)
    except TargetConfigError as error:
        span = node.span_of(error.key) if error.key else (node.header or node.span)
        ir.error(Diagnostic(error.code, str(error), span, "here", help=(error.help,) if error.help else ()))
        return ir
    if "weights" in node.schema.key_names() and node.get("weights") is None and node.child("pretrain") is None:
        ir.error(Diagnostic("PD0329", f"the {node.label} target has neither `weights` nor a `pretrain` block: there is "
                            "no model to decompose", node.header or node.span, "no weights", help=(
                                "give `weights = \"path\"` (a .safetensors file or an HF model directory) or a "
                                "`pretrain { ... }` block that trains the target first",)))
    ir.facts["target"] = shape
    ir.add("target", TargetNode(shape.family, shape.n_layers, shape.has_positions, shape.output,
                                tuple(sorted(shape.dims.items()))))
    return ir
