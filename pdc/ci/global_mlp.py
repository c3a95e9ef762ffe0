"""`ci global_mlp`: one MLP `Σ d_in → hidden → Σ C` over the inputs of all sites concatenated in
canonical order, its output split back per site."""

from __future__ import annotations

from typing import Any

from pdc.ci._shared import HIDDEN_DOC, LEAK_DOC
from pdc.ci.base import CiNetwork
from pdc.registry.types import Keys, key


class GlobalMlpKeys(Keys):
    """One MLP over the concatenated inputs of all sites: `Σ d_in → hidden → Σ C`."""

    hidden: list[int] = key([256], doc=HIDDEN_DOC)
    leak: float = key(0.01, doc=LEAK_DOC, ge=0.0, lt=1.0)


def shapes(ir: Any, ci: Any, sites: Any) -> None:
    """One chunk over every site; the MLP's layers unstacked (IR tensors `ci.w0`, `ci.b0`, …)."""
    from pdc.ci._shapes import mlp_layers
    from pdc.ir.nodes import CiChunkNode

    width = sum(s.d_in for _, s in sites)
    c_total = sum(s.C for _, s in sites)
    ir.add("ci:0", CiChunkNode(0, tuple(s.path for _, s in sites), width, c_total), *[n for n, _ in sites])
    mlp_layers(ir, "", [width, *ci.get("hidden"), c_total], (), (), ["ci:0"], per_component=False)


def build(key: Any, options: GlobalMlpKeys, layout: Any, *, resid_width: int | None, param_dtype: Any,
          compute_dtype: Any) -> Any:
    from pdc.ci._nn import GlobalMlpCi

    return GlobalMlpCi(key, list(options.hidden), layout, param_dtype, compute_dtype)


NETWORK = CiNetwork("global_mlp", GlobalMlpKeys, shapes, build, rank=3)
