"""`pdc migrate OLD_RUN NEW_SPEC --out NEW_RUN`: move a run's latest checkpoint to a new
version of its spec, leaf by leaf, and prove the move value-exact.

The mapping is derived from what the two specs mean, never from names alone:
- sites are matched by the target matrix they decompose (`layers.1.mlp.gate_proj`), so a
  renamed or re-patterned `decompose` entry, or a different stacking, carries each site's
  row of every stacked leaf to wherever the new layout puts that matrix;
- C may grow: the first C_old components (V's columns, U's rows, their Adam moments, the
  alive tracker, the adversaries' sources — whose delta source moves from index C_old to
  C_new — and the CI network's output columns) are carried, the new ones take the values
  of the new spec's own initialisation (`init_state` of the new program);
- state the old run did not have (a loss term added, a site added) starts fresh; state of
  a term the new spec drops is listed as dropped.
What cannot be carried is refused with a PD07xx diagnostic: another target, C shrunk, a
site no longer decomposed, a leaf whose shape or dtype changed in a way C growth does not
explain (another CI network, another parameter precision).

`derive(name, constants)` gives, for one new leaf, its source leaf and the blocks copied
(per axis: new start, old start, length). The copy uses it once to build `plan`; the
verification calls it again, on the checkpoint as written and read back, so a plan that
went wrong between the two (a V/U swap, gate mapped onto up) fails, naming the leaf; it
also checks that the carried blocks cover every element of every old leaf exactly once
(or list the leaf as dropped) and that every new leaf is carried or fresh.

Host RAM stays bounded: leaves are restored one at a time from orbax (a partial restore to
NumPy), built on the host, placed on the new run's devices with its shardings, and freed;
`max_ram` refuses a leaf whose host copy would not fit and the copy loop's traced peak is
reported. The assembled state lives on the devices, as it does while training.
"""

from __future__ import annotations

import gc
import itertools
import json
import resource
import shutil
import tracemalloc
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode
from pdc.syntax.diagnostics import Diagnostic
from pdc.syntax.span import Span

Runs = tuple[tuple[tuple[int, int, int], ...], ...]  # per axis: (new start, old start, length)
COMPONENT_TOPS = ("components", "opt_components", "since_fired", "adversaries")
CI_TOPS = ("ci", "opt_ci")
REPORT = "migration.json"


class MigrateError(Exception):
    """A migration refused or failed; `diagnostics` say why (PD07xx)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics[0].summary if diagnostics else "migration failed")
        self.diagnostics = diagnostics


# ---- the constants: what the two specs mean ---------------------------------------------


@dataclass(frozen=True)
class Side:
    """One spec's layout: per kind, the target matrix of each stack entry, and C; the CI
    network's sites in its concatenation order."""

    stack: dict[str, tuple[str, ...]]
    C: dict[str, int]
    ci_sites: tuple[tuple[str, int, int], ...]  # (matrix path, layer, C) in canonical order
    ci_text: str  # the `ci` block as written, canonically: another network cannot be carried


@dataclass(frozen=True)
class Constants:
    old: Side
    new: Side
    old_shapes: dict[str, tuple[tuple[int, ...], str]]  # stored leaf name → (shape, dtype)
    new_shapes: dict[str, tuple[tuple[int, ...], str]]

    def old_place(self, path: str) -> tuple[str, int] | None:
        """Kind and stack index of a target matrix in the old layout."""
        for kind, paths in self.old.stack.items():
            if path in paths:
                return kind, paths.index(path)
        return None


def side_of(ir: IR) -> Side:
    sites = sorted((s for _, s in ir.nodes(SiteNode)), key=lambda s: s.order)
    stack: dict[str, list[str]] = {}
    for site in sites:
        stack.setdefault(site.kind, []).append(site.path)
    ci = ir.options_node("ci")
    ci_text = f"{ci.label} {ci.keys!r}"
    return Side({k: tuple(v) for k, v in stack.items()}, {s.kind: s.C for s in sites},
                tuple((s.path, 0 if s.layer is None else int(s.layer), s.C) for s in sites), ci_text)


@dataclass(frozen=True)
class LeafMap:
    """How one leaf of the new state is made: `source` (None: fresh) and the `runs` copied."""

    name: str
    source: str | None
    runs: Runs | None  # None with a source: the whole leaf, as it is
    what: str  # carried | grown | restacked | fresh
    why: str = ""

    def blocks(self) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
        """(new index, old index) of every block copied."""
        if self.runs is None:
            yield (), ()
            return
        for combo in itertools.product(*self.runs):
            yield (tuple(slice(n, n + k) for n, _, k in combo), tuple(slice(o, o + k) for _, o, k in combo))


def _full(shape: tuple[int, ...]) -> Runs:
    return tuple(((0, 0, n),) for n in shape)


def derive(name: str, c: Constants) -> LeafMap:
    """The source of new leaf `name` and the blocks copied into it, from the constants."""
    shape, dtype = c.new_shapes[name]
    parts = name.split(".")
    kind = next((p for p in parts if p in c.new.stack), None)
    if parts[0] in COMPONENT_TOPS and kind is not None:
        return _component_leaf(name, parts, kind, shape, dtype, c)
    if parts[0] in CI_TOPS and parts[-1] != "count":
        return _ci_leaf(name, shape, dtype, c, kind)
    if name not in c.old_shapes:
        return LeafMap(name, None, None, "fresh", "not in the old state")
    _same_dtype(name, name, dtype, c)
    if c.old_shapes[name][0] != shape:
        raise _cannot(name, f"its shape changed from {c.old_shapes[name][0]} to {shape}")
    return LeafMap(name, name, None, "carried")


def _same_dtype(name: str, source: str, dtype: str, c: Constants) -> None:
    if c.old_shapes[source][1] != dtype:
        raise _cannot(name, f"its dtype changed from {c.old_shapes[source][1]} to {dtype} (another `precision`?): "
                            "not carried bit for bit")


def _component_leaf(name: str, parts: list[str], kind: str, shape: tuple[int, ...], dtype: str,
                    c: Constants) -> LeafMap:
    """A stacked per-kind leaf `[L, ..., C(+1)]`: rows by target matrix, the first C_old
    components carried, the adversaries' delta source (index C) moved to index C_new."""
    rows: list[tuple[int, int, int]] = []
    source = None
    for i, path in enumerate(c.new.stack[kind]):
        place = c.old_place(path)
        if place is None:
            continue
        old_kind, j = place
        candidate = ".".join(old_kind if p == kind else p for p in parts)
        if source is not None and candidate != source:
            raise _cannot(name, f"its sites come from two old stacks ({source}, {candidate})")
        source = candidate
        rows.append((i, j, 1))
    if source is None or source not in c.old_shapes:
        return LeafMap(name, None, None, "fresh", "no site of this stack was decomposed before" if source is None
                       else "not in the old state (a term or stack added)")
    _same_dtype(name, source, dtype, c)
    old_shape = c.old_shapes[source][0]
    old_kind = source.split(".")[parts.index(kind)]
    c_old, c_new = c.old.C[old_kind], c.new.C[kind]
    axis, delta = _c_axis(parts, shape)
    runs = [tuple(_merge(rows))] + [((0, 0, n),) for n in shape[1:]]
    if len(old_shape) != len(shape) or any(o != n for k, (o, n) in enumerate(zip(old_shape, shape))
                                           if k not in (0, axis)):
        if parts[0] == "adversaries":
            return LeafMap(name, None, None, "fresh", f"shape {old_shape} → {shape}: the term's scope or batch "
                                                      "changed, its adversary restarts")
        raise _cannot(name, f"its shape changed from {old_shape} to {shape}")
    runs[axis] = ((0, 0, c_old), (c_new, c_old, 1)) if delta else ((0, 0, c_old),)
    if c_new == c_old and old_shape == shape and rows == [(i, i, 1) for i in range(shape[0])]:
        return LeafMap(name, source, None, "carried")  # the same rows in the same places: the whole leaf
    return LeafMap(name, source, tuple(runs), "grown" if c_new != c_old else "restacked")


def _c_axis(parts: list[str], shape: tuple[int, ...]) -> tuple[int, bool]:
    """The components axis of a per-kind leaf, and whether it ends with a delta source."""
    if parts[-1] == "U":
        return 1, False
    return len(shape) - 1, parts[0] == "adversaries"


def _merge(rows: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for n, o, k in rows:
        if out and out[-1][0] + out[-1][2] == n and out[-1][1] + out[-1][2] == o:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + k)
        else:
            out.append((n, o, k))
    return out


def _ci_leaf(name: str, shape: tuple[int, ...], dtype: str, c: Constants, kind: str | None) -> LeafMap:
    """A CI network parameter (or its Adam moment): carried as it is when the network and its
    sites are the same; an axis that concatenates the sites' C (the output head) carries
    each site's first C_old columns to that site's new offset."""
    if name not in c.old_shapes:
        return LeafMap(name, None, None, "fresh", "not in the old state")
    if c.old.ci_text != c.new.ci_text:
        raise _cannot(name, "the `ci` block changed: another CI network cannot be carried")
    if [p for p, _, _ in c.old.ci_sites] != [p for p, _, _ in c.new.ci_sites]:
        raise _cannot(name, "the CI network's sites changed (added, removed or reordered matrices)")
    _same_dtype(name, name, dtype, c)
    old_shape = c.old_shapes[name][0]
    if old_shape == shape:
        return LeafMap(name, name, None, "carried")
    if len(old_shape) != len(shape):
        raise _cannot(name, f"its shape changed from {old_shape} to {shape}")
    runs = []
    for o, n in zip(old_shape, shape):
        if o == n:
            runs.append(((0, 0, n),))
            continue
        segments = _segments(o, n, c, kind)
        if segments is None:
            raise _cannot(name, f"its shape changed from {old_shape} to {shape}, which C growth does not explain")
        runs.append(segments)
    return LeafMap(name, name, tuple(runs), "grown")


def _segments(old: int, new: int, c: Constants, kind: str | None) -> tuple[tuple[int, int, int], ...] | None:
    """Runs for an axis that concatenates the C of consecutive CI sites in canonical order:
    one site of the leaf's own kind (per-kind networks), the sites of a chunk's first layers,
    or all of them (global networks)."""
    layers = sorted({layer for _, layer, _ in c.old.ci_sites})
    mine = c.new.stack.get(kind, ()) if kind is not None else ()
    own = [[s] for s, (path, _, _) in enumerate(c.old.ci_sites) if path in mine]
    groups = own[:1] + [[s for s in range(len(c.old.ci_sites)) if c.old.ci_sites[s][1] in layers[:n]]
                        for n in range(1, len(layers) + 1)]
    groups += [[s] for s in range(len(c.old.ci_sites))]
    for group in groups:
        olds = [c.old.ci_sites[s][2] for s in group]
        news = [c.new.ci_sites[s][2] for s in group]
        if sum(olds) == old and sum(news) == new:
            runs, o_off, n_off = [], 0, 0
            for co, cn in zip(olds, news):
                runs.append((n_off, o_off, co))
                o_off, n_off = o_off + co, n_off + cn
            return tuple(runs)
    return None


def _cannot(name: str, why: str) -> MigrateError:
    return MigrateError([Diagnostic("PD0703", f"state leaf `{name}` cannot be carried: {why}", _nowhere(name))])


def _nowhere(what: str) -> Span:
    return Span(what, 1, 1, 1, 2)


# ---- refusals from the specs -----------------------------------------------------------


def refusals(old_ir: IR, new_ir: IR, old_dir: Path) -> list[Diagnostic]:
    """What cannot be carried, read from the two specs: another target, a site dropped or
    shrunk. Each diagnostic points into the new spec."""
    out = []
    new_t = new_ir.options_node("target")
    if _target_identity(old_ir) != _target_identity(new_ir):
        out.append(Diagnostic("PD0701", "the target changed: the checkpoint decomposes another model", new_t.span,
                              "not the target of the old run", (), (f"the old run's target is in {old_dir}/spec.pd",
                                                                    "migrate only between specs of one target")))
    new_sites = {s.path: s for _, s in new_ir.nodes(SiteNode)}
    decompose = min(new_sites.values(), key=lambda s: s.order).span if new_sites else new_t.span  # an entry of it
    for _, old in sorted(old_ir.nodes(SiteNode), key=lambda n: n[1].order):
        new = new_sites.get(old.path)
        if new is None:
            out.append(Diagnostic("PD0702", f"`{old.path}` is no longer decomposed: its {old.C} components would be "
                                            "lost", decompose,
                                  "does not match it", (), ("keep the site in `decompose`",)))
        elif new.C < old.C:
            out.append(Diagnostic("PD0702", f"C of `{old.path}` shrinks from {old.C} to {new.C}: trained components "
                                            "would be lost", new.c_span or new.span, f"was {old.C}", (),
                                  (f"C ≥ {old.C}",)))
    return out


def _target_identity(ir: IR) -> str:
    """The target as a comparable string: its label, keys and `pretrain`, with the weights
    path resolved against the spec's directory (two specs in different places may name one file)."""
    node = ir.options_node("target")
    keys = node.keys.model_dump()
    if keys.get("weights") is not None:
        keys["weights"] = str(Path(node.path("weights")).resolve())
    pretrain = ir.options("target.pretrain")
    return f"{node.label} {sorted(keys.items())!r} {pretrain!r}"


# ---- checkpoint access, one leaf at a time -----------------------------------------------


def item_dir(ckpt_step_dir: Path) -> Path:
    return ckpt_step_dir / "default"


def _metadata_tree(directory: Path) -> Any:
    import orbax.checkpoint as ocp

    meta = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).metadata(directory)
    return meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta


def stored_leaves(directory: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Stored leaf name → (shape, dtype) of a checkpoint item, from its metadata only."""
    import jax

    return {_name(path): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
            for path, leaf in jax.tree_util.tree_flatten_with_path(_metadata_tree(directory))[0]}


def _name(path: Sequence[Any]) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


class LeafReader:
    """One leaf at a time from a checkpoint item, as NumPy: every other leaf of the stored
    tree is an orbax PLACEHOLDER, so nothing else is read."""

    def __init__(self, directory: Path) -> None:
        import orbax.checkpoint as ocp

        self.directory = directory
        self.tree = _metadata_tree(directory)
        self.ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())

    def read(self, name: str) -> np.ndarray:
        import jax
        import orbax.checkpoint as ocp

        def pick(value: Any, other: Any) -> Callable[[Any, Any], Any]:
            return lambda path, _: value if _name(path) == name else other

        item = jax.tree_util.tree_map_with_path(pick(0, ocp.PLACEHOLDER), self.tree)
        args = jax.tree_util.tree_map_with_path(pick(ocp.RestoreArgs(restore_type=np.ndarray), ocp.PLACEHOLDER),
                                                self.tree)
        restored = self.ckptr.restore(self.directory, args=ocp.args.PyTreeRestore(item=item, restore_args=args))
        found = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0] if _name(path) == name]
        if len(found) != 1:
            raise KeyError(f"{name} is not a leaf of {self.directory}")
        return np.array(found[0], copy=True)  # owned by NumPy, so the copy loop's traced peak counts it


# ---- the migration -------------------------------------------------------------------------


@dataclass
class Migration:
    old_run: Path
    old_ir: IR
    new_ir: IR
    step: int
    constants: Constants
    plan: dict[str, LeafMap]
    dropped: list[str] = field(default_factory=list)

    _reader: Any = None

    @property
    def old_item(self) -> Path:
        return item_dir(self.old_run / "ckpts" / str(self.step))

    def old_leaf(self, name: str) -> np.ndarray:
        if self._reader is None:
            self._reader = LeafReader(self.old_item)
        return self._reader.read(name)

    def table(self) -> str:
        """The mapping, one line per new leaf, then the old leaves dropped."""
        lines = [f"migrate {self.old_run} (step {self.step}) → spec `{self.new_ir.spec.name}`"]
        width = max(len(n) for n in self.plan)
        for name, leaf in self.plan.items():
            src = leaf.source or "-"
            detail = "" if leaf.runs is None else " " + _runs_text(leaf.runs, self.constants.new_shapes[name][0])
            why = f"  ({leaf.why})" if leaf.why else ""
            lines.append(f"  {name:<{width}}  {leaf.what:<9} ← {src}{detail}{why}")
        for name in self.dropped:
            lines.append(f"  {'(dropped)':<{width}}  {'dropped':<9} ← {name}")
        return "\n".join(lines) + "\n"


def _runs_text(runs: Runs, shape: tuple[int, ...]) -> str:
    axes = []
    for axis, axis_runs in enumerate(runs):
        if axis_runs == ((0, 0, shape[axis]),):
            axes.append(":")
            continue
        axes.append(",".join(f"{n}:{n + k}←{o}:{o + k}" for n, o, k in axis_runs))
    return "[" + "; ".join(axes) + "]"


def plan_migration(old_run: Path, new_ir: IR) -> Migration:
    """Derive the mapping (no data is read but metadata); raises MigrateError (PD07xx)."""
    from pdc.run.rundir import RunError, run_ir

    try:
        old_ir = run_ir(old_run)
    except RunError as error:
        raise MigrateError([Diagnostic("PD0704", str(error), _nowhere(str(old_run)))]) from None
    problems = refusals(old_ir, new_ir, old_run)
    if problems:
        raise MigrateError(problems)
    step = latest_step(old_run)
    new_shapes = _abstract_shapes(new_ir)
    constants = Constants(side_of(old_ir), side_of(new_ir), stored_leaves(item_dir(old_run / "ckpts" / str(step))),
                          new_shapes)
    try:
        plan = {name: derive(name, constants) for name in new_shapes}
    except MigrateError as error:  # a leaf-level refusal: point at the new spec's header
        raise MigrateError([replace(d, span=_header(new_ir)) for d in error.diagnostics]) from None
    used = {leaf.source for leaf in plan.values() if leaf.source}
    dropped = sorted(set(constants.old_shapes) - used)
    lost = [n for n in dropped if n.split(".")[0] not in ("adversaries",)]
    if lost:
        raise MigrateError([replace(_cannot(n, "nothing in the new state takes it").diagnostics[0],
                                    span=_header(new_ir)) for n in lost])
    return Migration(old_run, old_ir, new_ir, step, constants, plan, dropped)


def _header(ir: IR) -> Span:
    """The `spec NAME` line of a spec: where leaf-level problems of its state point."""
    root = ir.spec.root.span
    return Span(root.file, root.line, root.col, root.line, root.col + 4, root.start, root.start + 4)


def latest_step(run: Path) -> int:
    """The newest committed checkpoint of a run."""
    from pdc.run.checkpoints import COMMIT_FILE

    steps = sorted((int(p.name) for p in (run / "ckpts").glob("*") if p.name.isdigit()
                    and (p / COMMIT_FILE).exists()), reverse=True)
    if not steps:
        raise MigrateError([Diagnostic("PD0704", f"{run} has no complete checkpoint to migrate",
                                       _nowhere(str(run / "ckpts")))])
    return steps[0]


def _abstract_shapes(ir: IR) -> dict[str, tuple[tuple[int, ...], str]]:
    import jax

    from pdc.lower.program import lower_program
    from pdc.lower.state import abstract_state

    state = abstract_state(lower_program(ir))
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    return {_name(p): (tuple(a.shape), str(np.dtype(a.dtype))) for p, a in flat}


@dataclass
class CopyStats:
    leaves: int = 0
    bytes_written: int = 0
    peak_traced: int = 0  # tracemalloc peak of the copy loop (host NumPy buffers)
    largest_leaf: int = 0


def host_bytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def migrate(m: Migration, out: Path, spec_path: str, max_ram: int | None = None,
            overrides: Sequence[Any] = ()) -> dict[str, Any]:
    """Write the new run at `out` (spec.pd, run.json, the checkpoint at the old step), then
    verify it; returns the verification report (also written to `out/migration.json`)."""
    import jax

    from pdc.lower.inputs import shardings_of, step_inputs
    from pdc.lower.program import lower_program
    from pdc.lower.sharding import make_mesh
    from pdc.lower.state import abstract_state, init_state
    from pdc.run import checkpoints
    from pdc.run.rundir import RunDir, write_record

    if out.exists() and any(out.iterdir()):
        raise MigrateError([Diagnostic("PD0706", f"{out} exists and is not empty: migrate writes a new run",
                                       _nowhere(str(out)))])
    _check_ram(m, max_ram)
    program = lower_program(m.new_ir)
    mesh = make_mesh(m.new_ir)
    shardings = shardings_of(step_inputs(program, mesh).state)
    abstract = abstract_state(program)
    flat_sh = {_name(p): s for p, s in jax.tree_util.tree_flatten_with_path(shardings)[0]}
    needs_fresh = sorted(n for n, leaf in m.plan.items() if leaf.source is None or leaf.runs is not None)
    fresh = _fresh_leaves(program, init_state, needs_fresh)
    stats = CopyStats()
    placed: dict[str, Any] = {}
    tracemalloc.start()
    try:
        for name, leaf in m.plan.items():
            # the transfer is asynchronous and keeps the host buffer alive until done; on a CPU backend the
            # array could even alias it (may_alias=False): wait, so one leaf's host copy is held at a time
            placed[name] = _place(_build(m, name, leaf, fresh, stats, max_ram), flat_sh[name])
            fresh.pop(name, None)
            gc.collect()
        stats.peak_traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    order = [_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(abstract)[0]]
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(abstract), [placed[n] for n in order])
    del placed
    run = RunDir(out)
    write_record(run, m.new_ir, spec_path, overrides)
    record = json.loads(run.record.read_text())
    record["migrated_from"] = {"run": str(m.old_run.resolve()), "step": m.step}
    run.record.write_text(json.dumps(record, indent=2) + "\n")
    manager = checkpoints.open_manager(run.ckpts, int(m.new_ir.options("checkpoint").keep))
    checkpoints.save(manager, m.step, state)
    del state
    report = verify(m, item_dir(run.ckpts / str(m.step)))
    report["copy"] = {"leaves": stats.leaves, "bytes_written": stats.bytes_written,
                      "host_peak_traced_bytes": stats.peak_traced, "largest_leaf_bytes": stats.largest_leaf,
                      "max_ram": max_ram, "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    if not report["ok"]:
        raise MigrateError([Diagnostic("PD0705", f"verification failed: {p}", _nowhere(str(out / REPORT)))
                            for p in report["problems"][:10]])
    return report


def _place(host: np.ndarray, sharding: Any) -> Any:
    """`host` on the devices as a buffer of their own: the transfer is waited for, and an array
    a CPU backend made zero-copy (aliasing `host`) is copied on the device, so the host buffer
    is freed when the loop drops it and the host holds one leaf at a time."""
    import jax
    import jax.numpy as jnp

    placed = jax.device_put(host, sharding, may_alias=False).block_until_ready()
    start, end = host.ctypes.data, host.ctypes.data + host.nbytes
    if any(start <= s.data.unsafe_buffer_pointer() < end for s in placed.addressable_shards):
        placed = jax.jit(jnp.copy, out_shardings=sharding)(placed).block_until_ready()
    return placed


def _check_ram(m: Migration, max_ram: int | None) -> None:
    if max_ram is None:
        return
    for name, leaf in m.plan.items():
        need = _leaf_need(m, name, leaf)
        if need > max_ram:
            raise MigrateError([Diagnostic("PD0706", f"leaf `{name}` needs {need} bytes of host RAM to copy, over "
                                                     f"--max-ram {max_ram}", _nowhere(name))])


OVERHEAD = 4 * 2 ** 20  # orbax/tensorstore bookkeeping of one partial restore, and the loop's own objects


def _leaf_need(m: Migration, name: str, leaf: LeafMap) -> int:
    """Host bytes the copy of one leaf may hold at once: the old leaf twice (orbax's read and
    our copy of it), the fresh values and the new leaf, and a fixed overhead."""
    new = host_bytes(*m.constants.new_shapes[name])
    old = host_bytes(*m.constants.old_shapes[leaf.source]) if leaf.source else 0
    return 2 * old + 2 * new + OVERHEAD


def _fresh_leaves(program: Any, init_state: Callable[[Any], Any], names: list[str]) -> dict[str, Any]:
    """The new spec's initial values of the leaves that need them, computed on the devices
    (one jit; XLA keeps only these outputs)."""
    import jax

    if not names:
        return {}

    def pick() -> dict[str, Any]:
        flat = jax.tree_util.tree_flatten_with_path(init_state(program))[0]
        return {_name(p): leaf for p, leaf in flat if _name(p) in names}

    return jax.jit(pick)()


def _build(m: Migration, name: str, leaf: LeafMap, fresh: dict[str, Any], stats: CopyStats,
           max_ram: int | None) -> np.ndarray:
    """One new leaf on the host: the fresh values, with the carried blocks copied in."""
    shape, dtype = m.constants.new_shapes[name]
    if leaf.source is None:
        out = np.array(fresh[name])
    else:
        old = m.old_leaf(leaf.source)
        if leaf.runs is None:
            out = old
        else:
            out = np.array(fresh[name])
            for new_index, old_index in leaf.blocks():
                out[new_index] = old[old_index]
        del old
    assert out.shape == shape and str(out.dtype) == dtype, (name, out.shape, shape, out.dtype, dtype)
    stats.leaves += 1
    stats.bytes_written += out.nbytes
    stats.largest_leaf = max(stats.largest_leaf, out.nbytes)
    return out


# ---- verification ------------------------------------------------------------------------------


def verify(m: Migration, new_item: Path) -> dict[str, Any]:
    """Every carried block of the written checkpoint equal bit for bit to its source under the
    mapping derived again from the constants; the carried blocks cover each old leaf exactly
    once (or it is listed as dropped); every new leaf is carried or fresh."""
    problems: list[str] = []
    written = stored_leaves(new_item)
    if set(written) != set(m.constants.new_shapes):
        odd = sorted(set(written) ^ set(m.constants.new_shapes))
        problems.append(f"the written tree differs from the new state: {odd}")
    reader = LeafReader(new_item)
    coverage: dict[str, np.ndarray] = {}
    leaves = []
    for name in sorted(m.constants.new_shapes):
        expected = derive(name, m.constants)
        entry = {"leaf": name, "what": expected.what, "source": expected.source, "equal_elements": 0}
        if expected.source is not None:
            new = reader.read(name)
            old = m.old_leaf(expected.source)
            cover = coverage.setdefault(expected.source, np.zeros(old.shape, np.int8))
            for new_index, old_index in expected.blocks():
                a, b = new[new_index], old[old_index]
                if a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes():
                    bad = _first_difference(a, b)
                    problems.append(f"`{name}`{_index_text(new_index)} differs from its source "
                                    f"`{expected.source}`{_index_text(old_index)}{bad}")
                cover[old_index] += 1
                entry["equal_elements"] += int(b.size)
            del new, old
        leaves.append(entry)
    for source, cover in coverage.items():
        if cover.min() != 1 or cover.max() != 1:
            problems.append(f"old leaf `{source}` is not covered exactly once "
                            f"({int((cover == 0).sum())} elements not carried, {int((cover > 1).sum())} twice)")
    uncovered = sorted(set(m.constants.old_shapes) - set(coverage) - set(m.dropped))
    problems += [f"old leaf `{n}` is neither carried nor dropped" for n in uncovered]
    return {"schema": "pdc.migration/1", "ok": not problems, "old_run": str(m.old_run.resolve()), "step": m.step,
            "spec": m.new_ir.spec.name, "carried": sum(e["source"] is not None for e in leaves),
            "fresh": sum(e["source"] is None for e in leaves), "dropped": m.dropped, "problems": problems,
            "leaves": leaves}


def _index_text(index: tuple[slice, ...]) -> str:
    if not index or all(s == slice(None) for s in index):
        return ""
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in index) + "]"


def _first_difference(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f" (shape {a.shape} vs {b.shape})"
    diff = np.argwhere(~_bits_equal(a, b))
    if not len(diff):
        return ""
    at = tuple(int(i) for i in diff[0])
    return f" ({len(diff)} elements differ; first at {at}: {a[at]!r} vs {b[at]!r})"


def _bits_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    width = a.dtype.itemsize
    view = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    return a.view(view) == b.view(view)


def render_report(report: dict[str, Any]) -> str:
    kinds = {what: sum(e["what"] == what for e in report["leaves"]) for what in ("carried", "restacked", "grown")}
    lines = [f"verification: {'ok' if report['ok'] else 'FAILED'} — {report['carried']} leaves from step "
             f"{report['step']} ({kinds['carried']} whole, {kinds['restacked']} restacked, {kinds['grown']} grown: "
             f"their carried blocks equal bit for bit), {report['fresh']} fresh, {len(report['dropped'])} dropped"]
    copy = report.get("copy")
    if copy:
        limit = f" (limit {copy['max_ram']})" if copy["max_ram"] else ""
        lines.append(f"copy: {copy['leaves']} leaves, {copy['bytes_written']} bytes; host peak of the copy loop "
                     f"{copy['host_peak_traced_bytes']} bytes traced{limit}")
    lines += [f"  problem: {p}" for p in report["problems"]]
    return "\n".join(lines) + "\n"


def remove_partial(out: Path) -> None:
    """A failed migration leaves nothing that `pdc train` would resume from."""
    if (out / "ckpts").exists():
        shutil.rmtree(out / "ckpts")


__all__ = ["LeafMap", "MigrateError", "Migration", "derive", "latest_step", "migrate", "plan_migration",
           "LeafReader", "remove_partial", "render_report", "stored_leaves", "verify"]
