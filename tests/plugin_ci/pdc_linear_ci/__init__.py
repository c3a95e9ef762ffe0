"""An out-of-tree CI network, as a third party would ship it: `linear_ci`, per site one linear
map `d_in → C` of the site input. Registered by its distribution's `pdc.ci` entry point (see
tests/test_ci_networks.py). It uses only pdc's public pieces — `CiNetwork`, the IR's nodes, the
parameter dtype — and its own nnx module (`pdc_linear_ci.module`, imported when built, so
`pdc check` stays JAX-free)."""

from __future__ import annotations

from typing import Any

from pdc.ci import CiNetwork
from pdc.registry.types import Keys, key


class LinearCiKeys(Keys):
    """Per site: one linear map `d_in → C` of the site input (linear_ci_doc)."""

    init_scale: float = key(1.0, doc="std of the weights times √d_in", gt=0.0)
    leak: float = key(0.01, doc="slope α of the leaky hard sigmoids", ge=0.0, lt=1.0)


def shapes(ir: Any, ci: Any, sites: Any) -> None:
    """One chunk per site; per site kind a weight `[L, d_in, C]` and a bias `[L, C]`
    (IR tensors `ci.<kind>.w`, `ci.<kind>.b`: the module's state paths)."""
    from pdc.ir.nodes import CiChunkNode, TensorNode
    from pdc.passes.infer_shapes import ADAM_MOMENTS, params_dtype

    kinds: dict[str, list[Any]] = {}
    for node_id, site in sites:
        ir.add(f"ci:{site.path}", CiChunkNode(site.order, (site.path,), site.d_in, site.C), node_id)
        kinds.setdefault(site.kind, []).append(site)
    for kind, members in kinds.items():
        L, d_in, C = len(members), members[0].d_in, members[0].C
        deps = [f"ci:{s.path}" for s in members]
        for name, shape, role, dims in (("w", (L, d_in, C), "column", ("sites of the kind", "d_in", "C")),
                                        ("b", (L, C), "vector", ("sites of the kind", "C"))):
            ir.add(f"tensor:ci.{kind}.{name}", TensorNode(f"ci.{kind}.{name}", "ci", shape, params_dtype(ir), role,
                                                          dims, True, ADAM_MOMENTS, stack_dims=1), *deps)


def build(key: Any, options: LinearCiKeys, layout: Any, *, resid_width: int | None, param_dtype: Any,
          compute_dtype: Any) -> Any:
    from pdc_linear_ci.module import LinearCi

    return LinearCi(key, options.init_scale, tuple(layout), param_dtype, compute_dtype)


NETWORK = CiNetwork("linear_ci", LinearCiKeys, shapes, build)
