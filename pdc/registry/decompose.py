"""`decompose`: which weight matrices become sites, and how many components each gets."""

from __future__ import annotations

from typing import Optional

from pdc.registry.schema import BlockSchema, Entries, Layout
from pdc.registry.types import Keys, SiteName, Steps, key


class SiteKeys(Keys):
    """Options of every site a pattern names."""

    C: Steps = key(doc="number of rank-one components (may exceed min(d_in, d_out))", ge=1)
    tied_to: Optional[SiteName] = key(
        None, doc="share the components of this other site, transposed (V = its Uᵀ, U = its Vᵀ), as the "
                  "reference ties a tied TMS target's `linear2` to `linear1`; each site keeps its own CI")


DECOMPOSE = BlockSchema(
    "decompose",
    "Site patterns, each with its options: `layers[18..23].mlp.{gate_proj, up_proj} { C = 8192 }`. "
    "A pattern matching nothing, or two patterns claiming one matrix, is an error.",
    entries=Entries.SITES,
    entry_keys=SiteKeys,
    required=True,
    layout=Layout.EXPANDED,
    noun="site",
)
