"""Each loss term's value inside the step: the registry's options → `pdc.decomp.losses`.

Every term runs under `jax.named_scope("loss.<name>")` so compiled buffers and
collectives map back to the spec block that asked for them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from pdc.decomp import losses
from pdc.decomp.components import Factors, SiteMask
from pdc.decomp.squash import CiBundle
from pdc.lower.program import Program, TermPlan

Array = jax.Array
Forward = Callable[[Mapping[str, SiteMask]], Array]

CONSUMES = (  # every option of every term, read through `plan.options`
    "loss.faithfulness.weight",
    "loss.faithfulness.form",
    "loss.stochastic_recon.weight",
    "loss.stochastic_recon.routing",
    "loss.stochastic_recon.sampling",
    "loss.stochastic_recon.samples",
    "loss.stochastic_recon.sites_per_chunk",
    "loss.stochastic_recon_layerwise.weight",
    "loss.stochastic_recon_layerwise.sampling",
    "loss.stochastic_recon_layerwise.samples",
    "loss.ci_masked_recon.weight",
    "loss.ci_masked_recon.routing",
    "loss.ci_masked_recon_layerwise.weight",
    "loss.unmasked_recon.weight",
    "loss.pgd_recon.weight",
    "loss.pgd_recon.init",
    "loss.pgd_recon.step_size",
    "loss.pgd_recon.steps",
    "loss.pgd_recon.scope",
    "loss.pgd_recon.routing",
    "loss.pgd_recon_layerwise.weight",
    "loss.pgd_recon_layerwise.init",
    "loss.pgd_recon_layerwise.step_size",
    "loss.pgd_recon_layerwise.steps",
    "loss.pgd_recon_layerwise.scope",
    "loss.persistent_pgd.weight",
    "loss.persistent_pgd.scope",
    "loss.persistent_pgd.lr",
    "loss.persistent_pgd.warmup_ascents",
    "loss.persistent_pgd.step",
    "loss.persistent_pgd.beta1",
    "loss.persistent_pgd.beta2",
    "loss.persistent_pgd.eps",
    "loss.persistent_pgd.start_frac",
    "loss.persistent_pgd.source_dtype",
    "loss.persistent_pgd.routing",
    "loss.importance_minimality.weight",
    "loss.importance_minimality.p",
    "loss.importance_minimality.eps",
    "loss.importance_minimality.frequency.weight",
    "loss.importance_minimality.frequency.reference_tokens",
    "loss.smooth_l0.weight",
    "loss.smooth_l0.gamma",
    "loss.smooth_l0.normalize_at_one",
    "loss.smooth_l0.frequency.weight",
    "loss.smooth_l0.frequency.reference_tokens",
)


@dataclass(frozen=True)
class TermContext:
    """What every term of one step may read."""

    program: Program
    step: Array
    step_key: Array
    clean: Array  # the stop-gradient recon target
    ci: CiBundle
    forward: Forward  # live components
    ascent_forward: Forward  # detached components, for adversary ascents
    weights: Mapping[str, Array]
    components: Mapping[str, Factors]
    head: Array | None = None  # LMs with a chunked divergence: forwards end before the unembedding, this maps them

    @property
    def divergence(self) -> losses.Divergence:
        if self.program.divergence != "kl":
            return losses.mse
        if self.head is None:
            return losses.kl_divergence
        return functools.partial(losses.chunked_kl_divergence, head=self.head, chunk=self.program.divergence_chunk)

    def key(self, name: str) -> Array:
        return losses.term_key(self.step_key, name)

    def schedule(self, schedule: Any) -> Array:
        return losses.schedule_value(schedule, self.step, self.program.total_steps)


def _recon(plan: TermPlan, ctx: TermContext, sources: Mapping[str, Mapping[str, Array]]) -> Array:
    o, key, layout, lower = plan.options, ctx.key(plan.name), ctx.program.layout, ctx.ci.lower
    args = (ctx.forward, ctx.clean, lower, ctx.divergence, layout)
    name = plan.name
    if name == "stochastic_recon":
        return losses.stochastic_recon(key, *args, routing=o.routing, sampling=o.sampling, samples=o.samples,
                                       sites_per_chunk=o.sites_per_chunk)
    if name == "stochastic_recon_layerwise":
        return losses.layerwise_recon(key, *args, sampling=o.sampling, samples=o.samples)
    if name == "ci_masked_recon":
        return losses.ci_masked_recon(key, *args, routing=o.routing)
    if name == "ci_masked_recon_layerwise":
        return losses.ci_masked_recon_layerwise(*args)
    if name == "unmasked_recon":
        return losses.unmasked_recon(ctx.forward, ctx.clean, lower, ctx.divergence)
    if name in ("pgd_recon", "pgd_recon_layerwise"):
        extra = {"routing": o.routing} if name == "pgd_recon" else {}
        fn = losses.pgd_recon if name == "pgd_recon" else losses.pgd_recon_layerwise
        return fn(key, *args, init=o.init, step_size=o.step_size, steps=o.steps, scope=o.scope,
                  ascent_forward=ctx.ascent_forward, **extra)
    assert name == "persistent_pgd", name
    active = losses.ppgd_active(ctx.step, ctx.program.total_steps, o.start_frac)
    return losses.ppgd_recon(key, ctx.forward, ctx.clean, lower, sources[name], ctx.divergence, layout,
                             routing=o.routing, active=active)


def _importance(plan: TermPlan, ctx: TermContext) -> tuple[Array, Array]:
    """(c_imp · value, c_freq · frequency) and the unweighted parts for the metrics."""
    o = plan.options
    reference = plan.frequency.reference_tokens if plan.frequency is not None else None  # type: ignore[attr-defined]
    if plan.name == "importance_minimality":
        penalty = losses.importance_minimality(ctx.ci.upper, ctx.schedule(o.p), o.eps, reference)
    else:
        penalty = losses.smooth_l0(ctx.ci.upper, ctx.schedule(o.gamma), o.normalize_at_one, reference)
    return penalty.value, penalty.frequency


def term_losses(ctx: TermContext, sources: Mapping[str, Mapping[str, Array]]) -> tuple[Array, dict[str, Array]]:
    """(Σ weight · term, per-term values) over the program's terms."""
    total = jnp.zeros((), jnp.float32)
    values: dict[str, Array] = {}
    for plan in ctx.program.terms:
        with jax.named_scope(f"loss.{plan.name}"):
            if plan.name == "faithfulness":
                value = losses.faithfulness(ctx.weights, ctx.components, plan.options.form)  # type: ignore[attr-defined]
            elif plan.name in ("importance_minimality", "smooth_l0"):
                value, frequency = _importance(plan, ctx)
                values[f"{plan.name}.frequency"] = frequency
                if plan.frequency is not None:
                    total = total + plan.frequency.weight * frequency  # type: ignore[attr-defined]
            else:
                value = _recon(plan, ctx, sources)
        values[plan.name] = value
        total = total + plan.weight * value
    return total, values
