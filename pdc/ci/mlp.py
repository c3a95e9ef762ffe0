"""`ci mlp`: per component a scalar MLP `1 → hidden → 1` reading the component activation
`(x@V)_c` (torch/paper; it couples CI to V: gradient flows into V through the component
activations)."""

from __future__ import annotations

from typing import Any, Sequence

from pdc.ci._shared import HIDDEN_DOC, LEAK_DOC, per_site_mlp
from pdc.registry.types import Keys, key


class ScalarMlpKeys(Keys):
    """Per component: a scalar MLP `1 → hidden → 1` reading the component activation
    `(x@V)_c` (paper-faithful; recovers TMS 5-2)."""

    hidden: list[int] = key([16], doc=HIDDEN_DOC)
    leak: float = key(0.01, doc=LEAK_DOC, ge=0.0, lt=1.0)


def widths(site: Any, hidden: Sequence[int]) -> tuple[list[int], tuple[int, ...]]:
    """C MLPs per site, each reading one scalar."""
    return [1, *hidden, 1], (site.C,)


def forward(layers: Any, x: Any) -> Any:
    from pdc.ci._nn import per_component_mlp

    return per_component_mlp(layers, x, scalar=True)


NETWORK = per_site_mlp("mlp", ScalarMlpKeys, widths, forward, scalar=True, reads_component_acts=True, rank=0)
