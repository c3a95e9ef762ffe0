"""`pdc compile --dry-run`: lower and compile the step on abstract values only — no
weights, no state is ever allocated — and decide whether it fits the budget.

Levels (DESIGN.md §7): `lint` traces the step abstractly (shapes, shardings); `gpu`
compiles deviceless for a real GPU model with XLA:GPU (`jax.experimental.topologies`
and a vendored target config, `pdc.devices`) — the default whenever the device is a GPU
and the `cuda` extra is installed; `cpu` compiles for fake host devices (argument/output
bytes exact, temp bytes those of the CPU compiler, which can be far off a GPU's).

XLA:GPU rematerialises on its own when a program exceeds the device, so the GPU level
compiles the program as written (`xla_gpu_memory_limit_slop_factor` high: no remat) and,
when that does not fit the device, again as `pdc train` would get it, and reports both.
The step compiled is the one training runs: `pdc.lower.inputs` builds both's arguments.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import jax

from pdc import devices as device_models
from pdc.inspect import hlo
from pdc.inspect.flops import hlo_flops
from pdc.inspect.owners import owner_function
from pdc.inspect.peak import Peak, dumped, peak
from pdc.ir.graph import IR
from pdc.ir.nodes import BudgetNode, MeshNode, SiteNode, TensorNode
from pdc.lower.inputs import StepInputs, choose_ascents, jitted_step, lower_step, step_inputs
from pdc.lower.program import Program, lower_program
from pdc.lower.sharding import make_mesh

AS_WRITTEN = {"xla_gpu_memory_limit_slop_factor": 10000}  # XLA:GPU's remat-to-fit off: the program as written
XLA_REMAT_SHARE = 0.95  # XLA:GPU rematerialises above 95 % of device memory (its default slop factor)


class DryRunError(Exception):
    """A dry-run that cannot be done as asked (one line for people)."""


@dataclass
class DryRun:
    spec: str
    level: str  # lint | cpu | gpu
    device: str  # the device model compiled for (`h100_sxm`, `cpu`)
    devices: int
    device_kind: str
    memory: dict[str, int]  # per device, the program as written: argument, output, alias, temp, total
    budget: int | None
    largest: list[dict[str, Any]]
    collectives: list[dict[str, Any]]
    sites: int
    c_total: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    approximation: str = ""  # why these numbers are not the target device's own (CPU stand-in)
    xla_remat: dict[str, int] | None = None  # per device after XLA:GPU rematerialised to fit, when it had to
    allow_xla_remat: bool = False
    peak: dict[str, Any] | None = None
    matmul_flops: float | None = None  # one step's matmul FLOPs over all devices: per device × devices
    matmul_flops_per_device: float | None = None  # counted on the optimized module as written (`pdc.inspect.flops`)
    attention_calls: dict[str, int] | None = None  # cuDNN fused-attention calls per step: forward, backward
    ascent_remat: dict[str, Any] | None = None  # the ascents' remat chosen, and each choice's bytes per device
    hlo_text: str = field(default="", repr=False)  # the compiled module, for --dump

    @property
    def verdict(self) -> str:
        """fits | fits_with_xla_remat | does_not_fit | no_budget | not_compiled."""
        if not self.memory:
            return "not_compiled"
        if self.budget is None:
            return "no_budget"
        if self.memory["total"] <= self.budget:
            return "fits"
        if self.xla_remat is not None and self.xla_remat["total"] <= self.budget:
            return "fits_with_xla_remat"
        return "does_not_fit"

    @property
    def fits(self) -> bool | None:
        verdict = self.verdict
        if verdict in ("no_budget", "not_compiled"):
            return None
        return verdict == "fits" or verdict == "fits_with_xla_remat" and self.allow_xla_remat


def abstract_step(program: Program, mesh: jax.sharding.Mesh) -> tuple[Any, tuple[Any, ...]]:
    """The jitted step with explicit shardings, and its abstract arguments (`step_inputs`)."""
    inputs = step_inputs(program, mesh)
    return jitted_step(program, mesh, inputs), tuple(inputs)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """XLA warns about rematerialisation on the C++ stderr; capture fd 2."""
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


def gpu_devices(device: str, n: int) -> tuple[list[Any] | None, str]:
    """`n` deviceless devices of GPU model `device`, or (None, why not)."""
    model = device_models.gpu_models().get(device)
    if model is None:
        return None, f"no target config for `{device}` (have: {', '.join(device_models.gpu_models())})"
    try:
        from jax.experimental import topologies

        topology = topologies.get_topology_desc(platform="cuda", target_config=model.config_text(),
                                                topology=f"1x1x{n}")
        return list(topology.devices), ""
    except Exception as error:  # noqa: BLE001 — any failure means: no deviceless GPU compile here
        return None, (f"the deviceless XLA:GPU compile is unavailable ({type(error).__name__}: "
                      f"{str(error).splitlines()[0][:120] if str(error) else ''}); install the CUDA extra: "
                      f"`{device_models.CUDA_EXTRA}`")


def target_device(ir: IR, target: str | None) -> str:
    """The device to compile for: `--target`, else the budget's device, else the CPU."""
    if target is not None:
        return target
    budget = _budget_node(ir)
    return budget.device if budget is not None and budget.device else device_models.CPU


def compile_target(device: str, n: int, explicit: bool) -> tuple[str, str, str, Any]:
    """(level, device kind, approximation note, abstract GPU devices or None) of a compile for
    `device` on `n` devices: XLA:GPU when the `cuda` extra can target it, else the CPU
    compiler, saying so first. A GPU named explicitly (`--target`) that cannot be compiled
    for raises `DryRunError` instead of falling back."""
    if not device_models.is_gpu(device):
        return "cpu", "cpu (fake host devices)", "", None
    targets, why = gpu_devices(device, n)
    if targets is not None:
        return "gpu", targets[0].device_kind, "", targets
    if explicit:
        raise DryRunError(f"cannot compile for `{device}`: {why}")
    return "cpu", "cpu (fake host devices)", (f"CPU approximation: the budget names `{device}` but {why}; temp bytes "
                                              "from the CPU compiler can be an order of magnitude off a GPU's"), None


def dry_run(ir: IR, target: str | None = None, lint: bool = False, remat: str | None = None,
            xla_dump: Path | None = None) -> DryRun:
    """Compile the step for `target` (default: the budget's device) and report its memory.
    An explicit GPU `target` that cannot be compiled for raises `DryRunError`; the budget's
    own GPU device falls back to the CPU compile, saying so. `xla_dump` keeps the compiler's
    dumps (buffer assignment, live ranges, optimized module) in that directory."""
    start = time.perf_counter()
    device = target_device(ir, target)
    if device not in device_models.names():
        raise DryRunError(f"unknown device `{device}` (known: {', '.join(device_models.names())})")
    program = lower_program(ir, remat_recon=remat)
    n = next(p for _, p in ir.nodes(MeshNode)).devices
    level, kind, approximation, targets = compile_target(device, n, explicit=target is not None)
    mesh = make_mesh(ir, targets)
    inputs = step_inputs(program, mesh)
    report = DryRun(ir.spec.name, "lint" if lint else level, device, n, kind, {}, _limit(ir, device), [], [],
                    *_site_counts(ir), 0.0, approximation=approximation, allow_xla_remat=_allow_remat(ir))
    if lint:
        jax.eval_shape(jitted_step(program, mesh, inputs), *inputs)
    else:
        compiled = _compile_into(report, ir, _lowered(report, program, mesh, inputs), device, xla_dump)
        _choose_ascents(report, ir, program, mesh, inputs, device, xla_dump, remat, compiled)
    if _names_inputs(ir):
        report.notes.append("inputs not opened: a dry-run reads only the target's shapes; `pdc check` and `pdc train` "
                            "check the weights and token files")
    report.seconds = time.perf_counter() - start
    return report


def _choose_ascents(report: DryRun, ir: IR, program: Program, mesh: jax.sharding.Mesh, inputs: StepInputs,
                    device: str, xla_dump: Path | None, remat: str | None, compiled: Any) -> None:
    """The adversaries' ascents unrematerialised unless the step then exceeds its budget
    (without one: unless that raises the peak): compiled the other way too, as written, and
    chosen by `pdc.lower.inputs.choose_ascents`, which `pdc train` uses as well; the report
    then describes the chosen step and both totals."""
    options = AS_WRITTEN if report.level == "gpu" else {}
    as_loss = functools.partial(lower_program, ir, remat_recon=remat, ascent_remat=True)
    compile_step = lambda p: _compile(_lowered(report, p, mesh, inputs), options)[0]  # noqa: E731
    chosen, _, choice = choose_ascents(program, as_loss, compile_step, compiled=compiled, budget=report.budget)
    if choice is None:
        return
    report.ascent_remat = choice
    if chosen is not program:  # describe the step that runs: compiled again, with the dumps
        notes, report.notes, report.xla_remat, report.attention_calls = report.notes, [], None, None
        _compile_into(report, ir, _lowered(report, chosen, mesh, inputs), device, xla_dump)
        report.notes = notes + report.notes
        report.ascent_remat = choice


def _names_inputs(ir: IR) -> bool:
    """Does the spec name files a run reads (an LM's weights, a token file)?"""
    target, data = ir.options("target"), ir.options_node("data")
    return getattr(target, "weights", None) is not None or data.label == "tokens"


def _lowered(report: DryRun, program: Program, mesh: jax.sharding.Mesh, inputs: StepInputs) -> Any:
    """The step lowered as the target device runs it: cuDNN's fused attention on a GPU. Without
    cuDNN's libraries (the `cuda` extra brings them) XLA's attention stands in, said in a note."""
    if report.level != "gpu":
        return lower_step(program, mesh, inputs, tuple(inputs), "cpu")
    try:
        return lower_step(program, mesh, inputs, tuple(inputs), "gpu")
    except Exception as error:  # noqa: BLE001 — cuDNN missing is the only expected failure
        if "cudnn" not in str(error).lower():
            raise
        report.notes.append(f"cuDNN is not installed ({str(error).splitlines()[0][:80]}): attention compiled with "
                            f"XLA's, whose scores a GPU run with cuDNN never materialises; `{device_models.CUDA_EXTRA}`")
        return lower_step(program, mesh, inputs, tuple(inputs), "cpu")


def _compile_into(report: DryRun, ir: IR, lowered: Any, device: str, xla_dump: Path | None) -> Any:
    """Compile as written (with XLA's buffer dumps for the peak), then, on a GPU whose
    memory the program exceeds, as XLA:GPU would rematerialise it to fit. Returns the
    compiled step as written."""
    gpu = report.level == "gpu"
    with tempfile.TemporaryDirectory(prefix="pdc-dryrun-") as scratch:
        dump = str(xla_dump) if xla_dump is not None else scratch
        compiled, log = _compile(lowered, {**(AS_WRITTEN if gpu else {}), **_dump_options(dump)})
        text = compiled.as_text()
        found = dumped(Path(dump))
    instructions = hlo.parse(found[0] if found is not None else text)  # one parse, of the module XLA assigned
    report.memory = _memory(compiled)
    _count_flops(report, text)
    report.peak = _peak(found, instructions, ir, report.memory)
    report.hlo_text = text
    report.largest = [{"shape": i.shape_text(), "bytes": i.bytes, "scope": i.scope, "phase": i.phase,
                       "op": i.opcode} for i in hlo.largest(instructions)]
    report.collectives = _collectives(instructions, ir)
    report.notes += _remat_lines(log)
    memory = device_models.memory_of(device)
    if gpu and memory is not None and report.memory["total"] > XLA_REMAT_SHARE * memory:
        remat, log = _compile(lowered, {})
        report.xla_remat = _memory(remat)
        report.notes += _remat_lines(log)
    if report.level == "cpu" and not report.approximation:
        report.notes.append("argument, output and alias bytes are exact; temp bytes come from the CPU compiler")
    return compiled


def _count_flops(report: DryRun, text: str) -> None:
    """Matmul FLOPs on the optimized module as written (one device's program): what runs,
    dead code gone, recomputation in (`pdc.inspect.flops.hlo_flops`)."""
    counted = hlo_flops(text)
    report.matmul_flops_per_device = counted.flops
    report.matmul_flops = counted.flops * report.devices
    if counted.attention_forward_calls or counted.attention_backward_calls:
        report.attention_calls = {"forward": counted.attention_forward_calls,
                                  "backward": counted.attention_backward_calls}
    if counted.unknown_trip_counts:
        report.notes.append(f"matmul FLOPs: {len(counted.unknown_trip_counts)} while loop(s) without a known trip "
                            "count counted once")


def _compile(lowered: Any, options: dict[str, Any]) -> tuple[Any, list[str]]:
    with captured_stderr() as log:
        compiled = lowered.compile(compiler_options=options) if options else lowered.compile()
    return compiled, log


def _dump_options(directory: str) -> dict[str, Any]:
    """Dump the optimized module's buffer assignment and live ranges, not its LLVM IR."""
    return {"xla_dump_to": directory, "xla_dump_hlo_as_text": True, "xla_gpu_dump_llvmir": False}


def _remat_lines(log: list[str]) -> list[str]:
    return [line.strip() for line in log if "rematerializ" in line.lower()][:5]


def _peak(found: tuple[str, str, str] | None, instructions: list[hlo.Instruction], ir: IR,
          memory: dict[str, int]) -> dict[str, Any] | None:
    if found is None:
        return None
    _, assignment, ranges = found
    result: Peak = peak(assignment, ranges, instructions, owner_function(ir))
    return {"bytes": result.bytes, "position": result.position, "temp_live": result.temp_live,
            "temp_allocated": result.temp_allocated, "allocated_total": memory["total"],
            "packing_gap": result.temp_allocated - result.temp_live,
            "groups": [{"group": g.owner.group, "what": g.owner.what, "bytes": g.bytes, "buffers": g.buffers,
                        "spec_line": g.owner.spec_line} for g in result.groups]}


def _memory(compiled: Any) -> dict[str, int]:
    stats = compiled.memory_analysis()
    memory = {"argument": int(stats.argument_size_in_bytes), "output": int(stats.output_size_in_bytes),
              "alias": int(stats.alias_size_in_bytes), "temp": int(stats.temp_size_in_bytes)}
    memory["total"] = memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]
    return memory


def _budget_node(ir: IR) -> BudgetNode | None:
    return next((p for _, p in ir.nodes(BudgetNode)), None)


def _limit(ir: IR, device: str) -> int | None:
    """Bytes per device the step may use on `device`: the budget's (another device than
    the spec's brings its own memory), or the whole device without a budget block."""
    budget = _budget_node(ir)
    return budget.limit(device) if budget is not None else device_models.memory_of(device)


def _allow_remat(ir: IR) -> bool:
    budget = _budget_node(ir)
    return budget is not None and budget.allow_xla_remat


def _site_counts(ir: IR) -> tuple[int, int]:
    sites = [s for _, s in ir.nodes(SiteNode)]
    return len(sites), sum(s.C for s in sites)


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


__all__ = ["DryRun", "DryRunError", "abstract_step", "dry_run", "gpu_devices", "target_device"]
