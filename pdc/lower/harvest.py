"""The harvest program (DESIGN.md §11, docs/harvest.md): a second program lowered from a
run's IR — the same target, sites, CI network, mesh and shard rules as its train step —
that folds one token batch into fixed-shape accumulators, on the devices.

Per batch of `[B, S]` windows (window w holds tokens `[w·S, (w+1)·S)` of the token file)
it runs the frozen forward (logits included, for the output-token statistics), the CI
network (`pdc.lower.step._ci`, the step's own), each site's component activations
`(x·vᵢ)·‖uᵢ‖`, and adds to, per site kind (stacked over layers like the components):

    firing, hist             int32 [L, C], [L, C, bins]   lower CI > threshold; CI per bin
    ci_sum, act_sum (+ comp) f32 [L, C]                   Kahan-compensated sums of CI, |act|
    top_score, top_pos       f32/int32 [L, C, k]          the k largest firing CIs, ties by position
    res_score, res_pos       int32 [L, C, k]              bottom-k hash keys of firing positions
    input_counts             int32 [L, C, vocab]          input token at firing positions (one-hot matmul)
    output_mass              f32 [L, C, vocab]            next-token probability at firing positions

and, over all sites, `together` int32 [ΣC, ΣC] (both fire), `token_totals` int32 [vocab],
`output_totals` f32 [vocab], `tokens` (positions seen) and `batches` (batches folded in).

Everything is exact or order-independent, so a harvest is the same on any mesh and after
any resume: counts are integers (per-batch products of 0/1 values are exact in f32 up to
2²⁴ positions per batch), top-k and reservoir selections are total orders (value, then
absolute position), and the reservoir's keys are a fixed integer hash of (site, component,
position) (`position_keys`, `numpy_keys` is the same function on the host): keeping the k
smallest keys of the firing positions is a uniform sample without replacement that merges
across shards and batches exactly. The corpus is read in order, so every position a batch
adds is larger than those already kept, which is what makes `top_k`'s lower-index-first
tie rule the position rule.

Accumulators are sharded along C over the mesh (the components' C axes, then the batch
axes, as far as they divide C): the `[C, vocab]` statistics are the big arrays at LM scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pdc.ir.graph import IR
from pdc.ir.nodes import ShardingNode, SiteNode
from pdc.lower.program import Program
from pdc.lower.state import TrainState
from pdc.lower.step import _ci  # the step's own CI computation: the harvest reads the CI training used

Array = jax.Array
Acc = dict[str, Any]

EMPTY = np.iinfo(np.int32).max  # the position of an empty top-k / reservoir slot
NO_SCORE = -1  # a reservoir score no firing position has
GOLDEN = 0x9E3779B9


def histogram_edges() -> list[float]:
    """Bin edges of the CI histogram: bin i counts CI in (edges[i], edges[i+1]]. CI is
    clamped to [0, 1], so the first bin, (-1, 0], holds exactly the zeros; then four
    log-spaced bins per decade from 1e-6 to 1 ((0, 1e-6] first). The first bin also takes
    anything below -1 and the last anything above 1 (neither occurs)."""
    return [-1.0, 0.0] + [float(10.0 ** (-6 + i / 4)) for i in range(25)]


@dataclass(frozen=True)
class HarvestConfig:
    """What a harvest accumulates, fixed for its whole run (the manifest records it)."""

    seq_len: int
    batch: int  # windows per batch
    vocab: int
    threshold: float
    top_k: int = 32
    reservoir_k: int = 32
    edges: tuple[float, ...] = tuple(histogram_edges())

    @property
    def bins(self) -> int:
        return len(self.edges) - 1


# ---- the hash ------------------------------------------------------------------------------


def _mix(x: Array) -> Array:
    """lowbias32 (Chris Wellons' 32-bit finalizer): a bijection on uint32 with full avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def position_keys(site: Array, component: Array, position: Array) -> Array:
    """31-bit reservoir keys (int32 ≥ 0) of (site order, component, absolute position),
    broadcast together: `mix(position ^ mix(component ^ mix(site + GOLDEN))) >> 1`."""
    u = jnp.uint32
    h = _mix(site.astype(u) + u(GOLDEN))
    h = _mix(component.astype(u) ^ h)
    h = _mix(position.astype(u) ^ h)
    return (h >> 1).astype(jnp.int32)


def numpy_keys(site: np.ndarray | int, component: np.ndarray | int, position: np.ndarray | int) -> np.ndarray:
    """`position_keys` on the host (the same uint32 arithmetic, wrapping)."""
    def mix(x: np.ndarray) -> np.ndarray:
        x = x ^ (x >> np.uint32(16))
        x = (x * np.uint32(0x7FEB352D)).astype(np.uint32)
        x = x ^ (x >> np.uint32(15))
        x = (x * np.uint32(0x846CA68B)).astype(np.uint32)
        return x ^ (x >> np.uint32(16))

    with np.errstate(over="ignore"):
        h = mix((np.asarray(site, np.uint64).astype(np.uint32) + np.uint32(GOLDEN)).astype(np.uint32))
        h = mix(np.asarray(component).astype(np.uint32) ^ h)
        h = mix(np.asarray(position).astype(np.uint32) ^ h)
    return (h >> np.uint32(1)).astype(np.int32)


# ---- layout and shardings ------------------------------------------------------------------


@dataclass(frozen=True)
class SiteSlot:
    """One decomposed site in the harvest: its stacked kind and index, canonical order
    and offset into the all-sites `together` matrix."""

    path: str
    kind: str
    index: int  # within the kind's stack
    order: int  # canonical site order (the reservoir hash's site id)
    C: int
    offset: int


def site_slots(program: Program) -> list[SiteSlot]:
    """Every site in canonical order, with its place in the stacks and in `together`."""
    sites = sorted((s for _, s in program.ir.nodes(SiteNode)), key=lambda s: s.order)
    out, offset = [], 0
    for site in sites:
        kind_orders = program.layout[site.kind]
        C = _kind_c(program, site.kind)
        out.append(SiteSlot(site.path, site.kind, kind_orders.index(site.order), site.order, C, offset))
        offset += C
    return out


def _kind_c(program: Program, kind: str) -> int:
    return int(next(s.C for _, s in program.ir.nodes(SiteNode) if s.kind == kind))


def c_axes(ir: IR, mesh: Mesh, size: int) -> tuple[str, ...]:
    """The mesh axes an accumulator's C dimension is split over: those of the components'
    C (`components.*.V`'s last dim), then the batch's, as long as their product divides `size`."""
    dims = {node.tensor: node.dims for _, node in ir.nodes(ShardingNode)}
    v_axes = next((tuple(d[-1]) for name, d in dims.items() if name.startswith("components.") and name.endswith(".V")),
                  ())
    chosen: list[str] = []
    for axis in [*v_axes, *dims.get("batch", [()])[0]]:
        n = math.prod(mesh.shape[a] for a in [*chosen, axis])
        if axis not in chosen and mesh.shape[axis] > 1 and size % n == 0:
            chosen.append(axis)
    return tuple(chosen)


def _spec(axes: tuple[str, ...], lead: int, trail: int) -> PartitionSpec:
    c = None if not axes else axes[0] if len(axes) == 1 else axes
    return PartitionSpec(*([None] * lead), c, *([None] * trail))


def abstract_acc(program: Program, config: HarvestConfig, mesh: Mesh) -> Acc:
    """The accumulators as `ShapeDtypeStruct`s with their shardings (what the dry-run
    sizes, what a checkpoint restores onto)."""
    ir = program.ir
    slots = site_slots(program)
    total = sum(s.C for s in slots)
    replicated = NamedSharding(mesh, PartitionSpec())

    def sds(shape: tuple[int, ...], dtype: Any, sharding: NamedSharding = replicated) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    kinds: dict[str, Any] = {}
    for kind, orders in program.layout.items():
        L, C = len(orders), _kind_c(program, kind)
        axes = c_axes(ir, mesh, C)
        lc = NamedSharding(mesh, _spec(axes, 1, 0))
        lck = NamedSharding(mesh, _spec(axes, 1, 1))
        kinds[kind] = {
            "firing": sds((L, C), jnp.int32, lc),
            "hist": sds((L, C, config.bins), jnp.int32, lck),
            "ci_sum": sds((L, C), jnp.float32, lc), "ci_comp": sds((L, C), jnp.float32, lc),
            "act_sum": sds((L, C), jnp.float32, lc), "act_comp": sds((L, C), jnp.float32, lc),
            "top_score": sds((L, C, config.top_k), jnp.float32, lck),
            "top_pos": sds((L, C, config.top_k), jnp.int32, lck),
            "res_score": sds((L, C, config.reservoir_k), jnp.int32, lck),
            "res_pos": sds((L, C, config.reservoir_k), jnp.int32, lck),
            "input_counts": sds((L, C, config.vocab), jnp.int32, lck),
            "output_mass": sds((L, C, config.vocab), jnp.float32, lck),
        }
    rows = NamedSharding(mesh, _spec(c_axes(ir, mesh, total), 0, 1))
    return {"kinds": kinds, "together": sds((total, total), jnp.int32, rows),
            "token_totals": sds((config.vocab,), jnp.int32), "output_totals": sds((config.vocab,), jnp.float32),
            "tokens": sds((), jnp.int32), "batches": sds((), jnp.int32)}


def acc_shardings(abstract: Acc) -> Acc:
    return jax.tree.map(lambda a: a.sharding, abstract)


def init_acc(abstract: Acc) -> Acc:
    """Empty accumulators (jit with `out_shardings=acc_shardings(abstract)`)."""
    def leaf(path: tuple[Any, ...], a: jax.ShapeDtypeStruct) -> Array:
        name = str(path[-1].key) if isinstance(path[-1], jax.tree_util.DictKey) else ""
        fill = {"top_score": -jnp.inf, "top_pos": EMPTY, "res_score": NO_SCORE, "res_pos": EMPTY}.get(name, 0)
        return jnp.full(a.shape, fill, a.dtype)

    return jax.tree_util.tree_map_with_path(leaf, abstract)


# ---- one batch -----------------------------------------------------------------------------


def site_activations(program: Program, state: TrainState, params: Any, tokens: Array
                     ) -> tuple[dict[str, Array], dict[str, Array], Array]:
    """Per kind: lower CI and component activations `(x·vᵢ)·‖uᵢ‖` `[L, B, S, C]` (fp32),
    and the logits `[B, S, vocab]` of the clean forward."""
    clean = program.target.clean(params, tokens)
    lower = _ci(program, state.ci, state, clean, state.components).lower
    acts = {}
    for kind, factors in state.components.items():
        x = clean.site_inputs[kind].astype(jnp.float32)
        v = factors.V.astype(jnp.float32)
        u_norm = jnp.linalg.norm(factors.U.astype(jnp.float32), axis=-1)  # [L, C]
        acts[kind] = jnp.einsum("lbsi,lic->lbsc", x, v, precision=jax.lax.Precision.HIGHEST) * \
            u_norm[:, None, None, :]
    return {k: v.astype(jnp.float32) for k, v in lower.items()}, acts, clean.output


def _kahan(total: Array, comp: Array, value: Array) -> tuple[Array, Array]:
    y = value - comp
    t = total + y
    return t, (t - total) - y


def _merge_top(score: Array, pos: Array, new_score: Array, new_pos: Array, k: int, empty: Any
               ) -> tuple[Array, Array]:
    """The k best of (kept, then this batch's) along the last axis: `top_k` keeps the lower
    index on ties, and every kept position precedes the batch's, so ties go to the earlier
    position. A slot whose score is `empty` gets the EMPTY position."""
    best, idx = jax.lax.top_k(new_score, k)  # the batch's own k best first: [L, C, N] → [L, C, k]
    cand_pos = jnp.take_along_axis(new_pos, idx, axis=-1)
    both = jnp.concatenate([score, best], axis=-1)
    both_pos = jnp.concatenate([pos, cand_pos], axis=-1)
    kept, idx = jax.lax.top_k(both, k)
    kept_pos = jnp.take_along_axis(both_pos, idx, axis=-1)
    return kept, jnp.where(kept == empty, EMPTY, kept_pos)


def _constrain(x: Array, sharding: NamedSharding | None) -> Array:
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def contraction_shardings(abstract: Acc) -> dict[str, Any]:
    """Where the batch's operands of the `[C, ·]` contractions live: the firing masks split
    along C as the accumulators are and whole along the positions, the `[positions, vocab]`
    and all-sites operands whole, so each device computes its own rows of the statistics
    over every position — no device ever holds a whole-C partial sum (at 8B those are
    [24576, 128256] and [73728, 73728] f32)."""
    mesh = abstract["together"].sharding.mesh
    whole = NamedSharding(mesh, PartitionSpec())
    return {"whole": whole, "fire": {kind: NamedSharding(mesh, PartitionSpec(None, None, a["firing"].sharding.spec[1]))
                                     for kind, a in abstract["kinds"].items()}}


SLICE_ELEMENTS = 1 << 28  # a slice's [positions, vocab] probabilities: at most 1 GiB of f32 ...


def slice_windows(batch: int, seq_len: int, vocab: int, shards: int) -> int:
    """Windows per slice of a harvest batch: the largest divisor of `batch` that is a multiple
    of the data-parallel `shards` (one window per batch shard at least) and keeps a slice's
    `[positions, vocab]` probabilities within `SLICE_ELEMENTS` — unless one window per shard
    already exceeds it. The step folds a batch in slice by slice (`lax.scan`), so a harvest's
    memory does not grow with its batch: llama8b_l18 slices its 64 windows into eight of 8."""
    if batch % shards:
        return batch
    cap = max(shards, SLICE_ELEMENTS // max(1, seq_len * vocab))
    return max(m for m in range(shards, batch + 1, shards) if batch % m == 0 and (m <= cap or m == shards))


def make_harvest_step(program: Program, config: HarvestConfig, layout: dict[str, Any] | None = None,
                      slice_size: int | None = None) -> Callable[..., Acc]:
    """(acc, state, params, tokens [B, S] int32, windows [B] int32) → acc with the batch
    folded in, `slice_size` windows at a time in corpus order (default: the whole batch at
    once). Not jitted: `jitted_harvest_step` adds shardings (`layout`:
    `contraction_shardings`, with `batch`/`windows` for a slice) and donation."""
    slots = site_slots(program)
    S = config.seq_len
    edges = jnp.asarray(config.edges, jnp.float32)
    whole = layout["whole"] if layout else None

    def step(acc: Acc, state: TrainState, params: Any, tokens: Array, windows: Array) -> Acc:
        B = tokens.shape[0]
        m = slice_size or B
        if m >= B:
            return fold(acc, state, params, tokens, windows)
        # contiguous slices, so every slice's positions follow the previous slice's (the
        # top-k tie rule); the token ids are tiny, so gathering them to slice is free
        chunks = _constrain(tokens, whole).reshape(B // m, m, S)
        starts = _constrain(windows, whole).reshape(B // m, m)

        def body(a: Acc, xs: tuple[Array, Array]) -> tuple[Acc, None]:
            t, w = xs
            t = _constrain(t, layout["batch"] if layout else None)
            w = _constrain(w, layout["windows"] if layout else None)
            return fold(a, state, params, t, w), None

        return jax.lax.scan(body, acc, (chunks, starts))[0]

    def fold(acc: Acc, state: TrainState, params: Any, tokens: Array, windows: Array) -> Acc:
        lower, acts, logits = site_activations(program, state, params, tokens)
        B = tokens.shape[0]
        N = B * S
        positions = (windows[:, None] * S + jnp.arange(S, dtype=jnp.int32)[None, :]).reshape(N)
        flat_tokens = tokens.reshape(N)
        probs = _constrain(jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(N, -1), whole)
        onehot = _constrain(jax.nn.one_hot(flat_tokens, config.vocab, dtype=jnp.bfloat16), whole)  # [N, vocab]
        kinds, fires = {}, {}
        for kind, a in acc["kinds"].items():
            L, C = a["firing"].shape
            ci = lower[kind].reshape(L, N, C)
            act = jnp.abs(acts[kind].reshape(L, N, C))
            fire = ci > config.threshold
            fires[kind] = fire
            firing = a["firing"] + jnp.sum(fire, axis=1, dtype=jnp.int32)
            ci_sum, ci_comp = _kahan(a["ci_sum"], a["ci_comp"], jnp.sum(ci, axis=1))
            act_sum, act_comp = _kahan(a["act_sum"], a["act_comp"], jnp.sum(act, axis=1))
            below = jnp.stack([jnp.sum(ci <= e, axis=1, dtype=jnp.int32) for e in edges[1:-1]], axis=-1)
            cumulative = jnp.concatenate([jnp.zeros((L, C, 1), jnp.int32), below,
                                          jnp.full((L, C, 1), N, jnp.int32)], axis=-1)
            hist = a["hist"] + jnp.diff(cumulative, axis=-1)
            fire_t = jnp.swapaxes(fire, 1, 2)  # [L, C, N]
            pos_t = jnp.broadcast_to(positions, fire_t.shape)
            top_score, top_pos = _merge_top(a["top_score"], a["top_pos"],
                                            jnp.where(fire_t, jnp.swapaxes(ci, 1, 2), -jnp.inf), pos_t,
                                            config.top_k, -jnp.inf)
            orders = jnp.asarray([s.order for s in slots if s.kind == kind], jnp.int32)
            keys = position_keys(orders[:, None, None], jnp.arange(C, dtype=jnp.int32)[None, :, None],
                                 positions[None, None, :])
            res_new = jnp.where(fire_t, jnp.int32(np.iinfo(np.int32).max) - keys, NO_SCORE)
            res_score, res_pos = _merge_top(a["res_score"], a["res_pos"], res_new, pos_t, config.reservoir_k,
                                            NO_SCORE)
            with jax.named_scope("harvest.token_stats"):  # both [L, C, vocab], C-sharded like the accumulators
                by_c = _constrain(fire, layout["fire"][kind] if layout else None)
                counts = jnp.einsum("lnc,nv->lcv", by_c.astype(jnp.bfloat16), onehot,
                                    preferred_element_type=jnp.float32)  # 0/1 products: exact below 2^24 positions
                input_counts = a["input_counts"] + counts.astype(jnp.int32)
                mass = jnp.einsum("lnc,nv->lcv", by_c.astype(jnp.float32), probs,
                                  precision=jax.lax.Precision.HIGHEST)
            kinds[kind] = {"firing": firing, "hist": hist, "ci_sum": ci_sum, "ci_comp": ci_comp,
                           "act_sum": act_sum, "act_comp": act_comp, "top_score": top_score, "top_pos": top_pos,
                           "res_score": res_score, "res_pos": res_pos, "input_counts": input_counts,
                           "output_mass": a["output_mass"] + mass}
        with jax.named_scope("harvest.together"):
            every = _constrain(jnp.concatenate([fires[s.kind][s.index] for s in slots], axis=-1).astype(jnp.bfloat16),
                               whole)  # [N, ΣC]
            together = jnp.einsum("nc,nd->cd", every, every, preferred_element_type=jnp.float32)
        token_totals = jnp.zeros((config.vocab,), jnp.int32).at[flat_tokens].add(1)
        return {"kinds": kinds, "together": acc["together"] + together.astype(jnp.int32),
                "token_totals": acc["token_totals"] + token_totals,
                "output_totals": acc["output_totals"] + jnp.sum(probs, axis=0),
                "tokens": acc["tokens"] + N, "batches": acc["batches"] + 1}

    return step


def jitted_harvest_step(program: Program, config: HarvestConfig, abstract: Acc, state_shardings: Any,
                        params_shardings: Any, batch_sharding: NamedSharding) -> Any:
    """The harvest step with explicit shardings; the accumulators are donated."""
    acc_s = acc_shardings(abstract)
    windows = NamedSharding(batch_sharding.mesh, PartitionSpec(batch_sharding.spec[0]))
    layout = {**contraction_shardings(abstract), "batch": batch_sharding, "windows": windows}
    size = slice_windows(config.batch, config.seq_len, config.vocab, batch_shards(batch_sharding))
    return jax.jit(make_harvest_step(program, config, layout, size), donate_argnums=(0,),
                   in_shardings=(acc_s, state_shardings, params_shardings, batch_sharding, windows),
                   out_shardings=acc_s)


def batch_shards(sharding: NamedSharding) -> int:
    """How many ways a `[B, S]` batch is split (the product of its first dim's mesh axes)."""
    first = sharding.spec[0] if len(sharding.spec) else None
    axes = () if first is None else (first,) if isinstance(first, str) else tuple(first)
    return math.prod(sharding.mesh.shape[a] for a in axes)


def make_extract(program: Program) -> Callable[..., dict[str, tuple[Array, Array]]]:
    """(state, params, tokens [B, S], {kind: (rows [R], layers [R], components [R])}) → per
    kind the CI and activation `[R, S]` of component `components[r]` of stacked layer
    `layers[r]` over window `rows[r]` of the batch: the example windows, read on the device."""
    def extract(state: TrainState, params: Any, tokens: Array, requests: dict[str, tuple[Array, Array, Array]]
                ) -> dict[str, tuple[Array, Array]]:
        lower, acts, _ = site_activations(program, state, params, tokens)
        out = {}
        for kind, (rows, layers, components) in requests.items():
            ci = jnp.moveaxis(lower[kind], -1, 1)  # [L, C, B, S]
            act = jnp.moveaxis(acts[kind], -1, 1)
            out[kind] = (ci[layers, components, rows], act[layers, components, rows])
        return out

    return extract


__all__ = ["EMPTY", "HarvestConfig", "SiteSlot", "abstract_acc", "acc_shardings", "c_axes", "contraction_shardings",
           "batch_shards", "histogram_edges", "init_acc", "jitted_harvest_step", "slice_windows", "make_extract", "make_harvest_step", "numpy_keys",
           "position_keys", "site_activations", "site_slots"]
