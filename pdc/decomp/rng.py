"""Where every random number of a run comes from (SPD_ALGORITHM.md §5.12, adapted).

Every key is a pure function of (seed, what, step), never of device count, process
count or iteration order, so runs are layout-invariant and resumable: a resumed run
recomputes exactly the keys the uninterrupted run would have used.

    root = PRNGKey(seed); init, sources, run, data = split(root, 4)
    V/U of kind k        fold_in(fold_in(init, 0), k)       k = index of the kind in canonical site order
    CI network           fold_in(init, 1)
    sources of term t    fold_in(sources, t)                t = index of the term in the registry
    step s               fold_in(run, s)
    term t at step s     fold_in(step s, 1 + t)
    batch of step s      fold_in(data, s)
    eval batch j of pass fold_in(fold_in(data, EVAL_STREAM), pass * batches + j)
Terms are keyed by their registry index, not their position in the spec, so the order
of blocks inside `loss` does not matter (and `pdc fmt` may sort it).
"""

from __future__ import annotations

import jax

from pdc.registry.loss import TERMS

Array = jax.Array
EVAL_STREAM = 0x5EED
_TERM_INDEX = {term.name: i for i, term in enumerate(TERMS)}


def root_keys(seed: int) -> tuple[Array, Array, Array, Array]:
    init, sources, run, data = jax.random.split(jax.random.PRNGKey(seed), 4)
    return init, sources, run, data


def component_key(init: Array, kind_index: int) -> Array:
    return jax.random.fold_in(jax.random.fold_in(init, 0), kind_index)


def ci_key(init: Array) -> Array:
    return jax.random.fold_in(init, 1)


def term_index(name: str) -> int:
    return _TERM_INDEX[name]


def source_key(sources: Array, term: str) -> Array:
    return jax.random.fold_in(sources, term_index(term))


def step_key(run: Array, step: Array | int) -> Array:
    return jax.random.fold_in(run, step)


def term_key(step: Array, term: str) -> Array:
    return jax.random.fold_in(step, 1 + term_index(term))


def batch_key(data: Array, step: Array | int) -> Array:
    return jax.random.fold_in(data, step)


def eval_key(data: Array, eval_pass: int, batch: int, batches_per_pass: int) -> Array:
    return jax.random.fold_in(jax.random.fold_in(data, EVAL_STREAM), eval_pass * batches_per_pass + batch)
