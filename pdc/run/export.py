"""`pdc export`: a run's decomposition as one safetensors file, for tools that should not
need orbax, JAX or pdc to read it (docs/run.md lists the names).

    model.<site path>.components.V   (d_in, C)   fp32, one tensor per decomposed site
    model.<site path>.components.U   (C, d_out)  fp32
    ci.<param path>                  the CI network's trained parameters and buffers, as stored

The train state stacks V/U per site kind; the export unstacks them so every site is
addressed by the path the spec's `decompose` block names, in canonical site order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors.numpy import save_file

from pdc.lower.program import Program
from pdc.lower.state import TrainState
from pdc.run.distributed import global_value
from pdc.run.evaluate import site_paths
from pdc.run.rundir import RunDir


def site_factors(program: Program, state: TrainState) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """site path → (V (d_in, C), U (C, d_out)) as fp32 host arrays, in canonical site order."""
    out: dict[str, tuple[int, str, int]] = {}
    for kind, paths in site_paths(program.ir).items():
        for i, path in enumerate(paths):
            out[path] = (program.layout[kind][i], kind, i)
    ordered = sorted(out.items(), key=lambda item: item[1][0])
    host = global_value(state.components)  # sharded over C, possibly across processes
    return {path: (np.asarray(host[kind].V[i], np.float32), np.asarray(host[kind].U[i], np.float32))
            for path, (_, kind, i) in ordered}


def key_path(path: tuple[Any, ...]) -> str:
    """A pytree key path as dotted text (`linear1.w0`); nnx's `.value` leaf wrapper is dropped."""
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, jax.tree_util.GetAttrKey) and entry.name != "value":
            parts.append(entry.name)
    return ".".join(parts)


def ci_tensors(state: TrainState) -> dict[str, np.ndarray]:
    """`<param path>` → array for the CI network's parameters and its buffers."""
    out = {}
    for tree in (state.ci, state.ci_buffers):
        for path, leaf in jax.tree_util.tree_flatten_with_path(global_value(tree))[0]:
            out[key_path(path)] = np.asarray(leaf)
    return out


def export_tensors(program: Program, state: TrainState) -> dict[str, np.ndarray]:
    """Every tensor of the export, under its documented name."""
    tensors: dict[str, np.ndarray] = {}
    for path, (V, U) in site_factors(program, state).items():
        tensors[f"model.{path}.components.V"] = np.ascontiguousarray(V)
        tensors[f"model.{path}.components.U"] = np.ascontiguousarray(U)
    tensors.update({f"ci.{name}": np.ascontiguousarray(a) for name, a in ci_tensors(state).items()})
    return tensors


def write_export(run: RunDir, program: Program, state: TrainState) -> Path:
    """RUN/export/model_<step>.safetensors, written to a temporary name and renamed, so a
    reader never sees half a file. The metadata names the spec, the step and its hash."""
    step = int(state.step)
    run.export.mkdir(parents=True, exist_ok=True)
    target = run.export / f"model_{step}.safetensors"
    partial = target.with_suffix(".partial")
    metadata = {"format": "pdc.export/1", "spec": program.ir.spec.name, "step": str(step),
                "decomposition_hash": str(program.ir.facts["decomposition_hash"]),
                "ci": program.ci_variant, "sites": ",".join(site_factors(program, state))}
    save_file(export_tensors(program, state), str(partial), metadata=metadata)
    partial.replace(target)
    return target


__all__ = ["ci_tensors", "export_tensors", "site_factors", "write_export"]
