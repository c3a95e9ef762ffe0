"""The root: `spec NAME { ... }` and its top-level blocks, in canonical order, each
tagged with the determinism class it feeds (DESIGN.md §3)."""

from __future__ import annotations

from dataclasses import replace

from pdc.registry.ci import CI
from pdc.registry.data import DATA
from pdc.registry.decompose import DECOMPOSE
from pdc.registry.loss import LOSS
from pdc.registry.observe import BUDGET, CHECKPOINT, EVAL, LOG
from pdc.registry.optimize import OPTIMIZE
from pdc.registry.runtime import MESH, PRECISION, REMAT, SHARD, TRAIN
from pdc.registry.schema import BlockSchema, Determinism, LabelKind, Layout
from pdc.registry.target import TARGET

_D, _R, _O = Determinism.DECOMPOSITION, Determinism.RUNTIME, Determinism.OBSERVATION


def _tag(block: BlockSchema, determinism: Determinism) -> BlockSchema:
    return replace(block, determinism=determinism)


SPEC = BlockSchema(
    "spec",
    "One decomposition run. Exactly one per file: `spec NAME { ... }`.",
    label=LabelKind.NAME,
    children=(
        _tag(TARGET, _D),
        _tag(DATA, _D), _tag(DECOMPOSE, _D), _tag(CI, _D), _tag(LOSS, _D), _tag(OPTIMIZE, _D), _tag(TRAIN, _D),
        _tag(MESH, _R), _tag(SHARD, _R), _tag(REMAT, _R), _tag(PRECISION, _R),
        _tag(BUDGET, _O), _tag(CHECKPOINT, _O), _tag(LOG, _O), _tag(EVAL, _O),
    ),
    required=True,
    layout=Layout.EXPANDED,
)
