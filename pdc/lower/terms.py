"""Each loss term's value inside the step: the term's registry entry (`pdc.terms`) lowers it
with what the step gives every term (`TermContext`).

Every term runs under `jax.named_scope("loss.<name>")` so compiled buffers and
collectives map back to the spec block that asked for them.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from pdc.decomp import losses
from pdc.decomp.components import Factors, SiteMask
from pdc.decomp.head import Head
from pdc.decomp.squash import CiBundle
from pdc.lower.program import Program
from pdc.registry.loss import LOSS_TERMS
from pdc.terms import TermValue
from pdc.terms._shared import schedule_kind

Array = jax.Array
Forward = Callable[[Mapping[str, SiteMask]], Array]


@dataclass(frozen=True)
class TermContext:
    """What every term of one step may read."""

    program: Program
    step: Array
    step_key: Array
    clean: Array | losses.CleanSide  # the stop-gradient recon target (chunked-KL LMs: its `CleanSide`, once per step)
    ci: CiBundle
    forward: Forward  # live components
    ascent_forward: Forward  # detached components, for adversary ascents
    weights: Mapping[str, Array]
    components: Mapping[str, Factors]
    head: Head | None = None  # LMs with a chunked divergence: forwards end before the unembedding, this maps them
    sources: Mapping[str, Mapping[str, Array]] = dataclasses.field(default_factory=dict)  # stateful terms' sources

    @property
    def divergence(self) -> losses.Divergence:
        if self.program.divergence != "kl":
            return losses.mse
        if self.head is None:
            return losses.kl_divergence
        return functools.partial(losses.shared_clean_kl, head=self.head, chunk=self.program.divergence_chunk)

    @property
    def recon_args(self) -> tuple[Any, ...]:
        """(forward, clean, CI lower, divergence, layout): the leading arguments of the
        reconstruction losses in `pdc.decomp.losses`."""
        return self.forward, self.clean, self.ci.lower, self.divergence, self.program.layout

    def key(self, name: str) -> Array:
        """The key of term instance `name` at this step: its registry kind's stream, and for a
        named instance (`stochastic_recon.subset`) that stream folded with the name's own
        number, so two instances of one term draw independent masks."""
        kind, _, label = name.partition(".")
        key = losses.term_key(self.step_key, kind)
        return key if not label else jax.random.fold_in(key, instance_number(label))

    def schedule(self, schedule: Any, key: str) -> Array:
        """This step's value of the term key `key`'s schedule, ramped as that key ramps."""
        return losses.schedule_value(schedule, self.step, self.program.total_steps, schedule_kind(key))


def instance_number(label: str) -> int:
    """A named instance's stream number: a fixed function of its name (CRC-32, 31 bits), so
    neither the order of blocks nor the other instances move it."""
    return zlib.crc32(label.encode()) & 0x7FFFFFFF


WEIGHTED = "weighted/"  # `weighted/<term>`: the term's share of the total (the step logs it under this name)


def term_losses(ctx: TermContext) -> tuple[Array, dict[str, Array]]:
    """(Σ weight · term + each term's extra penalty, per-term values and metrics) over the
    program's terms, each lowered by its registry entry (`pdc.terms`). Besides each term's
    unweighted value (`<term>`) and metrics (`<term>.<metric>`), `weighted/<term>` is what the
    term adds to the total — weight · value plus its extra penalty — so the weighted values
    sum to the total and a plot shows which term drives it."""
    total = jnp.zeros((), jnp.float32)
    values: dict[str, Array] = {}
    for plan in ctx.program.terms:
        with jax.named_scope(f"loss.{plan.name}"):
            out = LOSS_TERMS[plan.term].lower(plan, ctx)
        out = out if isinstance(out, TermValue) else TermValue(out)
        values.update(out.metrics)
        values[plan.name] = out.value
        weighted = plan.weight * out.value
        share = weighted
        if out.extra_loss is not None:
            share = weighted + out.extra_loss
            total = total + out.extra_loss
        values[f"{WEIGHTED}{plan.name}"] = jax.lax.stop_gradient(share)
        total = total + weighted  # the order of the sums as before these metrics: the total stays bit-identical
    return total, values
