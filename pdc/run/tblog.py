"""TensorBoard event files under RUN/tb (`log.tensorboard`, on by default).

The JSONL files stay the record of truth (they are what `pdc eval` and tests read); the
event files mirror their scalars so a run can be watched live with `tensorboard --logdir
RUN/tb`. tensorboardX writes them without TensorFlow or torch. List-valued records
(activation densities) become histograms.
"""

from __future__ import annotations

from typing import Any

from pdc.ir.graph import IR
from pdc.run.rundir import RunDir



def tensorboard_on(ir: IR) -> bool:
    return bool(ir.options("log").tensorboard)


class Board:
    """Writes records to TensorBoard, or nothing when the spec turned it off."""

    def __init__(self, run: RunDir, ir: IR, enabled: bool = True) -> None:
        """`enabled=False` (every process but the first in a multi-host run) writes nothing."""
        self.writer: Any = None
        if enabled and tensorboard_on(ir):
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(logdir=str(run.tensorboard), flush_secs=10)

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(record["step"])
        for name, value in record.items():
            if name in ("step", "time") or isinstance(value, (str, dict)):  # stamps and eval data: not scalars
                continue
            if isinstance(value, list):
                self.writer.add_histogram(name, value, step)
            else:
                self.writer.add_scalar(name, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
