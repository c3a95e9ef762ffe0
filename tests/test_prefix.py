"""Masked forwards start at the first decomposed layer: the frozen layers before it hold no
site and compute the same residual in every forward, so the clean pass's residual there is
the start of every masked forward. Same losses and gradients bit for bit as running every
forward from the tokens, and less work."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pdc.lower.state import init_state
from pdc.lower.step import make_step_gradients
from pdc.models.base import CleanPass, Residual

from test_step import TINY, program_of

# tiny_llama's MLPs of layers 2..3 (of 4): two frozen layers before the first site
MIDDLE = TINY.replace("seq_len = 128\n    batch = 16", "seq_len = 16\n    batch = 4").replace(
    "layers[1..2].mlp", "layers[2..3].mlp")


def _from_tokens(program):  # type: ignore[no-untyped-def]
    """The same program with every masked forward run from the tokens (as before the prefix)."""
    target = program.target

    class FromTokens:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(target, name)

        def clean(self, params, batch, **options) -> CleanPass:  # type: ignore[no-untyped-def]
            return dataclasses.replace(target.clean(params, batch, **options), start=None)

    return dataclasses.replace(program, target=FromTokens())


def _layers_run(jaxpr) -> int:  # type: ignore[no-untyped-def]
    """Scan iterations in a traced program, nested ones included: the layers it runs."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            total += eqn.params["length"] * max(1, _layers_run(eqn.params["jaxpr"].jaxpr))
        else:
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else (value,):
                    inner = getattr(sub, "jaxpr", None)
                    if inner is not None:
                        total += _layers_run(getattr(inner, "jaxpr", inner))
    return total


def _run(program, params, batch):  # type: ignore[no-untyped-def]
    gradients = make_step_gradients(program)
    state = jax.jit(lambda: init_state(program))()
    return jax.jit(gradients)(state, params, batch), _layers_run(jax.make_jaxpr(gradients)(state, params, batch).jaxpr)


def test_masked_forwards_from_the_prefix_equal_forwards_from_the_tokens_bit_for_bit() -> None:
    program = program_of(MIDDLE)
    assert program.target.first_decomposed == 2
    params = program.target.init_params(jax.random.PRNGKey(1))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    clean = program.target.clean(params, batch)
    assert isinstance(clean.start, Residual) and clean.start.x.shape == (4, 16, 64)
    prefixed, layers = _run(program, params, batch)
    tokens, layers_tokens = _run(_from_tokens(program), params, batch)
    assert float(prefixed.total) == float(tokens.total)
    for name in prefixed.values:
        assert float(prefixed.values[name]) == float(tokens.values[name]), name
    for a, b in zip(jax.tree.leaves((prefixed.components, prefixed.ci, prefixed.sources)),
                    jax.tree.leaves((tokens.components, tokens.ci, tokens.sources))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert layers < layers_tokens, (layers, layers_tokens)


def test_a_site_in_the_first_layer_starts_from_the_tokens() -> None:
    program = program_of(MIDDLE.replace("layers[2..3].mlp", "layers[0..1].mlp"))
    params = program.target.init_params(jax.random.PRNGKey(1))
    clean = program.target.clean(params, jnp.zeros((4, 16), jnp.int32))
    assert program.target.first_decomposed == 0 and clean.start is None
