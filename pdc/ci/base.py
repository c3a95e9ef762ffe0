"""What a CI network is: its spec block (the keys model behind `ci NAME { ... }`), the shapes
the build_ci pass gives the IR, and the nnx module it builds for the train step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pdc.registry.schema import BlockSchema, Layout
from pdc.registry.types import Keys

# the build_ci pass's part: (ir, the spec's `ci` block, the IR's (node id, SiteNode) pairs in
# canonical order) → adds the `ci:<i>` chunk nodes and the `tensor:ci.*` nodes (or diagnostics)
Shapes = Callable[[Any, Any, Any], None]
# (key, options, layout of `CiSite`s, *, resid_width, param_dtype, compute_dtype) → an nnx module
# mapping `CiInputs` to CI pre-activations, kind → [L_k, *lead, C] fp32; its state paths are the
# IR tensors its `shapes` added (`kind.w0` is `ci.kind.w0`)
Build = Callable[..., Any]


@dataclass(frozen=True)
class CiNetwork:
    """A CI network: `name` is its `ci` label; `keys` its block's keys, which include `leak`
    (the slope of the leaky hard sigmoids the step squashes its output with)."""

    name: str
    keys: type[Keys]
    shapes: Shapes
    build: Build
    # the network reads the component activations x @ V (the step computes them only then)
    reads_component_acts: bool = False
    # in-tree networks: the place in the registry's order (the order of the language reference);
    # out-of-tree networks follow, in name order
    rank: int | None = None

    @property
    def schema(self) -> BlockSchema:
        """The network's block in the spec language (`ci NAME { ... }`)."""
        return BlockSchema(self.name, self.keys.__doc__ or "", keys=self.keys, layout=Layout.EXPANDED)
