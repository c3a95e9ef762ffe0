"""`pdc harvest --dry-run`: the harvest program compiled on abstract values (no weights, no
checkpoint, no token file read) with the train dry-run's machinery (`pdc.inspect.dryrun`):
per-device memory and the peak by spec line, the verdict against the spec's budget, on
XLA:GPU when the `cuda` extra is there; plus what only a harvest has — its accumulators by
name with their per-device bytes, matmul FLOPs per token, and the size of the store.

RUN may be a run directory or a spec file (a harvest is planned before the run exists).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from pdc.decomp.attention import attention_implementation, for_platform
from pdc.inspect.dryrun import (DryRun, DryRunError, _allow_remat, _compile_into, _limit, _site_counts, compile_target,
                               target_device)
from pdc.inspect.report import render, to_json
from pdc.ir.graph import IR
from pdc.ir.nodes import MeshNode
from pdc.lower.harvest import HarvestConfig, abstract_acc, jitted_harvest_step, site_slots
from pdc.lower.inputs import shardings_of, step_inputs
from pdc.lower.program import lower_program
from pdc.lower.sharding import batch_sharding, make_mesh
from pdc.analyze.harvest import HarvestError, HarvestOptions, _threshold, harvest_ir

EXAMPLE_ROW = 64  # bytes of an example row besides its lists (site, kind, ints; Parquet overhead)
LIST_ITEM = 4 + 4 + 4  # token, ci, act per window position


def spec_ir(path: Path, overrides: tuple[str, ...]) -> IR:
    """The IR of a spec file with `--set` overrides (a dry-run needs no run)."""
    from pdc.passes import check

    result = check(str(path), list(overrides))
    if not result.ok or result.ir is None:
        first = result.diagnostics[0].summary if result.diagnostics else "does not check"
        raise HarvestError("PD0813", f"{path}: {first}")
    return result.ir


def store_bytes(ir: IR, options: HarvestOptions, vocab_free: bool = True) -> dict[str, int]:
    """The store's size per table before compression (an upper bound of the Parquet files):
    every component with its full quota of examples, PMI tokens and neighbours."""
    total_c = sum(s.C for s in site_slots(lower_program(ir)))
    window = 2 * options.context + 1
    sizes = {"components": total_c * 64,
             "examples": total_c * (options.top_k + options.reservoir_k) * (EXAMPLE_ROW + window * LIST_ITEM),
             "token_pmi": total_c * 2 * 2 * options.pmi_k * 56,
             "neighbors": total_c * options.neighbor_k * 64,
             "histograms": total_c * (40 + 26 * 8)}
    sizes["total"] = sum(sizes.values())
    return sizes


def harvest_dry_run(run: Path, options: HarvestOptions, target: str | None = None) -> dict[str, Any]:
    """The harvest program's dry-run report (JSON-ready; `render_harvest` prints it)."""
    start = time.perf_counter()
    ir = harvest_ir(run, options.overrides) if run.is_dir() else spec_ir(run, options.overrides)
    device = target_device(ir, target)
    program = lower_program(ir)
    n = next(p for _, p in ir.nodes(MeshNode)).devices
    try:
        level, kind, approximation, targets = compile_target(device, n, explicit=target is not None)
    except DryRunError as error:
        raise HarvestError("PD0813", str(error)) from None
    mesh = make_mesh(ir, targets)
    data = ir.options("data")
    config = HarvestConfig(int(data.seq_len), int(data.batch), int(ir.facts["target"].dims["vocab"]),
                           _threshold(ir, options.threshold), options.top_k, options.reservoir_k)
    inputs = step_inputs(program, mesh)
    acc = abstract_acc(program, config, mesh)
    tokens_s = batch_sharding(ir, mesh)
    tokens = jax.ShapeDtypeStruct((config.batch, config.seq_len), jnp.int32, sharding=tokens_s)
    windows = jax.ShapeDtypeStruct((config.batch,), jnp.int32, sharding=jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(tokens_s.spec[0])))
    step = jitted_harvest_step(program, config, acc, shardings_of(inputs.state), shardings_of(inputs.params), tokens_s)
    args = (acc, inputs.state, inputs.params, tokens, windows)
    report = DryRun(f"{ir.spec.name} (harvest)", level, device, n, kind, {}, _limit(ir, device), [], [],
                    *_site_counts(ir), 0.0, approximation=approximation, allow_xla_remat=_allow_remat(ir))
    platform = "gpu" if level == "gpu" else "cpu"
    with attention_implementation(for_platform(platform)):
        lowered = step.lower(*args)
    _compile_into(report, ir, lowered, device, None)  # counts the matmul FLOPs on the optimized module
    report.seconds = time.perf_counter() - start
    positions = config.batch * config.seq_len
    return {**to_json(report), "harvest": {
        "batch_windows": config.batch, "seq_len": config.seq_len, "positions_per_batch": positions,
        "matmul_flops_per_token": report.matmul_flops / positions if report.matmul_flops else None,
        "accumulators": accumulator_bytes(acc), "store_bytes": store_bytes(ir, options)},
        "text": render(report)}


def accumulator_bytes(acc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each accumulator's name, global shape, dtype and bytes per device (its shard's)."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(acc)[0]:
        name = ".".join(str(p.key) for p in path if isinstance(p, jax.tree_util.DictKey))
        shard = leaf.sharding.shard_shape(leaf.shape)
        out.append({"name": name, "shape": list(leaf.shape), "dtype": str(leaf.dtype),
                    "bytes_per_device": int(math.prod(shard)) * leaf.dtype.itemsize})
    return sorted(out, key=lambda a: -a["bytes_per_device"])


def render_harvest(report: dict[str, Any]) -> str:
    h = report["harvest"]
    gib = 2 ** 30
    lines = [report["text"].rstrip("\n"), "", f"harvest batch: {h['batch_windows']} windows × {h['seq_len']} tokens = "
             f"{h['positions_per_batch']:,} positions"]
    if h["matmul_flops_per_token"]:
        lines.append(f"  matmul FLOPs per token: {h['matmul_flops_per_token'] / 1e9:.2f} GFLOP")
    lines.append("accumulators per device:")
    lines += [f"  {a['bytes_per_device'] / gib:9.3f} GiB  {a['name']:<28} {a['dtype']:<8} {a['shape']}"
              for a in h["accumulators"] if a["bytes_per_device"] >= 1 << 20]
    small = [a for a in h["accumulators"] if a["bytes_per_device"] < 1 << 20]
    if small:
        lines.append(f"  {sum(a['bytes_per_device'] for a in small) / gib:9.3f} GiB  ({len(small)} smaller)")
    s = h["store_bytes"]
    lines.append(f"store (uncompressed upper bound): {s['total'] / gib:.3f} GiB  (" +
                 ", ".join(f"{k} {v / gib:.3f}" for k, v in s.items() if k != "total") + ")")
    return "\n".join(lines) + "\n"


__all__ = ["accumulator_bytes", "harvest_dry_run", "render_harvest", "store_bytes"]
