"""The LM's unembedding as it is stored, for the logits `hidden @ head`.

An untied `lm_head` is stored `[hidden, vocab]`; a tied head is the embedding itself,
`[vocab, hidden]`. Taking `embed.T` as the head made XLA keep transposed (and, per use
and per dtype, further) `[hidden, vocab]` copies of the largest matrix of a small model
alive through the step (issue 33: five 108 MiB copies in a 135M model's dry-run). `Head`
keeps the matrix as stored and contracts its hidden axis in place (`dot_general`), so the
forward, the chunked divergences and their backward all read the one stored buffer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


@jax.tree_util.register_pytree_node_class
class Head:
    """`matrix` `[hidden, vocab]`, or `[vocab, hidden]` when `vocab_major` (a tied embedding)."""

    def __init__(self, matrix: Array, vocab_major: bool) -> None:
        self.matrix = matrix
        self.vocab_major = vocab_major

    def logits(self, hidden: Array, preferred_element_type: Any = jnp.float32) -> Array:
        """`hidden [..., d] @ head` → `[..., vocab]`, contracting the matrix's hidden axis as
        stored; the same products and sums as `hidden @ matrix(.T)`."""
        axis = 1 if self.vocab_major else 0
        return jax.lax.dot_general(hidden, self.matrix, (((hidden.ndim - 1,), (axis,)), ((), ())),
                                   preferred_element_type=preferred_element_type)

    def astype(self, dtype: Any) -> Head:
        return Head(self.matrix.astype(dtype), self.vocab_major)

    @property
    def vocab(self) -> int:
        return int(self.matrix.shape[0 if self.vocab_major else 1])

    def tree_flatten(self) -> tuple[tuple[Array], bool]:
        return (self.matrix,), self.vocab_major

    @classmethod
    def tree_unflatten(cls, vocab_major: bool, children: tuple[Array]) -> Head:
        return cls(children[0], vocab_major)


def logits(hidden: Array, head: Array | Head) -> Array:
    """fp32 logits of `hidden` through `head`: a `Head`, or a plain `[hidden, vocab]` matrix."""
    if isinstance(head, Head):
        return head.logits(hidden)
    return jnp.dot(hidden, head, preferred_element_type=jnp.float32)
