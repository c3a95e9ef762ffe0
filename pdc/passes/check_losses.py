"""Pass 6 — check loss terms, schedules and optimizer groups.

Exactly one importance-minimality term and at least one recon term; every schedule
resolved to steps and kept in range; adversary scopes valid for the target; the
recon divergence chosen by the target (KL on logits for LMs, MSE for toys); PPGD
sources added to the state; eval metrics valid for the target."""

from __future__ import annotations

from pdc.ir.graph import IR
from pdc.metrics import METRICS
from pdc.ir.nodes import CiChunkNode, OptGroupNode, OptionsNode, ScheduleNode, SiteNode, TensorNode, TermNode
from pdc.registry.loss import IMPORTANCE_TERMS, LOSS_TERMS, RECON_TERMS, SCOPE_ALIASES
from pdc.registry.types import Schedule, schedule_keys
from pdc.syntax.checked import Entry, Node
from pdc.syntax.diagnostics import Diagnostic, Related, Severity
from pdc.syntax.patterns import matches
from pdc.syntax.span import Span
from pdc.targets import TargetShape, family

POSITION_SCOPES = ("sc", "bsc")


def run(ir: IR) -> IR:
    loss = ir.spec.block("loss")
    assert loss is not None
    _term_counts(ir, loss)
    for name, term in loss.children.items():
        _term(ir, name, term)
    _optimizer_groups(ir)
    _eval(ir)
    _remat(ir)
    return ir


def _remat(ir: IR) -> None:
    """Per-layer and matmul remat checkpoint the scan over an LM's layers; toys have no such scan."""
    remat = ir.spec.block("remat")
    shape: TargetShape = ir.facts["target"]
    recon = remat.get("recon_forwards") if remat is not None else "off"
    if remat is not None and recon in ("per_layer", "matmuls") and not shape.has_positions:
        ir.error(Diagnostic("PD0315", f"`recon_forwards = {recon}` needs a layered LM target; a {shape.family} "
                            "target has no layer scan", remat.span_of("recon_forwards"), "not for toys",
                            help=("use `whole` (checkpoint each masked forward) or `off`",)))


def total_steps(ir: IR) -> int:
    train = ir.spec.block("train")
    assert train is not None
    return int(train.get("steps"))


def _term_counts(ir: IR, loss: Node) -> None:
    importance = [t for t in loss.children.values() if t.name in IMPORTANCE_TERMS]
    if not importance:
        ir.error(Diagnostic("PD0311", "no importance-minimality term in `loss`", loss.header or loss.span,
                            "needs one", help=("add `importance_minimality { weight = 1e-3 }` or `smooth_l0 { ... }`",)))
    for extra in importance[1:]:
        ir.error(Diagnostic("PD0311", "two importance-minimality terms in `loss`; exactly one is allowed",
                            extra.header or extra.span, "second one",
                            (Related(importance[0].header or importance[0].span, "first one"),)))
    if not any(t.name in RECON_TERMS for t in loss.children.values()):
        ir.error(Diagnostic("PD0312", "no reconstruction term in `loss`", loss.header or loss.span, "needs one",
                            help=("add e.g. `stochastic_recon { weight = 1.0 }`",)))


def _term(ir: IR, name: str, term: Node) -> None:
    """One term block: `name` is its instance (`stochastic_recon`, or `stochastic_recon.subset`
    for a named one), `term.name` its registry kind."""
    shape: TargetShape = ir.facts["target"]
    deps = [n for n, _ in ir.nodes(SiteNode)] + [n for n, _ in ir.nodes(CiChunkNode)]
    options = tuple(sorted((k, _plain(v)) for k, v in term.keys.model_dump().items() if k != "weight")) \
        if term.keys is not None else ()
    scope = term.get("scope") if "scope" in term.schema.key_names() else None
    if scope is not None and SCOPE_ALIASES.get(scope, scope) in POSITION_SCOPES and not shape.has_positions:
        ir.error(Diagnostic("PD0314", f"scope `{scope}` is per position, and a {shape.family} target has no positions",
                            term.span_of("scope"), "needs positions", help=("use `c` or `bc` for toy targets",)))
    for key in schedule_keys(type(term.keys)) if term.keys is not None else ():
        deps.append(schedule(ir, f"loss.{name}.{key}", term.get(key), term.span_of(key), positive=key != "lr"))
    if LOSS_TERMS[term.name].state == "sources" and scope is not None:
        _sources(ir, name, SCOPE_ALIASES.get(scope, scope), term.get("source_dtype"))
    sites = len(ir.nodes(SiteNode))
    chunk = term.get("sites_per_chunk") if "sites_per_chunk" in term.schema.key_names() else None
    if chunk is not None and chunk > sites:
        ir.error(Diagnostic("PD0315", f"sites_per_chunk = {chunk} exceeds the {sites} decomposed sites",
                            term.span_of("sites_per_chunk"), "too large"))
    divergence = ("kl" if shape.output == "logits" else "mse") if term.name in RECON_TERMS else ""
    weight = term.get("weight") if term.keys is not None else 0.0
    frequency = term.child("frequency")
    if frequency is not None:
        _reference_tokens(ir, frequency)
    ir.add(f"term:{name}", TermNode(name, weight, divergence, options, term.header or term.span, term.keys,
                                    frequency.keys if frequency is not None else None, term.name), *deps)


def tokens_per_step(ir: IR) -> tuple[int, str]:
    """The positions one step sees on the whole mesh (what `reference_tokens = auto` is), and
    how they come about, for messages: batch × seq_len for LMs, the batch for toys."""
    batch = next(p for _, p in ir.nodes(TensorNode) if p.path == "batch")
    if ir.facts["target"].has_positions:
        return batch.shape[0] * batch.shape[1], f"batch {batch.shape[0]} × seq_len {batch.shape[1]}"
    return batch.shape[0], f"batch {batch.shape[0]}"


def _reference_tokens(ir: IR, frequency: Node) -> None:
    """§5.9: c_freq · Σ f·log2(1 + a′f) is the hand-written trainer's β · Σ f·log2(1 + S)
    (S = N_pos·f) only at a′ = the tokens per step; a fixed a′ that differs (a number kept from
    a run at another batch) scales the penalty's curvature by a′ / N_pos, so it is worth a word."""
    fixed = frequency.get("reference_tokens")
    if fixed == "auto":
        return
    tokens, how = tokens_per_step(ir)
    if fixed != tokens:
        ratio = fixed / tokens
        times = f"{ratio:.3g}× the" if ratio >= 1 else f"1/{1 / ratio:.3g} of the"
        ir.error(Diagnostic(
            "PD0317", f"`reference_tokens = {fixed}` is {times} {tokens} tokens per step ({how})",
            frequency.span_of("reference_tokens"), f"not the {tokens} tokens per step",
            help=("the frequency term Σ f·log2(1 + a′f) equals the reference trainer's β·Σ f·log2(1 + S) "
                  "(S = tokens per step × f) only at a′ = the tokens per step",
                  "write `reference_tokens = auto` to follow the batch"),
            severity=Severity.WARNING))


def _plain(value: object) -> object:
    return tuple(sorted(value.items())) if isinstance(value, dict) else tuple(value) if isinstance(value, list) else value


def schedule(ir: IR, owner: str, value: Schedule, span: Span, positive: bool = False) -> str:
    """Resolve a schedule to steps, check its range, add its node; returns the node id.

    `positive`: the value must stay > 0 (p, γ); otherwise (learning rates) it must
    start > 0 and never go below 0."""
    steps = total_steps(ir)
    warmup = value.warmup if isinstance(value.warmup, int) else int(value.warmup * steps)
    problem = _schedule_problem(value, warmup, steps, positive)
    if problem:
        ir.error(Diagnostic("PD0313", f"schedule of `{owner}` {problem}", span, "out of range"))
    node_id = f"schedule:{owner}"
    ir.add(node_id, ScheduleNode(owner, value.fn, value.start, value.end_value(), warmup,
                                 int(value.start_frac * steps), int(value.end_frac * steps)))
    return node_id


def _schedule_problem(value: Schedule, warmup: int, steps: int, positive: bool) -> str:
    if value.end is not None and value.final is not None:
        return "gives both `end` and `final`; give one"
    if value.fn == "constant" and (value.end is not None or value.final is not None):
        return "is constant and cannot have an `end` or `final`"
    if warmup >= steps:
        return f"warms up for {warmup} steps of a {steps}-step run"
    if value.fn != "constant" and value.start_frac >= value.end_frac:
        return f"starts at {value.start_frac} of the run and ends at {value.end_frac}, which is not later"
    low = min(value.start, value.end_value())
    if positive and low <= 0:
        return f"must stay above 0, and reaches {low:g}"
    if value.start <= 0:
        return f"must start above 0, and starts at {value.start:g}"
    if low < 0:
        return f"must not go below 0, and reaches {low:g}"
    return ""


def _sources(ir: IR, term: str, scope: str, dtype: str) -> None:
    batch = next(p for _, p in ir.nodes(TensorNode) if p.path == "batch")
    b, t = batch.shape[0], (batch.shape[1] if ir.facts["target"].has_positions else None)
    scope_dims = {"c": (1,), "bc": (b,), "sc": (1, t), "bsc": (b, t)}[scope]
    if t is not None and scope in ("c", "bc"):
        scope_dims += (1,)
    for kind, sites in _kinds(ir).items():
        site = sites[0]
        lead = (len(sites),)
        path = f"sources.{term}.{kind}"
        ir.add(f"tensor:{path}", TensorNode(path, "sources", lead + scope_dims + (site.C + 1,), dtype, "source",
                                           ("sites of the kind",) + (f"scope {scope}",) * len(scope_dims)
                                           + ("C + 1 (delta channel)",), False, 2, stack_dims=len(lead)),
               *[f"site:{s.path}" for s in sites])


def _kinds(ir: IR) -> dict[str, list[SiteNode]]:
    kinds: dict[str, list[SiteNode]] = {}
    for _, site in ir.nodes(SiteNode):
        kinds.setdefault(site.kind, []).append(site)
    return kinds


def _optimizer_groups(ir: IR) -> None:
    optimize = ir.spec.block("optimize")
    assert optimize is not None
    for name in ("components", "ci"):
        group = optimize.child(name)
        assert group is not None
        adamw = group.child("adamw")
        assert adamw is not None
        sched = schedule(ir, f"optimize.{name}.lr", adamw.get("lr"), adamw.span_of("lr"))
        tensors = [n for n, p in ir.nodes(TensorNode) if p.group == name and p.trainable]
        ir.add(f"group:{name}", OptGroupNode(name, group.get("clip"), tuple(adamw.get("betas")), adamw.get("eps"),
                                             adamw.get("weight_decay"), adamw.get("lr")), sched, *tensors)


def _resolved(entries: tuple[Entry, ...], sites: list[str]) -> tuple[tuple[str, object], ...]:
    """site path → its expected CI pattern: the first `ci_pattern` entry that matches it."""
    found = ((path, next((e for e in entries if matches(e.pattern, path)), None)) for path in sites)
    return tuple((path, entry.value) for path, entry in found if entry is not None)


def _eval(ir: IR) -> None:
    node = ir.spec.block("eval")
    if node is None:
        return
    shape: TargetShape = ir.facts["target"]
    patterns = node.child("ci_pattern")
    entries = patterns.entries if patterns is not None else ()
    for metric in (METRICS[name] for name in node.get("metrics")):
        if metric.needs is not None and metric.needs != shape.output and metric.needs not in family(shape.family).traits:
            ir.error(Diagnostic("PD0315", f"metric `{metric.name}` needs {metric.needs_text}; this target is "
                                f"{shape.family}", node.span_of("metrics"), f"not for {shape.family}"))
        if metric.needs_ci_pattern and not entries:
            ir.error(Diagnostic("PD0315", f"metric `{metric.name}` needs the expected pattern of each site",
                                node.span_of("metrics"), "no `ci_pattern`",
                                help=("add `ci_pattern { linear1 = identity linear2 = identity }` to `eval`",)))
    sites = [s.path for _, s in ir.nodes(SiteNode)]
    if entries:
        ir.add("options:eval.ci_pattern", OptionsNode("eval.ci_pattern", None, None, _resolved(entries, sites)),
               "options:eval")
    for entry in entries:
        if not any(matches(entry.pattern, path) for path in sites):
            ir.error(Diagnostic("PD0303", f"`{entry.pattern.text}` matches no decomposed site", entry.pattern.span,
                                "matches nothing", help=(f"decomposed sites: {', '.join(sites[:6])}",)))
