"""The output divergence over token chunks (`remat.divergence_chunk`): the KL of
`hidden @ head` computed a few positions at a time equals the KL of the whole logits, values
and gradients, and a tiny_llama step with it equals the step without it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.decomp.losses import chunked_kl_divergence, kl_divergence
from pdc.lower.state import init_state
from pdc.lower.step import make_step_gradients

from test_step import TINY, program_of

SMALL = TINY.replace("seq_len = 128\n    batch = 16", "seq_len = 16\n    batch = 4")


@pytest.mark.parametrize("chunk", [1, 4, 7, 10, 64])  # 7: a ragged last chunk; 64 > T: one chunk
def test_chunked_kl_equals_the_whole_logits_kl_values_and_gradients(chunk: int) -> None:
    rng = np.random.default_rng(0)
    clean, masked = (jnp.asarray(rng.normal(size=(3, 10, 8)), jnp.float32) for _ in range(2))
    head = jnp.asarray(rng.normal(size=(8, 50)), jnp.float32)
    whole = lambda m: kl_divergence(clean @ head, m @ head)  # noqa: E731
    chunked = lambda m: chunked_kl_divergence(clean, m, head, chunk)  # noqa: E731
    np.testing.assert_allclose(float(chunked(masked)), float(whole(masked)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(chunked)(masked)), np.asarray(jax.grad(whole)(masked)),
                               rtol=1e-5, atol=1e-7)


def test_a_tiny_llama_step_with_chunks_equals_the_step_without() -> None:
    chunked = program_of(SMALL.replace("ci = off }", "ci = off divergence_chunk = 4 }"))
    whole = program_of(SMALL.replace("ci = off }", "ci = off divergence_chunk = 0 }"))
    assert chunked.chunked_divergence and not whole.chunked_divergence
    params = whole.target.init_params(jax.random.PRNGKey(1))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    out = []
    for program in (chunked, whole):
        state = jax.jit(lambda program=program: init_state(program))()
        out.append(jax.jit(make_step_gradients(program))(state, params, batch))
    a, b = out
    np.testing.assert_allclose(float(a.total), float(b.total), rtol=1e-6)
    for name in b.values:
        np.testing.assert_allclose(float(a.values[name]), float(b.values[name]), rtol=1e-6, err_msg=name)
    for x, y in zip(jax.tree.leaves((a.components, a.ci, a.sources)), jax.tree.leaves((b.components, b.ci, b.sources))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=1e-6)
