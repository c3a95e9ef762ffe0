"""Attention through `jax.nn.dot_product_attention` (pdc.decomp.attention): XLA's on the
CPU equals the explicit softmax form — causal GQA for the Llama target, bidirectional for
the CI transformers — against a float64 NumPy reference, values and gradients; an f32 step
keeps XLA's attention even when the compile asks for cuDNN (which takes bf16/f16 only)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.decomp.attention import attend, attention_implementation, for_platform


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """Float64 softmax attention; query head n reads key/value head n // (N / K)."""
    B, T, N, H = q.shape
    K = k.shape[2]
    k = np.repeat(k, N // K, axis=2)
    v = np.repeat(v, N // K, axis=2)
    scores = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(H)
    if causal:
        scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bnts,bsnh->btnh", probs, v)


def _inputs(dtype: jnp.dtype, kv_heads: int) -> tuple[jax.Array, ...]:
    rng = np.random.default_rng(0)
    shapes = ((2, 16, 4, 8), (2, 16, kv_heads, 8), (2, 16, kv_heads, 8))
    return tuple(jnp.asarray(rng.normal(size=s), dtype) for s in shapes)


@pytest.mark.parametrize("causal,kv_heads", [(True, 2), (False, 4)], ids=["llama-causal-gqa", "ci-bidirectional"])
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 2e-2)], ids=["f32", "bf16"])
def test_attention_equals_the_explicit_form(causal: bool, kv_heads: int, dtype: jnp.dtype, tol: float) -> None:
    q, k, v = _inputs(dtype, kv_heads)
    out = attend(q, k, v, causal=causal)
    assert out.dtype == dtype
    expected = reference(*(np.asarray(a, np.float64) for a in (q, k, v)), causal)
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, atol=tol, rtol=0)


def test_attention_gradients_equal_the_explicit_forms() -> None:
    q, k, v = _inputs(jnp.float32, 2)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(2, 16, 4, 8)), jnp.float32)

    def explicit(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        k2, v2 = jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2)
        scores = jnp.einsum("btnh,bsnh->bnts", q, k2) / math.sqrt(8)
        scores = jnp.where(jnp.tril(jnp.ones((16, 16), bool)), scores, -jnp.inf)
        return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(scores, axis=-1), v2)

    ours = jax.grad(lambda *a: jnp.sum(attend(*a, causal=True) * w), argnums=(0, 1, 2))(q, k, v)
    theirs = jax.grad(lambda *a: jnp.sum(explicit(*a) * w), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=0)


def test_an_f32_step_keeps_xla_attention_under_a_cudnn_compile() -> None:
    q, k, v = _inputs(jnp.float32, 2)
    with attention_implementation("cudnn"):
        out = attend(q, k, v, causal=True)  # cuDNN takes bf16/f16 only: XLA's, and it runs on the CPU
    np.testing.assert_array_equal(np.asarray(out), np.asarray(attend(q, k, v, causal=True)))
    assert (for_platform("gpu"), for_platform("cuda"), for_platform("cpu")) == ("cudnn", "cudnn", "xla")
