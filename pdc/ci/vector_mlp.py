"""`ci vector_mlp`: per component an MLP `d_in → hidden → 1` reading the site input."""

from __future__ import annotations

from typing import Any, Sequence

from pdc.ci._shared import HIDDEN_DOC, LEAK_DOC
from pdc.ci.base import CiNetwork
from pdc.registry.types import Keys, key


class VectorMlpKeys(Keys):
    """Per component: an MLP `d_in → hidden → 1` reading the site input vector."""

    hidden: list[int] = key([8], doc=HIDDEN_DOC)
    leak: float = key(0.01, doc=LEAK_DOC, ge=0.0, lt=1.0)


def widths(site: Any, hidden: Sequence[int]) -> tuple[list[int], tuple[int, ...]]:
    """C MLPs per site, each reading the whole input vector."""
    return [site.d_in, *hidden, 1], (site.C,)


def forward(layers: Any, x: Any) -> Any:
    from pdc.ci._nn import per_component_mlp

    return per_component_mlp(layers, x, scalar=False)


def shapes(ir: Any, ci: Any, sites: Any) -> None:
    from pdc.ci._shapes import per_site

    per_site(ir, ci, sites, widths)


def build(key: Any, options: VectorMlpKeys, layout: Any, *, resid_width: int | None, param_dtype: Any,
          compute_dtype: Any) -> Any:
    from pdc.ci._nn import PerSiteMlpCi

    return PerSiteMlpCi(key, widths, forward, False, list(options.hidden), layout, param_dtype, compute_dtype)


NETWORK = CiNetwork("vector_mlp", VectorMlpKeys, shapes, build, rank=1)
