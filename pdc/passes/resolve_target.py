"""Pass 1 — resolve the target: the `target` block (and an HF config.json, named by
`config` or found beside `weights`) → the module tree, every matrix's shape and the forward
settings, each with where it came from. No weight is read: of the weight files only their
headers, for the dtype they are stored in (said out loud beside `target.dtype`)."""

from __future__ import annotations

from dataclasses import replace

from pdc.inputs.checkpoint import stored_dtype
from pdc.ir.graph import IR
from pdc.ir.nodes import TargetNode
from pdc.syntax.checked import Node
from pdc.syntax.diagnostics import Diagnostic, Severity
from pdc.syntax.family import where
from pdc.targets import TargetConfigError, target_shape
from pdc.targets.base import TargetShape


def run(ir: IR) -> IR:
    node = ir.spec.block("target")
    assert node is not None and node.label is not None and node.keys is not None
    spec_dir = ir.spec_dir
    written = {key: where(node.span_of(key)) for key in node.explicit}
    try:
        shape = target_shape(node.label, node.keys, spec_dir, written)
    except TargetConfigError as error:
        key = error.key
        if key == "config" and "config" not in node.explicit and "weights" in node.explicit:
            key = "weights"  # the config.json found beside the weights
        span = node.span_of(key) if key else (node.header or node.span)
        ir.error(Diagnostic(error.code, str(error), span, "here", help=(error.help,) if error.help else ()))
        return ir
    if "weights" in node.schema.key_names() and node.get("weights") is None and node.child("pretrain") is None:
        ir.error(Diagnostic("PD0329", f"the {node.label} target has neither `weights` nor a `pretrain` block: there is "
                            "no model to decompose", node.header or node.span, "no weights", help=(
                                "give `weights = \"path\"` (a .safetensors file or an HF model directory) or a "
                                "`pretrain { ... }` block that trains the target first",)))
    ir.facts["target"] = shape
    ir.add("target", TargetNode(shape.family, shape.n_layers, shape.has_positions, shape.output,
                                tuple(sorted(shape.dims.items())), _forward(shape)))
    _resolved_options(ir, shape)
    _dtype(ir, node)
    return ir


_WIDTH = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2}


def _dtype(ir: IR, node: Node) -> None:
    """LMs: the dtype the checkpoint stores its weights in beside the one the run holds them in
    (`target.dtype`), for the plan and run.json; rounding to a narrower dtype that the spec did
    not ask for (`dtype` left at its bf16 default) is a warning naming the key."""
    if "dtype" not in node.schema.key_names():
        return
    run = node.get("dtype")
    run_from = where(node.span_of("dtype")) if "dtype" in node.explicit else "default"
    weights = node.get("weights")
    stored = stored_dtype(ir.spec_dir / weights) if weights is not None else None
    shown = stored or ("not found" if weights is not None else "none (trained by `pretrain`)")
    ir.facts["dtype"] = {"stored": shown, "run": run, "run_from": run_from}
    if stored in _WIDTH and _WIDTH[stored] > _WIDTH[run] and "dtype" not in node.explicit:
        ir.error(Diagnostic("PD0407", f"the weights are stored as {stored}; `target.dtype` defaults to {run}, so they "
                            f"are rounded to {run}", node.span_of("weights"), f"{stored} weights",
                            help=(f"write `dtype = {stored}` in `target` (or `--set target.dtype={stored}`) to run "
                                  f"them as stored, or `dtype = {run}` to keep the rounding and silence this",),
                            severity=Severity.WARNING))


def _forward(shape: TargetShape) -> tuple[tuple[str, object], ...]:
    """The forward settings the lowering builds the model with (`--print-ir` shows them)."""
    out = dict(shape.forward)
    if "tied_embeddings" in shape.settings:
        out["tied_embeddings"] = shape.settings["tied_embeddings"][0]
    scaling = out.get("rope_scaling")
    if isinstance(scaling, dict):
        out["rope_scaling"] = tuple(sorted(scaling.items()))
    return tuple(sorted(out.items()))


def _resolved_options(ir: IR, shape: TargetShape) -> None:
    """`options:target` carries the values that run, not the registry's defaults: a setting
    config.json supplies (RoPE base, norm epsilon, tying) replaces the default the spec left."""
    node = ir.options_node("target")
    if node is None or not shape.settings:
        return
    keys = node.keys
    update = {k: v for k, (v, _) in shape.settings.items()
              if k in type(keys).model_fields and k in ("rope_theta", "rms_norm_eps", "tied_embeddings",
                                                       "layer_norm_epsilon", "activation_function")}
    if update:
        ir.graph.nodes["options:target"]["payload"] = replace(node, keys=keys.model_copy(update=update))
