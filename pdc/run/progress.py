"""`pdc train`'s progress: a smoothed step time, steps/s, tokens/s (LMs) and an ETA that
holds still, on a rich bar on a terminal and as plain lines in a log file.

The step time is an exponential moving average of the wall time between loop iterations
(`StepClock`). The first interval after a (re)start is left out — it holds the first
dispatch and whatever the runtime still had to set up — and so is any interval the loop
marks as holding a compile (the first eval pass jits its function). A slow step (an eval
pass, a checkpoint save, a stall) enters the average clipped to `OUTLIER` times the
average, so one 30 s checkpoint neither halves the rate nor doubles the ETA; a lasting
change of pace still moves the average within a few dozen steps. The step is dispatched
asynchronously, so a single interval may be short (dispatch) or long (waiting on the
device); their average is the device's pace.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

ALPHA = 0.1  # weight of the newest interval in the moving average (≈ the last 10–20 steps)
OUTLIER = 3.0  # an interval enters the average clipped to this multiple of it
LINE_SECONDS = 30.0  # without a terminal: a line at most this often (and at the end)


@dataclass
class StepClock:
    """The smoothed wall time per step and what follows from it."""

    start: int  # the step the loop (re)started from
    total: int
    tokens_per_step: int | None = None  # LMs: batch × seq_len; None for toys
    alpha: float = ALPHA
    seconds: float | None = None  # the moving average; None until one interval has been seen
    step: int = 0
    _last: float | None = field(default=None, repr=False)
    _intervals: int = field(default=0, repr=False)  # intervals seen, the first one included

    def __post_init__(self) -> None:
        self.step = self.start

    def tick(self, step: int, now: float, compiled: bool = False) -> None:
        """The loop reached `step` at monotonic time `now`; `compiled` marks an interval
        that includes a compile (left out, as the first interval is)."""
        last, self._last = self._last, now
        done, self.step = step - self.step, step
        if last is None or done <= 0:
            return
        self._intervals += 1
        if self._intervals == 1 or compiled:
            return
        sample = (now - last) / done
        if self.seconds is None:
            self.seconds = sample
            return
        sample = min(sample, OUTLIER * self.seconds)
        self.seconds += self.alpha * (sample - self.seconds)

    @property
    def steps_per_s(self) -> float | None:
        return None if not self.seconds else 1.0 / self.seconds

    @property
    def tokens_per_s(self) -> float | None:
        rate = self.steps_per_s
        return None if rate is None or self.tokens_per_step is None else rate * self.tokens_per_step

    @property
    def eta_s(self) -> float | None:
        return None if self.seconds is None else max(self.total - self.step, 0) * self.seconds

    def summary(self) -> str:
        """`12.3 steps/s  45.6k tok/s  81 ms/step  ETA 3m20s` (what is known so far)."""
        if self.seconds is None:
            return "timing…"
        parts = [f"{self.steps_per_s:.3g} steps/s"]
        if self.tokens_per_s is not None:
            parts.append(f"{_si(self.tokens_per_s)} tok/s")
        parts += [f"{_duration(self.seconds)}/step", f"ETA {_duration(self.eta_s or 0.0)}"]
        return "  ".join(parts)


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _duration(seconds: float) -> str:
    """`850 ms`, `7.2 s`, `3m20s`, `2h05m`."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60.0:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """The loop's progress on stderr: a rich bar on a terminal, else a line every
    LINE_SECONDS and one at the end; `enabled=False` (other hosts, tests) prints nothing."""

    def __init__(self, start: int, total: int, tokens_per_step: int | None = None, enabled: bool = True,
                 terminal: bool | None = None) -> None:
        self.clock = StepClock(start, total, tokens_per_step)
        self.enabled = enabled and total > start
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.printed_at = time.monotonic()
        self.bar: Any = None
        if self.enabled and self.terminal:
            self.bar = _rich_bar(start, total)
        self.clock.tick(start, time.monotonic())

    def update(self, step: int, compiled: bool = False) -> None:
        now = time.monotonic()
        self.clock.tick(step, now, compiled)
        if not self.enabled:
            return
        if self.bar is not None:
            progress, task = self.bar
            progress.update(task, completed=step, rate=self.clock.summary())
        elif now - self.printed_at >= LINE_SECONDS or step >= self.clock.total:
            self.printed_at = now
            print(f"pdc train: step {step}/{self.clock.total}  {self.clock.summary()}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the bar (idempotent; also on the way out of an error, so its message is readable)."""
        if self.bar is not None:
            self.bar[0].stop()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rich_bar(start: int, total: int) -> tuple[Any, Any]:
    """A rich bar over steps with the clock's summary beside it; not transient, so the
    finished bar stays as the run's last word on the terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    progress = RichProgress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[rate]}"), console=Console(stderr=True))
    task = progress.add_task("steps", total=total, completed=start, rate="timing…")
    progress.start()
    return progress, task


__all__ = ["Progress", "StepClock"]
