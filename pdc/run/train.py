"""`pdc train`: run exactly the program the dry-run checked, and never lose work.

The loop: build the sharded state (under jit with `out_shardings`), run the faithfulness
warmup and save step 0 — or restore the latest checkpoint — then the jitted step until
`train.steps`, logging metrics, checkpointing every `checkpoint.every` steps and on
SIGTERM/SIGINT. The batch of step k is a pure function of (seed, k), so a resumed run
reproduces the uninterrupted one bit for bit. A non-finite loss stops the run, naming
the step and the term, without touching the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from pdc.ir.graph import IR
from pdc.lower.program import Program, lower_program
from pdc.lower.inputs import StepInputs, choose_ascents, lower_step, shardings_of, step_inputs
from pdc.lower.sharding import batch_sharding, make_mesh
from pdc.lower.state import TrainState, abstract_state, before_tracker, init_state, lead_shape
from pdc.lower.step import make_faithfulness_warmup
from pdc.models import load_params
from pdc.run import checkpoints
from pdc.run.data import TokenRows, open_tokens, python_stdlib_bytes
from pdc.run.evaluate import Evaluator
from pdc.run.distributed import host_value, is_primary
from pdc.run.rundir import RunDir, write_record
from pdc.run.progress import Progress
from pdc.run.sinks import Sinks
from pdc.syntax.overrides import Override


class TrainError(Exception):
    """A run that cannot start or continue; the message is one line for people."""


@dataclass
class Trainer:
    ir: IR
    run: RunDir
    program: Program
    mesh: Any
    stop_requested: bool = False
    overrides: tuple[Override, ...] = ()  # `--set`, recorded in run.json when the run starts
    _inputs: StepInputs | None = None

    # ---- setup -------------------------------------------------------------------------

    def params(self) -> Any:
        weights = self.ir.options_node("target").path("weights")
        if weights is not None:
            path = Path(weights)
        elif self.ir.options("target.pretrain") is not None:
            from pdc.run.pretrain import pretrained

            path = pretrained(self.ir)  # cached by the target's hash: pretrains only the first time
        else:
            raise TrainError("the target has neither `weights` nor a `pretrain` block")
        abstract = self.inputs().params
        host = load_params(self.program.target, path, self.program.target_dtype)
        return jax.tree.map(lambda a, s: jax.device_put(a, s.sharding), host, abstract)

    def inputs(self) -> StepInputs:
        """The step's abstract arguments: the same `step_inputs` the dry-run compiles on."""
        if self._inputs is None:
            self._inputs = step_inputs(self.program, self.mesh)
        return self._inputs

    def tokens(self) -> TokenRows | None:
        data = self.ir.options_node("data")
        if data.label == "tokens":
            return open_tokens(Path(data.path("path")), data.keys.format, int(data.keys.seq_len))
        if data.label == "corpus":
            return open_tokens(python_stdlib_bytes(self.run.path.parent / ".cache"), "npy", int(data.keys.seq_len))
        return None

    def batch(self, rows: TokenRows | None, step: int) -> jax.Array | None:
        if rows is None:
            return None
        return self.place_batch(rows.batch(self.program.seed, step, lead_shape(self.program)[0],
                                           jax.process_index(), jax.process_count()))

    # ---- checkpoints -------------------------------------------------------------------

    def manager(self) -> ocp.CheckpointManager:
        return checkpoints.open_manager(self.run.ckpts, int(self.ir.options("checkpoint").keep))

    def restore_target(self, shardings: Any) -> tuple[TrainState, checkpoints.Upgrade]:
        """What a checkpoint restores onto: the abstract state on this run's shardings (a
        new mesh reshards), and the upgrade of checkpoints saved before the alive tracker."""
        abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                abstract_state(self.program), shardings)
        return abstract, checkpoints.Upgrade(*before_tracker(abstract))

    def restore(self, manager: ocp.CheckpointManager, shardings: Any) -> TrainState | None:
        """The latest complete checkpoint, onto `restore_target`; an interrupted, partial or
        unreadable one is reported and skipped in favour of the one before
        (`pdc.run.checkpoints`)."""
        abstract, upgrade = self.restore_target(shardings)
        try:
            return checkpoints.restore_latest(manager, abstract, _step_of, is_primary(), upgrade)
        except checkpoints.NoCheckpoint as error:
            raise TrainError(str(error)) from None

    def check_hashes(self) -> None:
        record = self.run.read_record()
        if record is None:
            return
        if record["decomposition_hash"] != self.ir.facts["decomposition_hash"]:
            raise TrainError(f"{self.run.path} was trained with a different decomposition (hash "
                             f"{record['decomposition_hash']}, this spec {self.ir.facts['decomposition_hash']}); "
                             "use a new --out directory")
        if record["runtime_hash"] != self.ir.facts["runtime_hash"]:
            print("pdc train: warning: the runtime blocks changed since the run started (mesh, shard, remat or "
                  "precision); resuming with the new ones", file=sys.stderr)

    # ---- the loop ----------------------------------------------------------------------

    def start(self, manager: ocp.CheckpointManager, params: Any) -> TrainState:
        shardings = shardings_of(self.inputs().state)
        state = self.restore(manager, shardings)
        if state is not None:
            print(f"pdc train: resuming from step {_step_of(state)}", file=sys.stderr)
            if is_primary():
                self.run.forget_after(_step_of(state))
                self._record_if_missing()
            return state
        if is_primary():
            self.run.forget_after(0)  # records of a start whose checkpoints were all incomplete
            write_record(self.run, self.ir, self.ir.spec.path, self.overrides)
        state = jax.jit(lambda: init_state(self.program), out_shardings=shardings)()
        warm = jax.jit(make_faithfulness_warmup(self.program), out_shardings=shardings.components)
        state = state._replace(components=warm(state.components, params))
        self.save(manager, state)
        return state

    def _record_if_missing(self) -> None:
        """A resumed run whose run.json is gone cannot have its hashes checked; write this
        spec's, so the next resume is checked against them."""
        if self.run.read_record() is not None:
            return
        print(f"pdc train: warning: {self.run.path} has checkpoints but no run.json, so the decomposition "
              "hash cannot be checked; resuming with this spec and recording its hashes", file=sys.stderr)
        write_record(self.run, self.ir, self.ir.spec.path, self.overrides)

    def save(self, manager: ocp.CheckpointManager, state: TrainState) -> None:
        checkpoints.save(manager, _step_of(state), state)

    def compiled_step(self, state: TrainState, params: Any, batch: Any) -> Any:
        """The compiled step; the adversaries' ascents rematerialised only where not doing so
        would raise its peak — the dry-run's choice, made the same way (`choose_ascents`)."""
        def compile_step(program: Program) -> Any:
            return lower_step(program, self.mesh, self.inputs(), (state, params, batch),
                              jax.default_backend()).compile()

        budget = _device_bytes()
        if budget is None:  # a backend that states no memory limit (the CPU): nothing to choose against
            return compile_step(self.program)
        _, compiled, choice = choose_ascents(self.program, lambda: lower_program(self.ir, ascent_remat=True),
                                             compile_step, budget=budget)
        if choice is not None and choice["chosen"] != "off" and is_primary():
            print("pdc train: the adversary's ascents recompute their forwards as the loss forwards do "
                  "(without, the step would not fit the device)", file=sys.stderr)
        return compiled

    def loop(self, max_steps: int | None = None) -> TrainState:
        clock = RunClock()  # `elapsed_s` counts from here: this process's start of the run (or of this resume)
        manager = self.manager()
        params = self.params()
        rows = self.tokens()
        state = self.start(manager, params)
        total = self.program.total_steps if max_steps is None else min(self.program.total_steps, max_steps)
        every_log = int(self.ir.options("log").every)
        every_ckpt = int(self.ir.options("checkpoint").every)
        step = _step_of(state)
        step_fn = self.compiled_step(state, params, self.batch(rows, step))
        evaluator = self.evaluator(rows)
        primary = is_primary()
        tokens = math.prod(lead_shape(self.program)) if self.program.shape.has_positions else None
        progress = Progress(step, total, tokens, enabled=primary)
        with self.signals(), Sinks(self.run, self.ir, enabled=primary) as sinks, progress:
            while step < total and not self.stop_requested:
                state, metrics = step_fn(state, params, self.batch(rows, step))
                step += 1  # the host's count of state.step, so the loop never waits on the device for it
                done = step
                compiled = False
                if done % every_log == 0 or done == total:
                    record = {"step": done, **clock.stamp(), **{k: float(host_value(v)) for k, v in metrics.items()}}
                    _check_finite(record)
                    if primary:
                        _append(self.run.metrics, record)
                    sinks.write(record)
                if evaluator is not None and evaluator.due(done, total):
                    compiled = evaluator.fresh  # its first pass compiles the eval function
                    record = evaluator.run(state, params, done)
                    record = {"step": record.pop("step"), **clock.stamp(), **record}
                    if primary:
                        _append(self.run.evals, record)
                    sinks.write(record)
                if done % every_ckpt == 0 or done == total:
                    self.save(manager, state)
                progress.update(done, compiled)
            progress.close()  # before any message: a live bar would draw over it
            if self.stop_requested and manager.latest_step() != step:
                self.save(manager, state)
                print(f"pdc train: stopped by signal; saved step {step}", file=sys.stderr)
        return state

    def evaluator(self, rows: TokenRows | None) -> Evaluator | None:
        """Eval passes run only when the spec has an `eval` block (`pdc eval` works regardless)."""
        if not self.ir.options_node("eval").written:
            return None
        return Evaluator.build(self.program, rows, self.place_batch)

    def place_batch(self, local: np.ndarray) -> jax.Array:
        """This process's rows of a token batch as the global, batch-sharded array."""
        return jax.make_array_from_process_local_data(batch_sharding(self.ir, self.mesh), local)

    def signals(self) -> "_Signals":
        return _Signals(self)


class _Signals:
    """SIGTERM/SIGINT ask the loop to stop at the next step boundary and save there."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.saved[sig] = signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        del signum, frame
        self.trainer.stop_requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _device_bytes() -> int | None:
    """The memory one local device offers the step (its allocator's limit), where it says."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 — a backend without memory stats (the CPU)
        return None
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None


def _step_of(state: TrainState) -> int:
    return int(host_value(state.step))


def _append(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, flushed at once so a killed run keeps every record it logged."""
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")



def _check_finite(record: dict[str, float]) -> None:
    bad = [k for k, v in record.items() if k.startswith("loss/") and not math.isfinite(v)]
    if bad:
        raise TrainError(f"non-finite loss at step {record['step']}: {', '.join(bad)} "
                         f"= {', '.join(str(record[k]) for k in bad)}; the last good checkpoint is kept")


class RunClock:
    """`time` (UTC, ISO 8601) and `elapsed_s` (wall seconds since this process started the
    run or resumed it — a resume counts from its own start) for every logged record."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def stamp(self) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        return {"time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "elapsed_s": round(time.monotonic() - self.t0, 3)}


def train(ir: IR, out: Path, max_steps: int | None = None, overrides: Sequence[Override] = ()) -> TrainState:
    """Train (or resume) the run of a validated IR in `out`. `overrides` are the `--set`
    flags already applied to `ir`'s spec; they are only recorded (a resume checks hashes)."""
    program = lower_program(ir)
    trainer = Trainer(ir, RunDir(out), program, make_mesh(ir), overrides=tuple(overrides))
    trainer.check_hashes()
    return trainer.loop(max_steps)


__all__ = ["TrainError", "train", "jnp", "np"]
