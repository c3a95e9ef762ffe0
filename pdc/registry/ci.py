"""`ci`: the causal-importance network (SPD_ALGORITHM.md §3). The label picks it: each network
is one file in `pdc/ci/` (or a `pdc.ci` entry point), holding its keys."""

from __future__ import annotations

from pdc.ci import NETWORKS
from pdc.registry.schema import BlockSchema, LabelKind, Layout

CI = BlockSchema(
    "ci",
    "The causal-importance network; the label picks its architecture.",
    label=LabelKind.VARIANT,
    variants=tuple(network.schema for network in NETWORKS.values()),
    required=True,
    layout=Layout.EXPANDED,
    noun="CI network",
)
