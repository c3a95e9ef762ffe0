"""The step's arguments as abstract values — shapes, dtypes and shardings — built once
for both `pdc compile` (which compiles on them) and `pdc train` (which places its live
state, frozen weights and batches on them), so the dry-run checks the program training
runs: the frozen target in `target.dtype`, state leaves in their own dtypes, the batch as
the data block shapes it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

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


def memory_total(compiled: Any) -> int:
    """Bytes per device of a compiled executable: arguments + outputs − aliased + temp."""
    stats = compiled.memory_analysis()
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
               + stats.temp_size_in_bytes)


def choose_ascents(program: Program, as_loss: Callable[[], Program], compile_step: Callable[[Program], Any],
                   compiled: Any = None, budget: int | None = None) -> tuple[Program, Any, dict[str, Any] | None]:
    """The adversaries' ascents run unrematerialised (`lower_program`) unless that costs
    memory the step does not have: with a choice to make (`Program.ascent_choice`), compile
    the step both ways; keep no recomputation when it fits `budget` (bytes per device), else,
    or without a budget, the smaller peak (ties go to no recomputation). Returns (program, its
    compiled step, what was compared — None without a choice). `compiled`: the program's own,
    when already compiled. The dry-run and `pdc train` both choose here, so they run the same
    step.

    Why the budget and not the peak alone: the ascents' activations (what their source
    gradient needs of 14 frozen layers) exceed the rematerialised loss forwards' peak on
    llama8b_l18_reference at remat on (35.1 against 29.8 GiB per H100 at 4 sequences per
    device), while recomputing them costs 124 TFLOP a step (1084 → 1208), more than the whole
    step's margin on the hand-written trainer's compute (issue 32)."""
    compiled = compile_step(program) if compiled is None else compiled
    if not program.ascent_choice:
        return program, compiled, None
    other = as_loss()
    other_compiled = compile_step(other)
    totals = {"off": memory_total(compiled), "as_loss_forwards": memory_total(other_compiled)}
    fits = budget is not None and totals["off"] <= budget
    remat = not fits and totals["as_loss_forwards"] < totals["off"]
    choice = {"chosen": "as_loss_forwards" if remat else "off", "total_bytes": totals, "budget_bytes": budget}
    return (other, other_compiled, choice) if remat else (program, compiled, choice)


def _placed(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


__all__ = ["StepInputs", "abstract_params", "choose_ascents", "jitted_step", "lower_step", "memory_total",
           "shardings_of", "step_inputs"]
