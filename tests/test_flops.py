"""The matmul FLOP counts (`pdc.inspect.flops`) against counts written out by hand. On a
traced step: a dot, a batched dot, a scan's body times its length, a cond's costliest branch,
and a backward pass (two matmuls per forward matmul). On the compiled, optimized module (the
dry-run's count): a scan of matmuls, a nested loop, a matmul XLA deletes as dead code, cuDNN
attention and cuBLAS custom calls, a loop of unknown trip count."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pdc.inspect.flops import ATTENTION_BACKWARD_FACTOR, hlo_flops, jaxpr_flops


def flops(f, *args) -> float:
    return jaxpr_flops(jax.make_jaxpr(f)(*args))


def test_dot_and_batched_dot() -> None:
    a, b = jnp.ones((4, 5)), jnp.ones((5, 6))
    assert flops(jnp.dot, a, b) == 2 * 4 * 5 * 6
    x, y = jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6))
    assert flops(lambda x, y: jnp.einsum("bij,bjk->bik", x, y), x, y) == 2 * 3 * 4 * 5 * 6


def test_scan_cond_jit_and_backward() -> None:
    a, b = jnp.ones((3, 4, 5)), jnp.ones((5, 6))
    one = 2 * 4 * 5 * 6

    def f(a, b):
        return jnp.sum(jnp.tanh(jax.lax.scan(lambda c, x: (c, jax.jit(jnp.dot)(x, b)), 0.0, a)[1]))

    assert flops(f, a, b) == 3 * one
    assert flops(jax.grad(f, argnums=(0, 1)), a, b) == 3 * 3 * one  # forward, ∂a, ∂b
    assert flops(jax.grad(jax.checkpoint(f), argnums=(0, 1)), a, b) == 4 * 3 * one  # + the forward recomputed for tanh'
    cond = lambda p, x: jax.lax.cond(p, lambda x: x @ b @ b.T, lambda x: x, x)  # noqa: E731
    assert flops(cond, True, a[0]) == one + 2 * 4 * 6 * 5


# ---- counted on the compiled, optimized module (`hlo_flops`, the dry-run's count) ---------------


def compiled_flops(f, *args) -> float:
    return hlo_flops(jax.jit(f).lower(*args).compile().as_text()).flops


def test_a_scan_of_matmuls_counts_its_body_times_its_trip_count() -> None:
    a, b = jnp.ones((7, 4, 5)), jnp.ones((5, 6))
    one = 2 * 4 * 5 * 6

    def f(a, b):
        return jax.lax.scan(lambda c, x: (c + jnp.sum(jnp.tanh(x @ b)), None), 0.0, a)[0]

    assert compiled_flops(f, a, b) == 7 * one
    # the backward: per iteration ∂a (4×6 · 6×5) and ∂b (5×4 · 4×6), and the forward (tanh' reads x @ b)
    assert compiled_flops(jax.grad(f, argnums=(0, 1)), a, b) == 3 * 7 * one


def test_a_nested_loop_multiplies_the_trip_counts() -> None:
    a, b = jnp.ones((3, 5, 4, 8)), jnp.ones((8, 8))

    def f(a, b):
        def outer(c, x):
            inner = jax.lax.scan(lambda c2, y: (c2 + jnp.sum(jnp.sin(y @ b @ b)), None), 0.0, x)[0]
            return c + inner, None
        return jax.lax.scan(outer, 0.0, a)[0]

    assert compiled_flops(f, a, b) == 3 * 5 * 2 * (2 * 4 * 8 * 8)
    assert jaxpr_flops(jax.make_jaxpr(f)(a, b)) == 3 * 5 * 2 * (2 * 4 * 8 * 8)  # the traced count agrees here


def test_a_matmul_xla_deletes_as_dead_code_is_not_counted() -> None:
    """What the traced count cannot see: a value computed and never used (a warm-up ascent's
    KL value, of which only the gradient is read)."""
    a, b, c = jnp.ones((16, 32)), jnp.ones((32, 64)), jnp.ones((32, 128))

    def f(a, b, c):
        _unused = jnp.tanh(a @ c)  # noqa: F841 — dead
        return jnp.sin(a @ b)

    assert jaxpr_flops(jax.make_jaxpr(f)(a, b, c)) == 2 * 16 * 32 * 64 + 2 * 16 * 32 * 128
    assert compiled_flops(f, a, b, c) == 2 * 16 * 32 * 64


def test_a_value_whose_gradient_alone_is_read_counts_only_the_backward_it_needs() -> None:
    x, w1, w2 = jnp.ones((8, 16)), jnp.ones((16, 32)), jnp.ones((32, 4))

    def loss(w1):
        return jnp.sum(jnp.tanh(x @ w1) @ w2)

    # forward x@w1 (2·8·16·32) and the cotangent through w2 (2·8·4·32), then ∂w1 (2·16·8·32); the
    # forward's tanh(...) @ w2 is dead: only its gradient is returned
    assert compiled_flops(jax.grad(loss), w1) == 2 * 8 * 16 * 32 + 2 * 8 * 4 * 32 + 2 * 16 * 8 * 32


CUSTOM_CALLS = """HloModule m, entry_computation_layout={()->()}

%body (p: (s32[], bf16[4,2048,32,128])) -> (s32[], bf16[4,2048,32,128]) {
  %p = (s32[], bf16[4,2048,32,128]{3,2,1,0}) parameter(0)
  %q = bf16[4,2048,32,128]{3,2,1,0} get-tuple-element(%p), index=1
  %k = bf16[4,2048,8,128]{3,2,1,0} parameter(1)
  %v = bf16[4,2048,8,128]{3,2,1,0} parameter(2)
  %fwd = (bf16[4,32,2048,128]{3,1,2,0}, u8[0]{0}) custom-call(%q, %k, %v), custom_call_target="__cudnn$fmhaSoftmax", backend_config={"cudnn_fmha_backend_config": {"bmm1_dot_dimension_numbers": {"lhs_contracting_dimensions": ["3"], "rhs_contracting_dimensions": ["3"], "lhs_batch_dimensions": ["0", "2"], "rhs_batch_dimensions": ["0", "2"]}}}
  %bwd = (bf16[4,32,2048,128]{3,1,2,0}, bf16[4,8,2048,128]{3,1,2,0}, bf16[4,8,2048,128]{3,1,2,0}, u8[0]{0}) custom-call(%q, %k, %v, %q, %q), custom_call_target="__cudnn$fmhaSoftmaxBackward", backend_config={"cudnn_fmha_backend_config": {"bmm2_grad_gemm2_dot_dimension_numbers": {"lhs_contracting_dimensions": ["3"], "rhs_contracting_dimensions": ["3"], "lhs_batch_dimensions": ["0", "2"], "rhs_batch_dimensions": ["0", "2"]}}}
  %x = bf16[8192,4096]{1,0} parameter(3)
  %w = bf16[4096,14336]{1,0} parameter(4)
  %gemm = (bf16[8192,14336]{1,0}, s8[1024]{0}) custom-call(%x, %w), custom_call_target="__cublas$gemm", backend_config={"gemm_backend_config":{"alpha_real":1,"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["0"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}
  ROOT %t = (s32[], bf16[4,2048,32,128]{3,2,1,0}) tuple(%p, %q)
}

%cond (p: (s32[], bf16[4,2048,32,128])) -> pred[] {
  %p = (s32[], bf16[4,2048,32,128]{3,2,1,0}) parameter(0)
  ROOT %c = pred[] constant(true)
}

ENTRY %main () -> () {
  %init = (s32[], bf16[4,2048,32,128]{3,2,1,0}) parameter(0)
  %loop = (s32[], bf16[4,2048,32,128]{3,2,1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"14"}}
  ROOT %r = () tuple()
}
"""


def test_cudnn_attention_counts_dense_and_cublas_gemms_by_their_dot_dimensions() -> None:
    counted = hlo_flops(CUSTOM_CALLS)
    attention = 4 * 4 * 32 * 2048 * 2048 * 128  # 4 · B · H · S² · D, GQA's 8 K/V heads serving 32 query heads
    gemm = 2 * 8192 * 4096 * 14336
    assert counted.flops == 14 * (attention * (1 + ATTENTION_BACKWARD_FACTOR) + gemm)
    assert (counted.attention_forward_calls, counted.attention_backward_calls) == (14, 14)
    assert counted.unknown_trip_counts == []


def test_a_loop_without_a_known_trip_count_is_counted_once_and_reported() -> None:
    counted = hlo_flops(CUSTOM_CALLS.replace(', backend_config={"known_trip_count":{"n":"14"}}', ""))
    assert counted.flops == 4 * 4 * 32 * 2048 * 2048 * 128 * (1 + ATTENTION_BACKWARD_FACTOR) + 2 * 8192 * 4096 * 14336
    assert counted.unknown_trip_counts == ["loop"]
