"""`ci shared_mlp`: per site one MLP `d_in → hidden → C` reading the site input (the JAX
library's LayerwiseMLPCIFn)."""

from __future__ import annotations

from typing import Any, Sequence

from pdc.ci._shared import HIDDEN_DOC, LEAK_DOC, per_site_mlp
from pdc.registry.types import Keys, key


class SharedMlpKeys(Keys):
    """Per site: one MLP `d_in → hidden → C` reading the site input vector."""

    hidden: list[int] = key([16], doc=HIDDEN_DOC)
    leak: float = key(0.01, doc=LEAK_DOC, ge=0.0, lt=1.0)


def widths(site: Any, hidden: Sequence[int]) -> tuple[list[int], tuple[int, ...]]:
    """One MLP per site, all C outputs at once."""
    return [site.d_in, *hidden, site.C], ()


def forward(layers: Any, x: Any) -> Any:
    from pdc.ci._nn import shared_site_mlp

    return shared_site_mlp(layers, x)


NETWORK = per_site_mlp("shared_mlp", SharedMlpKeys, widths, forward, rank=2)
