"""Key types and sub-blocks that several loss terms share."""

from __future__ import annotations

from typing import Any, Literal, Union

from pdc.registry.schema import BlockSchema
from pdc.registry.types import Keys, PositiveSteps, key

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
WEIGHT = "coefficient of the term in the total loss"
SAMPLING = "component sources: U[0,1] (continuous) or Bernoulli(0.5) (binomial)"
SCOPE = ("source shape: c [1, C+1], bc [B, C+1], sc [1, T, C+1], bsc [B, T, C+1] "
         "(legacy: shared_across_batch = c, broadcast_across_batch = sc, unique_per_datapoint = "
         "per_batch_per_position = bsc)")


class WeightOnlyKeys(Keys):
    """A term with no options but its coefficient."""

    weight: float = key(1.0, doc=WEIGHT, ge=0.0)


class FrequencyKeys(Keys):
    """Frequency penalty Σ f·log2(1 + a′·f) on per-component firing rates f (§5.9)."""

    weight: float = key(doc="coefficient c_freq", ge=0.0)
    reference_tokens: Union[Literal["auto"], PositiveSteps] = key(
        "auto", doc="a′: the reference count of positions; `auto` (the default) = the tokens per step on the "
        "whole mesh (batch × seq_len for LMs, batch for toys), which makes the term the hand-written trainer's "
        "β·Σ f·log2(1 + S) at any batch; a fixed number other than that is warned about (PD0317)")


FREQUENCY = BlockSchema("frequency", FrequencyKeys.__doc__ or "", keys=FrequencyKeys)


def importance_value(plan: Any, penalty: Any) -> Any:
    """An importance term's `TermValue`: the penalty, its frequency part as a metric, and
    c_freq · frequency added to the total when the spec has a `frequency` block."""
    from pdc.terms.base import TermValue

    extra = plan.frequency.weight * penalty.frequency if plan.frequency is not None else None
    return TermValue(penalty.value, extra, {f"{plan.name}.frequency": penalty.frequency})


def reference_tokens(plan: Any) -> Any:
    return plan.frequency.reference_tokens if plan.frequency is not None else None


def schedule_kind(key: str) -> Literal["anneal", "source_lr"]:
    """How a term's scheduled key ramps (`pdc.decomp.losses.schedule_value`): a term's `lr` is
    its adversary's source ascent step (`source_lr`: at least one warm-up step, as the
    hand-written trainer); every other term schedule (p, γ) anneals over `step / total`."""
    return "source_lr" if key == "lr" else "anneal"
