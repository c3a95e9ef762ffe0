"""`pdc plot`: every figure a short TMS and ResidMLP run supports is written, is a real PNG
and shows something (not a blank canvas); an LM run gets its curves from the logs alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from pdc.cli import main
from pdc.targets.resid_mlp.plot import layer_contributions, plot_neurons
from pdc.run.train import train

from conftest import REPO, shrunk_toy_spec
from test_run_outputs import ir_of, write_spec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CURVES = {"losses.png", "ci_l0.png", "eval.png"}
STEPS = 8

# The bundled toy specs, shrunk to seconds: tiny batches, a short warmup, every cadence hit.
TMS = shrunk_toy_spec("tms_5-2", batch=256, warmup=2, checkpoint=5, keep=2, eval_every=4)
RESID_MLP = shrunk_toy_spec("resid_mlp1", batch=64, warmup=2, checkpoint=4, keep=1, eval_every=2)


def assert_picture(path: Path, min_colors: int = 16) -> None:
    """A valid PNG of a sensible size with more on it than a background and some text."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert height >= 200 and width >= 200, f"{path.name} is {width}x{height}"
    assert float(pixels[..., :3].std()) > 0.02, f"{path.name} is (nearly) blank"
    colors = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) >= min_colors, f"{path.name} has only {len(colors)} colours"


def short_run(directory: Path, text: str, steps: int) -> Path:
    train(ir_of(write_spec(directory, text)), directory / "run", max_steps=steps)
    return directory / "run"


def test_plot_tms_writes_every_figure(tmp_path: Path) -> None:
    run = short_run(tmp_path, TMS, STEPS)
    assert main(["plot", str(run)]) == 0
    written = {p.name for p in (run / "plots").glob("*.png")}
    assert written == CURVES | {"ci_one_hot.png", "tms_weights.png", "tms_cosines.png"}
    for name in written:
        assert_picture(run / "plots" / name)
    assert main(["plot", str(run), "--step", "6"]) == 2  # no checkpoint at step 6


@pytest.mark.slow  # a second model to compile; the figure's code is covered below without one
def test_plot_resid_mlp_at_a_step_into_another_directory(tmp_path: Path) -> None:
    run = short_run(tmp_path, RESID_MLP, 4)
    out = tmp_path / "pictures"
    assert main(["plot", str(run), "--step", "4", "--out", str(out)]) == 0
    written = {p.name for p in out.glob("*.png")}
    assert written == CURVES | {"ci_one_hot.png", "resid_mlp_neurons.png"}
    assert not (run / "plots").exists()
    for name in written:
        assert_picture(out / name)


def test_plot_lm_run_draws_curves_from_the_logs_without_a_checkpoint(tmp_path: Path) -> None:
    """An LM run is plotted from metrics.jsonl / eval.jsonl only: no checkpoint is opened
    (there is none here), and a torn last line (a killed writer) is skipped."""
    spec = REPO / "specs" / "tiny_llama.pd"
    run = tmp_path / "lm"
    run.mkdir()
    (run / "spec.pd").write_text(spec.read_text())
    (run / "run.json").write_text(json.dumps({"spec": "tiny_llama", "spec_path": str(spec)}))
    sites = [f"layers.{i}.mlp.{k}" for i in (1, 2) for k in ("gate_proj", "up_proj", "down_proj")]
    rng = np.random.default_rng(0)
    metrics = [{"step": s, "loss/faithfulness": 1e-3 / s, "loss/stochastic_recon": 0.5 / s ** 0.5,
                "loss/total": 1.0 / s ** 0.5, "lr/components": 1e-3, "lr/ci": 1e-3,
                **{f"alive/{site}": float(max(40, 384 - s // 5)) for site in sites},
                **{f"ci_l0/{site}": float(128 / (1 + s / 200) + rng.normal()) for site in sites}}
               for s in range(50, 2001, 50)]
    evals = []
    for s in range(500, 2001, 500):
        l0 = {f"eval/l0/0_{site}": float(128 / (1 + s / 300) + rng.normal()) for site in sites}
        evals.append({"step": s, **l0, "eval/l0/0_total": sum(l0.values()), "eval/ce_kl/kl_ci_masked": 1.0 / s,
                      "eval/pgd_recon": 0.3})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics) + '{"step": 20')
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    assert main(["plot", str(run)]) == 0
    assert {p.name for p in (run / "plots").glob("*.png")} == CURVES
    for name in CURVES:
        assert_picture(run / "plots" / name)


class ResidRun:
    """The slice of `pdc.Run` the ResidMLP figure reads, for a 1-layer toy with F features,
    d_embed E and M neurons; `factors` replaces the trained V/U per site."""

    def __init__(self, path: Path, F: int = 12, E: int = 16, M: int = 6) -> None:
        rng = np.random.default_rng(0)
        W_E = rng.normal(size=(F, E)).astype(np.float32)
        self.W = {"layers.0.mlp_in": rng.normal(size=(E, M)).astype(np.float32),
                  "layers.0.mlp_out": rng.normal(size=(M, E)).astype(np.float32)}
        self.params = {"W_E": W_E, "W_U": W_E.T, "layers": {"mlp_out": self.W["layers.0.mlp_out"][None]}}
        self.sites, self.path, self.step = list(self.W), path, 7
        self.factors = {site: (rng.normal(size=(w.shape[0], F)).astype(np.float32),
                               rng.normal(size=(F, w.shape[1])).astype(np.float32)) for site, w in self.W.items()}

    def weights(self, site: str) -> np.ndarray:
        return self.W[site]

    def components(self, site: str) -> tuple[np.ndarray, np.ndarray]:
        return self.factors[site]


def test_neuron_contributions_of_all_components_sum_to_the_target(tmp_path: Path) -> None:
    """With one component per neuron (V_in = W_in, U_in = I; V_out @ U_out = W_out), component
    n touches only neuron n and the components' contributions add up to the target's."""
    run = ResidRun(tmp_path)
    M = run.W["layers.0.mlp_in"].shape[1]
    run.factors = {"layers.0.mlp_in": (run.W["layers.0.mlp_in"], np.eye(M, dtype=np.float32)),
                   "layers.0.mlp_out": (np.eye(M, dtype=np.float32), run.W["layers.0.mlp_out"])}
    total = 0.0
    for n in range(M):
        ci = np.zeros((12, M))
        ci[:, n] = 1.0
        target, decomposed, chosen = layer_contributions(run, 0, ci)  # type: ignore[arg-type]
        assert (chosen == n).all() and np.allclose(np.delete(decomposed, n, axis=1), 0.0)
        total = total + decomposed
    np.testing.assert_allclose(total, target, rtol=1e-5, atol=1e-5)


def test_plot_neurons_draws_a_picture(tmp_path: Path) -> None:
    run = ResidRun(tmp_path)
    ci = np.random.default_rng(1).uniform(size=(12, 12))
    path = plot_neurons(run, {"layers.0.mlp_in": ci}, tmp_path / "plots")  # type: ignore[arg-type]
    assert path is not None and path.name == "resid_mlp_neurons.png"
    assert_picture(path)
