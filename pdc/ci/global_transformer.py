"""`ci global_transformer`: one bidirectional RoPE transformer (§3.4) over the RMS-normed,
concatenated inputs of every site (or the residual entering the decomposed blocks)."""

from __future__ import annotations

from typing import Any

from pdc.ci._shared import TransformerKeys
from pdc.ci.base import CiNetwork


class GlobalTransformerKeys(TransformerKeys):
    """One bidirectional transformer over all sites' (RMS-normed, concatenated) inputs."""


def shapes(ir: Any, ci: Any, sites: Any) -> None:
    from pdc.ci._shapes import transformer

    transformer(ir, ci, sites, chunked=False)


def build(key: Any, options: GlobalTransformerKeys, layout: Any, *, resid_width: int | None, param_dtype: Any,
          compute_dtype: Any) -> Any:
    from pdc.ci._nn import TransformerCi

    return TransformerCi(key, options, None, layout, resid_width, param_dtype, compute_dtype)


NETWORK = CiNetwork("global_transformer", GlobalTransformerKeys, shapes, build, rank=4)
