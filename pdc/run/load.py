"""`pdc.load_run`: a finished (or running) run as Python objects, for notebooks and for
`pdc eval` / `pdc export`.

The state is restored exactly as `pdc train` restores it on resume (same reference state,
same shardings), and the frozen target is reloaded from the weights the spec names, so
what a notebook sees is what training saw.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from pdc.ir.graph import IR
from pdc.lower.program import Program, lower_program
from pdc.lower.sharding import batch_sharding, make_mesh, state_shardings
from pdc.lower.state import TrainState, abstract_state
from pdc.lower.step import site_ci
from pdc.run.checkpoints import restore_step
from pdc.run.distributed import global_value
from pdc.run.evaluate import Evaluator, site_paths
from pdc.run.export import ci_tensors, site_factors, write_export
from pdc.run.rundir import RunDir, RunError, run_ir
from pdc.run.train import Trainer
from pdc.syntax.checked import Spec


@dataclass
class Run:
    """One checkpoint of a run: its spec and IR, the lowered program, the train state at
    `step` and the frozen target parameters."""

    path: Path
    ir: IR
    program: Program
    step: int
    state: TrainState
    params: Any
    trainer: Trainer
    _ci_fn: Any = field(default=None, repr=False)

    @property
    def spec(self) -> Spec:
        return self.ir.spec

    @property
    def sites(self) -> list[str]:
        """Decomposed site paths in canonical order."""
        return [p for paths in site_paths(self.ir).values() for p in paths]

    def components(self, site: str) -> tuple[np.ndarray, np.ndarray]:
        """(V (d_in, C), U (C, d_out)) of one site as fp32 NumPy arrays."""
        factors = site_factors(self.program, self.state)
        if site not in factors:
            raise KeyError(f"`{site}` is not a decomposed site; sites: {', '.join(factors)}")
        return factors[site]

    def all_components(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return site_factors(self.program, self.state)

    def weights(self, site: str) -> np.ndarray:
        """The frozen target matrix W (d_in, d_out) the site's V @ U approximates."""
        for kind, paths in site_paths(self.ir).items():
            if site in paths:
                return np.asarray(global_value(self.program.target.weights(self.params)[kind][paths.index(site)]))
        raise KeyError(f"`{site}` is not a decomposed site")

    def ci_params(self) -> dict[str, np.ndarray]:
        """The CI network's parameters and buffers by dotted path (as exported, without `ci.`)."""
        return ci_tensors(self.state)

    def ci(self, tokens: Any) -> dict[str, np.ndarray]:
        """Site name → lower-leaky CI `[batch, seq, C]` (fp32 NumPy) of the token ids `tokens`
        `[batch, seq]` (LMs; toys: the input batch `[batch, features]` → `[batch, C]`): the
        clean forward and the CI network of this checkpoint, as the train step computes them.
        The site names are the harvest store's. Jitted once per input shape."""
        if self._ci_fn is None:
            self._ci_fn = jax.jit(functools.partial(site_ci, self.program))
        dtype = jnp.int32 if self.program.shape.has_positions else jnp.float32
        lower = global_value(self._ci_fn(self.state, self.params, self._placed(jnp.asarray(tokens, dtype))))
        return {path: np.asarray(lower[kind][i], np.float32)
                for kind, paths in site_paths(self.ir).items() for i, path in enumerate(paths)}

    def _placed(self, batch: jax.Array) -> jax.Array:
        """The batch split over the mesh as the train step's is (when its rows divide): the
        partitioned CI network then sums in the step's order, so these are bit for bit the
        numbers the step and the harvest compute on the same rows."""
        sharding = batch_sharding(self.ir, self.trainer.mesh)
        try:
            return jax.device_put(batch, sharding) if sharding.shard_shape(batch.shape) else batch
        except ValueError:  # rows the batch axes do not divide: unsharded (equal up to summation order)
            return batch

    def evaluate(self) -> dict[str, Any]:
        """The eval record of this step (the metrics of the spec's `eval` block)."""
        evaluator = Evaluator.build(self.program, self.trainer.tokens(),
                                    self.trainer.place_batch)
        return evaluator.run(self.state, self.params, self.step)

    def export(self) -> Path:
        """Write RUN/export/model_<step>.safetensors and return its path."""
        return write_export(self.trainer.run, self.program, self.state)


def checkpoint_steps(path: Path) -> list[int]:
    return sorted(ocp.CheckpointManager(RunDir(path).ckpts.resolve()).all_steps())


def load_run(path: str | Path, step: int | None = None) -> Run:
    """The run in `path` at checkpoint `step` (default: the latest)."""
    path = Path(path)
    ir = run_ir(path)
    return load_ir_run(path, ir, step)


def load_ir_run(path: Path, ir: IR, step: int | None = None) -> Run:
    program = lower_program(ir)
    trainer = Trainer(ir, RunDir(path), program, make_mesh(ir))
    chosen = _chosen_steps(path, None if step is None else [step])[0]
    state = _restore(trainer, program, chosen)
    return Run(path, ir, program, chosen, state, trainer.params(), trainer)


def _chosen_steps(path: Path, steps: Sequence[int] | None, every: bool = False) -> list[int]:
    """`steps` checked against the run's checkpoints; None: the latest (`every`: all of them)."""
    available = checkpoint_steps(path)
    if not available:
        raise RunError(f"{path} has no checkpoints")
    if steps is None:
        return available if every else available[-1:]
    for step in steps:
        if step not in available:
            raise RunError(f"{path} has no checkpoint at step {step}; it has {', '.join(map(str, available))}")
    return list(steps)


def _restore(trainer: Trainer, program: Program, step: int) -> TrainState:
    abstract, upgrade = trainer.restore_target(state_shardings(trainer.ir, trainer.mesh, abstract_state(program)))
    return restore_step(trainer.manager(), step, abstract, upgrade)


def evaluate_checkpoints(path: Path, ir: IR, steps: Sequence[int] | None = None,
                         every: bool = False) -> list[dict[str, Any]]:
    """The eval record of each checkpoint in `steps` (None: the latest; `every`: all), in order:
    one program, target and eval function for all, and the same eval data for each (the
    passes' fixed batches), so the rows differ only by the trained state."""
    program = lower_program(ir)
    trainer = Trainer(ir, RunDir(path), program, make_mesh(ir))
    chosen = _chosen_steps(path, None if every else steps, every)
    params = trainer.params()
    evaluator = Evaluator.build(program, trainer.tokens(), trainer.place_batch)
    return [evaluator.run(_restore(trainer, program, step), params, step) for step in chosen]


__all__ = ["Run", "load_run", "load_ir_run", "checkpoint_steps", "evaluate_checkpoints"]
