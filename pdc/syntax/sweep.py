"""Sweeps: a family of runs written next to (or importing) one spec, expanded to named points.

    import "tms_5-2.pd"
    sweep seeds {
      grid { train.seed = [0, 1, 2] data.batch = [2048, 4096] }   # every combination: 6 points
      zip { loss.importance_minimality.weight = [1e-3, 3e-3] params.C = [10, 20] }  # side by side
    }

A `grid` varies its keys independently (a cartesian product, first key slowest), a `zip`
varies its keys together (equal-length lists); several sub-blocks multiply, in order. Each
key is a `--set` path into the spec (`train.seed`, `decompose.linear1.C`), or `params.NAME`
for a parameter. A point is named after what it changes (`seed1-batch4096`); its values
keep their spans in the sweep file, so a value that does not check is reported there.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pdc.syntax.ast import Assign, Block, ListValue
from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.format import value_text
from pdc.syntax.patterns import render_pattern_segments

KINDS = ("grid", "zip")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: the keys it sets (spans in the sweep file)."""

    name: str
    assigns: tuple[Assign, ...]

    @property
    def changes(self) -> list[str]:
        """`path=value` per key, as a reader and `run.json` show them."""
        return [f"{render_pattern_segments(a.key.segments)}={value_text(a.value)}" for a in self.assigns]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "changes": self.changes}


def expand(sweep: Block, diagnostics: list[Diagnostic]) -> list[Point]:
    """The points of a `sweep` block, in order; [] after reporting a malformed one (PD0610)."""
    def bad(summary: str, span: object, label: str, help_: str) -> None:
        diagnostics.append(Diagnostic("PD0610", summary, span, label, help=(help_,)))  # type: ignore[arg-type]

    axes: list[list[tuple[Assign, ...]]] = []  # per sub-block, its rows: the keys one point sets
    ok = True
    if not sweep.items:
        bad(f"sweep `{_name(sweep)}` is empty", sweep.key.span, "no points",
            "e.g. `sweep seeds { grid { train.seed = [0, 1, 2] } }`")
        return []
    for item in sweep.items:
        if not isinstance(item, Block) or item.key.text not in KINDS or item.label is not None:
            bad(f"a sweep holds `grid {{ ... }}` and `zip {{ ... }}` blocks, not `{item.key.text}`", item.key.span,
                "not grid or zip", "`grid` varies keys independently, `zip` varies them together")
            ok = False
            continue
        columns: list[list[Assign]] = []
        for assign in item.items:
            if not isinstance(assign, Assign) or not isinstance(assign.value, ListValue) or not assign.value.items:
                span = assign.value.span if isinstance(assign, Assign) else assign.key.span
                bad(f"`{assign.key.text}` in `{item.key.text}` needs a list of values", span, "not a list",
                    f"e.g. `{assign.key.text} = [0, 1, 2]`")
                ok = False
                continue
            columns.append([Assign(assign.key, v, v.span) for v in assign.value.items])
        if not item.items:
            bad(f"`{item.key.text}` sets no keys", item.key.span, "empty", "e.g. `grid { train.seed = [0, 1, 2] }`")
            ok = False
            continue
        if not columns:  # every key was reported
            continue
        if item.key.text == "zip":
            lengths = {len(c) for c in columns}
            if len(lengths) > 1:
                longest, shortest = max(columns, key=len), min(columns, key=len)
                diagnostics.append(Diagnostic(
                    "PD0610", f"the lists of a `zip` have different lengths: {', '.join(str(len(c)) for c in columns)}",
                    longest[0].key.span, f"{len(longest)} values", (Related(shortest[0].key.span,
                                                                            f"{len(shortest)} values"),),
                    ("a `zip` pairs its lists element by element; use `grid` for every combination",)))
                ok = False
                continue
            axes.append([tuple(row) for row in zip(*columns)])
        else:
            axes.append([tuple(row) for row in itertools.product(*columns)])
    if not ok:
        return []
    rows = [tuple(a for part in combo for a in part) for combo in itertools.product(*axes)]
    return _named(rows)


def _named(rows: Sequence[tuple[Assign, ...]]) -> list[Point]:
    """Name each point after the last segment of each key it sets and the value, e.g.
    `seed1-batch4096`; `p0`, `p1`, ... when those names would collide."""
    names = ["-".join(_UNSAFE.sub("", f"{_last(a)}{value_text(a.value)}") for a in row) or "p0" for row in rows]
    if len(set(names)) != len(names):
        names = [f"p{i}" for i in range(len(rows))]
    return [Point(name, row) for name, row in zip(names, rows)]


def _last(assign: Assign) -> str:
    part = assign.key.segments[-1].part
    return part if isinstance(part, str) else render_pattern_segments(assign.key.segments[-1:])


def _name(block: Block) -> str:
    return block.label.name if block.label is not None else "sweep"


def sweep_name(block: Block) -> str:
    return _name(block)


__all__ = ["Point", "check_points", "expand", "sweep_name", "sweep_points"]


def sweep_points(sweeps: Sequence[Block], diagnostics: list[Diagnostic]) -> tuple[Block | None, list[Point]]:
    """The file's one sweep and its points (a second `sweep` block is PD0610)."""
    if not sweeps:
        return None, []
    for extra in sweeps[1:]:
        diagnostics.append(Diagnostic("PD0610", "more than one `sweep` in this file", extra.key.span, "a second sweep",
                                      help=("write one sweep per file; a sweep may hold several `grid` and `zip` "
                                            "blocks",)))
    return sweeps[0], expand(sweeps[0], diagnostics)


def check_points(path: str, overrides: Sequence[str] = (), check: Callable[..., Any] | None = None,
                 **options: Any) -> tuple[Block | None, list[tuple[Point, Any]], list[Diagnostic]]:
    """Check every point of the file's sweep as its own spec: (sweep, [(point, CheckResult)],
    the expansion's diagnostics). `check` is `pdc.passes.check` to run the IR passes too (with
    `options`: inputs, devices); the front end alone by default."""
    from pdc.syntax.load import check_file

    base = check_file(path, overrides)
    diagnostics: list[Diagnostic] = []
    sweep, points = sweep_points(base.family.sweeps if base.family is not None else (), diagnostics)
    if check is None:
        results = [(p, check_file(path, overrides, p.assigns)) for p in points]
    else:
        results = [(p, check(path, overrides, point=p.assigns, **options)) for p in points]
    return sweep, results, diagnostics
