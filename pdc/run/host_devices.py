"""Fake CPU devices for a mesh, set up before JAX starts (stdlib only: imported before JAX).

XLA:CPU runs a program's collectives on one shared intra-op thread pool, and a collective
blocks its thread until every participant has arrived. A device may start its next collective
before the last one has finished (the thunk executor orders collectives by start, not by
end), so with 8 fake devices on a 2-core machine the pool's 2 threads can all be held by
waiting collectives while the one that would release them queues behind them: the program
deadlocks and XLA aborts it after 40 s ("Termination timeout for `all gather ...`").
The pool's size comes from `PJRT_NPROC` (default: the machine's cores), so we give it room
for two collectives per device."""

from __future__ import annotations

import os
from typing import MutableMapping


def collective_threads(devices: int) -> int:
    """Intra-op threads enough for `devices` fake devices' collectives: two each, and never
    fewer than the machine's cores (the pool also runs the program's parallel kernels)."""
    return max(os.cpu_count() or 1, 2 * devices)


def request_host_devices(devices: int, environ: MutableMapping[str, str] = os.environ) -> None:
    """Ask XLA:CPU for `devices` fake devices and a thread pool that can run their collectives.
    An explicit `PJRT_NPROC` wins; the device flag is appended (the last one counts)."""
    flags = environ.get("XLA_FLAGS", "")
    environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    environ.setdefault("PJRT_NPROC", str(collective_threads(devices)))
