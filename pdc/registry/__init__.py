"""The registry: every block and key of the spec language, with type, unit, default
and doc string. One tree (`SPEC`) read by the validator, the formatter and the docs."""

from pdc.registry.schema import BlockSchema, Determinism, Entries, LabelKind, Layout, variant_of
from pdc.registry.spec import SPEC
from pdc.registry.runtime import SHARD_PRESETS
from pdc.registry.types import CallValue, Dense, Keys, Schedule, StaticProbability

__all__ = [
    "SPEC", "SHARD_PRESETS", "BlockSchema", "Determinism", "Entries", "LabelKind", "Layout", "variant_of",
    "CallValue", "Dense", "Keys", "Schedule", "StaticProbability",
]
