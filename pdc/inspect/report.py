"""The dry-run report, for people (text) and for bots (JSON, schema `pdc.dryrun/1`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

from pdc.inspect.dryrun import DryRun
from pdc.ir.plan import gib

SCHEMA = "pdc.dryrun/1"


def to_json(report: DryRun) -> dict[str, Any]:
    data = asdict(report)
    data.pop("hlo_text")
    data["schema"] = SCHEMA
    data["fits"] = report.fits
    return data


def _collective_summary(report: DryRun) -> list[str]:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in report.collectives:
        by_kind[c["kind"]].append(c)
    lines = []
    for kind, items in sorted(by_kind.items()):
        scopes = sorted({c["scope"] for c in items})
        lines.append(f"  {kind:<19} {len(items):>4} ops  {gib(sum(c['bytes'] for c in items)):>11}  "
                     f"scopes: {', '.join(scopes[:6])}{' ...' if len(scopes) > 6 else ''}")
    flagged = [c for c in report.collectives if c["materialises_full_tensor"]]
    for c in flagged[:5]:
        lines.append(f"  ! all-gather of a full tensor {c['shape']} ({gib(c['bytes'])}) in {c['scope']}")
    return lines or ["  none"]


def render(report: DryRun) -> str:
    lines = [f"dry-run of spec `{report.spec}`: {report.devices} × {report.device_kind}, level {report.level}, "
             f"{report.seconds:.1f} s"]
    m = report.memory
    if m:
        lines += ["", "per device:",
                  f"  arguments  {gib(m['argument']):>11}",
                  f"  outputs    {gib(m['output']):>11}",
                  f"  aliased   -{gib(m['alias']):>11}  (donated state updated in place)",
                  f"  temp       {gib(m['temp']):>11}",
                  f"  total      {gib(m['total']):>11}"
                  + (f"  of a {gib(report.budget)} budget" if report.budget is not None else "  (no budget given)")]
        lines += ["", "largest buffers:"] + [
            f"  {b['shape']:<38} {gib(b['bytes']):>11}  {b['scope']:<40} {b['phase']:<9} {b['op']}"
            for b in report.largest]
        lines += ["", "collectives:"] + _collective_summary(report)
    lines += [f"note: {n}" for n in report.notes]
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def summary_line(report: DryRun) -> str:
    total = f"{report.memory['total'] / 2**30:.2f} GiB" if report.memory else "n/a (lint)"
    budget = f"{report.budget / 2**30:.2f} GiB" if report.budget is not None else "no budget"
    verdict = {True: "fits", False: "does not fit", None: "no budget to check"}[report.fits if report.memory else None]
    return f"plan: {report.sites} sites, C={report.c_total}, per device {total} / {budget}: {verdict}"
