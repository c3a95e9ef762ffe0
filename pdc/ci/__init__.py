"""CI networks, one file each (SPD_ALGORITHM.md §3): a network's keys (its `ci NAME { ... }`
block), the IR shapes of its parameters (the build_ci pass) and the nnx module it builds (the
lowering) live together, so a new network is one file.

In-tree networks are the public modules of this package that define `NETWORK`, ordered by their
`rank`; out-of-tree ones come from the `pdc.ci` entry point group (a distribution declares
`[project.entry-points."pdc.ci"] my_ci = "my_pkg.my_ci:NETWORK"`) and follow in name order. What
the networks share lives in the private modules: `_shared` (keys), `_shapes` (the pass's
tensors and chunks) and `_nn` (the JAX numerics and modules).

This package is JAX-free: a network's `shapes` and `build` import what they use when called,
so `pdc check` never loads JAX.
"""

from __future__ import annotations

from pdc.ci.base import CiNetwork
from pdc.plugins import extensions

NETWORKS: dict[str, CiNetwork] = extensions(__name__, "NETWORK", CiNetwork, "pdc.ci", lambda n: n.rank, "CI network")

__all__ = ["CiNetwork", "NETWORKS"]
