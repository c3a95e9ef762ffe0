"""`pdc harvest`: the runner around the harvest program (`pdc.lower.harvest`, DESIGN.md §11,
docs/harvest.md) — it opens a run at a checkpoint, reads the token file in order in
`seq_len` windows from offset 0 (window w = tokens[w·S, (w+1)·S)), feeds the program
`data.batch` windows at a time, checkpoints the accumulators (with the corpus position,
`batches`) with orbax every `--save-every` batches, and finally turns them into the store
(`pdc.analyze.store`): components, examples (windows re-read on the device), PMI tokens,
neighbours, histograms and the manifest.

A rerun of the same command resumes from the newest complete checkpoint in
`.<out>.harvest-ckpts/` next to `--out`; the checkpoints go once the store is written.
Bad input is a `HarvestError` with a PD08xx code (or the token checker's PD042x), raised
before anything is written.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from pdc.inputs.token_file import file_sha256, inspect_token_file, sidecar_path
from pdc.ir.graph import IR
from pdc.lower.harvest import (EMPTY, HarvestConfig, SiteSlot, abstract_acc, acc_shardings, init_acc,
                               jitted_harvest_step, make_extract, site_slots)
from pdc.lower.sharding import batch_sharding
from pdc.analyze.store import StoreError, read_manifest, write_store
from pdc.run import checkpoints
from pdc.run.data import python_stdlib_bytes
from pdc.run.distributed import global_value, is_primary
from pdc.run.load import Run, checkpoint_steps, load_ir_run
from pdc.run.rundir import RunDir, RunError

NEIGHBOR_SCORE = "jaccard"
RUNTIME_PREFIXES = ("mesh.", "shard.", "data.batch", "precision.", "remat.", "budget.", "eval.")
EXTRACT_ROWS = 256  # example windows read per extraction call and kind


class HarvestError(Exception):
    """A harvest that cannot start: `code` (PD08xx, or PD042x for the token file), one line, a help line."""

    def __init__(self, code: str, message: str, help_text: str = "") -> None:
        super().__init__(f"error[{code}]: {message}")
        self.code, self.message, self.help = code, message, help_text


@dataclass(frozen=True)
class HarvestOptions:
    """`pdc harvest`'s flags (None: the documented default)."""

    tokens: Path | None = None
    batches: int | None = None
    tokens_count: int | None = None
    step: int | None = None
    out: Path | None = None
    overrides: tuple[str, ...] = ()
    threshold: float | None = None
    top_k: int = 32
    reservoir_k: int = 32
    context: int = 16
    pmi_k: int = 16
    neighbor_k: int = 16
    save_every: int = 100


# ---- opening the run -------------------------------------------------------------------------


def harvest_ir(run_path: Path, overrides: Sequence[str]) -> IR:
    """The run's IR with `--set` overrides applied; only runtime keys (and `data.batch`,
    `eval.*`) may change: the decomposition is the checkpoint's."""
    run = RunDir(run_path)
    record = run.read_record()
    if record is None or not (run.path / "spec.pd").exists():
        raise HarvestError("PD0810", f"{run_path} is not a pdc run directory (no run.json / spec.pd)",
                           "harvest the directory `pdc train --out` wrote")
    bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith(RUNTIME_PREFIXES)]
    if bad:
        raise HarvestError("PD0813", f"`--set {bad[0]}` would change what the run trained",
                           "a harvest may only override " + ", ".join(p.rstrip(".") for p in RUNTIME_PREFIXES))
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    result = check_text((run.path / "spec.pd").read_text(), record["spec_path"], list(overrides))
    if not result.ok or result.spec is None:
        raise HarvestError("PD0813", f"{run_path}/spec.pd with the overrides does not check: "
                                     f"{result.diagnostics[0].summary}")
    ir = run_passes(result.spec)
    if ir.failed:
        raise HarvestError("PD0813", f"{run_path}/spec.pd with the overrides does not build: "
                                     f"{ir.diagnostics[0].summary}")
    return ir


def open_run(run_path: Path, ir: IR, step: int | None) -> Run:
    steps = checkpoint_steps(run_path) if (run_path / "ckpts").is_dir() else []
    if not steps:
        raise HarvestError("PD0810", f"{run_path} has no checkpoint", "train it first (`pdc train`)")
    if step is not None and step not in steps:
        raise HarvestError("PD0810", f"{run_path} has no checkpoint at step {step}",
                           f"it has {', '.join(map(str, steps))}")
    try:
        return load_ir_run(run_path, ir, step)
    except RunError as error:
        raise HarvestError("PD0810", str(error)) from None


# ---- the token file --------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    path: Path
    fmt: str
    tokens: np.ndarray  # 1-D, memory-mapped
    tokenizer: dict[str, Any]


def open_corpus(ir: IR, run_path: Path, explicit: Path | None, batch: int) -> Corpus:
    """The token file to harvest (`--tokens`, else the run's own data), checked against the
    target as `pdc check` checks `data tokens` (another tokenizer or vocabulary: PD042x)."""
    data = ir.options_node("data")
    seq_len, vocab = int(data.keys.seq_len), int(ir.facts["target"].dims["vocab"])
    tokenizer_dir = _tokenizer_dir(ir)
    if explicit is not None:
        path, fmt = explicit, _format_of(explicit, data)
    elif data.label == "tokens":
        path, fmt = Path(data.path("path")), data.keys.format
    elif data.label == "corpus":
        path, fmt = python_stdlib_bytes(run_path.parent / ".cache"), "npy"
    else:
        raise HarvestError("PD0812", f"the run's data is `{data.label}`, not tokens", "give `--tokens FILE`")
    problems = inspect_token_file(path, fmt, seq_len, batch, vocab, tokenizer_dir)
    if problems:
        first = problems[0]
        raise HarvestError(first.code, first.message, first.help)
    array = np.load(path, mmap_mode="r").reshape(-1) if fmt == "npy" else \
        np.memmap(path, dtype=np.uint16 if fmt == "uint16" else np.uint32, mode="r")
    tokenizer = {"kind": "tokenizer.json", "path": str((tokenizer_dir / "tokenizer.json").resolve())} \
        if tokenizer_dir is not None and (tokenizer_dir / "tokenizer.json").is_file() else {"kind": "bytes"} \
        if vocab == 256 else {"kind": "ids"}
    return Corpus(path, fmt, array, tokenizer)


def _format_of(path: Path, data: Any) -> str:
    if path.suffix == ".npy":
        return "npy"
    side = sidecar_path(path)
    if side.is_file():
        try:
            return str(json.loads(side.read_text())["dtype"])
        except (OSError, ValueError, KeyError):
            pass
    return str(data.keys.format) if data.label == "tokens" else "uint32"


def _tokenizer_dir(ir: IR) -> Path | None:
    weights = ir.options_node("target").path("weights")
    return Path(weights) if weights is not None and Path(weights).is_dir() else None


def window_range(corpus: Corpus, seq_len: int, batch: int, batches: int | None, tokens_count: int | None
                 ) -> tuple[int, int]:
    """[first, stop) windows: whole batches from window 0; PD0812 when they pass the file's end."""
    available = len(corpus.tokens) // seq_len
    if batches is not None:
        wanted = batches * batch
    elif tokens_count is not None:
        wanted = (tokens_count // seq_len) // batch * batch
    else:
        wanted = available // batch * batch
    if wanted > available or wanted == 0:
        raise HarvestError("PD0812", f"{corpus.path} holds {available} windows of {seq_len} tokens; the harvest "
                                     f"needs {max(wanted, batch)} ({max(wanted, batch) // batch} batches of {batch})",
                           "ask for fewer with --batches / --tokens-count, or a smaller `--set data.batch=`")
    if wanted * seq_len >= 2 ** 31:
        raise HarvestError("PD0812", f"{wanted * seq_len:,} positions: a harvest counts positions in int32 (< 2^31)",
                           "harvest fewer tokens (--tokens-count)")
    return 0, wanted


# ---- settings, manifest, --out ---------------------------------------------------------------


def _threshold(ir: IR, explicit: float | None) -> float:
    if explicit is not None:
        return float(explicit)
    node = ir.options_node("eval")
    return float(node.keys.rounding_threshold) if node is not None and node.written else 0.0


def settings_of(run: Run, corpus_sha: str, corpus: Corpus, config: HarvestConfig, windows: tuple[int, int],
                options: HarvestOptions) -> dict[str, Any]:
    """What makes two harvests the same: compared on resume and against an existing --out."""
    facts = run.ir.facts
    return {"run": str(run.path.resolve()), "step": run.step, "decomposition_hash": facts["decomposition_hash"],
            "token_file": str(corpus.path.resolve()), "token_sha256": corpus_sha, "seq_len": config.seq_len,
            "batch": config.batch, "windows": list(windows), "threshold": config.threshold, "top_k": config.top_k,
            "reservoir_k": config.reservoir_k, "context": options.context, "pmi_k": options.pmi_k,
            "neighbor_k": options.neighbor_k}


def check_out(out: Path, settings: dict[str, Any]) -> bool:
    """True when `out` already holds this very harvest; PD0811 when it holds anything else."""
    if not out.exists():
        return False
    if out.is_dir() and not any(out.iterdir()):
        return False
    try:
        manifest = read_manifest(out)
    except StoreError:
        raise HarvestError("PD0811", f"{out} exists and is not a harvest store", "choose another --out") from None
    differs = [k for k, v in settings.items() if manifest.get(k) != v]
    if differs:
        raise HarvestError("PD0811", f"{out} holds another harvest (its {', '.join(differs[:3])} differ"
                                     f"{'...' if len(differs) > 3 else ''})",
                           "choose another --out, or delete it to harvest again")
    return True


def ckpt_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.harvest-ckpts")


def _check_progress(directory: Path, settings: dict[str, Any]) -> None:
    """A checkpoint directory left by another harvest into the same --out: PD0814."""
    file = directory / "settings.json"
    if file.is_file() and json.loads(file.read_text()) != settings:
        raise HarvestError("PD0814", f"{directory} holds an unfinished harvest with other settings",
                           "rerun that harvest's command to finish it, or delete the directory")


# ---- the loop --------------------------------------------------------------------------------


@dataclass
class Harvester:
    run: Run
    corpus: Corpus
    config: HarvestConfig
    windows: tuple[int, int]
    options: HarvestOptions

    @property
    def mesh(self) -> Any:
        return self.run.trainer.mesh

    def place(self, first_window: int, count: int) -> tuple[jax.Array, jax.Array]:
        """Windows [first_window, first_window + count) as a batch-sharded global array, and
        their window indices. Each process reads from the token file only the rows its own
        devices hold: its share where the mesh splits the batch across processes, the whole
        batch where it does not (e.g. dp = 1, tp across hosts)."""
        S = self.config.seq_len
        sharding = batch_sharding(self.run.ir, self.mesh)

        def rows(index: tuple[slice, ...]) -> np.ndarray:
            start, stop, _ = index[0].indices(count)
            block = np.asarray(self.corpus.tokens[(first_window + start) * S:(first_window + stop) * S], np.int32)
            return block.reshape(stop - start, S)[(slice(None), *index[1:])]

        tokens = jax.make_array_from_callback((count, S), sharding, rows)
        win_sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(sharding.spec[0]))
        ids = np.arange(first_window, first_window + count, dtype=np.int32)
        windows = jax.make_array_from_callback((count,), win_sharding, lambda index: ids[index])
        return tokens, windows

    def accumulate(self, directory: Path) -> dict[str, Any]:
        """Every batch of the window range folded into the accumulators, resuming from and
        saving to orbax checkpoints in `directory` (step = batches done)."""
        abstract = abstract_acc(self.run.program, self.config, self.mesh)
        manager = checkpoints.open_manager(directory, keep=2)
        acc = checkpoints.restore_latest(manager, abstract, lambda a: int(a["batches"]), is_primary())
        if acc is None:
            acc = jax.jit(lambda: init_acc(abstract), out_shardings=acc_shardings(abstract))()
        done = int(acc["batches"])
        total = (self.windows[1] - self.windows[0]) // self.config.batch
        if done:
            print(f"pdc harvest: resuming after batch {done} of {total}", file=sys.stderr)
        state, params = self.run.state, self.run.params
        step = jitted_harvest_step(self.run.program, self.config, abstract, _shardings(state),
                                   _shardings(params), batch_sharding(self.run.ir, self.mesh))
        while done < total:
            tokens, windows = self.place(self.windows[0] + done * self.config.batch, self.config.batch)
            acc = step(acc, state, params, tokens, windows)
            done += 1
            if done % self.options.save_every == 0 and done < total:
                checkpoints.save(manager, done, acc)
                print(f"pdc harvest: saved batch {done} of {total}", file=sys.stderr, flush=True)
        manager.close()
        return acc

    # ---- finalising ------------------------------------------------------------------------

    def tables(self, acc: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
        slots = site_slots(self.run.program)
        host = {kind: {name: np.asarray(host_array(a[name])) for name in
                       ("firing", "hist", "ci_sum", "act_sum", "top_score", "top_pos", "res_score", "res_pos")}
                for kind, a in acc["kinds"].items()}
        n = int(host_array(acc["tokens"]))
        return {"components": self.components(slots, host, n), "histograms": _histograms(slots, host),
                "examples": self.examples(slots, host), "token_pmi": self.token_pmi(slots, acc, n),
                "neighbors": self.neighbors(slots, acc)}

    def components(self, slots: list[SiteSlot], host: dict[str, Any], n: int) -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {k: [] for k in ("site", "component", "tokens", "firing", "density", "mean_ci",
                                                      "mean_abs_act", "alive", "v_norm", "u_norm")}
        factors = self.run.all_components()
        for s in slots:
            a = host[s.kind]
            firing = a["firing"][s.index].astype(np.int64)
            V, U = factors[s.path]
            cols["site"] += [s.path] * s.C
            cols["component"] += list(range(s.C))
            cols["tokens"] += [n] * s.C
            cols["firing"] += firing.tolist()
            cols["density"] += (firing / n).tolist()
            cols["mean_ci"] += (a["ci_sum"][s.index].astype(np.float64) / n).tolist()
            cols["mean_abs_act"] += (a["act_sum"][s.index].astype(np.float64) / n).tolist()
            cols["alive"] += (firing > 0).tolist()
            cols["v_norm"] += np.linalg.norm(V, axis=0).tolist()
            cols["u_norm"] += np.linalg.norm(U, axis=1).tolist()
        return cols

    def examples(self, slots: list[SiteSlot], host: dict[str, Any]) -> dict[str, list[Any]]:
        """Top-k and reservoir examples with their windows: positions from the accumulators;
        tokens, CI and activations re-read on the device for the windows that hold them."""
        wanted = []  # (slot, component, kind, rank, position)
        for s in slots:
            a = host[s.kind]
            for name, pos in (("top", a["top_pos"][s.index]), ("random", a["res_pos"][s.index])):
                for c, r in zip(*np.nonzero(pos != EMPTY)):
                    wanted.append((s, int(c), name, int(r), int(pos[c, r])))
        series = self._windows_of(wanted)
        S, ctx = self.config.seq_len, self.options.context
        cols: dict[str, list[Any]] = {k: [] for k in ("site", "component", "kind", "rank", "position", "center",
                                                      "tokens", "ci", "act")}
        for key, (s, c, name, r, pos) in enumerate(wanted):
            w, t = divmod(pos, S)
            lo, hi = max(0, t - ctx), min(S, t + ctx + 1)
            ci, act = series[key]
            cols["site"].append(s.path)
            cols["component"].append(c)
            cols["kind"].append(name)
            cols["rank"].append(r)
            cols["position"].append(pos)
            cols["center"].append(t - lo)
            cols["tokens"].append(np.asarray(self.corpus.tokens[w * S + lo:w * S + hi], np.int64).tolist())
            cols["ci"].append(ci[lo:hi].tolist())
            cols["act"].append(act[lo:hi].tolist())
        return cols

    def _windows_of(self, wanted: list[tuple[SiteSlot, int, str, int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """CI and activation `[S]` of each wanted example's component over its window. The
        batches holding examples run again exactly as harvested (same windows, same rows), so
        an example's CI is bit for bit the one the accumulators ranked."""
        S, B, first = self.config.seq_len, self.config.batch, self.windows[0]
        by_batch: dict[int, list[int]] = {}
        for key, (_, _, _, _, pos) in enumerate(wanted):
            by_batch.setdefault((pos // S - first) // B, []).append(key)
        out: list[Any] = [None] * len(wanted)
        extract = jax.jit(make_extract(self.run.program))
        kinds = list(self.run.program.layout)
        for b in sorted(by_batch):
            tokens, _ = self.place(first + b * B, B)
            requests = {kind: [((wanted[key][4] // S - first) % B, key) for key in by_batch[b]
                               if wanted[key][0].kind == kind] for kind in kinds}
            while any(requests.values()):
                batch = {kind: reqs[:EXTRACT_ROWS] for kind, reqs in requests.items()}
                requests = {kind: reqs[EXTRACT_ROWS:] for kind, reqs in requests.items()}
                args = {kind: _request_arrays(reqs, wanted) for kind, reqs in batch.items()}
                got = jax.tree.map(host_array, extract(self.run.state, self.run.params, tokens, args))
                for kind, reqs in batch.items():
                    ci, act = got[kind]
                    for j, (_, key) in enumerate(reqs):
                        out[key] = (np.asarray(ci[j], np.float32), np.asarray(act[j], np.float32))
        return out

    def token_pmi(self, slots: list[SiteSlot], acc: dict[str, Any], n: int) -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {k: [] for k in ("site", "component", "direction", "side", "rank", "token",
                                                      "count", "pmi")}
        totals = {"input": np.asarray(host_array(acc["token_totals"]), np.float64),
                  "output": np.asarray(host_array(acc["output_totals"]), np.float64)}
        chunk = 1024
        for s in slots:
            a = acc["kinds"][s.kind]
            firing = np.asarray(host_array(a["firing"][s.index]), np.float64)
            for direction, name in (("input", "input_counts"), ("output", "output_mass")):
                for c0 in range(0, s.C, chunk):
                    counts = np.asarray(host_array(a[name][s.index, c0:c0 + chunk]), np.float64)
                    for j in range(counts.shape[0]):
                        for side, rank, token, count, pmi in pmi_tokens(counts[j], totals[direction], n,
                                                                        firing[c0 + j], self.options.pmi_k):
                            cols["site"].append(s.path)
                            cols["component"].append(c0 + j)
                            cols["direction"].append(direction)
                            cols["side"].append(side)
                            cols["rank"].append(rank)
                            cols["token"].append(token)
                            cols["count"].append(count)
                            cols["pmi"].append(pmi)
        return cols

    def neighbors(self, slots: list[SiteSlot], acc: dict[str, Any]) -> dict[str, list[Any]]:
        firing = np.concatenate([np.asarray(host_array(acc["kinds"][s.kind]["firing"][s.index]), np.int64)
                                 for s in slots])
        owner = np.concatenate([np.full(s.C, i) for i, s in enumerate(slots)])
        local = np.concatenate([np.arange(s.C) for s in slots])
        cols: dict[str, list[Any]] = {k: [] for k in ("site", "component", "rank", "other_site", "other_component",
                                                      "together", "score")}
        chunk = 1024
        total = len(firing)
        for r0 in range(0, total, chunk):
            together = np.asarray(host_array(acc["together"][r0:r0 + chunk]), np.int64)
            for j in range(together.shape[0]):
                i = r0 + j
                for rank, (other, both, score) in enumerate(top_neighbors(i, together[j], firing,
                                                                          self.options.neighbor_k)):
                    cols["site"].append(slots[owner[i]].path)
                    cols["component"].append(int(local[i]))
                    cols["rank"].append(rank)
                    cols["other_site"].append(slots[owner[other]].path)
                    cols["other_component"].append(int(local[other]))
                    cols["together"].append(both)
                    cols["score"].append(score)
        return cols


def host_array(x: Any) -> np.ndarray:
    """A (sharded) array's whole value on this host; with several processes every process
    gathers it (each finalises the same tables; process 0 writes them)."""
    return np.asarray(global_value(x))


def _request_arrays(reqs: list[tuple[int, int]], wanted: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.zeros(EXTRACT_ROWS, np.int32)
    layers = np.zeros(EXTRACT_ROWS, np.int32)
    comps = np.zeros(EXTRACT_ROWS, np.int32)
    for j, (row, key) in enumerate(reqs):
        rows[j], layers[j], comps[j] = row, wanted[key][0].index, wanted[key][1]
    return rows, layers, comps


def _shardings(tree: Any) -> Any:
    return jax.tree.map(lambda a: a.sharding, tree)


def _histograms(slots: list[SiteSlot], host: dict[str, Any]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {"site": [], "component": [], "counts": []}
    for s in slots:
        cols["site"] += [s.path] * s.C
        cols["component"] += list(range(s.C))
        cols["counts"] += host[s.kind]["hist"][s.index].astype(np.int64).tolist()
    return cols


def pmi_tokens(counts: np.ndarray, totals: np.ndarray, n: int, firing: float, k: int
               ) -> list[tuple[str, int, int, float, float]]:
    """(side, rank, token, count, pmi) of one component's top and bottom `k` tokens by
    PMI = log(count · n / (firing · total)) over tokens with count > 0 and total > 0 (the
    torch library's definition); ties by the smaller token id."""
    if firing <= 0:
        return []
    valid = np.nonzero((counts > 0) & (totals > 0))[0]
    if not len(valid):
        return []
    pmi = np.log(counts[valid] * n / (firing * totals[valid]))
    out = []
    for side, order in (("top", np.lexsort((valid, -pmi))), ("bottom", np.lexsort((valid, pmi)))):
        for rank, j in enumerate(order[:k]):
            out.append((side, rank, int(valid[j]), float(counts[valid[j]]), float(pmi[j])))
    return out


def top_neighbors(i: int, together: np.ndarray, firing: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """(other, together, Jaccard) of component i's `k` most co-active others: Jaccard =
    together / (firing_i + firing_j − together) over others that fire with it at least once;
    ties by the smaller global index (site order, then component)."""
    others = np.nonzero(together > 0)[0]
    others = others[others != i]
    if not len(others):
        return []
    score = together[others] / (firing[i] + firing[others] - together[others])
    order = np.lexsort((others, -score))[:k]
    return [(int(others[j]), int(together[others[j]]), float(score[j])) for j in order]


# ---- the command -----------------------------------------------------------------------------


def default_out(run_path: Path, step: int) -> Path:
    return run_path / f"harvest-{step}"


def prepare(run_path: Path, options: HarvestOptions) -> tuple[Harvester, dict[str, Any], Path]:
    """Everything checked and opened, nothing written: (harvester, settings, out)."""
    ir = harvest_ir(run_path, options.overrides)
    run = open_run(run_path, ir, options.step)
    data = ir.options("data")
    batch, seq_len = int(data.batch), int(data.seq_len)
    corpus = open_corpus(ir, run_path, options.tokens, batch)
    windows = window_range(corpus, seq_len, batch, options.batches, options.tokens_count)
    config = HarvestConfig(seq_len, batch, int(ir.facts["target"].dims["vocab"]), _threshold(ir, options.threshold),
                           options.top_k, options.reservoir_k)
    settings = settings_of(run, file_sha256(corpus.path), corpus, config, windows, options)
    out = options.out or default_out(run_path, run.step)
    return Harvester(run, corpus, config, windows, options), settings, out


def harvest(run_path: Path, options: HarvestOptions) -> Path:
    """Harvest (or resume harvesting) a run into the store at `--out`; returns its path."""
    harvester, settings, out = prepare(run_path, options)
    if check_out(out, settings):
        print(f"pdc harvest: {out} already holds this harvest", file=sys.stderr)
        return out
    directory = ckpt_dir(out)
    _check_progress(directory, settings)
    _barrier("pdc-harvest-checked")  # every process has read the progress before process 0 rewrites it
    if is_primary():
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / "settings.json.partial"
        partial.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        partial.replace(directory / "settings.json")  # never seen half written
    acc = harvester.accumulate(directory)
    tables = harvester.tables(acc)
    if is_primary():
        write_store(out, tables, manifest(harvester, settings))
        shutil.rmtree(directory, ignore_errors=True)
    _barrier("pdc-harvest-stored")  # the other processes return once the store is whole
    return out


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def manifest(h: Harvester, settings: dict[str, Any]) -> dict[str, Any]:
    from pdc.run.rundir import versions

    facts = h.run.ir.facts
    S = h.config.seq_len
    return {**settings, "pdc_version": versions()["pdc"], "spec": h.run.ir.spec.name,
            "runtime_hash": facts["runtime_hash"], "positions": [settings["windows"][0] * S, settings["windows"][1] * S],
            "tokens": (settings["windows"][1] - settings["windows"][0]) * S,
            "histogram_edges": list(h.config.edges), "neighbor_score": NEIGHBOR_SCORE,
            "sites": [{"name": s.path, "C": s.C, "order": s.order} for s in site_slots(h.run.program)],
            "tokenizer": h.corpus.tokenizer}


__all__ = ["HarvestError", "HarvestOptions", "Harvester", "NEIGHBOR_SCORE", "ckpt_dir", "default_out", "harvest",
           "harvest_ir", "pmi_tokens", "prepare", "top_neighbors"]
