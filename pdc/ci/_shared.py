"""Keys the CI networks share (JAX-free: the registry reads them)."""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

from pdc.ci.base import CiNetwork
from pdc.registry.types import Keys, key

LEAK_DOC = "slope α of the leaky hard sigmoids (lower: sign-gated backward leak; upper: slope above 1)"
HIDDEN_DOC = "hidden widths (GELU between layers)"

CiInput = Literal["site_inputs", "first_block_resid", "all_block_resids"]


class TransformerKeys(Keys):
    """The keys of the RoPE transformer (§3.4), whether over all sites or per chunk."""

    d_model: int = key(doc="transformer width", ge=1)
    blocks: int = key(doc="transformer blocks", ge=1)
    heads: int = key(doc="attention heads (d_model / heads must be even for RoPE)", ge=1)
    mlp: int = key(doc="MLP hidden width (one hidden layer, GELU)", ge=1)
    rope_base: float = key(10_000.0, doc="RoPE base over the sequence axis", gt=0.0)
    input: CiInput = key("site_inputs", doc="what the network reads: site inputs, or residual taps")
    leak: float = key(0.01, doc=LEAK_DOC, ge=0.0, lt=1.0)


# (site, hidden widths) → (the MLP's layer widths, the lead shape of its stacked copies)
Widths = Callable[[Any, Sequence[int]], tuple[list[int], tuple[int, ...]]]


def per_site_mlp(name: str, keys: type[Keys], widths: Widths, forward: Callable[[Any, Any], Any], *,
                 scalar: bool = False, **network: Any) -> CiNetwork:
    """A CI network of MLPs per site (`mlp`, `vector_mlp`, `shared_mlp`), told apart by their
    `widths` and `forward`; `scalar`: each reads one component activation. Its IR shapes and
    its nnx module are the shared per-site ones (imported when used: the registry stays
    JAX-free)."""
    def shapes(ir: Any, ci: Any, sites: Any) -> None:
        from pdc.ci._shapes import per_site

        per_site(ir, ci, sites, widths)

    def build(key: Any, options: Any, layout: Any, *, resid_width: int | None, param_dtype: Any,
              compute_dtype: Any) -> Any:
        from pdc.ci._nn import PerSiteMlpCi

        return PerSiteMlpCi(key, widths, forward, scalar, list(options.hidden), layout, param_dtype, compute_dtype)

    return CiNetwork(name, keys, shapes, build, **network)
