"""The train step: one pure function of (state, frozen params, batch), jitted whole
(SPD_ALGORITHM.md §5.12): clean forward, CI, persistent-adversary warmup ascents, every
loss term, one backward for components / CI / sources, the final source ascent, and the
optimizer updates. Toy batches are drawn inside it from (seed, step).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pdc.ci import NETWORKS
from pdc.decomp import losses, rng
from pdc.decomp.ci import CiInputs, apply_ci
from pdc.decomp.components import Factors
from pdc.decomp.features import sparse_features
from pdc.decomp.metrics import batches_since_fired, ci_l0, n_alive
from pdc.decomp.pins import Pins, pin_batch, pin_components, pinned
from pdc.decomp.squash import CiBundle, ci_bundle
from pdc.ir.nodes import SiteNode
from pdc.lower.eval_options import eval_options
from pdc.lower.program import Program, faithfulness_warmup, lr_of, optimizer
from pdc.lower.state import TrainState, ci_graph, lead_shape, merged_ci
from pdc.lower.terms import WEIGHTED, TermContext, term_losses
from pdc.lower.ties import merge_updates
from pdc.models.base import CleanPass
from pdc.registry.types import schedule_keys
from pdc.terms._shared import schedule_kind
from pdc.terms.faithfulness import faithfulness, warmup_form

Array = jax.Array
Metrics = dict[str, Array]
StepFn = Callable[[TrainState, Any, Array | None], tuple[TrainState, Metrics]]


def toy_batch(program: Program, step: Array) -> Array:
    """The batch of `step` for toy targets, drawn on device: a pure function of (seed, step)."""
    _, _, _, data_key = rng.root_keys(program.seed)
    return toy_batch_of_key(program, rng.batch_key(data_key, step))


def toy_batch_of_key(program: Program, key: Array) -> Array:
    """A batch of the spec's sparse features drawn from `key` (training and eval use
    disjoint key streams, so they never share a batch)."""
    data = program.ir.options("data")
    return sparse_features(key, int(data.batch), program.shape.dims["features"], float(data.probability),
                           tuple(data.values), data.distribution)


def _ci(program: Program, ci: nnx.State, state: TrainState, clean: CleanPass,
        components: dict[str, Factors]) -> CiBundle:
    """The CI bundle from the clean activations; a network that reads the component
    activations (the scalar MLP) gets x @ V (live V)."""
    return _bundle(program, _ci_preacts(program, ci, state, clean, components))


def _ci_preacts(program: Program, ci: nnx.State, state: TrainState, clean: CleanPass,
                components: dict[str, Factors]) -> dict[str, Array]:
    """The CI network's pre-activations per site kind (what `_bundle` squashes)."""
    acts = None
    if NETWORKS[program.ci_variant].reads_component_acts:
        acts = {kind: jnp.einsum("l...i,lic->l...c", clean.site_inputs[kind], f.V.astype(program.compute_dtype))
                for kind, f in components.items()}
    run = functools.partial(apply_ci, ci_graph(program))
    if program.remat_ci:
        run = jax.checkpoint(run, policy=jax.checkpoint_policies.nothing_saveable)
    with jax.named_scope("ci"):
        preacts = run(merged_ci(state, ci), CiInputs(clean.site_inputs, acts, clean.block_inputs))
        return {kind: pin_components(p, lead=1) for kind, p in preacts.items()}  # reshard once, at the producer


def _bundle(program: Program, preacts: dict[str, Array]) -> CiBundle:
    with jax.named_scope("ci"):
        return ci_bundle(preacts, float(program.ci_options.leak))  # type: ignore[attr-defined]


def site_ci(program: Program, state: TrainState, params: Any, batch: Array) -> dict[str, Array]:
    """Lower-leaky CI per site kind `[L_k, *lead, C]` of a batch (LM token ids `[B, T]`):
    the clean forward and the CI network exactly as the train step runs them, nothing else.
    What `Run.ci` returns per site, and what the harvest accumulates."""
    clean = program.target.clean(params, batch)
    return _ci(program, state.ci, state, clean, state.components).lower


def _pinned_clean(clean: CleanPass) -> CleanPass:
    """The clean pass with its batch dimension pinned, so every consumer sees batch shards."""
    blocks = None if clean.block_inputs is None else pin_batch(clean.block_inputs, lead=1)
    start = None if clean.start is None else jax.tree.map(pin_batch, clean.start)
    return CleanPass(pin_batch(clean.output), {k: pin_batch(x, lead=1) for k, x in clean.site_inputs.items()}, blocks,
                     start)


def _warm_adversaries(program: Program, state: TrainState, ctx: TermContext) -> dict[str, losses.PpgdState]:
    warmed = dict(state.adversaries)
    plan = program.term("persistent_pgd")
    if plan is None:
        return warmed
    o = plan.options
    with jax.named_scope("loss.persistent_pgd.warmup"):
        warmed["persistent_pgd"] = losses.ppgd_warmup(
            state.adversaries["persistent_pgd"], ctx.ascent_forward, ctx.clean, jax.lax.stop_gradient(ctx.ci.lower),
            ctx.divergence, ctx.schedule(o.lr, "lr"), o.warmup_ascents, _source_opt(o),
            losses.ppgd_active(ctx.step, program.total_steps, o.start_frac))
    return warmed


def _source_opt(o: Any) -> losses.SourceOptimizer:
    return losses.SourceOptimizer(o.step, o.beta1, o.beta2, o.eps)


def _final_ascent(program: Program, adversaries: dict[str, losses.PpgdState], grads: dict[str, Any],
                  step: Array) -> dict[str, losses.PpgdState]:
    plan = program.term("persistent_pgd")
    if plan is None:
        return adversaries
    o = plan.options
    lr = losses.schedule_value(o.lr, step, program.total_steps, schedule_kind("lr"))
    active = losses.ppgd_active(step, program.total_steps, o.start_frac)
    out = dict(adversaries)
    out["persistent_pgd"] = losses.ppgd_final_ascent(adversaries["persistent_pgd"], grads["persistent_pgd"],
                                                     plan.weight, lr, _source_opt(o), active)
    return out


_TREE_NORM = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm  # optax ≥ 0.2.5 renamed it


def _norm(tree: Any) -> Array:
    return _TREE_NORM(tree)


class StepGradients(NamedTuple):
    """One step's forward and backward, before any optimizer update."""

    total: Array  # the weighted sum of the terms
    values: Metrics  # term name → unweighted loss
    ci_lower: dict[str, Array]  # the CI the losses used (for the alive tracker and ci_l0)
    components: dict[str, Factors]  # ∂total/∂(V, U) per kind; a tied kind has its own
    ci: Any  # ∂total/∂(CI network parameters)
    sources: dict[str, Any]  # ∂total/∂(persistent adversary sources), for the final ascent
    adversaries: dict[str, losses.PpgdState]  # after this step's warmup ascents


GradientsFn = Callable[[TrainState, Any, Array | None], StepGradients]


def _ascent_forward(program: Program) -> Callable[..., Array]:
    """The masked forward the adversaries' ascents run: not rematerialised (their activations
    die with the source gradient), unless the program asks for the loss forwards' remat
    (`Program.ascent_remat`, the dry-run's choice when skipping it would raise the peak)."""
    if program.ascent_remat:
        return jax.checkpoint(program.target.forward) if program.remat_forward else program.target.forward
    return (program.ascent_target or program.target).forward


def make_step_gradients(program: Program) -> GradientsFn:
    """The step up to its gradients (not jitted; `make_train_step` runs it under its pins):
    the clean pass, CI, the adversaries' warmup ascents and every loss term, differentiated
    in one `value_and_grad`. Its own function so the gradients can be checked against the
    torch reference (`tests/test_reference_step.py`) without running an optimizer."""
    target = program.target
    forward = jax.checkpoint(target.forward) if program.remat_forward else target.forward
    hidden = {"hidden": True} if program.chunked_divergence else {}  # LMs: stop before the unembedding
    forward = functools.partial(forward, **hidden)
    ascent = functools.partial(_ascent_forward(program), **hidden)
    _, _, run_key, _ = rng.root_keys(program.seed)

    def gradients(state: TrainState, params: Any, batch: Array | None) -> StepGradients:
        step = state.step
        batch = toy_batch(program, step) if batch is None else pin_batch(batch)
        with jax.named_scope("clean"):
            clean = _pinned_clean(jax.lax.stop_gradient(target.clean(params, batch, **hidden)))
        detached = jax.lax.stop_gradient(state.components)
        start = batch if clean.start is None else clean.start  # LMs: the residual at the first decomposed layer
        ascent_forward = functools.partial(ascent, params, start, detached)
        weights = target.weights(params)
        head = target.head(params) if hidden else None
        with jax.named_scope("clean"):  # the clean side of every KL of the step, computed once
            recon_target = clean.output if head is None else losses.clean_side(clean.output, head,
                                                                               program.divergence_chunk)

        def context(components: dict[str, Factors], ci: CiBundle, sources: Any = None) -> TermContext:
            return TermContext(program, step, rng.step_key(run_key, step), recon_target, ci,
                               functools.partial(forward, params, start, components), ascent_forward,
                               weights, components, head, sources or {})

        sources_of = lambda adversaries: {name: a.sources for name, a in adversaries.items()}  # noqa: E731
        if program.remat_ci:
            # The CI network runs once: its pre-activations feed the adversaries' warm-up
            # (detached) and the loss terms, and its backward is the pullback of the terms'
            # cotangent on them (llama8b_l18_reference: one global-transformer forward less a
            # step). Only where the CI is rematerialised: its residuals are then its inputs, so
            # holding them through the warm-up costs nothing (with `ci = off` its activations
            # would sit through the ascents: 4 sequences per H100, strict off, 49.4 → 51.0 GiB).
            preacts, ci_pullback = jax.vjp(lambda ci, comps: _ci_preacts(program, ci, state, clean, comps),
                                           state.ci, state.components)
            adversaries = _warm_adversaries(program, state,
                                            context(detached, _bundle(program, jax.lax.stop_gradient(preacts))))
            if adversaries:  # the barrier: see below; the CI's pre-activations go through it too
                start, adversaries, preacts = jax.lax.optimization_barrier((start, adversaries, preacts))

            def shared_loss(components: dict[str, Factors], preacts: dict[str, Array],
                            sources: dict[str, Any]) -> tuple[Array, tuple[Metrics, dict[str, Array]]]:
                bundle = _bundle(program, preacts)
                total, values = term_losses(context(components, bundle, sources))
                return total, (values, bundle.lower)

            (total, (values, ci_lower)), (g_components, g_preacts, g_sources) = jax.value_and_grad(
                shared_loss, argnums=(0, 1, 2), has_aux=True)(state.components, preacts, sources_of(adversaries))
            g_ci, g_components_ci = ci_pullback(g_preacts)
            g_components = jax.tree.map(jnp.add, g_components, g_components_ci)
            return StepGradients(total, values, ci_lower, g_components, g_ci, g_sources, adversaries)

        warm_ctx = context(detached, _ci(program, jax.lax.stop_gradient(state.ci), state, clean, detached))
        adversaries = _warm_adversaries(program, state, warm_ctx)
        if adversaries:
            # The loss terms' forwards start after the warmup ascents: XLA would otherwise run
            # the sources-free ones first and hold their residuals through the warmup
            # (llama8b_l18_reference, remat on: 40.7 → 36.1 GiB per H100). The clean pass goes
            # through the barrier too, so the live CI and the masks drawn from it are not made
            # during the ascents either. Identity on values.
            start, adversaries, clean = jax.lax.optimization_barrier((start, adversaries, clean))

        def loss_fn(components: dict[str, Factors], ci: nnx.State,
                    sources: dict[str, Any]) -> tuple[Array, tuple[Metrics, dict[str, Array]]]:
            bundle = _ci(program, ci, state, clean, components)
            total, values = term_losses(context(components, bundle, sources))
            return total, (values, bundle.lower)

        (total, (values, ci_lower)), (g_components, g_ci, g_sources) = jax.value_and_grad(
            loss_fn, argnums=(0, 1, 2), has_aux=True)(state.components, state.ci, sources_of(adversaries))
        return StepGradients(total, values, ci_lower, g_components, g_ci, g_sources, adversaries)

    return gradients


def make_train_step(program: Program, pins: Pins | None = None) -> StepFn:
    """The step function (not yet jitted: the caller adds shardings and donation): the
    gradients, the adversaries' final ascent, the optimizer updates, the alive tracker.
    `pins` pins activations to the mesh while the step is traced (`pdc.decomp.pins`)."""
    gradients = make_step_gradients(program)
    opt_components = optimizer(program.ir, "components", program.total_steps)
    opt_ci = optimizer(program.ir, "ci", program.total_steps)

    def step_fn(state: TrainState, params: Any, batch: Array | None) -> tuple[TrainState, Metrics]:
        with pinned(pins):
            return traced_step(state, params, batch)

    def traced_step(state: TrainState, params: Any, batch: Array | None) -> tuple[TrainState, Metrics]:
        g = gradients(state, params, batch)
        adversaries = _final_ascent(program, g.adversaries, g.sources, state.step)
        stepped, opt_c = _optimizer_step("components", opt_components, g.components, state.opt_components,
                                         state.components)
        components = merge_updates(state.components, stepped, program.ties)  # tied sites share both updates
        ci, opt_i = _optimizer_step("ci", opt_ci, g.ci, state.opt_ci, state.ci)
        since_fired = _track_alive(program, state.since_fired, g.ci_lower)
        metrics = {"loss/total": g.total,
                   **{k if k.startswith(WEIGHTED) else f"loss/{k}": v for k, v in g.values.items()},
                   **_grad_norms(g.components, g.ci), **_schedules(program, state.step),
                   **_ci_l0(program, g.ci_lower), **alive_counts(program, since_fired)}
        new = TrainState(state.step + 1, components, ci, state.ci_buffers, opt_c, opt_i, adversaries, since_fired)
        return new, metrics

    return step_fn


def _optimizer_step(group: str, opt: optax.GradientTransformation, grads: Any, opt_state: Any,
                    params: Any) -> tuple[Any, Any]:
    """One optimizer update of a parameter group (`components` or `ci`): new params, new state."""
    with jax.named_scope(f"optimize.{group}"):
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state


def _grad_norms(g_components: dict[str, Factors], g_ci: Any) -> Metrics:
    return {"grad_norm/components": _norm(g_components), "grad_norm/ci": _norm(g_ci),
            **{f"grad_norm/components/{k}": _norm(g) for k, g in g_components.items()}}


def _ci_l0(program: Program, ci_lower: dict[str, Array]) -> Metrics:
    """`ci_l0/<site>` on this step's batch: eval's `ci_l0` metric at eval's `alive_threshold`
    (so the training curve and the eval record agree), a cheap reduction of the CI the losses
    already computed. One scalar per site, so every host of a multi-host run reads its whole
    value."""
    threshold = eval_options(program.ir).alive_threshold
    return _site_metrics(program, "ci_l0", ci_l0(jax.lax.stop_gradient(ci_lower), threshold))


def _site_metrics(program: Program, name: str, per_kind: dict[str, Array]) -> Metrics:
    """Per-kind `[L]` values → `<name>/<site path>` scalars."""
    paths = {site.order: site.path for _, site in program.ir.nodes(SiteNode)}
    return {f"{name}/{paths[order]}": per_kind[kind][i]
            for kind, orders in program.layout.items() for i, order in enumerate(orders)}


def _track_alive(program: Program, since: dict[str, Array], ci_lower: dict[str, Array]) -> dict[str, Array]:
    threshold = eval_options(program.ir).alive_threshold
    return batches_since_fired(since, jax.lax.stop_gradient(ci_lower), threshold)


def batches_until_dead(program: Program) -> int:
    """`eval.alive_window` in training batches (the reference divides its example count by
    the examples per batch, positions included); default one log interval. At least 1."""
    window = eval_options(program.ir).alive_window
    if window is None:
        return int(program.ir.options("log").every)
    return max(1, int(window) // math.prod(lead_shape(program)))


def alive_counts(program: Program, since_fired: dict[str, Array], name: str = "alive") -> Metrics:
    """`<name>/<site>`: components that fired on a training batch within the alive window,
    the reference tracker's count (SPD_ALGORITHM.md §7.3)."""
    return _site_metrics(program, name, n_alive(since_fired, batches_until_dead(program)))


def _schedules(program: Program, step: Array) -> Metrics:
    """The learning rates and annealed values at this step, from the same schedules the
    optimizers and terms use."""
    out = {f"lr/{g}": losses.schedule_value(lr_of(program.ir, g), step, program.total_steps)
           for g in ("components", "ci")}
    for plan in program.terms:
        for key in schedule_keys(type(plan.options)):  # `lr` of a term is its sources' ascent step
            name = "lr/sources" if key == "lr" else f"schedule/{key}"
            out[name] = losses.schedule_value(getattr(plan.options, key), step, program.total_steps,
                                              schedule_kind(key))
    return out


def make_faithfulness_warmup(program: Program) -> Callable[[dict[str, Factors], Any], dict[str, Factors]]:
    """`steps` AdamW steps on the faithfulness loss alone (V/U only), with its own
    optimizer that is then discarded (SPD_ALGORITHM.md §5.2)."""
    steps, opt = faithfulness_warmup(program.ir)

    def warmup(components: dict[str, Factors], params: Any) -> dict[str, Factors]:
        weights = program.target.weights(params)
        form = warmup_form(program.terms)

        def body(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], None]:
            comps, opt_state = carry
            grads = jax.grad(lambda c: faithfulness(weights, c, form))(comps)
            updates, opt_state = opt.update(grads, opt_state, comps)
            return (merge_updates(comps, optax.apply_updates(comps, updates), program.ties), opt_state), None

        if steps == 0:
            return components
        (components, _), _ = jax.lax.scan(body, (components, opt.init(components)), None, length=steps)
        return components

    return warmup
