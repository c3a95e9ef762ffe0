"""`ci`: the causal-importance network (SPD_ALGORITHM.md §3). The label picks it."""

from __future__ import annotations

from typing import Literal

from pdc.registry.schema import BlockSchema, LabelKind, Layout
from pdc.registry.types import Keys, key

_LEAK_DOC = "slope α of the leaky hard sigmoids (lower: sign-gated backward leak; upper: slope above 1)"


class ScalarMlpKeys(Keys):
    """Per component: a scalar MLP `1 → hidden → 1` reading the component activation
    `(x@V)_c` (paper-faithful; recovers TMS 5-2)."""

    hidden: list[int] = key([16], doc="hidden widths (GELU between layers)")
    leak: float = key(0.01, doc=_LEAK_DOC, ge=0.0, lt=1.0)


class VectorMlpKeys(Keys):
    """Per component: an MLP `d_in → hidden → 1` reading the site input vector."""

    hidden: list[int] = key([8], doc="hidden widths (GELU between layers)")
    leak: float = key(0.01, doc=_LEAK_DOC, ge=0.0, lt=1.0)


class SharedMlpKeys(Keys):
    """Per site: one MLP `d_in → hidden → C` reading the site input vector."""

    hidden: list[int] = key([16], doc="hidden widths (GELU between layers)")
    leak: float = key(0.01, doc=_LEAK_DOC, ge=0.0, lt=1.0)


class GlobalMlpKeys(Keys):
    """One MLP over the concatenated inputs of all sites: `Σ d_in → hidden → Σ C`."""

    hidden: list[int] = key([256], doc="hidden widths (GELU between layers)")
    leak: float = key(0.01, doc=_LEAK_DOC, ge=0.0, lt=1.0)


CiInput = Literal["site_inputs", "first_block_resid", "all_block_resids"]


class GlobalTransformerKeys(Keys):
    """One bidirectional transformer over all sites' (RMS-normed, concatenated) inputs."""

    d_model: int = key(doc="transformer width", ge=1)
    blocks: int = key(doc="transformer blocks", ge=1)
    heads: int = key(doc="attention heads (d_model / heads must be even for RoPE)", ge=1)
    mlp: int = key(doc="MLP hidden width (one hidden layer, GELU)", ge=1)
    rope_base: float = key(10_000.0, doc="RoPE base over the sequence axis", gt=0.0)
    input: CiInput = key("site_inputs", doc="what the network reads: site inputs, or residual taps")
    leak: float = key(0.01, doc=_LEAK_DOC, ge=0.0, lt=1.0)


class ChunkwiseTransformerKeys(Keys):
    """One transformer of the global form per chunk of consecutive target blocks;
    chunks are stacked and iterated with `lax.scan` (needs homogeneous chunks)."""

    blocks_per_chunk: int = key(doc="target blocks per chunk: n_chunks = decomposed layers / blocks_per_chunk", ge=1)
    d_model: int = GlobalTransformerKeys.model_fields["d_model"]
    blocks: int = GlobalTransformerKeys.model_fields["blocks"]
    heads: int = GlobalTransformerKeys.model_fields["heads"]
    mlp: int = GlobalTransformerKeys.model_fields["mlp"]
    rope_base: float = GlobalTransformerKeys.model_fields["rope_base"]
    input: CiInput = GlobalTransformerKeys.model_fields["input"]
    leak: float = GlobalTransformerKeys.model_fields["leak"]


def _variant(name: str, model: type[Keys]) -> BlockSchema:
    return BlockSchema(name, model.__doc__ or "", keys=model, layout=Layout.EXPANDED)


CI = BlockSchema(
    "ci",
    "The causal-importance network; the label picks its architecture.",
    label=LabelKind.VARIANT,
    variants=(
        _variant("mlp", ScalarMlpKeys),
        _variant("vector_mlp", VectorMlpKeys),
        _variant("shared_mlp", SharedMlpKeys),
        _variant("global_mlp", GlobalMlpKeys),
        _variant("global_transformer", GlobalTransformerKeys),
        _variant("chunkwise_transformer", ChunkwiseTransformerKeys),
    ),
    required=True,
    layout=Layout.EXPANDED,
    noun="CI network",
)
