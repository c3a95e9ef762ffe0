"""`pdc harvest` (issue 30, docs/harvest.md): a tiny_llama run trained 20 steps (random
frozen weights, no pretraining), harvested over a token file of 26 windows (24 harvested):
every number in the store against a plain NumPy recomputation from `load_run(RUN).ci`, the
clean forward and the exported components; the same store on 1 and 8 devices; kill -9 and
rerun; the diagnostics. The run's compile dominates (~2 min), so the run-backed tests are
slow; the program's pieces (hash, merges, PMI, neighbours) are checked in the default run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest

from pdc.analyze.harvest import pmi_tokens, top_neighbors
from pdc.analyze.store import TABLES, load_harvest
from pdc.cli import main
from pdc.lower.harvest import EMPTY, histogram_edges, numpy_keys, position_keys
from pdc.syntax.codes import ANALYZE_CODES

from conftest import REPO

S, WINDOWS, BATCH = 16, 26, 8  # 26 windows in the file; 3 batches of 8 = 24 harvested
THRESHOLD = ("--set", "eval.rounding_threshold=0.1")  # the default threshold is eval's (no eval pass in training)
SHOWN: set[str] = set()  # PD081x codes the tests below produced


# ---- the program's pieces (default run) ------------------------------------------------------


def test_the_reservoir_hash_is_the_same_in_jax_and_numpy() -> None:
    site = np.array([0, 1, 5, 2 ** 20])[:, None, None]
    comp = np.arange(7)[None, :, None]
    pos = np.array([0, 1, 2, 17, 2 ** 30, 2 ** 31 - 2])[None, None, :]
    ours = np.asarray(position_keys(jnp.asarray(site, jnp.int32), jnp.asarray(comp, jnp.int32),
                                    jnp.asarray(pos, jnp.int32)))
    assert ours.dtype == np.int32 and ours.min() >= 0
    np.testing.assert_array_equal(ours, numpy_keys(site, comp, pos))
    assert len(np.unique(ours)) == ours.size  # no collisions on this small grid


def test_pmi_and_neighbours_follow_their_definitions() -> None:
    counts = np.array([0, 3, 1, 2, 2], float)
    totals = np.array([5, 12, 0, 4, 4], float)
    rows = pmi_tokens(counts, totals, n=40, firing=8, k=2)
    expected = {1: np.log(3 * 40 / (8 * 12)), 3: np.log(2 * 40 / (8 * 4)), 4: np.log(2 * 40 / (8 * 4))}
    assert [(r[0], r[2]) for r in rows] == [("top", 3), ("top", 4), ("bottom", 1), ("bottom", 3)]  # ties: smaller id
    for side, rank, token, count, pmi in rows:
        assert pmi == pytest.approx(expected[token]) and count == counts[token]
    assert pmi_tokens(counts, totals, 40, 0, 2) == []
    together = np.array([5, 2, 0, 2], np.int64)
    firing = np.array([5, 4, 3, 2], np.int64)
    got = top_neighbors(0, together, firing, 5)
    assert got == [(3, 2, 2 / 5), (1, 2, 2 / 7)]


def test_histogram_edges_are_documented_ones() -> None:
    edges = histogram_edges()
    assert edges[:3] == [-1.0, 0.0, 1e-6] and edges[-1] == 1.0 and len(edges) == 27
    assert all(b > a for a, b in zip(edges, edges[1:]))


# ---- the run ---------------------------------------------------------------------------------


def spec_text(tmp: Path) -> str:
    text = (REPO / "specs" / "tiny_llama.pd").read_text()
    start = text.index("    pretrain {")
    end = text.index("    }\n", start) + len("    }\n")
    text = text[:start] + f'    weights = "{tmp / "weights"}"\n' + text[end:]
    text = text.replace("seq_len = 128\n    batch = 16", f"seq_len = {S}\n    batch = {BATCH}")
    text = text.replace("faithfulness_warmup { steps = 100", "faithfulness_warmup { steps = 5")
    text = text.replace("log { every = 50 }", "log { every = 10 }")
    text = text.replace("checkpoint { every = 500 keep = 2 }", "checkpoint { every = 20 keep = 2 }")
    text = text.replace("C = 128", "C = 64")
    return text.replace("  eval { every = 500 metrics = [ci_l0, ce_kl, pgd_recon] }\n", "")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_llama (C = 64 per site, random frozen weights) trained 20 steps, and a token file."""
    from pdc.models import build_target
    from pdc.targets.llama.hf import hf_config, save_hf
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    tmp = tmp_path_factory.mktemp("harvest")
    text = spec_text(tmp)
    (tmp / "tiny.pd").write_text(text)
    result = check_text(text, str(tmp / "tiny.pd"))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    target = build_target(ir.facts["target"], [n[5:] for n in ir.graph if n.startswith("site:")])
    save_hf(target.init_params(jax.random.PRNGKey(3)), tmp / "weights", config=hf_config(target.config))
    assert main(["train", str(tmp / "tiny.pd"), "--out", str(tmp / "run"), "--max-steps", "20"]) == 0
    ids = np.random.default_rng(0).integers(0, 256, WINDOWS * S)
    ids[::5] = 32  # a frequent token, so PMI has something to say
    np.save(tmp / "tokens.npy", ids.astype(np.uint16))
    return tmp / "run"


def harvest_argv(run: Path, out: Path, *extra: str) -> list[str]:
    """`pdc harvest`'s arguments for the tests' harvest of `run` (small k's, the token file)."""
    return ["harvest", str(run), "--tokens", str(run.parent / "tokens.npy"), "--out", str(out), "--top-k", "4",
            "--pmi-k", "3", "--neighbor-k", "3", "--context", "3", *THRESHOLD, *extra]


def harvest(run: Path, out: Path, *extra: str) -> Path:
    assert main(harvest_argv(run, out, *extra)) == 0
    return out


@pytest.fixture(scope="module")
def store(run_dir: Path) -> Path:
    return harvest(run_dir, run_dir.parent / "store")


# ---- the NumPy reference ---------------------------------------------------------------------


def reference(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Per site: CI, |act| and firing `[N, C]` over the harvested windows, plus the tokens,
    the next-token probabilities `[N, vocab]`, window by window as the harvest batches them."""
    from pdc.run.evaluate import site_paths
    from pdc.run.load import load_run

    run = load_run(run_dir)
    tokens = np.load(run_dir.parent / "tokens.npy").astype(np.int32)
    first, stop = manifest["windows"]
    windows = tokens[first * S:stop * S].reshape(-1, S)
    ci: dict[str, list[np.ndarray]] = {}
    act: dict[str, list[np.ndarray]] = {}
    probs = []
    factors = run.all_components()
    clean = jax.jit(run.program.target.clean)
    for b in range(0, len(windows), BATCH):
        batch = windows[b:b + BATCH]
        for site, values in run.ci(batch).items():
            ci.setdefault(site, []).append(values.reshape(-1, values.shape[-1]))
        passed = jax.device_get(clean(run.params, jnp.asarray(batch)))
        logits = np.asarray(passed.output, np.float64).reshape(-1, passed.output.shape[-1])
        p = np.exp(logits - logits.max(-1, keepdims=True))
        probs.append(p / p.sum(-1, keepdims=True))
        for kind, paths in site_paths(run.ir).items():
            for i, site in enumerate(paths):
                x = np.asarray(passed.site_inputs[kind][i], np.float64).reshape(-1, factors[site][0].shape[0])
                V, U = (np.asarray(m, np.float64) for m in factors[site])
                act.setdefault(site, []).append(np.abs(x @ V * np.linalg.norm(U, axis=1)))
    out = {"tokens": windows.reshape(-1), "probs": np.concatenate(probs), "first": first * S}
    out["ci"] = {k: np.concatenate(v) for k, v in ci.items()}
    out["act"] = {k: np.concatenate(v) for k, v in act.items()}
    out["signed_act"] = None
    return out


def firing_of(ref: dict[str, Any], site: str, threshold: float) -> np.ndarray:
    return ref["ci"][site] > np.float32(threshold)


@pytest.mark.slow  # the module's run: ~2 min of compiles
def test_every_number_in_the_store_equals_a_numpy_recomputation(run_dir: Path, store: Path) -> None:
    h = load_harvest(store)
    m = h.manifest
    assert m["windows"] == [0, 24] and m["tokens"] == 24 * S and m["threshold"] == 0.1  # eval.rounding_threshold
    ref = reference(run_dir, m)
    n, thr = m["tokens"], m["threshold"]
    positions = np.arange(n) + ref["first"]
    edges = np.asarray(m["histogram_edges"], np.float32)
    order_of = {s["name"]: s["order"] for s in m["sites"]}
    assert [s["name"] for s in m["sites"]] == sorted(order_of, key=order_of.get)
    assert duckdb.sql(f"select count(*) from '{store}/components.parquet'").fetchall()[0][0] == \
        sum(s["C"] for s in m["sites"])
    hists = {(r["site"], r["component"]): r["counts"] for r in h.records("select * from histograms")}
    fires = {site: firing_of(ref, site, thr) for site in order_of}
    for site in order_of:
        ci, act, fire = ref["ci"][site], ref["act"][site], fires[site]
        rows = h.records("select * from components where site = ? order by component", [site])
        column = {name: np.asarray([r[name] for r in rows]) for name in rows[0]}
        np.testing.assert_array_equal(column["firing"], fire.sum(0))
        assert (column["tokens"] == n).all()
        np.testing.assert_allclose(column["mean_ci"], ci.astype(np.float64).mean(0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(column["mean_abs_act"], act.mean(0), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(column["alive"], fire.sum(0) > 0)
        for c in range(ci.shape[1]):
            bins = np.searchsorted(edges[1:-1], ci[:, c], side="left")
            np.testing.assert_array_equal(hists[(site, c)], np.bincount(bins, minlength=len(edges) - 1))
            fired = np.nonzero(fire[:, c])[0]
            top = fired[np.lexsort((positions[fired], -ci[fired, c]))][:4]
            keys = numpy_keys(order_of[site], c, positions[fired])
            sample = fired[np.lexsort((positions[fired], keys))][:4]
            got = {kind: [e for e in h.examples(site, c, kind)] for kind in ("top", "random")}
            assert [e["position"] for e in got["top"]] == positions[top].tolist(), (site, c)
            assert [e["position"] for e in got["random"]] == positions[sample].tolist(), (site, c)
            for e in got["top"] + got["random"]:
                i = e["position"] - ref["first"]
                w, t = divmod(i, S)
                lo, hi = max(0, t - 3), min(S, t + 4)
                assert e["center"] == t - lo and e["tokens"] == ref["tokens"][w * S + lo:w * S + hi].tolist()
                np.testing.assert_allclose(e["ci"], ci[w * S + lo:w * S + hi, c], rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(np.abs(e["act"]), act[w * S + lo:w * S + hi, c], rtol=1e-5, atol=1e-5)
    check_pmi(h, ref, fires)
    check_neighbors(h, fires, order_of)


def check_pmi(h: Any, ref: dict[str, Any], fires: dict[str, np.ndarray]) -> None:
    n = len(ref["tokens"])
    vocab = ref["probs"].shape[1]
    totals = {"input": np.bincount(ref["tokens"], minlength=vocab).astype(np.float64),
              "output": ref["probs"].sum(0)}
    onehot = np.eye(vocab)[ref["tokens"]]
    checked = 0
    for site, fire in fires.items():
        counts = {"input": fire.T.astype(np.float64) @ onehot, "output": fire.T.astype(np.float64) @ ref["probs"]}
        for c in range(fire.shape[1]):
            f = fire[:, c].sum()
            for direction in ("input", "output"):
                got = h.pmi(site, c, direction)
                if f == 0:
                    assert got == []
                    continue
                cnt, tot = counts[direction][c], totals[direction]
                valid = (cnt > 0) & (tot > 0)
                pmi = np.full(vocab, np.nan)
                pmi[valid] = np.log(cnt[valid] * n / (f * tot[valid]))
                for side, best in (("top", -np.sort(-pmi[valid])[:3]), ("bottom", np.sort(pmi[valid])[:3])):
                    rows = [r for r in got if r["side"] == side]
                    assert [r["rank"] for r in rows] == list(range(len(best)))
                    np.testing.assert_allclose([r["pmi"] for r in rows], best, rtol=1e-5, atol=1e-5)
                    for r in rows:  # each token's own PMI and count (ties may order differently by 1 ulp)
                        assert r["pmi"] == pytest.approx(pmi[r["token"]], rel=1e-5, abs=1e-5)
                        assert r["count"] == pytest.approx(cnt[r["token"]], rel=1e-5, abs=1e-6)
                        if direction == "input":
                            assert r["count"] == cnt[r["token"]]
                checked += 1
    assert checked > 100


def check_neighbors(h: Any, fires: dict[str, np.ndarray], order_of: dict[str, int]) -> None:
    sites = sorted(fires, key=order_of.get)
    every = np.concatenate([fires[s] for s in sites], axis=1).astype(np.int64)
    together = every.T @ every
    firing = every.sum(0)
    names = [(s, c) for s in sites for c in range(fires[s].shape[1])]
    for i, (site, c) in enumerate(names):
        others = [j for j in range(len(names)) if j != i and together[i, j] > 0]
        score = {j: together[i, j] / (firing[i] + firing[j] - together[i, j]) for j in others}
        best = sorted(others, key=lambda j: (-score[j], j))[:3]
        got = h.neighbors(site, c)
        assert [(r["other_site"], r["other_component"]) for r in got] == [names[j] for j in best], (site, c)
        assert [r["together"] for r in got] == [together[i, j] for j in best]
        assert [r["score"] for r in got] == [score[j] for j in best]


# ---- shard independence, resume --------------------------------------------------------------


# A position's CI and activation on another mesh: the CI network's partitioned sums add in
# another order (a few f32 ulps of its pre-activations, ~2e-6 absolute here); what the
# harvest accumulates from them (counts, ranks, sums) is compared at the 1e-6.
WINDOW_TOLERANCE = 1e-5


def near_edges(run_dir: Path, store: Path, eps: float = 1e-5) -> dict[tuple[str, int], int]:
    """Per component, the harvested positions whose CI lies within `eps` of an interior
    histogram edge: the only ones another mesh's summation order can move to the next bin."""
    manifest = json.loads((store / "manifest.json").read_text())
    ref = reference(run_dir, manifest)
    edges = np.asarray(manifest["histogram_edges"][1:-1], np.float32)
    out = {}
    for site, ci in ref["ci"].items():
        close = (np.abs(ci[:, :, None] - edges[None, None, :]) <= eps).any(-1).sum(0)
        out.update({(site, c): int(n) for c, n in enumerate(close)})
    return out


def assert_same_store(a: Path, b: Path, near: dict[tuple[str, int], int] | None = None) -> None:
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    for key in ("windows", "tokens", "threshold", "sites", "histogram_edges", "token_sha256", "step"):
        assert ma[key] == mb[key], key
    for name in TABLES:
        ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
        assert ta.num_rows == tb.num_rows and ta.schema == tb.schema, name
        for column in ta.column_names:
            x, y = ta.column(column).to_pylist(), tb.column(column).to_pylist()
            if column in ("ci", "act"):
                assert [len(v) for v in x] == [len(v) for v in y], f"{name}.{column}"
                x, y = [v for row in x for v in row], [v for row in y for v in row]
            if name == "histograms" and column == "counts" and near is not None:
                keys = list(zip(ta.column("site").to_pylist(), ta.column("component").to_pylist()))
                for key, p, q in zip(keys, x, y):
                    assert sum(p) == sum(q) and np.abs(np.subtract(p, q)).sum() <= 2 * near[key], (key, p, q)
                continue
            if ta.schema.field(column).type in ("float", "double") or column in ("ci", "act"):
                tol = WINDOW_TOLERANCE if column in ("ci", "act") else 1e-6
                np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=tol, atol=tol,
                                           err_msg=f"{name}.{column}")
            else:
                assert x == y, f"{name}.{column}"


@pytest.mark.slow  # three more harvest compiles
@pytest.mark.parametrize("mesh", [("1", "1"), ("8", "1")], ids=["1-device", "dp8"])
def test_the_same_harvest_on_another_mesh_writes_the_same_store(run_dir: Path, store: Path, mesh: tuple[str, str],
                                                                  tmp_path: Path) -> None:
    """The run's own mesh is dp = 2 × tp = 4; the store is the same on 1 device and on dp = 8:
    integers exact, floats to 1e-6 (example windows' CI and activations to 1e-5), except that a
    CI within 1e-5 of a histogram edge may fall in the neighbouring bin (f32 summation order)."""
    other = harvest(run_dir, tmp_path / "store", "--set", f"mesh.dp={mesh[0]}", "--set", f"mesh.tp={mesh[1]}")
    assert_same_store(store, other, near_edges(run_dir, store))


@pytest.mark.slow  # two harvest processes
def test_kill_9_mid_harvest_then_rerun_writes_the_uninterrupted_store(run_dir: Path, store: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = [sys.executable, "-m", "pdc.cli", *harvest_argv(run_dir, out, "--save-every", "1")]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    assert proc.stderr is not None
    deadline = time.time() + 300
    for line in proc.stderr:
        if "saved batch 1 of 3" in line or time.time() > deadline:
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not out.exists() and (tmp_path / ".store.harvest-ckpts").is_dir()
    done = subprocess.run(args, stderr=subprocess.PIPE, text=True, env=dict(os.environ), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after batch" in done.stderr
    assert not (tmp_path / ".store.harvest-ckpts").exists()
    assert_same_store(store, out)


@pytest.mark.slow  # two harvest processes, each compiling the program (~2 min)
def test_two_processes_write_the_single_process_store(run_dir: Path, store: Path, tmp_path: Path) -> None:
    """The run's mesh (dp = 2 × tp = 4) over 2 local processes × 4 fake CPU devices
    (jax.distributed, gloo): each process reads its own half of every batch, the program's
    reductions merge them, process 0 alone writes the store, and a checkpoint saved by both
    processes is resumed by both (killed after the first save, as in the kill -9 test). The
    store equals the single-process 8-device one (`store`)."""
    from test_multihost import free_port, pdc as pdc_process

    out = tmp_path / "store"

    def start(*extra: str) -> list[subprocess.Popen[str]]:
        port = free_port()
        return [pdc_process(*harvest_argv(run_dir, out, "--save-every", "1", *extra), "--coordinator",
                            f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)) for i in range(2)]

    killed = start()
    assert killed[0].stderr is not None
    deadline = time.time() + 600
    for line in killed[0].stderr:  # process 0 reports a save once both processes' shards are committed
        if "saved batch 1 of 3" in line or time.time() > deadline:
            break
    for proc in killed:
        proc.send_signal(signal.SIGKILL)
    for proc in killed:
        assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not out.exists() and (tmp_path / ".store.harvest-ckpts").is_dir()
    resumed = start()
    for proc in resumed:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        assert "resuming after batch" in err
    assert not (tmp_path / ".store.harvest-ckpts").exists()
    assert_same_store(store, out, near_edges(run_dir, store))


# ---- bad input -------------------------------------------------------------------------------


def expect(capsys: pytest.CaptureFixture[str], argv: list[str], code: str) -> str:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert f"error[{code}]" in err, err
    SHOWN.add(code)
    return err


def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect(capsys, ["harvest", str(tmp_path)], "PD0810")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # the module's run
def test_bad_inputs_are_coded_and_nothing_is_written_over(run_dir: Path, store: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    tokens = str(run_dir.parent / "tokens.npy")
    base = ["harvest", str(run_dir), "--tokens", tokens, *THRESHOLD]
    before = (store / "manifest.json").read_text()
    expect(capsys, base + ["--out", str(store), "--top-k", "5"], "PD0811")  # another harvest's store
    assert (store / "manifest.json").read_text() == before
    expect(capsys, base + ["--out", str(tmp_path / "x"), "--batches", "4"], "PD0812")  # 32 windows > 26
    expect(capsys, base + ["--out", str(tmp_path / "x"), "--step", "7"], "PD0810")  # no such checkpoint
    expect(capsys, base + ["--out", str(tmp_path / "x"), "--set", "train.steps=5"], "PD0813")
    wide = tmp_path / "wide.npy"
    np.save(wide, np.full(WINDOWS * S, 300, np.uint16))  # ids beyond the 256-token vocabulary
    assert main(["harvest", str(run_dir), "--tokens", str(wide), "--out", str(tmp_path / "x")]) != 0
    assert "error[PD04" in capsys.readouterr().err
    progress = tmp_path / ".y.harvest-ckpts"
    progress.mkdir()
    (progress / "settings.json").write_text("{}")
    expect(capsys, base + ["--out", str(tmp_path / "y")], "PD0814")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert main(base + ["--out", str(store), "--top-k", "4", "--pmi-k", "3", "--neighbor-k", "3", "--context", "3"]) == 0
    assert "already holds this harvest" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("run.json", "spec.pd"):
        (bare / name).write_text((run_dir / name).read_text())
    expect(capsys, ["harvest", str(bare), "--tokens", tokens], "PD0810")  # a run without checkpoints


@pytest.mark.slow
def test_every_harvest_code_was_shown() -> None:
    harvest_codes = {c for c in ANALYZE_CODES if c >= "PD0810"}
    assert harvest_codes <= SHOWN, harvest_codes - SHOWN


# ---- the dry-run -----------------------------------------------------------------------------


def dry_run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["harvest", *argv, "--dry-run", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (2 if report["fits"] is False else 0)
    return report


@pytest.mark.slow  # one harvest compile on fake devices (~40 s)
def test_the_dry_run_sizes_the_harvest_program_of_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    report = dry_run_json(capsys, str(REPO / "specs" / "tiny_llama.pd"))
    h = report["harvest"]
    assert report["verdict"] == "fits" and report["memory"]["total"] > 0
    names = {a["name"]: a for a in h["accumulators"]}
    big = names["kinds.gate_proj.input_counts"]  # [L=2, C=128, vocab=256] int32, C split over tp = 4, then dp = 2
    assert big["shape"] == [2, 128, 256] and big["bytes_per_device"] == 2 * 128 * 256 * 4 // 8
    assert names["together"]["shape"] == [768, 768]
    assert h["positions_per_batch"] == 16 * 128 and h["matmul_flops_per_token"] > 0
    assert h["store_bytes"]["total"] == sum(v for k, v in h["store_bytes"].items() if k != "total")


@pytest.mark.gpu_compile  # needs the `cuda` extra: XLA:GPU deviceless, as `pdc compile` does
def test_the_llama8b_l18_harvest_fits_its_budget_on_the_gpu_compiler(capsys: pytest.CaptureFixture[str]) -> None:
    """The spec's own batch (64 windows of 2048 tokens) on 8 × H100: folded in slices of one
    window per device, it fits (30.8 GiB of 72 when measured; 135.6 GiB unsliced)."""
    report = dry_run_json(capsys, str(REPO / "specs" / "llama8b_l18.pd"))
    assert report["level"] == "gpu" and report["verdict"] == "fits", report["memory"]
    assert report["harvest"]["batch_windows"] == 64
    assert report["harvest"]["matmul_flops_per_token"] > 1e10  # the 8B forward alone is ~1.5e10
    assert report["harvest"]["store_bytes"]["total"] > 0


@pytest.mark.parametrize("batch,seq,vocab,shards,expected", [
    (64, 2048, 128_256, 8, 8),   # llama8b_l18: one 2048-token window per device per slice
    (16, 128, 256, 2, 16),       # tiny_llama: 2^15 probabilities per window, the whole batch at once
    (6, 32, 256, 4, 6),          # a batch the split does not divide: unsliced, as the step places it
    (12, 4096, 65_536, 2, 2),    # 2^28 per window: one window per shard
    (12, 1024, 65_536, 2, 4),    # 2^26 per window: four windows (2^28), a multiple of 2 dividing 12
])
def test_a_harvest_slice_is_the_largest_divisor_within_a_gib_of_probabilities(batch: int, seq: int, vocab: int,
                                                                               shards: int, expected: int) -> None:
    from pdc.lower.harvest import slice_windows

    assert slice_windows(batch, seq, vocab, shards) == expected
