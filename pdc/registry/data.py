"""`data`: where batches come from. The batch of step k is a pure function of (seed, k)."""

from __future__ import annotations

from typing import Literal, Optional

from pdc.registry.schema import BlockSchema, LabelKind, Layout
from pdc.registry.types import FilePath, Fraction, Keys, key


class SparseFeatureKeys(Keys):
    """Toy inputs: each feature active independently with `probability`, value uniform in `values`."""

    probability: Fraction = key(doc="chance that a feature is active", gt=0.0, le=1.0)
    batch: int = key(doc="examples per step (global batch)", ge=1)
    values: tuple[float, float] = key((0.0, 1.0), doc="range of active values [low, high)")
    distribution: Literal["at_least_zero_active", "exactly_one_active"] = key(
        "at_least_zero_active", doc="independent features, or one feature per example")


class TokenKeys(Keys):
    """Pre-tokenized LM data: an `.npy` array or a raw uint16/uint32 token file (`pdc tokens` writes one)."""

    path: FilePath = key(doc="token file (.npy, or raw with `format`)")
    seq_len: int = key(doc="tokens per sequence", ge=2)
    batch: int = key(doc="sequences per step (global batch)", ge=1)
    format: Literal["npy", "uint16", "uint32"] = key("npy", doc="file format")
    eval_path: Optional[FilePath] = key(None, doc="held-out tokens for eval; default: `path` with seed + 1")


class CorpusKeys(Keys):
    """Byte-level tokens of a text corpus present on every machine (no downloads)."""

    corpus: Literal["python_stdlib"] = key("python_stdlib", doc="the Python standard library's `.py` sources")
    seq_len: int = key(doc="tokens per sequence", ge=2)
    batch: int = key(doc="sequences per step (global batch)", ge=1)


DATA = BlockSchema(
    "data",
    "The training distribution; the label picks the kind.",
    label=LabelKind.VARIANT,
    variants=(
        BlockSchema("sparse_features", SparseFeatureKeys.__doc__ or "", keys=SparseFeatureKeys, layout=Layout.EXPANDED),
        BlockSchema("tokens", TokenKeys.__doc__ or "", keys=TokenKeys, layout=Layout.EXPANDED),
        BlockSchema("corpus", CorpusKeys.__doc__ or "", keys=CorpusKeys, layout=Layout.EXPANDED),
    ),
    required=True,
    layout=Layout.EXPANDED,
    noun="data kind",
)
