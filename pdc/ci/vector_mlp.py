"""`ci vector_mlp`: per component an MLP `d_in → hidden → 1` reading the site input."""

from __future__ import annotations

from typing import Any, Sequence

from pdc.ci._shared import HIDDEN_DOC, LEAK_DOC, per_site_mlp
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


NETWORK = per_site_mlp("vector_mlp", VectorMlpKeys, widths, forward, rank=1)
