"""Attention for the Llama target and every CI transformer, through
`jax.nn.dot_product_attention`: cuDNN's fused flash attention when the step is compiled for
a GPU (the [T, T] scores never materialise), XLA's own on the CPU.

Which one is a property of the compile, not of the spec: the lowering traces the step under
`attention_implementation(...)` — the dry-run for its target device, `pdc train` for the
backend it runs on — and the models read it here. cuDNN takes bf16/f16 only; an f32 step
keeps XLA's attention on every platform.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Literal

import jax
import jax.numpy as jnp

Implementation = Literal["xla", "cudnn"]
_IMPLEMENTATION: contextvars.ContextVar[Implementation] = contextvars.ContextVar("pdc_attention", default="xla")
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


@contextlib.contextmanager
def attention_implementation(name: Implementation) -> Iterator[None]:
    """Trace the models' attention with `name` inside the block."""
    token = _IMPLEMENTATION.set(name)
    try:
        yield
    finally:
        _IMPLEMENTATION.reset(token)


def for_platform(platform: str) -> Implementation:
    """cuDNN on GPUs, XLA elsewhere."""
    return "cudnn" if platform in ("gpu", "cuda") else "xla"


def attend(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool) -> jax.Array:
    """Softmax attention of q [B, T, N, H] over k, v [B, S, K, H] (N a multiple of K: query
    head n reads key/value head n // (N / K)), scaled by 1/√H; scores and softmax in fp32."""
    implementation = _IMPLEMENTATION.get()
    if implementation == "cudnn" and q.dtype not in _CUDNN_DTYPES:
        implementation = "xla"
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=implementation)


__all__ = ["Implementation", "attend", "attention_implementation", "for_platform"]
