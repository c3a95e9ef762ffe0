"""Eval passes (SPD_ALGORITHM.md §7): the `eval.metrics` of a state, on fixed eval data
independent of training, as one flat record `{"step": N, "eval/<metric>/<site>": ...}`.

One jitted function computes every requested metric of one eval batch, plus the CI of
the §7.6 one-hot probe; it is compiled once per run and reused by every pass, and
`pdc eval` rebuilds the same function, so recomputing a pass from a checkpoint gives the
numbers training logged. The eval data is drawn once and is the same at every pass, so
passes (and checkpoints under `pdc eval --all`) differ only in the state: batch j of every
pass is keyed by `rng.eval_key(data, 0, j, eval.batches)` (toys draw their inputs from it;
every metric's randomness — PGD inits, stochastic masks — is folded from it too), and token
data reads global batch j of `eval_path` in the run's seed's row order (a file training never
reads) or, without one, of the training file in seed + 1's order. Each record names its data
(`eval_data`: the file and row indices, or the seeded stream). Averages over batches are
uniform (equal batch sizes); the Hungarian `identity_ci_error` runs on the host.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from pdc.decomp import losses, metrics, rng
from pdc.decomp.head import Head
from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode
from pdc.lower.eval_options import eval_options
from pdc.lower.program import Program
from pdc.lower.state import UNTRACKED, TrainState, lead_shape
from pdc.lower.step import _ci  # the step's own CI computation, so eval reads exactly the CI training used
from pdc.lower.step import alive_counts, toy_batch_of_key
from pdc.metrics import METRICS, BatchContext, RecordContext
from pdc.registry.observe import EvalKeys
from pdc.run.data import TokenRows, open_tokens
from pdc.run.distributed import host_value


Array = jax.Array
EvalFn = Callable[[TrainState, Any, Array | None, Array], dict[str, Any]]


def site_paths(ir: IR) -> dict[str, list[str]]:
    """kind → the site paths of its stacked entries, in stacking (canonical) order."""
    out: dict[str, list[str]] = {}
    for _, site in sorted(ir.nodes(SiteNode), key=lambda pair: pair[1].order):
        out.setdefault(site.kind, []).append(site.path)
    return out


def ci_patterns(ir: IR) -> dict[str, Any]:
    """site path → its expected CI pattern (the first `ci_pattern` entry that matches it)."""
    node = ir.options_node("eval.ci_pattern")
    return dict(node.entries) if node is not None else {}


# ---- the jitted per-batch function ----------------------------------------------------------


def make_eval_batch(program: Program, options: EvalKeys) -> EvalFn:
    """(state, params, batch or None, key) → per-kind metric arrays of one eval batch
    (toys draw the batch from `fold_in(key, 0)`); metric randomness uses `fold_in(key, 1)`."""
    target = program.target
    wanted = [m for name, m in METRICS.items() if name in options.metrics]  # registry order
    columns = writes_features(program)
    hidden = {"hidden": True} if program.chunked_divergence else {}  # LMs: no [tokens, vocab] logits, as in training

    def eval_batch(state: TrainState, params: Any, batch: Array | None, key: Array) -> dict[str, Any]:
        batch = toy_batch_of_key(program, jax.random.fold_in(key, 0)) if batch is None else batch
        metric_key = jax.random.fold_in(key, 1)
        clean = target.clean(params, batch, **hidden)
        lower = _ci(program, state.ci, state, clean, state.components).lower
        forward = functools.partial(target.forward, params, batch, state.components, **hidden)
        divergence, ce = _output_measures(program, target.head(params) if hidden else None)
        out: dict[str, Any] = {"l0": metrics.ci_l0(lower, options.alive_threshold),
                               "density": metrics.activation_density(lower, options.alive_threshold)}
        shared: dict[str, Any] = {}
        for metric in wanted:
            if metric.compute is not None:
                ctx = BatchContext(program, options, state, params, batch, clean, lower, out["density"], forward,
                                   divergence, ce, jax.random.fold_in(metric_key, metric.stream), columns, shared)
                out[metric.name] = metric.compute(ctx)
        return out

    return eval_batch


def _output_measures(program: Program, head: Head | None) -> tuple[losses.Divergence, Callable[[Array, Array], Array]]:
    """(divergence, next-token CE) of the forwards' outputs: over logits, or — `head` given,
    outputs the final hidden states — over `remat.divergence_chunk` positions at a time."""
    if head is None:
        return losses.DIVERGENCES[program.divergence], metrics.next_token_ce
    chunk = program.divergence_chunk
    return (functools.partial(losses.chunked_kl_divergence, head=head, chunk=chunk),
            lambda hidden, tokens: losses.chunked_next_token_ce(hidden, head, tokens, chunk))


def writes_features(program: Program) -> dict[str, bool]:
    """Per site kind: does it write the toy's features (`Matrix.writes_features`)? Kinds
    stack sites of one role, so the first site's matrix speaks for the kind."""
    paths = site_paths(program.ir)
    return {kind: bool(m is not None and m.writes_features)
            for kind, kind_paths in paths.items() for m in [program.shape.matrix(kind_paths[0])]}


def probe_ci(program: Program, state: TrainState, params: Any) -> dict[str, Array]:
    """ci_lower `[L, F, C]` of the one-hot probe, fed in as the target's input (so ResidMLP
    embeds it through W_E exactly as its training inputs are)."""
    probe = metrics.identity_probe(program.shape.dims["features"])
    clean = program.target.clean(params, probe)
    return _ci(program, state.ci, state, clean, state.components).lower


# ---- the pass --------------------------------------------------------------------------------


@dataclass
class Evaluator:
    """Runs eval passes of one program: the jitted batch function (compiled on first use,
    then reused), the eval data stream and the host-side reduction to one record."""

    program: Program
    options: EvalKeys
    rows: TokenRows | None
    rows_seed: int
    fn: Any = None
    place: Callable[[np.ndarray], Array] = jnp.asarray  # this process's rows → the global batch array
    rows_path: str | None = None  # the token file the eval rows come from
    passes: int = 0  # passes run so far (the first compiles `fn`)
    _data: dict[str, Any] | None = None  # `data()`, computed once (a permutation of the file's rows per batch)

    @classmethod
    def build(cls, program: Program, train_rows: TokenRows | None,
              place: Callable[[np.ndarray], Array] | None = None) -> "Evaluator":
        """`place` shards a token batch the way the train step's batches are (default: one device)."""
        options = eval_options(program.ir)
        rows, seed = eval_rows(program, train_rows)
        return cls(program, options, rows, seed, jax.jit(make_eval_batch(program, options)), place or jnp.asarray,
                   eval_file(program) if rows is not None else None)

    @property
    def fresh(self) -> bool:
        """No pass has run yet: the next one compiles the batch function."""
        return not self.passes

    def due(self, step: int, total: int) -> bool:
        return step % self.options.every == 0 or step == total

    def batch(self, index: int) -> Array | None:
        if self.rows is None:
            return None
        local = self.rows.batch(self.rows_seed, index, lead_shape(self.program)[0], jax.process_index(),
                                jax.process_count())
        return self.place(local)

    def data(self) -> dict[str, Any]:
        """What every pass reads (`eval_data` of each record): the token file and the global
        row indices of each batch, or the seeded stream of a toy."""
        if self._data is None:
            n = self.options.batches
            if self.rows is None:
                self._data = {"stream": "seeded", "seed": self.program.seed, "batches": n}
            else:
                size = lead_shape(self.program)[0]
                self._data = {"file": self.rows_path, "seed": self.rows_seed, "seq_len": self.rows.seq_len,
                              "rows": [[int(r) for r in self.rows.batch_rows(self.rows_seed, j, size)]
                                       for j in range(n)]}
        return dict(self._data)

    def run(self, state: TrainState, params: Any, step: int) -> dict[str, Any]:
        """The record of the pass at `step`: the same eval batches at every step."""
        n = self.options.batches
        _, _, _, data_key = rng.root_keys(self.program.seed)
        outs = [jax.device_get(self.fn(state, params, self.batch(j), rng.eval_key(data_key, 0, j, n)))
                for j in range(n)]
        self.passes += 1
        mean = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *outs)
        return {"step": step, **reduce_record(self.program, self.options, mean), **tracked_alive(self.program, state),
                "eval_data": self.data()}


def tracked_alive(program: Program, state: TrainState) -> dict[str, int]:
    """`eval/alive_tracked/<site>`: the training-time tracker's count at this state (fired
    on a training batch within `eval.alive_window`: alive as the reference counts it),
    beside `eval/alive`, which only sees the eval batches. Absent for a checkpoint saved
    before pdc tracked it (`UNTRACKED`)."""
    since = {kind: np.asarray(host_value(s)) for kind, s in state.since_fired.items()}  # one fetch, [L, C] each
    if any((s == UNTRACKED).any() for s in since.values()):
        return {}
    return {key: int(v) for key, v in alive_counts(program, since, "eval/alive_tracked").items()}


def eval_rows(program: Program, train_rows: TokenRows | None) -> tuple[TokenRows | None, int]:
    """The eval token stream: `eval_path` with the run's seed, else the training file
    with seed + 1 (an independent row order); toys have none."""
    data = program.ir.options_node("data")
    if train_rows is None:
        return None, program.seed
    if data.label == "tokens" and data.keys.eval_path is not None:
        return open_tokens(Path(data.path("eval_path")), data.keys.format, int(data.keys.seq_len)), program.seed
    return train_rows, program.seed + 1


def eval_file(program: Program) -> str:
    """The path of the token file eval reads (for the record): `eval_path`, else the training data's."""
    data = program.ir.options_node("data")
    if data.label == "tokens":
        return str(data.path("eval_path") if data.keys.eval_path is not None else data.path("path"))
    return f"corpus:{data.keys.corpus}"


def reduce_record(program: Program, options: EvalKeys, mean: dict[str, Any]) -> dict[str, Any]:
    """Per-kind means → the flat, per-site record (JSON-ready Python numbers)."""
    mean = jax.tree.map(host_value, mean)  # multi-host: this process's copy of replicated values
    paths = site_paths(program.ir)
    density = metrics.by_site(mean["density"], paths)
    record: dict[str, Any] = {f"eval/alive/{p}": int(np.sum(d > 0)) for p, d in density.items()}
    ctx = RecordContext(program, options, mean, paths)
    for name, metric in METRICS.items():
        if name in options.metrics:
            record.update(metric.record(ctx))
    return record


def probe_records(program: Program, options: EvalKeys, probe_ci: dict[str, np.ndarray]) -> dict[str, Any]:
    """For every site `ci_pattern` names, on the one-hot probe: `eval/identity_ci_error/<site>`
    (host Hungarian) and `eval/probe_l0/<site>`, the components co-active on one probe row
    (`ci_l0` at `alive_threshold`) — the number the paper's CI heatmaps show per row (1 for an
    identity pattern, k for dense(k)), which the error, counting only misplaced entries, does
    not report."""
    patterns = ci_patterns(program.ir)
    paths = site_paths(program.ir)
    per_site = metrics.by_site(probe_ci, paths)
    l0 = metrics.by_site(metrics.ci_l0(probe_ci, options.alive_threshold), paths)
    errors = {f"eval/identity_ci_error/{p}": metrics.identity_ci_error(np.asarray(per_site[p]), pattern,
                                                                       options.identity_tol)
              for p, pattern in patterns.items()}
    return {**errors, **{f"eval/probe_l0/{p}": float(l0[p]) for p in patterns}}


__all__ = ["eval_options", "Evaluator", "ci_patterns", "make_eval_batch", "probe_ci", "reduce_record", "site_paths"]
