"""`loss`: the terms of the objective (SPD_ALGORITHM.md §5), one block each.

The order of terms in a spec does not matter: each term's RNG stream is derived from
its name, so `pdc fmt` may sort terms into the registry order below. Exactly one
importance-minimality term (`importance_minimality` or `smooth_l0`) is required.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pdc.registry.schema import BlockSchema, Layout
from pdc.registry.types import Fraction, Keys, PositiveSteps, Routing, Schedule, key

Sampling = Literal["continuous", "binomial"]
AdversaryScope = Literal[
    "c", "bc", "sc", "bsc",
    # the names of older configs, kept so published specs stay valid (see SCOPE_ALIASES)
    "shared_across_batch", "broadcast_across_batch", "unique_per_datapoint", "per_batch_per_position",
]
SCOPE_ALIASES: dict[str, str] = {
    "shared_across_batch": "c", "broadcast_across_batch": "sc",
    "unique_per_datapoint": "bsc", "per_batch_per_position": "bsc",
}
_WEIGHT = "coefficient of the term in the total loss"
_SAMPLING = "component sources: U[0,1] (continuous) or Bernoulli(0.5) (binomial)"
_SCOPE = ("source shape: c [1, C+1], bc [B, C+1], sc [1, T, C+1], bsc [B, T, C+1] "
          "(legacy: shared_across_batch = c, broadcast_across_batch = sc, unique_per_datapoint = "
          "per_batch_per_position = bsc)")


class FaithfulnessKeys(Keys):
    """‖W − VU‖² over all sites: the global mean of squared delta entries (`absolute`)
    or the mean over sites of ‖W − VU‖² / ‖W‖² (`relative`)."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)
    form: Literal["absolute", "relative"] = key("absolute", doc="normalisation of the squared error")


class StochasticReconKeys(Keys):
    """Reconstruction of the final output with stochastic masks at all sites (§5.3),
    optionally routed per position (subset) or run in sequential chunks of sites (§5.5)."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)
    routing: Routing = key("all", doc="which sites run their masked path per position")
    sampling: Sampling = key("continuous", doc=_SAMPLING)
    samples: int = key(1, doc="mask draws per step (the loss is their mean)", ge=1)
    sites_per_chunk: Optional[int] = key(None, doc="chunk-subset: one forward per chunk of this many sites", ge=1)


class LayerwiseReconKeys(Keys):
    """One forward per site with only that site masked, the rest frozen (§5.4)."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)
    sampling: Sampling = key("continuous", doc=_SAMPLING)
    samples: int = key(1, doc="mask draws per step", ge=1)


class CiMaskedReconKeys(Keys):
    """Reconstruction with mask = CI, no delta path (§5.5)."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)
    routing: Routing = key("all", doc="which sites run their masked path per position")


class WeightOnlyKeys(Keys):
    """A term with no options but its coefficient."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)


class PgdReconKeys(Keys):
    """Fresh PGD: sources re-initialised each step, `steps` sign ascents with detached
    parameters, then the recon loss at the adversarial sources (§5.6)."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)
    init: Literal["random", "ones", "zeroes"] = key("random", doc="initial sources")
    step_size: float = key(0.1, doc="sign-ascent step", gt=0.0)
    steps: int = key(1, doc="ascent steps per training step", ge=1)
    scope: AdversaryScope = key("c", doc=_SCOPE)
    routing: Routing = key("all", doc="drawn once per step, shared by ascents and the loss")


class PgdLayerwiseKeys(Keys):
    """Fresh PGD run independently per site (only that site routed)."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)
    init: Literal["random", "ones", "zeroes"] = key("random", doc="initial sources")
    step_size: float = key(0.1, doc="sign-ascent step", gt=0.0)
    steps: int = key(1, doc="ascent steps per training step", ge=1)
    scope: AdversaryScope = key("c", doc=_SCOPE)


class PersistentPgdKeys(Keys):
    """Persistent PGD: adversarial sources (and their Adam moments) live in the train
    state; `warmup_ascents` detached ascents per step, then one more from the main
    backward's source gradient (§5.7)."""

    weight: float = key(1.0, doc=_WEIGHT, ge=0.0)
    scope: AdversaryScope = key("sc", doc=_SCOPE)
    lr: Schedule = key(Schedule(fn="constant", start=0.01, warmup=0.025), doc="source ascent step size")
    warmup_ascents: int = key(0, doc="extra detached ascents per training step", ge=0)
    step: Literal["adam", "sign"] = key("adam", doc="source update rule")
    beta1: float = key(0.9, doc="source Adam β1", ge=0.0, lt=1.0)
    beta2: float = key(0.999, doc="source Adam β2", ge=0.0, lt=1.0)
    eps: float = key(1e-8, doc="source Adam ε (added after the square root)", gt=0.0)
    start_frac: Fraction = key(0.0, doc="fraction of the run before the term switches on", ge=0.0, lt=1.0)
    source_dtype: Literal["f32", "bf16"] = key("f32", doc="storage dtype of sources and their moments")
    routing: Routing = key("all", doc="routing of the term's loss forward (ascents route everywhere)")


class FrequencyKeys(Keys):
    """Frequency penalty Σ f·log2(1 + a′·f) on per-component firing rates f (§5.9)."""

    weight: float = key(doc="coefficient c_freq", ge=0.0)
    reference_tokens: Union[Literal["auto"], PositiveSteps] = key(
        "auto", doc="a′: the reference count of positions; `auto` = the step's batch positions")


class ImportanceMinimalityKeys(Keys):
    """Σ_sites Σ_c mean_pos (ci_upper + eps)^p, with p optionally annealed (§5.8)."""

    weight: float = key(doc=_WEIGHT, ge=0.0)
    p: Schedule = key(Schedule.constant_of(1.0), doc="the norm's exponent, e.g. `linear(2.0, 0.4)`")
    eps: float = key(1e-12, doc="added inside the power", ge=0.0)


class SmoothL0Keys(Keys):
    """Geman–McClure penalty c² / (c² + γ²) on ci_upper (§5.10)."""

    weight: float = key(doc=_WEIGHT, ge=0.0)
    gamma: Schedule = key(Schedule.constant_of(1.0), doc="scale γ, e.g. `linear(1.0, 0.1)`")
    normalize_at_one: bool = key(False, doc="multiply by (1 + γ²) so a fully active component costs 1")


_FREQUENCY = BlockSchema("frequency", FrequencyKeys.__doc__ or "", keys=FrequencyKeys)


def _term(name: str, model: type[Keys], *children: BlockSchema) -> BlockSchema:
    return BlockSchema(name, model.__doc__ or "", keys=model, children=children)


TERMS: tuple[BlockSchema, ...] = (
    _term("faithfulness", FaithfulnessKeys),
    _term("stochastic_recon", StochasticReconKeys),
    _term("stochastic_recon_layerwise", LayerwiseReconKeys),
    _term("ci_masked_recon", CiMaskedReconKeys),
    _term("ci_masked_recon_layerwise", WeightOnlyKeys),
    _term("unmasked_recon", WeightOnlyKeys),
    _term("pgd_recon", PgdReconKeys),
    _term("pgd_recon_layerwise", PgdLayerwiseKeys),
    _term("persistent_pgd", PersistentPgdKeys),
    _term("importance_minimality", ImportanceMinimalityKeys, _FREQUENCY),
    _term("smooth_l0", SmoothL0Keys, _FREQUENCY),
)
IMPORTANCE_TERMS = ("importance_minimality", "smooth_l0")

LOSS = BlockSchema(
    "loss",
    "The loss terms, one block each; the total is Σ weight · term.",
    children=TERMS,
    required=True,
    layout=Layout.EXPANDED,
    noun="loss term",
)
