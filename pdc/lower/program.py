"""The static half of lowering: everything the jitted step needs to know that is not
an array — the target model, the site layout, the CI network's graph, each loss term's
options, the optimizers — read once from the validated IR and spec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import optax

from pdc.decomp import losses
from pdc.decomp.ci import CiSite, ci_layout
from pdc.decomp.masks import Layout
from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode, TieNode
from pdc.models import Target, build_target, dtype_of
from pdc.models.loading import hf_options
from pdc.registry.runtime import RematKeys
from pdc.registry.types import Keys, Schedule
from pdc.syntax.checked import Node
from pdc.targets import TargetShape

CONSUMES = (
    "target:tms.tied", "target:resid_mlp.activation", "target:llama.rope_theta", "target:llama.rms_norm_eps",
    "target:simple_mlp.rope_theta", "target:simple_mlp.rms_norm_eps", "remat.recon_forwards", "remat.ci",
    "remat.divergence_chunk",
    "precision.compute", "train.steps", "train.seed",
    "optimize.components.clip",
    "optimize.components.adamw.lr",
    "optimize.components.adamw.betas",
    "optimize.components.adamw.eps",
    "optimize.components.adamw.weight_decay",
    "optimize.ci.clip",
    "optimize.ci.adamw.lr",
    "optimize.ci.adamw.betas",
    "optimize.ci.adamw.eps",
    "optimize.ci.adamw.weight_decay",
    "optimize.faithfulness_warmup.steps",
    "optimize.faithfulness_warmup.lr",
    "optimize.faithfulness_warmup.weight_decay",
)


@dataclass(frozen=True)
class TermPlan:
    """One loss term: its registry name, coefficient and checked options."""

    name: str
    weight: float
    options: Keys
    frequency: Keys | None = None  # the `frequency` sub-block of importance terms


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


def _block(ir: IR, name: str) -> Node:
    node = ir.spec.block(name)
    assert node is not None, f"validated spec lacks `{name}`"
    return node


def _layout(sites: list[SiteNode]) -> dict[str, tuple[int, ...]]:
    layout: dict[str, list[int]] = {}
    for site in sites:
        layout.setdefault(site.kind, []).append(site.order)
    return {kind: tuple(indices) for kind, indices in layout.items()}


def _terms(ir: IR) -> tuple[TermPlan, ...]:
    loss = _block(ir, "loss")
    plans = []
    for name, node in loss.children.items():
        assert node.keys is not None
        frequency = node.child("frequency")
        plans.append(TermPlan(name, float(node.get("weight")), node.keys,
                              frequency.keys if frequency is not None else None))
    return tuple(plans)


def lower_program(ir: IR, remat_recon: str | None = None, compute_dtype: str | None = None) -> Program:
    """Read the static plan off a validated IR; `remat_recon`/`compute_dtype` override the
    spec's runtime blocks (the dry-run uses this to compare remat knobs)."""
    sites = [s for _, s in ir.nodes(SiteNode)]
    shape: TargetShape = ir.facts["target"]
    remat = ir.spec.block("remat")
    precision = ir.spec.block("precision")
    recon = remat_recon or (remat.get("recon_forwards") if remat is not None else "off")
    compute = compute_dtype or (precision.get("compute") if precision is not None else "f32")
    params = precision.get("params") if precision is not None else "f32"
    target = build_target(shape, [s.path for s in sites], **_target_options(ir, shape, recon, compute))
    ci = _block(ir, "ci")
    assert ci.keys is not None and ci.label is not None
    train = _block(ir, "train")
    return Program(ir, target, _layout(sites), ci_layout(sites), ci.label, ci.keys, _terms(ir),
                   int(train.get("steps")), int(train.get("seed")), dtype_of(params), dtype_of(compute),
                   remat is not None and remat.get("ci") == "on", "kl" if shape.output == "logits" else "mse",
                   remat_forward=recon == "whole" and not shape.has_positions,
                   ties={tie.kind: tie.source_kind for _, tie in ir.nodes(TieNode)},
                   target_dtype=_target_dtype(_block(ir, "target")),
                   divergence_chunk=int(remat.get("divergence_chunk") if remat is not None
                                        else RematKeys.model_fields["divergence_chunk"].default))


def _target_dtype(target: Node) -> Any:
    """`target.dtype` of the families that have it (LMs); toys keep their stored dtype."""
    return dtype_of(target.get("dtype")) if "dtype" in target.schema.key_names() else None


def _target_options(ir: IR, shape: TargetShape, remat: str, compute: str) -> dict[str, Any]:
    options: dict[str, Any] = {"compute_dtype": compute}
    target = _block(ir, "target")
    if shape.family in ("llama", "simple_mlp"):
        options["remat"] = remat
        options.update(_lm_options(target, shape.family))
    elif shape.family == "resid_mlp":
        options["activation"] = target.get("activation")
        options["embedding"] = target.get("embedding")
    else:
        options["tied"] = target.get("tied")
    return options


def _lm_options(target: Node, family: str) -> dict[str, Any]:
    """RoPE and norm settings: from the HF config when one is named, else the spec."""
    if target.get("config") is not None:
        config = Path(target.span.file).resolve().parent / target.get("config")
        return hf_options(json.loads(config.read_text()), family)
    return {"rope_theta": target.get("rope_theta"), "rms_norm_eps": target.get("rms_norm_eps")}


# ---- optimizers ------------------------------------------------------------------------------


def schedule_fn(schedule: Schedule, total_steps: int) -> optax.Schedule:
    return lambda count: losses.schedule_value(schedule, count, total_steps)


def optimizer(ir: IR, group: str, total_steps: int) -> optax.GradientTransformation:
    """AdamW of one parameter group with its schedule, after the group's clip if any
    (weight decay as the spec says, default 0 — never optax's 1e-4)."""
    node = _block(ir, "optimize").child(group)
    assert node is not None
    adamw = node.child("adamw")
    assert adamw is not None
    b1, b2 = adamw.get("betas")
    chain = [losses.clip_by_global_norm_eps(node.get("clip"))] if node.get("clip") is not None else []
    chain.append(optax.adamw(schedule_fn(adamw.get("lr"), total_steps), b1=b1, b2=b2, eps=adamw.get("eps"),
                             weight_decay=adamw.get("weight_decay")))
    return optax.chain(*chain)


def lr_of(ir: IR, group: str) -> Schedule:
    node = _block(ir, "optimize").child(group)
    assert node is not None and node.child("adamw") is not None
    return node.child("adamw").get("lr")  # type: ignore[union-attr]


def faithfulness_warmup(ir: IR) -> tuple[int, optax.GradientTransformation]:
    """(steps, AdamW with constant lr and the warmup's weight decay), or (0, identity)."""
    node = _block(ir, "optimize").child("faithfulness_warmup")
    if node is None or node.get("steps") == 0:
        return 0, optax.identity()
    return int(node.get("steps")), optax.adamw(node.get("lr"), weight_decay=node.get("weight_decay"))


__all__ = ["Program", "TermPlan", "lower_program", "optimizer", "faithfulness_warmup", "lr_of", "jnp"]
