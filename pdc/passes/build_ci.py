"""Pass 5 — build the CI network: its chunks (which sites each serves, input width,
Σ C) and the shape of every parameter, for each architecture of SPD_ALGORITHM.md §3. The
network the `ci` label names (`pdc.ci.NETWORKS`, one file each) adds them."""

from __future__ import annotations

from pdc.ci import NETWORKS
from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode


def run(ir: IR) -> IR:
    ci = ir.spec.block("ci")
    assert ci is not None and ci.label is not None
    NETWORKS[ci.label].shapes(ir, ci, ir.nodes(SiteNode))
    return ir
