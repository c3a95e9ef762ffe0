"""The build_ci pass's pieces the CI networks share: IR tensors of MLP layers, the per-site
networks' chunks and tensors, and the transformers' chunks (which sites each serves, input
width, Σ C) and tensors. A network's `shapes` calls these (importing this module when it runs:
it reads the IR, which the registry may not).

Chunked transformers stack their chunks on a leading axis and scan over it, which
needs homogeneous chunks (equal input width and Σ C)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

from pdc.ir.graph import IR
from pdc.ir.nodes import CiChunkNode, SiteNode, TensorNode
from pdc.passes.infer_shapes import ADAM_MOMENTS, params_dtype
from pdc.syntax.checked import Node
from pdc.syntax.diagnostics import Diagnostic
from pdc.targets import TargetShape

Sites = list[tuple[str, SiteNode]]
# a per-site network's (widths, extra lead) for one site: `pdc.ci._nn.Widths`
Widths = Callable[[Any, Sequence[int]], tuple[list[int], tuple[int, ...]]]


def tensor(ir: IR, path: str, shape: tuple[int, ...], role: str, dims_from: Iterable[str], deps: list[str],
           trainable: bool = True, stack_dims: int = 0) -> None:
    dtype = params_dtype(ir) if trainable else "f32"  # buffers (RoPE inv_freq) stay fp32
    ir.add(f"tensor:ci.{path}", TensorNode(f"ci.{path}", "ci", shape, dtype, role, tuple(dims_from),
                                           trainable, ADAM_MOMENTS if trainable else 0, stack_dims=stack_dims), *deps)


def mlp_layers(ir: IR, prefix: str, widths: list[int], lead: tuple[int, ...], lead_from: tuple[str, ...],
               deps: list[str], per_component: bool) -> None:
    """Weights and biases of an MLP with the given layer widths (GELU between layers)."""
    role = "per_component" if per_component else "column"
    stack = len(lead) - int(per_component)  # the per-component C axis is a real dim, not a stack
    for j, (d_in, d_out) in enumerate(zip(widths, widths[1:])):
        tensor(ir, f"{prefix}w{j}", lead + (d_in, d_out), role, lead_from + ("layer input", "layer output"), deps,
               stack_dims=stack)
        tensor(ir, f"{prefix}b{j}", lead + (d_out,), "vector", lead_from + ("layer output",), deps, stack_dims=stack)


def per_site(ir: IR, ci: Node, sites: Sites, widths: Widths) -> None:
    """One chunk per site; per kind, its MLPs stacked over the kind's sites (and over C when the
    network's `widths` gives per-component MLPs)."""
    by_kind: dict[str, Sites] = defaultdict(list)
    for node_id, site in sites:
        by_kind[site.kind].append((node_id, site))
        ir.add(f"ci:{site.path}", CiChunkNode(site.order, (site.path,), site.d_in, site.C), node_id)
    hidden: list[int] = list(ci.get("hidden"))
    for kind, members in by_kind.items():
        site = members[0][1]
        layer_widths, extra = widths(site, hidden)
        lead, lead_from = (len(members),) + extra, ("sites of the kind",) + ("C",) * len(extra)
        deps = [f"ci:{s.path}" for _, s in members]
        mlp_layers(ir, f"{kind}.", layer_widths, lead, lead_from, deps, per_component=bool(extra))


def _chunks(ir: IR, ci: Node, sites: Sites, chunked: bool) -> list[Sites] | None:
    if not chunked:
        return [sites]
    layers = sorted({s.layer for _, s in sites if s.layer is not None})
    per = ci.get("blocks_per_chunk")
    if len(layers) % per:
        ir.error(Diagnostic("PD0306", f"{len(layers)} decomposed layers do not split into chunks of "
                            f"blocks_per_chunk = {per}", ci.span_of("blocks_per_chunk"), "does not divide",
                            help=(f"blocks_per_chunk in {{{', '.join(str(d) for d in _divisors(len(layers)))}}} "
                                  "divides the decomposed layers",)))
        return None
    groups = [set(layers[i:i + per]) for i in range(0, len(layers), per)]
    return [[(n, s) for n, s in sites if s.layer in group] for group in groups]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _input_width(ci: Node, chunk: Sites, shape: TargetShape, per_chunk: int) -> int:
    mode = ci.get("input")
    if mode == "site_inputs":
        return sum(s.d_in for _, s in chunk)
    hidden = shape.dims["hidden"]
    return hidden if mode == "first_block_resid" else hidden * per_chunk


def transformer(ir: IR, ci: Node, sites: Sites, chunked: bool) -> None:
    """The RoPE transformer's chunks and tensors: one chunk over every site, or (`chunked`)
    chunks of `blocks_per_chunk` decomposed layers stacked on a leading axis."""
    shape: TargetShape = ir.facts["target"]
    if not shape.has_positions:
        ir.error(Diagnostic("PD0308", f"`ci {ci.label}` attends over positions, and a {shape.family} target has none",
                            ci.header or ci.span, "needs a sequence", help=("use `ci mlp`, `vector_mlp` or "
                                                                            "`shared_mlp` for toy targets",)))
        return
    d_model, heads = ci.get("d_model"), ci.get("heads")
    if d_model % heads or (d_model // heads) % 2:
        ir.error(Diagnostic("PD0309", f"d_model = {d_model} over {heads} heads must give an even head width "
                            "(RoPE rotates pairs)", ci.span_of("heads"), "uneven head width"))
        return
    chunks = _chunks(ir, ci, sites, chunked)
    if chunks is None:
        return
    layers = len({s.layer for _, s in sites})
    per = ci.get("blocks_per_chunk") if chunked else layers  # one chunk of all
    for i, chunk in enumerate(chunks):
        ir.add(f"ci:{i}", CiChunkNode(i, tuple(s.path for _, s in chunk), _input_width(ci, chunk, shape, per),
                                      sum(s.C for _, s in chunk)), *[n for n, _ in chunk])
    if _homogeneous(ir, ci):
        _transformer_tensors(ir, ci, len(chunks), chunked)


def _homogeneous(ir: IR, ci: Node) -> bool:
    chunks = [c for _, c in ir.nodes(CiChunkNode)]
    first = chunks[0]
    for chunk in chunks[1:]:
        if (chunk.input_width, chunk.c_total) != (first.input_width, first.c_total):
            ir.error(Diagnostic("PD0307", f"CI chunk {chunk.index} (input width {chunk.input_width}, Σ C "
                                f"{chunk.c_total}) differs from chunk 0 ({first.input_width}, {first.c_total}); "
                                "stacked chunks must be homogeneous", ci.span_of("blocks_per_chunk"),
                                "chunks differ", help=("decompose the same sites with the same C in every chunk",)))
            return False
    return True


def _transformer_tensors(ir: IR, ci: Node, n_chunks: int, chunked: bool) -> None:
    chunk = next(c for _, c in ir.nodes(CiChunkNode))
    d, blocks, mlp = ci.get("d_model"), ci.get("blocks"), ci.get("mlp")
    lead = (n_chunks,) if chunked else ()
    lf = ("CI chunks",) if lead else ()
    deps = [n for n, _ in ir.nodes(CiChunkNode)]
    bl, bf = lead + (blocks,), lf + ("CI blocks",)
    ls, bs = len(lead), len(bl)
    tensor(ir, "in_proj", lead + (chunk.input_width, d), "column", lf + ("chunk input width", "d_model"), deps,
           stack_dims=ls)
    tensor(ir, "in_proj_b", lead + (d,), "vector", lf + ("d_model",), deps, stack_dims=ls)
    for name, role in (("q", "column"), ("k", "column"), ("v", "column"), ("o", "row")):
        tensor(ir, f"blocks.{name}", bl + (d, d), role, bf + ("d_model", "d_model"), deps, stack_dims=bs)
    tensor(ir, "blocks.mlp_in", bl + (d, mlp), "column", bf + ("d_model", "mlp"), deps, stack_dims=bs)
    tensor(ir, "blocks.mlp_in_b", bl + (mlp,), "vector", bf + ("mlp",), deps, stack_dims=bs)
    tensor(ir, "blocks.mlp_out", bl + (mlp, d), "row", bf + ("mlp", "d_model"), deps, stack_dims=bs)
    tensor(ir, "blocks.mlp_out_b", bl + (d,), "vector", bf + ("d_model",), deps, stack_dims=bs)
    tensor(ir, "head", lead + (d, chunk.c_total), "column", lf + ("d_model", "Σ C of the chunk"), deps, stack_dims=ls)
    tensor(ir, "head_b", lead + (chunk.c_total,), "vector", lf + ("Σ C of the chunk",), deps, stack_dims=ls)
    head_dim = d // ci.get("heads")
    tensor(ir, "inv_freq", (head_dim // 2,), "vector", ("head width / 2",), deps, trainable=False)
