"""The output divergence over token chunks (`remat.divergence_chunk`): the KL and the
next-token CE of `hidden @ head` computed a few positions at a time equal those of the whole
logits, values and gradients, and a tiny_llama step and eval batch with them equal the step
and eval batch without."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.decomp.losses import chunked_kl_divergence, chunked_next_token_ce, kl_divergence
from pdc.decomp.metrics import next_token_ce
from pdc.lower.eval_options import eval_options
from pdc.lower.state import init_state
from pdc.lower.step import make_step_gradients
from pdc.run.evaluate import make_eval_batch

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


@pytest.mark.parametrize("chunk", [1, 5, 10, 64])
def test_chunked_next_token_ce_equals_the_whole_logits_ce_values_and_gradients(chunk: int) -> None:
    rng = np.random.default_rng(1)
    hidden = jnp.asarray(rng.normal(size=(3, 10, 8)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(8, 50)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, 50, (3, 10)), jnp.int32)
    whole = lambda h: next_token_ce(h @ head, tokens)  # noqa: E731
    chunked = lambda h: chunked_next_token_ce(h, head, tokens, chunk)  # noqa: E731
    np.testing.assert_allclose(float(chunked(hidden)), float(whole(hidden)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(chunked)(hidden)), np.asarray(jax.grad(whole)(hidden)),
                               rtol=1e-5, atol=1e-7)


def test_a_tiny_llama_eval_batch_with_chunks_equals_the_eval_without() -> None:
    """ce_kl and pgd_recon read hidden states through the chunked forms: same metrics."""
    chunked = program_of(SMALL.replace("ci = off }", "ci = off divergence_chunk = 4 }"))
    whole = program_of(SMALL.replace("ci = off }", "ci = off divergence_chunk = 0 }"))
    params = whole.target.init_params(jax.random.PRNGKey(1))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    out = []
    for program in (chunked, whole):
        options = eval_options(program.ir)
        assert {"ce_kl", "pgd_recon"} <= set(options.metrics)
        state = jax.jit(lambda program=program: init_state(program))()
        out.append(jax.jit(make_eval_batch(program, options))(state, params, batch, jax.random.PRNGKey(2)))
    a, b = out
    np.testing.assert_allclose(float(a["pgd_recon"]), float(b["pgd_recon"]), rtol=1e-5)
    assert set(a["ce_kl"]) == set(b["ce_kl"]) and len(b["ce_kl"]) == 16
    for name, value in b["ce_kl"].items():  # CE differences and their ratios cancel digits of fp32 CEs ≈ 5.5
        rtol = 2e-4 if name.startswith("ce_unrecovered") else 1e-5
        np.testing.assert_allclose(float(a["ce_kl"][name]), float(value), rtol=rtol, atol=2e-6, err_msg=name)


def test_a_tied_head_reads_the_embedding_as_stored() -> None:
    """`Head(embed, vocab_major=True)` contracts the embedding's hidden axis in place: its
    logits and their gradients equal those of `hidden @ embed.T`, and the chunked KL of a
    tied head equals the one through the transposed matrix (issue 33: no transposed copy)."""
    from pdc.decomp.head import Head

    rng = np.random.default_rng(2)
    hidden = jnp.asarray(rng.normal(size=(3, 10, 8)), jnp.float32)
    clean = jnp.asarray(rng.normal(size=(3, 10, 8)), jnp.float32)
    embed = jnp.asarray(rng.normal(size=(50, 8)), jnp.float32)
    tied = Head(embed, vocab_major=True)
    np.testing.assert_allclose(np.asarray(tied.logits(hidden)), np.asarray(hidden @ embed.T), rtol=1e-6, atol=1e-6)
    assert tied.vocab == 50 and Head(embed.T, vocab_major=False).vocab == 50
    np.testing.assert_allclose(np.asarray(jax.grad(lambda h: tied.logits(h).sum())(hidden)),
                               np.asarray(jax.grad(lambda h: (h @ embed.T).sum())(hidden)), rtol=1e-6)
    via_head = lambda m: chunked_kl_divergence(clean, m, tied, 4)  # noqa: E731
    via_matrix = lambda m: chunked_kl_divergence(clean, m, embed.T, 4)  # noqa: E731
    np.testing.assert_allclose(float(via_head(hidden)), float(via_matrix(hidden)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(via_head)(hidden)), np.asarray(jax.grad(via_matrix)(hidden)),
                               rtol=1e-5, atol=1e-7)
