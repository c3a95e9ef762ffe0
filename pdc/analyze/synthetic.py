"""A synthetic harvest store: plausible random tables of any size, written with `write_store`.

For what needs a store's shape but not a real run's numbers: the `view` benchmark (the store
`llama8b_l18` would make: 3 sites × 24,576 components, 32 top + 32 random examples each with a
33-token window) and the viewer's fast tests. Densities are log-normal, CI windows peak at the
example position and fade around it, PMI and neighbour rows point at real components, so every
page has something to show. Deterministic in `seed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pdc.analyze.store import write_store

EDGES = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def _lists(values: np.ndarray, width: int, kind: pa.DataType) -> pa.ListArray:
    """`values` (rows × width, flat) as a list column without a Python loop."""
    offsets = pa.array(np.arange(0, values.size + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), type=kind))


def synthetic_tables(sites: list[str], C: int, *, top_k: int = 32, reservoir_k: int = 32, context: int = 16,
                     vocab: int = 256, tokens: int = 1_000_000, pmi_k: int = 8, neighbor_k: int = 8,
                     seed: int = 0) -> dict[str, Any]:
    """The five tables (pyarrow, in the store's schemas' column order) for `sites` of `C` components."""
    rng = np.random.default_rng(seed)
    n = len(sites) * C
    site_names = np.repeat(np.array(sites, dtype=object), C)
    comp = np.tile(np.arange(C, dtype=np.int32), len(sites))
    density = np.clip(rng.lognormal(-6.0, 1.5, n), 0, 1)
    density[rng.random(n) < 0.05] = 0.0  # a few dead components
    firing = np.round(density * tokens).astype(np.int64)
    components = {
        "site": site_names, "component": comp, "tokens": np.full(n, tokens, np.int64), "firing": firing,
        "density": firing / tokens, "mean_ci": firing / tokens * rng.uniform(0.3, 0.9, n),
        "mean_abs_act": rng.gamma(2.0, 0.05, n) * (firing > 0), "alive": firing > 0,
        "v_norm": rng.uniform(0.2, 2.0, n).astype(np.float32), "u_norm": rng.uniform(0.2, 2.0, n).astype(np.float32),
    }
    per = top_k + reservoir_k
    width = 2 * context + 1
    rows = n * per
    kinds = np.tile(np.array(["top"] * top_k + ["random"] * reservoir_k, dtype=object), n)
    rank = np.tile(np.concatenate([np.arange(top_k), np.arange(reservoir_k)]).astype(np.int32), n)
    position = rng.integers(context, tokens - context, rows, dtype=np.int64)
    window_tokens = rng.integers(0, vocab, (rows, width), dtype=np.int32)
    peak = rng.uniform(0.2, 1.0, rows).astype(np.float32)
    fade = np.exp(-np.abs(np.arange(width) - context) / 1.5).astype(np.float32)
    ci = (peak[:, None] * fade[None, :] * (rng.random((rows, width)) < 0.5)).astype(np.float32)
    ci[:, context] = peak
    act = (ci * rng.normal(1.0, 0.3, (rows, width))).astype(np.float32)
    examples = {
        "site": np.repeat(site_names, per), "component": np.repeat(comp, per), "kind": kinds, "rank": rank,
        "position": position, "center": np.full(rows, context, np.int32),
        "tokens": _lists(window_tokens, width, pa.int32()), "ci": _lists(ci, width, pa.float32()),
        "act": _lists(act, width, pa.float32()),
    }
    side_rows = 4 * pmi_k  # input/output × top/bottom
    pmi = {
        "site": np.repeat(site_names, side_rows), "component": np.repeat(comp, side_rows),
        "direction": np.tile(np.repeat(np.array(["input", "output"], dtype=object), 2 * pmi_k), n),
        "side": np.tile(np.repeat(np.array(["top", "bottom", "top", "bottom"], dtype=object), pmi_k), n),
        "rank": np.tile(np.arange(pmi_k, dtype=np.int32), 4 * n),
        "token": rng.integers(0, vocab, n * side_rows, dtype=np.int32),
        "count": rng.gamma(2.0, 10.0, n * side_rows), "pmi": rng.normal(0.0, 2.0, n * side_rows),
    }
    other = rng.integers(0, n, n * neighbor_k)
    neighbors = {
        "site": np.repeat(site_names, neighbor_k), "component": np.repeat(comp, neighbor_k),
        "rank": np.tile(np.arange(neighbor_k, dtype=np.int32), n),
        "other_site": site_names[other], "other_component": comp[other],
        "together": rng.integers(0, 1000, n * neighbor_k, dtype=np.int64),
        "score": np.sort(rng.uniform(0, 1, (n, neighbor_k)), axis=1)[:, ::-1].ravel(),
    }
    bins = len(EDGES) - 1
    counts = np.sort(rng.integers(0, 1000, (n, bins)), axis=1)[:, ::-1].astype(np.int64)
    histograms = {"site": site_names, "component": comp, "counts": _lists(counts, bins, pa.int64())}
    return {"components": components, "examples": examples, "token_pmi": pmi, "neighbors": neighbors,
            "histograms": histograms}


def synthetic_store(directory: str | Path, sites: list[str] | None = None, C: int = 64, *, top_k: int = 32,
                    reservoir_k: int = 32, context: int = 16, vocab: int = 256, tokens: int = 1_000_000,
                    seed: int = 0, tokenizer: dict[str, Any] | None = None) -> Path:
    """Write a synthetic store to `directory` (replacing one there); its manifest says `synthetic`."""
    sites = sites or ["layers.1.mlp.gate_proj", "layers.1.mlp.up_proj", "layers.1.mlp.down_proj"]
    tables = synthetic_tables(sites, C, top_k=top_k, reservoir_k=reservoir_k, context=context, vocab=vocab,
                              tokens=tokens, seed=seed)
    manifest = {
        "synthetic": True, "pdc_version": "synthetic", "run": None, "spec": "synthetic", "step": 0,
        "decomposition_hash": None, "runtime_hash": None, "token_file": None, "token_sha256": None,
        "seq_len": 2 * context + 1, "windows": [0, 0], "positions": [0, tokens], "tokens": tokens,
        "threshold": 0.0, "top_k": top_k, "reservoir_k": reservoir_k, "context": context,
        "histogram_edges": EDGES, "pmi_k": 8, "neighbor_k": 8, "neighbor_score": "jaccard",
        "sites": [{"name": s, "C": C} for s in sites], "tokenizer": tokenizer or {"kind": "bytes"},
    }
    return write_store(directory, tables, manifest)


__all__ = ["synthetic_store", "synthetic_tables", "EDGES"]
