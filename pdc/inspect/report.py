"""The dry-run report, for people (text) and for bots (JSON, schema `pdc.dryrun/2`).

/2 over /1: `device`, `approximation`, `xla_remat` (memory after XLA:GPU rematerialised to
fit, when it had to), `verdict`, and `peak` (the buffers alive at the peak, by owner and
spec line); later within /2, new keys only: `matmul_flops` (one step's matmul FLOPs over all
devices), `matmul_flops_per_device` (counted on the optimized module as written, dead code gone and
recomputation in: `pdc.inspect.flops`), `attention_calls` (cuDNN fused-attention calls per
step, forward and backward) and `ascent_remat` (the adversary warm-up ascents' recomputation the
step was compiled with, and what the dry-run compared to choose it)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

from pdc.inspect.dryrun import DryRun
from pdc.ir.plan import gib

SCHEMA = "pdc.dryrun/2"
_VERDICTS = {"fits": "fits", "fits_with_xla_remat": "fits only because XLA rematerialised",
             "does_not_fit": "does not fit", "no_budget": "no budget to check", "not_compiled": "not compiled (lint)"}


def to_json(report: DryRun) -> dict[str, Any]:
    data = asdict(report)
    data.pop("hlo_text")
    data["schema"] = SCHEMA
    data["verdict"] = report.verdict
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


def _memory_lines(report: DryRun) -> list[str]:
    m = report.memory
    budget = f"  of a {gib(report.budget)} budget" if report.budget is not None else "  (no budget given)"
    lines = ["", "per device" + (" (as written: XLA's own remat off)" if report.level == "gpu" else "") + ":",
             f"  arguments  {gib(m['argument']):>11}",
             f"  outputs    {gib(m['output']):>11}",
             f"  aliased   -{gib(m['alias']):>11}  (donated state updated in place)",
             f"  temp       {gib(m['temp']):>11}",
             f"  total      {gib(m['total']):>11}{budget}"]
    if report.matmul_flops_per_device:
        calls = report.attention_calls
        attention = (f"; fused attention {calls['forward']} forward, {calls['backward']} backward calls, counted dense"
                     if calls else "")
        lines.append(f"  matmul FLOPs per step (counted on the optimized module{attention}): "
                     f"{report.matmul_flops_per_device / 1e12:.1f} TFLOP per device, "
                     f"{report.matmul_flops / 1e12:.1f} TFLOP in all")
    if report.ascent_remat:
        totals = report.ascent_remat["total_bytes"]
        chosen = ("not rematerialised" if report.ascent_remat["chosen"] == "off" else
                  "rematerialised as the loss forwards (without, the step exceeds its budget)")
        lines.append(f"  adversary ascents' forwards: {chosen}; total {gib(totals['off'])} without remat, "
                     f"{gib(totals['as_loss_forwards'])} with")
    if report.xla_remat is not None:
        r = report.xla_remat
        lines.append(f"  after XLA rematerialised to fit the device: temp {gib(r['temp'])}, total {gib(r['total'])}"
                     + ("" if report.allow_xla_remat else "  (counts as fitting only with budget.allow_xla_remat)"))
    return lines


def _peak_lines(report: DryRun) -> list[str]:
    p = report.peak
    if not p:
        return []
    lines = ["", f"alive at the peak: {gib(p['bytes'])} = arguments and outputs + {gib(p['temp_live'])} temp "
                 f"(XLA's temp allocation is {gib(p['temp_allocated'])}: {gib(p['packing_gap'])} of it is packing, "
                 "never alive at once)"]
    width = max((len(g["what"]) for g in p["groups"][:14]), default=0)
    lines += [f"  {gib(g['bytes']):>11}  {g['what']:<{width}}  {g['spec_line']}" for g in p["groups"][:14]]
    if len(p["groups"]) > 14:
        rest = p["groups"][14:]
        lines.append(f"  {gib(sum(g['bytes'] for g in rest)):>11}  ({len(rest)} smaller groups)")
    return lines


def render(report: DryRun) -> str:
    lines = [f"warning: {report.approximation}"] if report.approximation else []
    lines.append(f"dry-run of spec `{report.spec}`: {report.devices} × {report.device_kind}, level {report.level}, "
                 f"{report.seconds:.1f} s")
    if report.memory:
        lines += _memory_lines(report) + _peak_lines(report)
        lines += ["", "largest single buffers:"] + [
            f"  {b['shape']:<38} {gib(b['bytes']):>11}  {b['scope']:<40} {b['phase']:<9} {b['op']}"
            for b in report.largest]
        lines += ["", "collectives:"] + _collective_summary(report)
    lines += [f"note: {n}" for n in report.notes]
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def summary_line(report: DryRun) -> str:
    total = f"{report.memory['total'] / 2**30:.2f} GiB" if report.memory else "n/a (lint)"
    budget = f"{report.budget / 2**30:.2f} GiB" if report.budget is not None else "no budget"
    verdict = _VERDICTS[report.verdict]
    if report.verdict == "fits_with_xla_remat":
        verdict += f" ({report.xla_remat['total'] / 2**30:.2f} GiB after)" + \
            ("" if report.allow_xla_remat else "; not counted as fitting")  # type: ignore[index]
    return f"plan: {report.sites} sites, C={report.c_total}, per device {total} / {budget}: {verdict}"
