"""`pdc fit`: search the runtime knobs that leave the decomposition alone — the tp/dp split
of the device count (and so the sequences each device holds), `remat`, the divergence
chunk — for the candidates whose compiled step fits the budget, cheapest first.

Why only these: `data.batch` is part of the decomposition (its hash covers it) and pdc has
no gradient accumulation, so the global batch is fixed; sequences per device change only
through the mesh (`batch / dp`: another tp/dp split, or more devices with `--devices`).
Every candidate is the spec plus `--set` lines, compiled by the dry-run exactly as
`pdc compile --set ...` would compile it.

The search is bounded: candidates are ordered so that likely fits come first (the spec's
own settings, then one knob away from them, cheapest first), pruned with the monotone
knobs, cached by program hash across invocations, and stopped when the next compile
would overrun the time budget.

Memory order (assumed, and what the pruning relies on): more sequences per device never
use less memory; lighter remat (`off` ≥ `matmuls` ≥ `per_layer` ≥ `whole`, `ci = off` ≥
`on`) never uses less memory; a larger divergence chunk never uses less (0 = unchunked is
the largest). So a candidate that does not fit rules out every candidate at least as
heavy in all of them, and a candidate that fits dominates every candidate that only adds
recompute on top of it (same mesh, heavier remat, smaller chunk): those cost as much or
more and buy memory that is not needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pdc.registry.runtime import RECON_FORWARDS

RECON_RANK = {"off": 0, "matmuls": 1, "per_layer": 2, "whole": 3}  # recompute added, memory saved (assumed order)
CI_RANK = {"off": 0, "on": 1}
GiB = 1024 ** 3


@dataclass(frozen=True, order=True)
class Candidate:
    """One point of the search: a mesh split and the remat knobs (as `--set` lines)."""

    devices: int
    dp: int
    tp: int
    recon_forwards: str
    ci: str
    divergence_chunk: int | None  # None: not an LM (the knob does not apply)
    mesh_fixed: bool = False  # a mesh with other axes than dp/tp: the spec's own, not set
    tp_axis: bool = True  # the spec's mesh has a tp axis (else none is added)

    def sets(self) -> list[str]:
        mesh = [] if self.mesh_fixed else [f"mesh.dp={self.dp}"] + ([f"mesh.tp={self.tp}"] if self.tp_axis else [])
        out = mesh + [f"remat.recon_forwards={self.recon_forwards}", f"remat.ci={self.ci}"]
        if self.divergence_chunk is not None:
            out.append(f"remat.divergence_chunk={self.divergence_chunk}")
        return out

    def set_line(self) -> str:
        return " ".join(f"--set {s}" for s in self.sets())

    def label(self) -> str:
        chunk = "" if self.divergence_chunk is None else f" chunk={self.divergence_chunk}"
        return f"{self.devices} dev dp={self.dp} tp={self.tp} recon={self.recon_forwards} ci={self.ci}{chunk}"

    def recompute(self) -> int:
        """A recompute count for ordering and ties: the heavier the remat, the more work."""
        return RECON_RANK[self.recon_forwards] + CI_RANK[self.ci]


def _chunk_size(chunk: int | None) -> float:
    return float("inf") if chunk == 0 else float(chunk or 0)


def heavier_memory(a: Candidate, b: Candidate, batch: int) -> bool:
    """Does `a` need at least the memory of `b` (by the assumed monotone order)? Same tp;
    at least as many sequences per device; remat no heavier; chunk no smaller."""
    return (a.tp == b.tp and batch // a.dp >= batch // b.dp
            and RECON_RANK[a.recon_forwards] <= RECON_RANK[b.recon_forwards] and CI_RANK[a.ci] <= CI_RANK[b.ci]
            and _chunk_size(a.divergence_chunk) >= _chunk_size(b.divergence_chunk))


def dominated_by(a: Candidate, b: Candidate) -> bool:
    """Is `a` only `b` with more recompute (same devices and mesh, heavier remat, chunk no
    larger)? When `b` fits, `a` costs at least as much and is not worth a compile."""
    return (a != b and a.devices == b.devices and a.dp == b.dp and a.tp == b.tp
            and RECON_RANK[a.recon_forwards] >= RECON_RANK[b.recon_forwards] and CI_RANK[a.ci] >= CI_RANK[b.ci]
            and _chunk_size(a.divergence_chunk) <= _chunk_size(b.divergence_chunk))


@dataclass(frozen=True)
class Space:
    """What the spec allows to vary, read from its checked text."""

    batch: int
    devices: tuple[int, ...]
    mesh_axes: tuple[str, ...]
    base: Candidate
    lm: bool
    chunks: tuple[int, ...]
    seq_len: int | None
    notes: tuple[str, ...] = ()

    def candidates(self) -> list[Candidate]:
        """Every candidate: each device count × tp/dp split whose dp divides the batch × remat × chunk."""
        out = []
        splits = self.splits()
        for n, dp, tp in splits:
            for recon in RECON_FORWARDS:
                if recon == "matmuls" and not self.lm:
                    continue  # `matmuls` is the LM layers' policy
                for ci in ("off", "on"):
                    for chunk in (self.chunks if self.lm else (None,)):
                        out.append(Candidate(n, dp, tp, recon, ci, chunk, self.base.mesh_fixed,
                                               self.base.tp_axis))
        return out

    def splits(self) -> list[tuple[int, int, int]]:
        """(devices, dp, tp) to try: the spec's own mesh when it has other axes; dp only when
        it has no tp axis (its shard rules do not use one); else every split of each count."""
        if self.base.mesh_fixed:
            return [(self.base.devices, self.base.dp, self.base.tp)]
        tps = _divisors if "tp" in self.mesh_axes else (lambda n: [1])
        return [(n, n // tp, tp) for n in self.devices for tp in tps(n) if self.batch % (n // tp) == 0]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def space_of(ir: Any, devices: Sequence[int] | None) -> Space:
    """The search space of a checked spec's IR (its typed options and mesh)."""
    from pdc.ir.nodes import MeshNode, TargetNode

    data, remat = ir.options("data"), ir.options("remat")
    batch = int(data.batch)
    axes = next(p for _, p in ir.nodes(MeshNode)).axes
    sizes = dict(axes)
    lm = next(p for _, p in ir.nodes(TargetNode)).has_positions  # an LM: the divergence chunk applies
    recon, ci, chunk = remat.recon_forwards, remat.ci, int(remat.divergence_chunk)
    seq_len = int(data.seq_len) if lm and hasattr(data, "seq_len") else None
    own = 1
    for _, n in axes:
        own *= n
    wanted = tuple(devices) if devices else (own,)
    notes = ["pdc has no gradient accumulation and `data.batch` is part of the decomposition: the global batch "
             "stays fixed, so sequences per device vary only with the mesh (batch / dp)"]
    fixed = bool(set(sizes) - {"dp", "tp"})
    if fixed:
        notes.append(f"the mesh has axes {', '.join(sizes)}: only its own split and size are tried")
    elif "tp" not in sizes:
        notes.append("the mesh has no tp axis (its shard rules use none): only dp varies")
    others = {c for c in (chunk // 2, chunk * 2) if c > 0 and (seq_len is None or c <= seq_len)}
    chunks = tuple(sorted({chunk} | others)) if lm else ()  # the spec's own value always; others that split seq_len
    base = Candidate(own, sizes.get("dp", 1), sizes.get("tp", 1), recon, ci, chunk if lm else None, fixed,
                     "tp" in sizes)
    return Space(batch, wanted, tuple(sizes), base, lm, chunks, seq_len, tuple(notes))


def order(candidates: Iterable[Candidate], base: Candidate) -> list[Candidate]:
    """Likely fits first: the spec's own settings, then the spec's own mesh with the remat and
    chunk knobs by the number changed from the spec (a neighbour of a fitting point usually
    fits), less recompute first; other splits and device counts last — their compiles are
    the longest, and memory pruning thins them out once a split has been measured."""
    def distance(c: Candidate) -> int:
        return sum((c.devices != base.devices, c.tp != base.tp, c.recon_forwards != base.recon_forwards,
                    c.ci != base.ci, c.divergence_chunk != base.divergence_chunk))

    def mesh_moved(c: Candidate) -> bool:
        return c.devices != base.devices or c.tp != base.tp

    return sorted(candidates, key=lambda c: (mesh_moved(c), distance(c), c.recompute(), abs(c.tp - base.tp),
                                             -_chunk_size(c.divergence_chunk), c.devices, c.recon_forwards, c.ci))


@dataclass
class Result:
    candidate: Candidate
    status: str  # fits | does_not_fit | error | pruned_memory | pruned_dominated | cached (fits/does not)
    total: int | None = None  # bytes per device
    budget: int | None = None
    flops: float | None = None  # matmul FLOPs of one step, all devices
    level: str = ""
    seconds: float = 0.0
    why: str = ""
    cached: bool = False

    @property
    def fits(self) -> bool:
        return self.status == "fits"

    def cost(self) -> tuple[float, int]:
        """Per-device matmul FLOPs (the step's time on its devices), else the recompute count."""
        per_device = self.flops / self.candidate.devices if self.flops else float("inf")
        return per_device, self.candidate.recompute()


Compile = Callable[[Candidate], dict[str, Any]]  # → {"total", "budget", "fits", "flops", "level", "approximation"}


class Cache:
    """Compiled results on disk, keyed by program hash (both determinism hashes of the
    candidate's IR, the device count and model, the compiler): a second `pdc fit` of the
    same spec, or a candidate seen before, costs no compile."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def get(self, key: str) -> dict[str, Any] | None:
        if self.directory is None or not (self.directory / f"{key}.json").exists():
            return None
        try:
            return json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{key}.json").write_text(json.dumps(value))


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pdc" / "fit"


def program_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@dataclass
class Search:
    """The bounded search; `compile` and `key` are injected so the logic is testable
    without XLA (`pdc.inspect.fit_compile` supplies the real ones)."""

    space: Space
    compile: Compile
    key: Callable[[Candidate], str | None]
    cache: Cache
    budget_s: float
    report: Callable[[Result, int, int], None] = lambda r, i, n: None
    results: list[Result] = field(default_factory=list)
    stopped: str = ""

    def run(self) -> list[Result]:
        todo = order(self.space.candidates(), self.space.base)
        start = time.perf_counter()
        compiled_s: list[float] = []
        for index, cand in enumerate(todo, 1):
            pruned = self._pruned(cand)
            if pruned is not None:
                self.results.append(pruned)
                self.report(pruned, index, len(todo))
                continue
            key = self.key(cand)
            hit = self.cache.get(key) if key else None
            if hit is None:
                elapsed = time.perf_counter() - start
                guess = max(compiled_s) if compiled_s else 0.0
                if compiled_s and elapsed + guess > self.budget_s:  # at least one compile
                    self.stopped = (f"time budget reached after {elapsed:.0f} s ({len(compiled_s)} compiles); "
                                    f"{len(todo) - index + 1} candidates not tried (raise --budget-s)")
                    break
            result = self._from(cand, hit) if hit is not None else self._compiled(cand, key, compiled_s)
            self.results.append(result)
            self.report(result, index, len(todo))
        return self.results

    def _pruned(self, cand: Candidate) -> Result | None:
        for done in self.results:
            if done.status == "does_not_fit" and heavier_memory(cand, done.candidate, self.space.batch):
                return Result(cand, "pruned_memory", why=f"needs at least the memory of {done.candidate.label()}")
            if done.fits and dominated_by(cand, done.candidate):
                return Result(cand, "pruned_dominated", why=f"only adds recompute to {done.candidate.label()}")
        return None

    def _compiled(self, cand: Candidate, key: str | None, compiled_s: list[float]) -> Result:
        t0 = time.perf_counter()
        try:
            out = self.compile(cand)
        except Exception as error:  # noqa: BLE001 — one candidate that does not build is a row, not a crash
            return Result(cand, "error", seconds=time.perf_counter() - t0, why=_one_line(error))
        seconds = time.perf_counter() - t0
        compiled_s.append(seconds)
        out["seconds"] = seconds
        if key and not out.get("error"):
            self.cache.put(key, out)
        return self._from(cand, out, cached=False)

    @staticmethod
    def _from(cand: Candidate, out: dict[str, Any], cached: bool = True) -> Result:
        if out.get("error"):
            return Result(cand, "error", why=out["error"], cached=cached)
        if out.get("fits") is None:  # no budget and no known device memory: nothing to fit against
            return Result(cand, "error", out.get("total"), why="no budget to fit against: add a `budget` block",
                          cached=cached)
        status = "fits" if out.get("fits") else "does_not_fit"
        return Result(cand, status, out.get("total"), out.get("budget"), out.get("flops"), out.get("level", ""),
                      out.get("seconds", 0.0), out.get("approximation", ""), cached)


def _one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:160] if lines else ''}"


def fitting(results: Sequence[Result]) -> list[Result]:
    """The candidates that fit, cheapest first (per-device FLOPs, then recompute, then memory)."""
    return sorted((r for r in results if r.fits), key=lambda r: (*r.cost(), r.total or 0, r.candidate))


def table(results: Sequence[Result], batch: int) -> str:
    """The fitting candidates as a text table, each with its `--set` line."""
    rows = fitting(results)
    if not rows:
        return "no candidate fits\n"
    lines = [f"{'#':>2}  {'devices':>7} {'dp':>3} {'tp':>3} {'seq/dev':>7} {'recon':<9} {'ci':<3} {'chunk':>5} "
             f"{'GiB/dev':>8} {'budget':>7} {'TFLOP/dev':>9}"]
    for i, r in enumerate(rows, 1):
        c = r.candidate
        chunk = "-" if c.divergence_chunk is None else str(c.divergence_chunk)
        tflop = f"{r.flops / c.devices / 1e12:,.1f}" if r.flops else "-"
        seq = batch // c.dp
        lines.append(f"{i:>2}  {c.devices:>7} {c.dp:>3} {c.tp:>3} {seq:>7} {c.recon_forwards:<9} {c.ci:<3} "
                     f"{chunk:>5} {(r.total or 0) / GiB:>8.2f} {(r.budget or 0) / GiB:>7.1f} {tflop:>9}")
        lines.append(f"      {c.set_line()}")
    return "\n".join(lines) + "\n"


def to_json(results: Sequence[Result], space: Space, compiler: str, seconds: float, stopped: str) -> dict[str, Any]:
    return {"schema": "pdc.fit/1", "compiler": compiler, "seconds": round(seconds, 1), "stopped": stopped,
            "notes": list(space.notes), "batch": space.batch,
            "fitting": [{**asdict(r.candidate), "sets": r.candidate.sets(), "total": r.total, "budget": r.budget,
                         "flops": r.flops} for r in fitting(results)],
            "tried": [{"candidate": r.candidate.label(), "status": r.status, "total": r.total, "why": r.why,
                       "cached": r.cached} for r in results]}


class FitError(Exception):
    """A candidate that does not check or build (one line for people)."""


def ir_of(path: str, sets: Sequence[str]) -> Any:
    """The IR of the spec at `path` with `sets` applied, as `pdc compile --set ...` builds it."""
    from pdc.passes import check

    result = check(path, overrides=list(sets))
    errors = [d for d in result.diagnostics if d.severity.value == "error"]
    if errors or result.ir is None or result.ir.failed:
        first = errors[0] if errors else (result.ir.diagnostics[0] if result.ir is not None else None)
        raise FitError(f"{first.code}: {first.summary}" if first is not None else "does not check")
    return result.ir


def real_compiler(path: str, user_sets: Sequence[str], target: str | None
                  ) -> tuple[Compile, Callable[[Candidate], str | None]]:
    """The dry-run as `pdc compile` runs it (and its cache key) for candidates of `path`."""
    import jax

    from pdc.inspect.dryrun import _limit, dry_run, target_device

    def compile_one(cand: Candidate) -> dict[str, Any]:
        report = dry_run(ir_of(path, [*user_sets, *cand.sets()]), target=target)
        return {"total": report.memory.get("total"), "budget": report.budget, "fits": report.fits,
                "verdict": report.verdict, "flops": report.matmul_flops, "level": report.level,
                "device_kind": report.device_kind, "approximation": report.approximation}

    def key(cand: Candidate) -> str | None:
        try:
            ir = ir_of(path, [*user_sets, *cand.sets()])
        except FitError:
            return None
        device = target_device(ir, target)
        return program_key(ir.facts["decomposition_hash"], ir.facts["runtime_hash"], device, str(cand.devices),
                           str(_limit(ir, device)), jax.__version__)

    return compile_one, key


def write_choice(path: str, cand: Candidate) -> str:
    """Apply `cand`'s `--set` lines to the spec file itself, through the same override and
    formatter machinery (comments and canonical layout kept); returns the new text."""
    from pdc.syntax.format import format_spec
    from pdc.syntax.overrides import apply_overrides
    from pdc.syntax.parse import parse_text

    text = Path(path).read_text()
    source, problems = parse_text(text, path)
    if source is None or problems:
        raise FitError(f"{path} does not parse")
    source, _, problems = apply_overrides(source, cand.sets())
    if problems:
        raise FitError(f"{problems[0].code}: {problems[0].summary}")
    new = format_spec(source)
    Path(path).write_text(new)
    return new


def compiler_line(results: Sequence[Result], device: str) -> str:
    """Which compiler produced the numbers (and the caveat when it is the CPU stand-in)."""
    done = [r for r in results if r.level]
    if not done:
        return f"compiler: none ran (device {device})"
    if all(r.level == "gpu" for r in done):
        return f"compiler: XLA:GPU, deviceless, for {device}"
    caveat = next((r.why for r in done if r.level == "cpu" and r.why), "")
    return ("compiler: CPU (fake host devices)" + (f" — {caveat}" if caveat else
            "; argument/output bytes exact, temp bytes from the CPU compiler"))


__all__ = ["Cache", "Candidate", "FitError", "Result", "Search", "Space", "compiler_line", "default_cache",
           "dominated_by", "fitting", "ir_of", "real_compiler", "write_choice",
           "heavier_memory", "order", "program_key", "space_of", "table", "to_json"]
