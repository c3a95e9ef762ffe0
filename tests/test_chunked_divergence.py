"""The output divergence over token chunks (`remat.divergence_chunk`): the KL and the
next-token CE of `hidden @ head` computed a few positions at a time equal those of the whole
logits, values and gradients, and a tiny_llama step and eval batch with them equal the step
and eval batch without."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.decomp.head import Head
from pdc.decomp.losses import (chunked_kl_divergence, chunked_next_token_ce, clean_side, kl_divergence,
                               shared_clean_kl)
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


@pytest.mark.parametrize("chunk", [7, 64])  # 7: a ragged last chunk; 64 > T: one chunk
@pytest.mark.parametrize("vocab_major", [False, True])  # an untied head [d, vocab], a tied embedding [vocab, d]
def test_the_clean_side_computed_once_gives_todays_kl_values_and_gradients(chunk: int, vocab_major: bool) -> None:
    """The step's KLs share one `clean_side` (Σ p·log p and head · p per position) instead of
    recomputing the clean logits in every KL: the same values and gradients as
    `chunked_kl_divergence`, and the clean side and head get no gradient."""
    rng = np.random.default_rng(2)
    clean, masked = (jnp.asarray(rng.normal(size=(3, 10, 8)), jnp.float32) for _ in range(2))
    matrix = jnp.asarray(rng.normal(size=(50, 8) if vocab_major else (8, 50)), jnp.float32)
    head = Head(matrix, vocab_major)
    side = clean_side(clean, head, chunk)
    today = lambda m: chunked_kl_divergence(clean, m, head, chunk)  # noqa: E731
    shared = lambda m: shared_clean_kl(side, m, head, chunk)  # noqa: E731
    np.testing.assert_allclose(float(shared(masked)), float(today(masked)), rtol=1e-6)
    value, grad = jax.value_and_grad(shared)(masked)
    np.testing.assert_allclose(float(value), float(today(masked)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(jax.grad(today)(masked)), rtol=1e-5, atol=1e-7)
    assert float(shared(clean)) == pytest.approx(0.0, abs=1e-6)  # KL(p ‖ p)
    through = jax.grad(lambda c, w: shared_clean_kl(clean_side(c, Head(w, vocab_major), chunk), masked,
                                                    Head(w, vocab_major), chunk), argnums=(0, 1))(clean, matrix)
    assert all(not np.any(np.asarray(g)) for g in through)


def test_the_lm_head_runs_once_per_masked_kl_and_once_for_the_clean_side_forward_and_backward() -> None:
    """Two masked forwards' KLs against one clean side, differentiated (compiled, counted on
    the optimized module): the clean side's logits and head · p once, and per masked KL its
    logits and their input gradient — 6 head-sized matmuls, against 10 when each KL computed
    the clean logits and, in its backward, both logits again."""
    from pdc.inspect.flops import hlo_flops

    B, T, d, V, chunk = 2, 12, 16, 1000, 4
    rng = np.random.default_rng(3)
    clean, m1, m2 = (jnp.asarray(rng.normal(size=(B, T, d)), jnp.float32) for _ in range(3))
    head = Head(jnp.asarray(rng.normal(size=(d, V)), jnp.float32), False)
    one_pass = 2.0 * B * T * d * V

    def shared(c, a, b):
        side = clean_side(c, head, chunk)
        return shared_clean_kl(side, a, head, chunk) + shared_clean_kl(side, b, head, chunk)

    def today(c, a, b):
        return chunked_kl_divergence(c, a, head, chunk) + chunked_kl_divergence(c, b, head, chunk)

    def flops(loss):
        step = jax.value_and_grad(loss, argnums=(1, 2))  # the value is read too, as the step logs it
        return hlo_flops(jax.jit(step).lower(clean, m1, m2).compile().as_text()).flops

    assert flops(shared) == 6 * one_pass
    assert flops(today) == 10 * one_pass


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


@pytest.mark.slow  # the step's test beside it covers the chunked KL in the default run
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
