"""The whole train step is one jitted function: it compiles once, runs without
retracing, and is a pure function of (seed, step) — the basis of resume and of
layout invariance."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.lower.program import lower_program
from pdc.lower.state import init_state
from pdc.lower.step import make_faithfulness_warmup, make_train_step
from pdc.models import load_params
from pdc.passes import run_passes
from pdc.syntax.load import check_text

from conftest import REPO, spec_text

TINY = (REPO / "specs" / "tiny_llama.pd").read_text()
TMS = spec_text("tms_5-2")


def program_of(text: str):
    result = check_text(text, str(REPO / "specs" / "x.pd"))
    assert result.ok and result.spec is not None
    ir = run_passes(result.spec)
    assert not ir.diagnostics
    return lower_program(ir)


def small_tiny() -> str:
    """tiny_llama with a small batch so the test stays quick; every term is kept."""
    return TINY.replace("seq_len = 128\n    batch = 16", "seq_len = 16\n    batch = 4")


def test_tiny_llama_step_with_ppgd_stochastic_and_layerwise_is_one_jit() -> None:
    program = program_of(small_tiny())
    assert {t.name for t in program.terms} >= {"persistent_pgd", "stochastic_recon", "stochastic_recon_layerwise"}
    params = program.target.init_params(jax.random.PRNGKey(1))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    step = jax.jit(make_train_step(program), donate_argnums=(0,))
    state = jax.jit(lambda: init_state(program))()
    losses = []
    for _ in range(3):
        state, metrics = step(state, params, batch)
        losses.append(float(metrics["loss/total"]))
    assert step._cache_size() == 1  # one trace and compile for every step
    assert int(state.step) == 3
    assert all(np.isfinite(losses))
    sources = state.adversaries["persistent_pgd"].sources
    assert all(float(s.min()) >= 0.0 and float(s.max()) <= 1.0 for s in sources.values())


def run_tms(text: str, steps: int) -> tuple[dict, dict]:
    program = program_of(text)
    params = load_params(program.target, REPO / "targets" / "tms_5-2_pentagon.safetensors")
    state = jax.jit(lambda: init_state(program))()
    state = state._replace(components=jax.jit(make_faithfulness_warmup(program))(state.components, params))
    step = jax.jit(make_train_step(program))
    for _ in range(steps):
        state, metrics = step(state, params, None)
    return jax.tree.map(np.asarray, state.components), {k: float(v) for k, v in metrics.items()}


def test_step_is_a_pure_function_of_seed_and_step() -> None:
    a, ma = run_tms(TMS, 3)
    b, mb = run_tms(TMS, 3)
    assert jax.tree.all(jax.tree.map(np.array_equal, a, b)) and ma == mb
    c, _ = run_tms(TMS.replace("steps = 10k seed = 0", "steps = 10k seed = 1"), 3)
    assert not np.array_equal(a["linear1"].V, c["linear1"].V)


def test_faithfulness_warmup_reduces_the_weight_delta() -> None:
    program = program_of(TMS)
    params = load_params(program.target, REPO / "targets" / "tms_5-2_pentagon.safetensors")
    state = jax.jit(lambda: init_state(program))()
    from pdc.terms.faithfulness import faithfulness

    weights = program.target.weights(params)
    before = float(faithfulness(weights, state.components))
    after = float(faithfulness(weights, jax.jit(make_faithfulness_warmup(program))(state.components, params)))
    assert after < 0.01 * before


def test_alive_metric_is_the_reference_tracker_on_the_step_batch() -> None:
    """With a one-batch window, `alive/<site>` after a step counts the components whose CI
    crossed `alive_threshold` somewhere on that step's batch, recomputed here from the
    same state; the tracker is 0 for those and 1 for the rest."""
    from pdc.lower.step import _ci, toy_batch

    program = program_of(TMS.replace("alive_window = 4096k", "alive_window = 4096"))  # = data.batch
    params = load_params(program.target, REPO / "targets" / "tms_5-2_pentagon.safetensors")
    state = jax.jit(lambda: init_state(program))()
    state = state._replace(components=jax.jit(make_faithfulness_warmup(program))(state.components, params))
    clean = program.target.clean(params, toy_batch(program, jnp.asarray(0)))
    lower = _ci(program, state.ci, state, clean, state.components).lower
    fired = {kind: np.asarray(ci > 0.1).any(axis=1)[0] for kind, ci in lower.items()}  # [C] per site (L = 1)
    new, metrics = jax.jit(make_train_step(program))(state, params, None)
    for kind in ("linear1", "linear2"):
        assert 0 < fired[kind].sum() < 20, kind  # the check below can tell the counts apart
        assert int(metrics[f"alive/{kind}"]) == int(fired[kind].sum())
        assert np.array_equal(np.asarray(new.since_fired[kind])[0], np.where(fired[kind], 0, 1))
