"""`pdc compile SWEEP`: dry-run every point of a sweep, compiling each distinct program once.

Two points share a compile when their *program keys* match (`pdc.passes.hashes`): a hash of the resolved spec's
decomposition and runtime blocks and its budget, with every `seed` key removed and the
observation blocks (log, eval, checkpoint) left out. A seed only changes the values the
step starts from, never its shapes, shardings or ops, so a sweep over 3 seeds × 2 batch
sizes compiles twice. (The key is computed before lowering, so nothing is traced for a
point that shares; the lowered HLO would be the stricter key, at the price of tracing
every point.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pdc.ir.graph import IR


@dataclass
class PointReport:
    """One row of the sweep table."""

    name: str
    changes: list[str]
    decomposition_hash: str
    program_key: str
    report: Any  # the DryRun of this point's program (shared between points with one key)
    shared_with: str | None  # the point whose compile this row reuses

    @property
    def peak(self) -> int | None:
        return self.report.memory.get("total") if self.report.memory else None

    def to_json(self) -> dict[str, Any]:
        return {"point": self.name, "changes": self.changes, "decomposition_hash": self.decomposition_hash,
                "program_key": self.program_key, "per_device_peak_bytes": self.peak,
                "verdict": self.report.verdict, "fits": self.report.fits, "compile_shared_with": self.shared_with}


def program_key(ir: IR) -> str:
    """What the compiled step depends on (the hashes pass's `program_hash`: decomposition and
    runtime blocks and the budget, every `seed` removed)."""
    return str(ir.facts["program_hash"])


def compile_points(points: list[tuple[str, list[str], IR]], run: Callable[[IR], Any]) -> list[PointReport]:
    """Dry-run each point's IR with `run`, once per distinct program key, in point order."""
    first: dict[str, PointReport] = {}
    rows: list[PointReport] = []
    for name, changes, ir in points:
        key = program_key(ir)
        shared = first.get(key)
        report = shared.report if shared is not None else run(ir)
        row = PointReport(name, changes, ir.facts["decomposition_hash"], key, report,
                          shared.name if shared is not None else None)
        first.setdefault(key, row)
        rows.append(row)
    return rows


def render_table(sweep: str, rows: list[PointReport]) -> str:
    """The sweep table a reviewer reads, and how many compiles it took."""
    from pdc.ir.plan import gib

    header = ("point", "changed keys", "decomposition", "per-device peak", "verdict", "compile")
    body = [(r.name, " ".join(r.changes) or "(none)", r.decomposition_hash,
             gib(r.peak) if r.peak is not None else "n/a", r.report.verdict,
             f"shared with {r.shared_with}" if r.shared_with else "compiled") for r in rows]
    widths = [max(len(str(row[i])) for row in (header, *body)) for i in range(len(header))]
    lines = [f"sweep `{sweep}`: {len(rows)} points"]
    lines += ["  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip() for row in (header, *body)]
    compiles = sum(r.shared_with is None for r in rows)
    lines.append(f"compiled {compiles} program{'s' if compiles != 1 else ''} for {len(rows)} point"
                 f"{'s' if len(rows) != 1 else ''}: points differing only in seeds or observation keys share one "
                 "(keyed by the resolved spec without them)")
    bad = [r.name for r in rows if r.report.fits is False]
    lines.append(f"does not fit: {', '.join(bad)}" if bad else "every point fits" if all(r.report.fits for r in rows)
                 else "no verdict for some points (no budget)")
    return "\n".join(lines) + "\n"
