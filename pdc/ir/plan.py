"""`pdc check --plan`: the normalised summary a reviewer reads — sites with shapes and
C, CI chunks, loss terms with schedules, the mesh, and a per-tensor sharding table with
per-device bytes. `plan_data` is the `--format json` form (schema `pdc.plan/1`)."""

from __future__ import annotations

import math
from typing import Any

from pdc.ir.graph import IR
from pdc.ir.nodes import (
    BudgetNode, CiChunkNode, MeshNode, ScheduleNode, ShardingNode, SiteNode, TensorNode, TermNode, TieNode,
)

DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "int32": 4}
MOMENT_BYTES = 4  # optimizer moments are fp32 whatever the parameter dtype


def _tensor_rows(ir: IR) -> list[dict[str, Any]]:
    shardings = {s.tensor: s for _, s in ir.nodes(ShardingNode)}
    rows = []
    for _, tensor in ir.nodes(TensorNode):
        sharding = shardings.get(tensor.path)
        local = sharding.per_device_shape if sharding else tensor.shape
        elements = math.prod(local)
        moment_bytes = DTYPE_BYTES[tensor.dtype] if tensor.group == "sources" else MOMENT_BYTES
        rows.append({
            "tensor": tensor.path, "group": tensor.group, "shape": list(tensor.shape), "dtype": tensor.dtype,
            "rule": sharding.rule if sharding else None,
            "axes": [list(a) for a in sharding.dims] if sharding else None,
            "per_device_shape": list(local),
            "bytes": elements * DTYPE_BYTES[tensor.dtype],
            "state_bytes": elements * moment_bytes * tensor.moments,
            "replicated": not sharding or not any(sharding.dims),
        })
    return rows


def plan_data(ir: IR) -> dict[str, Any]:
    rows = _tensor_rows(ir)
    mesh = next(p for _, p in ir.nodes(MeshNode))
    params = sum(r["bytes"] for r in rows if r["group"] != "batch")
    state = sum(r["state_bytes"] for r in rows)
    unsharded = sum(r["bytes"] + r["state_bytes"] for r in rows if r["replicated"] and r["group"] != "batch")
    budget = next((p for _, p in ir.nodes(BudgetNode)), None)
    ties = {t.site: t.source for _, t in ir.nodes(TieNode)}
    return {
        "schema": "pdc.plan/1",
        "spec": ir.spec.name,
        "hashes": {"decomposition": ir.facts.get("decomposition_hash"), "runtime": ir.facts.get("runtime_hash")},
        "target": _target_data(ir),
        "sites": [{"path": s.path, "kind": s.kind, "d_in": s.d_in, "d_out": s.d_out, "C": s.C,
                   "tied_to": ties.get(s.path)} for _, s in ir.nodes(SiteNode)],
        "ci_chunks": [{"index": c.index, "sites": list(c.sites), "input_width": c.input_width, "c_total": c.c_total}
                      for _, c in ir.nodes(CiChunkNode)],
        "terms": [{"name": t.name, "weight": t.weight, "divergence": t.divergence} for _, t in ir.nodes(TermNode)],
        "schedules": [{"owner": s.owner, "fn": s.fn, "start": s.start, "end": s.end, "warmup_steps": s.warmup_steps,
                       "from_step": s.start_step, "to_step": s.end_step} for _, s in ir.nodes(ScheduleNode)],
        "mesh": {"axes": dict(mesh.axes), "devices": mesh.devices},
        "tensors": rows,
        "per_device": {"parameter_bytes": params, "state_bytes": state,
                       "unsharded_share": (unsharded / (params + state)) if params + state else 0.0},
        "budget": {"device": budget.device, "device_memory": budget.device_memory, "headroom": budget.headroom}
        if budget else None,
    }


def _target_data(ir: IR) -> dict[str, Any]:
    """The target's family and, for LMs, the config.json read, every resolved setting with its
    value and source (spec line, `--set N`, a config.json key, a default), and the weights'
    dtype as stored and as the run holds them."""
    shape = ir.facts["target"]
    out: dict[str, Any] = {"family": shape.family, "layers": shape.n_layers, "output": shape.output}
    if shape.settings:
        out["config"] = shape.config or None
        out["settings"] = [{"name": k, "value": _json_value(v), "source": src} for k, (v, src) in shape.settings.items()]
    if "dtype" in ir.facts:
        out["dtype"] = dict(ir.facts["dtype"])
    return out


def _json_value(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def _setting_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        rest = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items() if k != "rope_type")
        return f"{value.get('rope_type', '?')}({rest})"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _target_lines(target: dict[str, Any]) -> list[str]:
    lines = []
    if "settings" in target:
        lines += [f"config.json: {target['config'] or 'none (dimensions written in the spec)'}",
                  "forward settings (the values that run, and where each comes from):"]
        lines += _table(["setting", "value", "source"], [[s["name"], _setting_text(s["value"]), s["source"]]
                                                         for s in target["settings"]])
    if "dtype" in target:
        d = target["dtype"]
        lines.append(f"weights dtype: stored {d['stored']}, run {d['run']} ({d['run_from']})")
    return lines


def gib(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def render_plan(ir: IR) -> str:
    data = plan_data(ir)
    sites = data["sites"]
    lines = [f"plan of spec `{data['spec']}`",
             f"hashes: decomposition {data['hashes']['decomposition']}, runtime {data['hashes']['runtime']}",
             f"target: {data['target']['family']}, {data['target']['layers']} layers, output {data['target']['output']}",
             *_target_lines(data["target"]),
             "", f"sites: {len(sites)}, C total {sum(s['C'] for s in sites)}"]
    tied = any(s["tied_to"] for s in sites)
    lines += _table(["site", "d_in", "d_out", "C"] + (["tied to"] if tied else []),
                    [[s["path"], s["d_in"], s["d_out"], s["C"]] + ([s["tied_to"] or "-"] if tied else []) for s in sites])
    lines += ["", f"CI chunks: {len(data['ci_chunks'])}"]
    lines += _table(["chunk", "sites", "input width", "Σ C"], [[c["index"], _sites_text(c["sites"]), c["input_width"],
                                                               c["c_total"]] for c in data["ci_chunks"]])
    lines += ["", "loss terms:"]
    lines += _table(["term", "weight", "divergence"], [[t["name"], f"{t['weight']:g}", t["divergence"] or "-"]
                                                      for t in data["terms"]])
    lines += ["", "schedules:"]
    lines += _table(["value", "curve", "start", "end", "warmup", "steps"], [
        [s["owner"], s["fn"], f"{s['start']:g}", f"{s['end']:g}", s["warmup_steps"], f"{s['from_step']}..{s['to_step']}"]
        for s in data["schedules"]])
    mesh = " × ".join(f"{a}={n}" for a, n in data["mesh"]["axes"].items())
    lines += ["", f"mesh: {mesh} ({data['mesh']['devices']} devices)", ""]
    lines += _table(["tensor", "shape", "dtype", "rule", "axes", "per device", "bytes", "+state"], [
        [r["tensor"], _shape(r["shape"]), r["dtype"], _rule(r["rule"]), _axes(r["axes"]), _shape(r["per_device_shape"]),
         gib(r["bytes"]), gib(r["state_bytes"]) if r["state_bytes"] else "-"] for r in data["tensors"]])
    per = data["per_device"]
    lines += ["", f"per device: parameters {gib(per['parameter_bytes'])}, optimizer and adversary state "
              f"{gib(per['state_bytes'])}, unsharded {per['unsharded_share']:.1%} of these bytes"]
    return "\n".join(lines) + "\n"


def _sites_text(sites: list[str]) -> str:
    return sites[0] if len(sites) == 1 else f"{sites[0]} … {sites[-1]} ({len(sites)})"


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _rule(rule: int | None) -> str:
    return "-" if rule is None else "default" if rule < 0 else f"#{rule}"


def _axes(axes: list[list[str]] | None) -> str:
    if axes is None:
        return "-"
    return "[" + ", ".join("+".join(a) if a else "_" for a in axes) + "]"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
