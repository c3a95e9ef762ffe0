"""The train state (SPD_ALGORITHM.md §12.1) and its initialisation.

Everything that defines the trajectory lives here — V/U, the CI network, both optimizer
states, the persistent adversaries and their moments, the step — so a checkpoint of
this pytree resumes a run exactly. RNG keys are not stored: they are derived from
(seed, step) (`pdc.decomp.rng`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pdc.decomp import losses, rng
from pdc.decomp.ci import Buffer, abstract_ci, init_ci
from pdc.decomp.components import Factors, init_factors
from pdc.lower.program import Program, optimizer
from pdc.lower.ties import tie

Array = jax.Array


UNTRACKED = -1  # a `since_fired` entry of a checkpoint from before the tracker: not known


class TrainState(NamedTuple):
    step: Array  # int32 scalar: the next step to run
    components: dict[str, Factors]  # kind → Factors(V [L, d_in, C], U [L, C, d_out])
    ci: nnx.State  # the CI network's trained parameters
    ci_buffers: nnx.State  # its non-trained buffers (RoPE inv_freq)
    opt_components: Any
    opt_ci: Any
    adversaries: dict[str, losses.PpgdState]  # persistent term name → sources and moments
    since_fired: dict[str, Array]  # kind → int32 [L, C]: training batches since each component fired


@functools.cache
def ci_graph(program: Program) -> nnx.GraphDef:
    graphdef, _ = abstract_ci(program.ci_variant, program.ci_options, program.ci_sites,
                              resid_width=_resid_width(program), param_dtype=program.params_dtype,
                              compute_dtype=program.compute_dtype)
    return graphdef


def _resid_width(program: Program) -> int | None:
    return program.shape.dims.get("hidden") if program.shape.has_positions else None


def lead_shape(program: Program) -> tuple[int, ...]:
    """Leading dims of one batch: (B,) for toys, (B, T) for LMs."""
    data = program.ir.options("data")
    return (int(data.batch), int(data.seq_len)) if program.shape.has_positions else (int(data.batch),)


def _components(program: Program, init: Array) -> dict[str, Factors]:
    out = {}
    for index, (kind, sites) in enumerate(program.layout.items()):
        site = next(s for s in program.ci_sites if s.kind == kind)
        d_out = next(s.d_out for s in program.target.sites if s.kind == kind)
        keys = jax.random.split(rng.component_key(init, index), len(sites))
        factors = jax.vmap(lambda k, d_in=site.d_in, C=site.C, d_out=d_out: init_factors(k, d_in, d_out, C))(keys)
        out[kind] = Factors(factors.V.astype(program.params_dtype), factors.U.astype(program.params_dtype))
    return out


def _adversaries(program: Program, sources_key: Array) -> dict[str, losses.PpgdState]:
    plan = program.term("persistent_pgd")
    if plan is None:
        return {}
    lead = lead_shape(program)
    shapes = {kind: (len(sites),) + lead + (_c_of(program, kind),)
              for kind, sites in program.layout.items()}
    dtype = jnp.bfloat16 if plan.options.source_dtype == "bf16" else jnp.float32  # type: ignore[attr-defined]
    return {"persistent_pgd": losses.ppgd_init(rng.source_key(sources_key, "persistent_pgd"), shapes,
                                               plan.options.scope, dtype)}  # type: ignore[attr-defined]


def init_state(program: Program) -> TrainState:
    """The state at step 0 (before the faithfulness warmup), a pure function of the seed:
    run it under `jax.jit` (with `out_shardings`) so no host ever holds a full tensor."""
    init, sources, _, _ = rng.root_keys(program.seed)
    components = tie(_components(program, init), program.ties)
    _, ci_state = init_ci(rng.ci_key(init), program.ci_variant, program.ci_options, program.ci_sites,
                          resid_width=_resid_width(program), param_dtype=program.params_dtype,
                          compute_dtype=program.compute_dtype)
    ci, buffers = nnx.split_state(ci_state, nnx.Param, Buffer)
    return TrainState(jnp.zeros((), jnp.int32), components, ci, buffers,
                      optimizer(program.ir, "components", program.total_steps).init(components),
                      optimizer(program.ir, "ci", program.total_steps).init(ci),
                      _adversaries(program, sources), fresh_tracker(program))


def fresh_tracker(program: Program) -> dict[str, Array]:
    """The alive tracker of a run that has not trained yet: every component "just fired",
    as the reference's tracker starts (so nothing is dead before a window has passed)."""
    return {kind: jnp.zeros((len(sites), _c_of(program, kind)), jnp.int32) for kind, sites in program.layout.items()}


def _c_of(program: Program, kind: str) -> int:
    """C of a site kind (every site of a kind has the same C)."""
    return next(s.C for s in program.ci_sites if s.kind == kind)


def before_tracker(abstract: TrainState) -> tuple[dict[str, Any], Callable[[dict[str, Any]], TrainState]]:
    """The state layout checkpoints had before the alive tracker joined it, and how to
    complete one, so an older run resumes and evaluates: its tracker reads `UNTRACKED`
    (placed as `abstract` shards it), which eval reports as unknown and the first step
    turns into a fresh start, as at step 0."""
    old = {name: leaf for name, leaf in abstract._asdict().items() if name != "since_fired"}

    def convert(restored: dict[str, Any]) -> TrainState:
        def untracked(a: jax.ShapeDtypeStruct) -> Array:
            return jax.device_put(jnp.full(a.shape, UNTRACKED, a.dtype), a.sharding)

        return TrainState(**restored, since_fired=jax.tree.map(untracked, abstract.since_fired))

    return old, convert


def abstract_state(program: Program) -> TrainState:
    """The state as `ShapeDtypeStruct`s, allocating nothing (for shardings and the dry-run)."""
    return jax.eval_shape(lambda: init_state(program))


def merged_ci(state: TrainState, ci: nnx.State | None = None) -> nnx.State:
    """Trained parameters and buffers as one state for `apply_ci`."""
    return nnx.merge_state(state.ci if ci is None else ci, state.ci_buffers)


__all__ = ["UNTRACKED", "TrainState", "abstract_state", "before_tracker", "ci_graph", "fresh_tracker", "init_state",
           "lead_shape", "merged_ci", "optax"]
