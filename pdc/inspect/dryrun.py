"""`pdc compile --dry-run`: lower and compile the step on abstract values only — no
weights, no state is ever allocated — and decide whether it fits the spec's budget.

Levels (DESIGN.md §7): `lint` traces the step abstractly (shapes, shardings); `cpu`
compiles for fake host devices (argument/output/alias bytes exact, temp approximate:
the CPU compiler's buffer assignment is not a GPU's); `gpu` compiles deviceless for a
real GPU model through `jax.experimental.topologies` when the CUDA plugin is installed.
XLA compiles an over-budget program without complaint, so pdc decides "fits" itself.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import jax
import jax.numpy as jnp

from pdc.inspect import hlo
from pdc.ir.graph import IR
from pdc.ir.nodes import BudgetNode, SiteNode, TensorNode
from pdc.lower.program import Program, lower_program
from pdc.lower.sharding import batch_sharding, make_mesh, params_shardings, pins_for, state_shardings
from pdc.lower.state import abstract_state, lead_shape
from pdc.lower.step import make_train_step

GPU_TARGETS = {"h100_sxm": "h100_sxm.txtpb", "h200": "h200.txtpb"}


@dataclass
class DryRun:
    spec: str
    level: str
    devices: int
    device_kind: str
    memory: dict[str, int]  # per device: argument, output, alias, temp, total
    budget: int | None
    largest: list[dict[str, Any]]
    collectives: list[dict[str, Any]]
    sites: int
    c_total: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    hlo_text: str = field(default="", repr=False)  # the compiled module, for --dump

    @property
    def fits(self) -> bool | None:
        return None if self.budget is None else self.memory["total"] <= self.budget


def abstract_step(program: Program, mesh: jax.sharding.Mesh) -> tuple[Any, tuple[Any, ...]]:
    """The jitted step with explicit shardings, and its abstract arguments."""
    ir = program.ir
    state = abstract_state(program)
    params = jax.eval_shape(program.target.init_params, jax.random.PRNGKey(0))
    s_state, s_params = state_shardings(ir, mesh, state), params_shardings(ir, mesh, params)
    args: list[Any] = [_with(state, s_state), _with(params, s_params)]
    in_shardings: list[Any] = [s_state, s_params]
    if program.shape.has_positions:
        args.append(jax.ShapeDtypeStruct(lead_shape(program), jnp.int32, sharding=batch_sharding(ir, mesh)))
        in_shardings.append(batch_sharding(ir, mesh))
    else:
        args.append(None)
        in_shardings.append(None)
    step = jax.jit(make_train_step(program, pins_for(ir, mesh)), in_shardings=tuple(in_shardings),
                   out_shardings=(s_state, None), donate_argnums=(0,))
    return step, tuple(args)


def _with(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """XLA warns about involuntary rematerialisation on the C++ stderr; capture fd 2."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().splitlines())


def gpu_devices(target: str, n: int) -> tuple[list[Any] | None, str]:
    """Deviceless GPU devices for `target`, or (None, why not)."""
    config = GPU_TARGETS.get(target)
    if config is None:
        return None, f"no vendored target config for `{target}` (have: {', '.join(GPU_TARGETS)})"
    try:
        from jax.experimental import topologies

        text = (Path(__file__).parent / "gpu_targets" / config).read_text()
        topology = topologies.get_topology_desc(platform="cuda", target_config=text, topology=f"1x1x{n}")
        return list(topology.devices), ""
    except Exception as error:  # noqa: BLE001 — any failure means: no deviceless GPU compile here
        return None, (f"deviceless GPU compile unavailable ({type(error).__name__}: {str(error)[:120]}); install "
                      f"the CUDA plugin with `pip install 'jax[cuda12]=={jax.__version__}'`; fell back to CPU compile")


def dry_run(ir: IR, target: str = "cpu", level: str = "cpu", remat: str | None = None) -> DryRun:
    start = time.perf_counter()
    program = lower_program(ir, remat_recon=remat)
    notes: list[str] = []
    devices, kind = None, "cpu (fake host devices)"
    n = _mesh_devices(ir)
    if target != "cpu":
        devices, why = gpu_devices(target, n)
        if devices is None:
            notes.append(why)
        else:
            kind, level = devices[0].device_kind, "gpu"
    mesh = make_mesh(ir, devices)
    step, args = abstract_step(program, mesh)
    if level == "lint":
        jax.eval_shape(step, *args)
        return _report(ir, "lint", n, kind, None, [], start, notes)
    with captured_stderr() as log:
        compiled = step.lower(*args).compile()
    notes += [line.strip() for line in log if "rematerializ" in line.lower()][:5]
    if level != "gpu":
        notes.append("argument, output and alias bytes are exact; temp bytes come from the CPU compiler and "
                     "approximate a GPU's")
    text = compiled.as_text()
    report = _report(ir, level, n, kind, compiled, hlo.parse(text), start, notes)
    report.hlo_text = text
    return report


def _mesh_devices(ir: IR) -> int:
    from pdc.ir.nodes import MeshNode

    return next(p for _, p in ir.nodes(MeshNode)).devices


def _memory(compiled: Any) -> dict[str, int]:
    stats = compiled.memory_analysis()
    memory = {"argument": int(stats.argument_size_in_bytes), "output": int(stats.output_size_in_bytes),
              "alias": int(stats.alias_size_in_bytes), "temp": int(stats.temp_size_in_bytes)}
    memory["total"] = memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]
    return memory


def _budget(ir: IR) -> int | None:
    budget = next((p for _, p in ir.nodes(BudgetNode)), None)
    if budget is None or budget.device_memory is None:
        return None
    return int(budget.device_memory * (1.0 - budget.headroom))


def _full_shapes(ir: IR) -> set[tuple[int, ...]]:
    """Global shapes of parameters and components, whole and per stacked entry."""
    shapes = set()
    for _, t in ir.nodes(TensorNode):
        if t.group in ("target", "components", "ci") and len(t.shape) > 1:
            shapes.add(t.shape)
            shapes.add(t.shape[t.stack_dims:])
    return shapes


def _collectives(instructions: list[hlo.Instruction], ir: IR) -> list[dict[str, Any]]:
    full = _full_shapes(ir)
    out = []
    for ins in hlo.collectives(instructions):
        gathers_full = ins.opcode.startswith("all-gather") and any(dims in full for _, dims in ins.shapes)
        out.append({"kind": ins.opcode.removesuffix("-start"), "bytes": ins.bytes, "scope": ins.scope,
                    "shape": ins.shape_text(), "materialises_full_tensor": gathers_full})
    return out


def _report(ir: IR, level: str, n: int, kind: str, compiled: Any, instructions: list[hlo.Instruction],
            start: float, notes: list[str]) -> DryRun:
    sites = [s for _, s in ir.nodes(SiteNode)]
    memory = _memory(compiled) if compiled is not None else {}
    largest = [{"shape": i.shape_text(), "bytes": i.bytes, "scope": i.scope, "phase": i.phase, "op": i.opcode}
               for i in hlo.largest(instructions)]
    return DryRun(ir.spec.name, level, n, kind, memory, _budget(ir), largest, _collectives(instructions, ir),
                  len(sites), sum(s.C for s in sites), time.perf_counter() - start, notes)
