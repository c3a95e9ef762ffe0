"""Tied sites (`linear2 { tied_to = linear1 }`): one set of weights read by two sites, the
second through a transpose, updated as the torch reference updates views of one storage."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdc.decomp.components import Factors
from pdc.lower.ties import merge_updates, tie, transposed

from test_step import TMS, program_of, run_tms

UNTIED = TMS.replace("linear2 { C = 20 tied_to = linear1 }", "linear2 { C = 20 }")


def _factors(seed: int, d_in: int, d_out: int, C: int) -> Factors:
    kv, ku = jax.random.split(jax.random.PRNGKey(seed))
    return Factors(jax.random.normal(kv, (1, d_in, C)), jax.random.normal(ku, (1, C, d_out)))


def test_transposed_factors_compose_to_the_transposed_matrix() -> None:
    f = _factors(0, 5, 2, 3)
    t = transposed(f)
    np.testing.assert_allclose(t.V[0] @ t.U[0], (f.V[0] @ f.U[0]).T, rtol=1e-6)


def test_merge_adds_both_sites_updates_to_the_shared_weights() -> None:
    """Hand-computed: source S and tied T = Sᵀ moved by a and b land on S + a + bᵀ."""
    source = _factors(1, 5, 2, 3)
    old = tie({"linear1": source, "linear2": _factors(9, 2, 5, 3)}, {"linear2": "linear1"})
    a, b = _factors(2, 5, 2, 3), _factors(3, 2, 5, 3)
    new = {"linear1": Factors(old["linear1"].V + a.V, old["linear1"].U + a.U),
           "linear2": Factors(old["linear2"].V + b.V, old["linear2"].U + b.U)}
    merged = merge_updates(old, new, {"linear2": "linear1"})
    np.testing.assert_allclose(merged["linear1"].V, source.V + a.V + np.swapaxes(b.U, -1, -2), rtol=1e-6)
    np.testing.assert_allclose(merged["linear1"].U, source.U + a.U + np.swapaxes(b.V, -1, -2), rtol=1e-6)
    assert jax.tree.all(jax.tree.map(np.array_equal, merged["linear2"], transposed(merged["linear1"])))


def test_merge_is_the_identity_without_ties() -> None:
    old = {"linear1": _factors(1, 5, 2, 3)}
    new = {"linear1": _factors(2, 5, 2, 3)}
    assert merge_updates(old, new, {}) is new


def test_a_tied_site_stays_the_transpose_of_its_source_through_warmup_and_steps() -> None:
    components, _ = run_tms(TMS, 3)
    assert program_of(TMS).ties == {"linear2": "linear1"}
    expected = transposed(Factors(jnp.asarray(components["linear1"].V), jnp.asarray(components["linear1"].U)))
    np.testing.assert_array_equal(components["linear2"].V, np.asarray(expected.V))
    np.testing.assert_array_equal(components["linear2"].U, np.asarray(expected.U))


def test_tying_changes_the_trajectory() -> None:
    tied, _ = run_tms(TMS, 2)
    untied, _ = run_tms(UNTIED, 2)
    assert program_of(UNTIED).ties == {}
    assert not np.allclose(tied["linear1"].V, untied["linear1"].V)


def test_a_tied_step_applies_each_sites_adam_update_to_the_shared_weights() -> None:
    """The reference's semantics: two AdamW states, one per site, both stepping the shared
    storage. With equal gradients from both sites the shared weights move twice as far as
    one site's Adam update alone (the first Adam step is lr·sign(g) per entry)."""
    opt = optax.adam(0.1)
    shared = _factors(4, 5, 2, 3)
    old = tie({"linear1": shared, "linear2": shared}, {"linear2": "linear1"})
    grads = tie({"linear1": _factors(5, 5, 2, 3), "linear2": shared}, {"linear2": "linear1"})
    updates, _ = opt.update(grads, opt.init(old), old)
    merged = merge_updates(old, optax.apply_updates(old, updates), {"linear2": "linear1"})
    np.testing.assert_allclose(merged["linear1"].V - shared.V, -0.2 * np.sign(grads["linear1"].V), rtol=1e-4)
