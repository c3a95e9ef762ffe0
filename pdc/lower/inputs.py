"""The step's arguments as abstract values — shapes, dtypes and shardings — built once
for both `pdc compile` (which compiles on them) and `pdc train` (which places its live
state, frozen weights and batches on them), so the dry-run checks the program training
runs: the frozen target in `target.dtype`, state leaves in their own dtypes, the batch as
the data block shapes it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pdc.decomp.attention import attention_implementation, for_platform
from pdc.lower.program import Program
from pdc.lower.sharding import batch_sharding, params_shardings, pins_for, state_shardings
from pdc.lower.state import TrainState, abstract_state, lead_shape
from pdc.lower.step import make_train_step


class StepInputs(NamedTuple):
    """`ShapeDtypeStruct`s (with shardings) of the step's three arguments."""

    state: TrainState
    params: Any
    batch: jax.ShapeDtypeStruct | None  # token ids of one global batch; None for toys (drawn on device)


def abstract_params(program: Program) -> Any:
    """The frozen target's weights as the loader hands them to training: `init_params`'
    shapes, in `target.dtype` where the family has one."""
    params = jax.eval_shape(program.target.init_params, jax.random.PRNGKey(0))
    if program.target_dtype is None:
        return params
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, program.target_dtype), params)


def step_inputs(program: Program, mesh: jax.sharding.Mesh) -> StepInputs:
    """The abstract arguments of the step on `mesh`."""
    ir = program.ir
    state = abstract_state(program)
    params = abstract_params(program)
    batch = None
    if program.shape.has_positions:
        batch = jax.ShapeDtypeStruct(lead_shape(program), jnp.int32, sharding=batch_sharding(ir, mesh))
    return StepInputs(_placed(state, state_shardings(ir, mesh, state)),
                      _placed(params, params_shardings(ir, mesh, params)), batch)


def shardings_of(tree: Any) -> Any:
    return jax.tree.map(lambda a: a.sharding, tree)


def jitted_step(program: Program, mesh: jax.sharding.Mesh, inputs: StepInputs) -> Any:
    """The one jitted train step with explicit in/out shardings; the state is donated."""
    s_state = shardings_of(inputs.state)
    s_batch = None if inputs.batch is None else inputs.batch.sharding
    return jax.jit(make_train_step(program, pins_for(program.ir, mesh)),
                   in_shardings=(s_state, shardings_of(inputs.params), s_batch), out_shardings=(s_state, None),
                   donate_argnums=(0,))


def lower_step(program: Program, mesh: jax.sharding.Mesh, inputs: StepInputs, args: tuple[Any, ...],
               platform: str) -> Any:
    """The step lowered on `args` (live arrays or `inputs` themselves) for `platform`: the
    models' attention is traced as that platform runs it (cuDNN's fused attention on GPUs)."""
    with attention_implementation(for_platform(platform)):
        return jitted_step(program, mesh, inputs).lower(*args)


def _placed(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


__all__ = ["StepInputs", "abstract_params", "jitted_step", "lower_step", "shardings_of", "step_inputs"]
