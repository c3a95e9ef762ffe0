"""`ci chunkwise_transformer`: the RoPE transformer of §3.4 once per chunk of `blocks_per_chunk`
consecutive decomposed layers, the chunks' parameters stacked and iterated by `lax.scan`
(§3.5), so only one chunk's weights are live at a time."""

from __future__ import annotations

from typing import Any

from pdc.ci._shared import CiInput, TransformerKeys
from pdc.ci.base import CiNetwork
from pdc.registry.types import Keys, key


class ChunkwiseTransformerKeys(Keys):
    """One transformer of the global form per chunk of consecutive target blocks;
    chunks are stacked and iterated with `lax.scan` (needs homogeneous chunks)."""

    blocks_per_chunk: int = key(doc="target blocks per chunk: n_chunks = decomposed layers / blocks_per_chunk", ge=1)
    d_model: int = TransformerKeys.model_fields["d_model"]
    blocks: int = TransformerKeys.model_fields["blocks"]
    heads: int = TransformerKeys.model_fields["heads"]
    mlp: int = TransformerKeys.model_fields["mlp"]
    rope_base: float = TransformerKeys.model_fields["rope_base"]
    input: CiInput = TransformerKeys.model_fields["input"]
    leak: float = TransformerKeys.model_fields["leak"]


def shapes(ir: Any, ci: Any, sites: Any) -> None:
    from pdc.ci._shapes import transformer

    transformer(ir, ci, sites, chunked=True)


def build(key: Any, options: ChunkwiseTransformerKeys, layout: Any, *, resid_width: int | None, param_dtype: Any,
          compute_dtype: Any) -> Any:
    from pdc.ci._nn import TransformerCi

    return TransformerCi(key, options, options.blocks_per_chunk, layout, resid_width, param_dtype, compute_dtype)


NETWORK = CiNetwork("chunkwise_transformer", ChunkwiseTransformerKeys, shapes, build, rank=5)
