"""The static half of lowering: everything the jitted step needs to know that is not
an array — the target model, the site layout, the CI network's graph, each loss term's
options, the optimizers — read once from the validated IR's typed nodes (never the spec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import optax

from pdc.decomp import losses
from pdc.decomp.ci import CiSite, ci_layout
from pdc.decomp.masks import Layout
from pdc.ir.graph import IR
from pdc.ir.nodes import OptGroupNode, SiteNode, TermNode, TieNode
from pdc.models import Target, build_target, dtype_of
from pdc.registry.types import Keys, Schedule
from pdc.targets import TargetShape


@dataclass(frozen=True)
class TermPlan:
    """One loss term: its instance name (the registry name, or `name.label` for a named
    instance: the log keys and the RNG stream follow it), coefficient and checked options."""

    name: str
    weight: float
    options: Keys
    frequency: Keys | None = None  # the `frequency` sub-block of importance terms
    kind: str = ""  # the registry name (`stochastic_recon`); "" reads as `name`

    @property
    def term(self) -> str:
        """The registry name of the term this plan is an instance of."""
        return self.kind or self.name


@dataclass(frozen=True, eq=False)
class Program:
    ir: IR
    target: Target
    layout: Layout  # kind → canonical site index of each stacked entry
    ci_sites: tuple[CiSite, ...]
    ci_variant: str
    ci_options: Keys
    terms: tuple[TermPlan, ...]
    total_steps: int
    seed: int
    params_dtype: Any
    compute_dtype: Any
    remat_ci: bool
    divergence: str  # "kl" | "mse"
    remat_forward: bool = False  # toys: checkpoint each masked forward (LMs remat inside their scan)
    ties: dict[str, str] = field(default_factory=dict)  # tied kind → source kind (`pdc.lower.ties`)
    target_dtype: Any = None  # the frozen weights' dtype (`target.dtype`); None: as the loader stores them
    divergence_chunk: int = 0  # LMs: positions per chunk of the KL over the vocabulary (0: unchunked)
    ascent_target: Target | None = None  # the adversaries' ascents' forward when not the loss forwards' (no remat)
    ascent_remat: bool = False  # ascents recompute as the loss forwards do (chosen when the step would not fit)

    @property
    def ascent_choice(self) -> bool:
        """Do the ascents' forwards differ from the loss forwards' (these rematerialised) —
        the choice the dry-run makes? Only with an adversary that ascends."""
        ascends = any(t.name in ("pgd_recon", "pgd_recon_layerwise") or
                      t.name == "persistent_pgd" and int(t.options.warmup_ascents) > 0 for t in self.terms)
        return ascends and (self.remat_forward or self.ascent_target is not None or
                            (self.ascent_remat and getattr(self.target, "remat", "off") != "off"))

    @property
    def chunked_divergence(self) -> bool:
        """Forwards end at the final normed residual and the KL maps it to logits chunk by chunk."""
        return self.divergence == "kl" and self.divergence_chunk > 0

    @property
    def shape(self) -> TargetShape:
        return self.ir.facts["target"]

    def term(self, name: str) -> TermPlan | None:
        return next((t for t in self.terms if t.name == name), None)

    def kinds(self) -> list[str]:
        return list(self.layout)


def _layout(sites: list[SiteNode]) -> dict[str, tuple[int, ...]]:
    layout: dict[str, list[int]] = {}
    for site in sites:
        layout.setdefault(site.kind, []).append(site.order)
    return {kind: tuple(indices) for kind, indices in layout.items()}


def _terms(ir: IR) -> tuple[TermPlan, ...]:
    return tuple(TermPlan(t.name, float(t.weight), t.keys, t.frequency, t.term) for _, t in ir.nodes(TermNode))


def _divergence(ir: IR) -> str:
    """The recon terms' divergence, as the loss pass chose it for the target."""
    return next((t.divergence for _, t in ir.nodes(TermNode) if t.divergence), "mse")


def lower_program(ir: IR, remat_recon: str | None = None, compute_dtype: str | None = None,
                  ascent_remat: bool = False) -> Program:
    """Read the static plan off a validated IR's typed nodes; `remat_recon`/`compute_dtype`
    override the spec's runtime blocks (the dry-run uses this to compare remat knobs).

    The adversaries' ascents (persistent PGD's warm-up, fresh PGD's sign steps) run their
    masked forwards without rematerialisation whatever `recon_forwards` says: their
    activations die as soon as the source gradient exists, so recomputing them only repeats
    the forward (llama8b_l18_reference, 4 sequences per H100, remat on: +187 TFLOP a step).
    `ascent_remat` rematerialises them as the loss forwards instead — what the dry-run and
    `pdc train` compile when the step would otherwise exceed its memory budget
    (`pdc.lower.inputs.choose_ascents`)."""
    sites = [s for _, s in ir.nodes(SiteNode)]
    shape: TargetShape = ir.facts["target"]
    remat, precision, train, ci = ir.options("remat"), ir.options("precision"), ir.options("train"), ir.options_node("ci")
    recon = remat_recon or remat.recon_forwards
    compute = compute_dtype or precision.compute
    options: dict[str, Any] = {"compute_dtype": compute}  # and the target's own `shape.forward`
    if shape.has_positions:
        options["remat"] = recon
    target = build_target(shape, [s.path for s in sites], **options)
    ascent_target = None
    if shape.has_positions and recon != "off" and not ascent_remat:
        ascent_target = build_target(shape, [s.path for s in sites], **{**options, "remat": "off"})
    return Program(ir, target, _layout(sites), ci_layout(sites), ci.label, ci.keys, _terms(ir),
                   int(train.steps), int(train.seed), dtype_of(precision.params), dtype_of(compute),
                   remat.ci == "on", _divergence(ir),
                   remat_forward=recon == "whole" and not shape.has_positions,
                   ties={tie.kind: tie.source_kind for _, tie in ir.nodes(TieNode)},
                   target_dtype=_target_dtype(ir.options("target")),
                   divergence_chunk=int(remat.divergence_chunk), ascent_target=ascent_target,
                   ascent_remat=ascent_remat)


def _target_dtype(target: Keys) -> Any:
    """`target.dtype` of the families that have it (LMs); toys keep their stored dtype."""
    return dtype_of(target.dtype) if "dtype" in type(target).model_fields else None


# ---- optimizers ------------------------------------------------------------------------------


def schedule_fn(schedule: Schedule, total_steps: int) -> optax.Schedule:
    return lambda count: losses.schedule_value(schedule, count, total_steps)


def _group(ir: IR, name: str) -> OptGroupNode:
    return ir.payload(f"group:{name}")


def optimizer(ir: IR, group: str, total_steps: int) -> optax.GradientTransformation:
    """AdamW of one parameter group with its schedule, after the group's clip if any
    (weight decay as the spec says, default 0 — never optax's 1e-4)."""
    node = _group(ir, group)
    chain = [losses.clip_by_global_norm_eps(node.clip)] if node.clip is not None else []
    chain.append(optax.adamw(schedule_fn(node.lr, total_steps), b1=node.betas[0], b2=node.betas[1], eps=node.eps,
                             weight_decay=node.weight_decay))
    return optax.chain(*chain)


def lr_of(ir: IR, group: str) -> Schedule:
    return _group(ir, group).lr


def faithfulness_warmup(ir: IR) -> tuple[int, optax.GradientTransformation]:
    """(steps, AdamW with constant lr and the warmup's weight decay), or (0, identity)."""
    warmup = ir.options("optimize.faithfulness_warmup")
    if warmup.steps == 0:
        return 0, optax.identity()
    return int(warmup.steps), optax.adamw(warmup.lr, weight_decay=warmup.weight_decay)


__all__ = ["Program", "TermPlan", "lower_program", "optimizer", "faithfulness_warmup", "lr_of", "jnp"]
