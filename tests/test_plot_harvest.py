"""`pdc plot RUN --harvest DIR`: the LM figures from a harvest store (no checkpoint, no JAX).
The store here is written by `write_store` from known arrays, so what the figure reads can
be checked against them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pdc.analyze.store import load_harvest, write_store
from pdc.cli import main
from pdc.plot.harvest import plot_harvest, site_arrays

EDGES = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def known_store(directory: Path, sites: dict[str, int], seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """A store whose components and histograms come from seeded arrays (examples, PMI and
    neighbours empty: the figure does not read them); returns those arrays per site."""
    rng = np.random.default_rng(seed)
    truth, comp, hist = {}, {k: [] for k in ("site", "component", "tokens", "firing", "density", "mean_ci",
                                             "mean_abs_act", "alive", "v_norm", "u_norm")}, {"site": [], "component": [], "counts": []}
    for site, c in sites.items():
        firing = rng.integers(0, 50, c) * (rng.random(c) < 0.7)
        counts = rng.integers(0, 1000, (c, len(EDGES) - 1))
        mean_ci = rng.random(c) * 0.1
        truth[site] = {"density": firing / 1000, "mean_ci": mean_ci, "histogram": counts.sum(0)}
        comp["site"] += [site] * c
        comp["component"] += list(range(c))
        comp["tokens"] += [1000] * c
        comp["firing"] += firing.tolist()
        comp["density"] += (firing / 1000).tolist()
        comp["mean_ci"] += mean_ci.tolist()
        comp["mean_abs_act"] += rng.random(c).tolist()
        comp["alive"] += (firing > 0).tolist()
        comp["v_norm"] += [1.0] * c
        comp["u_norm"] += [1.0] * c
        hist["site"] += [site] * c
        hist["component"] += list(range(c))
        hist["counts"] += counts.tolist()
    empty = {
        "examples": {k: [] for k in ("site", "component", "kind", "rank", "position", "center", "tokens", "ci", "act")},
        "token_pmi": {k: [] for k in ("site", "component", "direction", "side", "rank", "token", "count", "pmi")},
        "neighbors": {k: [] for k in ("site", "component", "rank", "other_site", "other_component", "together", "score")},
    }
    manifest = {"sites": [{"name": s, "C": c} for s, c in sites.items()], "histogram_edges": EDGES, "step": 20,
                "tokens": 1000, "threshold": 0.0}
    write_store(directory, {"components": comp, "histograms": hist, **empty}, manifest)
    return truth


def test_the_figure_reads_each_sites_columns_in_component_order(tmp_path: Path) -> None:
    truth = known_store(tmp_path / "h", {"layers.1.mlp.up_proj": 64, "layers.2.mlp.down_proj": 32})
    harvest = load_harvest(tmp_path / "h")
    for site, expected in truth.items():
        got = site_arrays(harvest, site)
        np.testing.assert_array_equal(got["histogram"], expected["histogram"])
        np.testing.assert_allclose(got["density"], expected["density"])
        np.testing.assert_allclose(got["mean_ci"], expected["mean_ci"])
    path = plot_harvest(tmp_path / "h", tmp_path / "plots", "tiny")
    assert path.name == "harvest.png" and path.stat().st_size > 10_000


def test_pdc_plot_harvest_writes_the_figure_and_rejects_a_non_store(tmp_path: Path, capsys, monkeypatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    spec = Path(__file__).resolve().parents[1] / "specs" / "tiny_llama.pd"
    (run / "spec.pd").write_text(spec.read_text())
    (run / "run.json").write_text(json.dumps({"spec": "tiny_llama", "spec_path": str(spec)}))
    known_store(tmp_path / "h", {"layers.1.mlp.up_proj": 16})
    monkeypatch.setattr(sys, "argv", ["pdc"])
    assert main(["plot", str(run), "--harvest", str(tmp_path / "h")]) == 0
    assert (run / "plots" / "harvest.png").is_file()
    assert main(["plot", str(run), "--harvest", str(tmp_path / "nothing")]) != 0
    assert "error[PD0801]" in capsys.readouterr().err
