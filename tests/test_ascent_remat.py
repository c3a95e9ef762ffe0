"""The adversaries' warm-up ascents run their masked forwards without rematerialisation
whatever `remat.recon_forwards` says for the loss forwards (their activations die with the
source gradient), unless the step then exceeds its memory budget (without one: raises its
peak): the same step on CPU, fewer matmul FLOPs, and the choice between the two made on memory."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.inspect.flops import hlo_flops
from pdc.lower.inputs import choose_ascents
from pdc.lower.program import lower_program
from pdc.lower.state import init_state
from pdc.lower.step import make_step_gradients

from test_step import program_of, small_tiny


def _compiled_gradients(program, params, batch):  # type: ignore[no-untyped-def]
    state = jax.jit(lambda: init_state(program))()
    compiled = jax.jit(make_step_gradients(program)).lower(state, params, batch).compile()
    return compiled(state, params, batch), hlo_flops(compiled.as_text()).flops


def test_ascents_without_remat_give_the_same_step_and_fewer_flops() -> None:
    unrematerialised = program_of(small_tiny())  # per_layer remat, persistent PGD with 2 warm-up ascents
    as_loss = lower_program(unrematerialised.ir, ascent_remat=True)
    assert unrematerialised.ascent_target is not None and unrematerialised.ascent_target.remat == "off"
    assert as_loss.ascent_target is None and unrematerialised.ascent_choice and as_loss.ascent_choice
    params = unrematerialised.target.init_params(jax.random.PRNGKey(1))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    (a, flops_a), (b, flops_b) = (_compiled_gradients(p, params, batch) for p in (unrematerialised, as_loss))
    assert float(a.total) == float(b.total)
    for name in b.values:
        assert float(a.values[name]) == float(b.values[name]), name
    warmed = [{name: (s.sources, s.count) for name, s in g.adversaries.items()} for g in (a, b)]
    for x, y in zip(jax.tree.leaves((a.components, a.ci, a.sources, warmed[0])),
                    jax.tree.leaves((b.components, b.ci, b.sources, warmed[1]))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the warmed sources' Adam moments: the ascents' source gradients, summed in another order
    # by XLA once their forward is not recomputed inside the backward, agree to float rounding
    moments = [{name: (s.m, s.v) for name, s in g.adversaries.items()} for g in (a, b)]
    for x, y in zip(jax.tree.leaves(moments[0]), jax.tree.leaves(moments[1])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-8)
    assert flops_a < flops_b, (flops_a, flops_b)  # each ascent's forward no longer runs twice


def test_no_choice_without_remat_or_without_ascents() -> None:
    off = program_of(small_tiny().replace("recon_forwards = per_layer", "recon_forwards = off"))
    assert off.ascent_target is None and not off.ascent_choice
    no_warmup = program_of(small_tiny().replace("warmup_ascents = 2", "warmup_ascents = 0"))
    assert not no_warmup.ascent_choice


def _compiled(total: int) -> SimpleNamespace:
    stats = SimpleNamespace(argument_size_in_bytes=total, output_size_in_bytes=0, alias_size_in_bytes=0,
                            temp_size_in_bytes=0)
    return SimpleNamespace(memory_analysis=lambda: stats)


def test_the_ascents_are_rematerialised_only_where_the_step_would_not_fit() -> None:
    program = SimpleNamespace(ascent_choice=True, name="off")
    other = SimpleNamespace(ascent_choice=True, name="as_loss")
    cases = ((30, 40, None, "off"), (40, 40, None, "off"), (41, 40, None, "as_loss_forwards"),  # no budget: the peak
             (41, 30, 50, "off"), (41, 30, 41, "off"), (42, 30, 41, "as_loss_forwards"), (60, 70, 50, "off"))
    for off, as_loss, budget, chosen in cases:
        totals = {"off": off, "as_loss": as_loss}
        picked, _, choice = choose_ascents(program, lambda: other, lambda p: _compiled(totals[p.name]), budget=budget)
        assert choice == {"chosen": chosen, "total_bytes": {"off": off, "as_loss_forwards": as_loss},
                          "budget_bytes": budget}
        assert picked is (program if chosen == "off" else other)
    none = SimpleNamespace(ascent_choice=False, name="off")
    assert choose_ascents(none, lambda: other, lambda p: _compiled(1))[2] is None


@pytest.mark.slow  # two tiny Llama steps compiled; the ascents test keeps this file in the default run
def test_the_ci_network_run_once_for_warm_up_and_losses_gives_the_same_step() -> None:
    """With `remat.ci = on` the step runs the CI network once (its pullback gives the CI and
    components gradients) instead of a detached forward for the warm-up and a live one for the
    losses: the same values and gradients, to float rounding, as the two-forward step of `ci = off`."""
    two = program_of(small_tiny())
    once = program_of(small_tiny().replace("recon_forwards = per_layer ci = off", "recon_forwards = per_layer ci = on"))
    assert once.remat_ci and not two.remat_ci
    params = two.target.init_params(jax.random.PRNGKey(1))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    (a, _), (b, _) = (_compiled_gradients(p, params, batch) for p in (once, two))
    np.testing.assert_allclose(float(a.total), float(b.total), rtol=1e-6)
    for name in b.values:
        np.testing.assert_allclose(float(a.values[name]), float(b.values[name]), rtol=1e-5, atol=1e-7, err_msg=name)
    for x, y in zip(jax.tree.leaves((a.components, a.ci, a.sources)), jax.tree.leaves((b.components, b.ci, b.sources))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=1e-6)
