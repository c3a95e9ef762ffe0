"""`target`: the frozen model to decompose (SPD_ALGORITHM.md §8).

Shapes come from these keys or from an HF `config.json`, never from weights, so a
dry-run of an 8B target reads no weight file. Weights come from `weights` or are
trained by the optional `pretrain` block (cached by the target's hash).

Each variant is a target family (`pdc.targets`: one package each, plus the `pdc.targets`
entry point group): its keys, docs and pretrain block come from its `TargetFamily`.
"""

from __future__ import annotations

from pdc.registry.schema import BlockSchema, LabelKind, Layout
from pdc.targets import FAMILIES

TARGET = BlockSchema(
    "target",
    "The frozen model to decompose; the label picks the family.",
    label=LabelKind.VARIANT,
    variants=tuple(family.schema() for family in FAMILIES.values()),
    required=True,
    layout=Layout.EXPANDED,
    noun="target family",
)
