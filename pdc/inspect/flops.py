"""Analytical matmul FLOPs of one train step, counted on its jaxpr.

XLA's cost analysis counts a while loop's body once and depends on the backend; this count
reads the traced program instead: every `dot_general` (2 · batch · free · free · contracted),
a `scan` body times its length, a `cond` by its costliest branch, and every other nested
jaxpr (jit, checkpoint, custom derivatives, a `while` body: no static trip count) once. The step is traced after
differentiation, so backward matmuls and rematerialised forwards are in it as written.
Attention is counted dense (XLA's form: [T, T] scores), as if no causal block were skipped;
elementwise work is not counted. Global per step: divide by the devices for one device's
share (data- and tensor-parallel matmuls split evenly).
"""

from __future__ import annotations

import math
from typing import Any

from jax.extend import core as jcore


def jaxpr_flops(jaxpr: Any) -> float:
    """Matmul FLOPs of `jaxpr` (a Jaxpr or ClosedJaxpr), nested jaxprs included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    return float(sum(_eqn_flops(eqn) for eqn in jaxpr.eqns))


def _eqn_flops(eqn: Any) -> float:
    name = eqn.primitive.name
    if name == "dot_general":
        return _dot_flops(eqn)
    if name == "scan":
        return eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"])
    if name == "cond":
        return max(jaxpr_flops(branch) for branch in eqn.params["branches"])
    return sum(jaxpr_flops(sub) for sub in _sub_jaxprs(eqn.params))


def _sub_jaxprs(params: dict[str, Any]) -> list[Any]:
    out = []
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, (jcore.Jaxpr, jcore.ClosedJaxpr)):
                out.append(item)
    return out


def _dot_flops(eqn: Any) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape  # batch × lhs free × rhs free
    return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)


__all__ = ["jaxpr_flops"]
