"""Multi-host runs: one process per host through `jax.distributed`.

The process layout comes from explicit flags (`--coordinator host:port --num-processes N
--process-id I`) or, under SLURM, from its task variables; the mesh always comes from the
spec. On CPU (tests, laptops) collectives go through gloo and each process gets its share
of the mesh as fake host devices. Called before JAX creates its backends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from pdc.run.host_devices import request_host_devices


@dataclass(frozen=True)
class Processes:
    coordinator: str
    count: int
    index: int


def from_environment(coordinator: str | None, count: int | None, index: int | None) -> Processes | None:
    """Explicit flags win; else SLURM (more than one task); else None (single process)."""
    if coordinator is not None:
        if count is None or index is None:
            raise ValueError("--coordinator needs --num-processes and --process-id")
        return Processes(coordinator, count, index)
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if tasks > 1:
        host = os.environ.get("SLURM_LAUNCH_NODE_IPADDR") or os.environ.get("SLURMD_NODENAME", "localhost")
        port = os.environ.get("PDC_COORDINATOR_PORT", "12321")
        return Processes(f"{host}:{port}", tasks, int(os.environ["SLURM_PROCID"]))
    return None


def initialize(processes: Processes, mesh_devices: int) -> None:
    """Join the job. On CPU each process holds mesh_devices / N fake devices."""
    if mesh_devices % processes.count:
        hint = f"; give the mesh {processes.count} devices or a multiple, e.g. `--set mesh.dp={processes.count}`" \
            if mesh_devices < processes.count else ""
        raise ValueError(f"the mesh's {mesh_devices} device{'s' if mesh_devices != 1 else ''} do not split over "
                         f"{processes.count} processes{hint}")
    if os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        request_host_devices(mesh_devices // processes.count)
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    if "jax_cpu_collectives_implementation" in jax.config.values:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(processes.coordinator, num_processes=processes.count, process_id=processes.index)


def host_value(x: Any) -> np.ndarray:
    """A replicated array's value on this host (a multi-process array is not fully
    addressable, so `float(x)` would fail; every replica holds the same value)."""
    if hasattr(x, "addressable_data") and not getattr(x, "is_fully_addressable", True):
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def global_value(tree: Any) -> Any:
    """A pytree of (possibly sharded) arrays as whole NumPy arrays on this host. An array
    spanning other processes' devices cannot be fetched (`jax.device_get` raises), so every
    process gathers it (`process_allgather`, a collective: all processes must call this in
    the same order); a single process fetches as before, so its numbers are unchanged."""
    import jax

    def fetch(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree.map(fetch, tree)


def is_primary() -> bool:
    """Process 0 writes the shared files (metrics, eval records, run record, TensorBoard)."""
    import jax

    return jax.process_index() == 0
