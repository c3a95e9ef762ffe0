"""`optimize`: one optimizer group for the components (V/U), one for the CI network,
and the faithfulness warmup that runs before step 0 (SPD_ALGORITHM.md §6)."""

from __future__ import annotations

from typing import Optional

from pdc.registry.schema import BlockSchema, Layout
from pdc.registry.types import Keys, Schedule, Steps, key


class AdamwKeys(Keys):
    """AdamW. The weight decay defaults to 0 (optax's default 1e-4 is not used)."""

    lr: Schedule = key(doc="learning rate: a number or a schedule, e.g. `cosine(1e-3, final = 0.1)`")
    betas: tuple[float, float] = key((0.9, 0.999), doc="β1, β2")
    eps: float = key(1e-8, doc="ε", gt=0.0)
    weight_decay: float = key(0.0, doc="decoupled weight decay", ge=0.0)


class GroupKeys(Keys):
    """Options of one parameter group."""

    clip: Optional[float] = key(None, doc="global-norm clip: scale = min(1, clip / (‖g‖ + 1e-6)); `none` = off", gt=0.0)


class FaithfulnessWarmupKeys(Keys):
    """AdamW on the faithfulness loss alone (V/U only) before step 0; its optimizer is
    then discarded. Skipped on resume."""

    steps: Steps = key(0, doc="warmup steps (0 = none)", ge=0)
    lr: float = key(1e-2, doc="constant learning rate", gt=0.0)
    weight_decay: float = key(0.0, doc="AdamW weight decay", ge=0.0)


_ADAMW = BlockSchema("adamw", AdamwKeys.__doc__ or "", keys=AdamwKeys)


def _group(name: str, doc: str) -> BlockSchema:
    return BlockSchema(name, doc, keys=GroupKeys, children=(_ADAMW,), required=True, noun="optimizer",
                       exactly_one_child=True)


OPTIMIZE = BlockSchema(
    "optimize",
    "Optimizers of the trained parameter groups.",
    children=(
        _group("components", "The components V/U of every site (clipped jointly)."),
        _group("ci", "The CI network's parameters."),
        BlockSchema("faithfulness_warmup", FaithfulnessWarmupKeys.__doc__ or "", keys=FaithfulnessWarmupKeys),
    ),
    required=True,
    layout=Layout.EXPANDED,
)
