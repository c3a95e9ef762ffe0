"""Every pdc benchmark, one command: writes `benchmarks/results/<YYYY-MM-DD>-<machine>.json`
(schema `pdc.bench/1`) and the same results as a markdown table (printed, and written next
to the JSON as `.md`).

    .venv/bin/python benchmarks/run.py            # the full run (about 15-25 minutes on 2 CPU cores)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run (a few minutes): fewer, shorter windows
    .venv/bin/python benchmarks/run.py --only throughput peak --machine laptop

What it measures, each part in fresh subprocesses (so peak RSS is per measurement and no
compilation cache or allocator state leaks from one into the next):

1. `peak`: this machine's matmul peak, a large f32 `jnp` matmul (default precision), median
   GFLOP/s over timed windows.
2. `throughput`: per spec (tms_5-2, resid_mlp1, tiny_llama at the specs' own batch sizes), the
   jitted train step with the state donated, as `pdc` builds it (`make_train_step`), on one
   device with no mesh: compile time, then steps/s over timed windows after a warm-up
   (median, with every window), tokens/s for LMs, process CPU seconds per step (robust to
   a shared machine), XLA's FLOP count of the compiled step (`cost_analysis`), the achieved
   FLOP/s and its share of the matmul peak, the child's peak RSS and, where the device
   reports it (GPUs), its peak device memory against the compiled program's own estimate.
   Toy batches are drawn inside the step; the LM gets one fixed batch of byte tokens of the
   Python standard library (no data loading is timed). Each spec runs once per host
   allocator setting: the C library's defaults, glibc tuned to keep freed memory
   (`GLIBC_TUNABLES`, below) and tcmalloc when it is installed, since on CPU they change
   throughput by up to 1.5× (docs/performance.md).
3. `compile_depth`: compile time against depth (tiny_llama at 2, 8 and 32 layers with every
   layer's MLP decomposed; `compile_scaling.py`'s spec on 8 fake CPU devices).
4. `compile_sites`: compile time against the number of decomposed sites (tiny_llama at 8
   layers: the down projections, the three MLP matrices, or all seven matrices per layer).
5. `dryrun`: `pdc compile SPEC --devices N --format json` for specs/llama8b_l18.pd and
   specs/llama8b_full.pd at 8, 64 and 128 devices: wall time and peak RSS of the process,
   and the report's level (`gpu` with the `cuda` extra: XLA:GPU for the budget's H100;
   else `cpu`, an approximation), per-device memory as written and after XLA's own remat,
   the verdict and the three largest groups alive at the peak.
6. `scale` (needs the `cuda` extra; skipped with a line without it): the reference configuration
   of the hand-written trainer (`specs/llama8b_l18_reference.pd`, 4 and 8 sequences per device ×
   remat on / off / strict off) beside that trainer's compiled totals, the shipped llama8b_l18,
   and llama8b_full at 32 and 64 devices: `pdc compile --target h100_sxm --format json` per cell,
   per-device temp/total as written, the verdict, the largest groups alive at the peak and the
   step's matmul FLOPs per device counted on the optimized module (the report's
   `matmul_flops_per_device`) beside that trainer's (its step plus the 18 prefix layers it runs
   in a separate jit, issue 32's estimate): the FLOPs goal is no more than that.
7. `view`: `pdc view`'s server time on a synthetic harvest store of the size `llama8b_l18` makes
   (3 sites × 24,576 components, 32 top + 32 random examples each with a 33-token window, vocab
   128,256; `pdc.analyze.synthetic`): the site page (sorted by mean CI, one page of 50 at a
   random offset) and the component page, HTML and API, each request through the whole ASGI app
   in process (routing, DuckDB, rendering, JSON); median and p90 over requests to random
   components, against the goal of ≤ 100 ms. Also the store's write time and size.
8. `harvest`: `pdc harvest`'s program (docs/harvest.md). On this CPU: tiny_llama (random frozen
   weights, fresh state) on one device, the jitted accumulate step with the accumulators
   donated, tokens/s over timed windows after a warm-up. With the `cuda` extra: `pdc harvest
   specs/llama8b_l18.pd --dry-run --target h100_sxm` (the spec's 64 windows, folded in slices of
   one 2048-token window per device): per-device memory and verdict, matmul FLOPs per token, the store's size, and the
   device-time estimate for 100 M tokens at the H100's bf16 dense peak (989 TFLOP/s, 40 % MFU).
   The store's size does not grow with the tokens harvested (fixed quotas per component).

Timings on a shared machine are noisy: every row records the 1-minute load average, and
the markdown header gives the machine's load at the start and the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SCHEMA = "pdc.bench/1"

# The public PyTorch SPD implementation on a 2-core CPU machine (the issue's reference
# point), and the speed-ups pdc aims for.
REFERENCE = {"tms_5-2": {"torch_steps_per_s": 57.0, "goal_speedup": 10.0},
             "resid_mlp1": {"torch_steps_per_s": 15.0, "goal_speedup": 3.0}}

SPECS = {  # name → (spec file, target weights or None for random params)
    "tms_5-2": ("specs/tms_5-2.pd", "targets/tms_5-2_pentagon.safetensors"),
    "resid_mlp1": ("specs/resid_mlp1.pd", "targets/resid_mlp1.safetensors"),
    "tiny_llama": ("specs/tiny_llama.pd", None),
}
# Keep freed heap memory in the process instead of unmapping it after every step (glibc):
# one arena, no mmap'd chunks, trim only above 1 GiB. See docs/performance.md.
TUNED_ALLOCATOR = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824"
DRYRUN_SPECS = ("specs/llama8b_l18.pd", "specs/llama8b_full.pd")
# How each spec grows to a device count: `--devices N` resizes the first mesh axis (dp), so
# the per-device batch shrinks as N grows.
DRYRUN_MESHES: dict[tuple[str, int], tuple[str, ...]] = {}
PARTS = ("peak", "throughput", "compile_depth", "compile_sites", "dryrun", "scale", "harvest", "view")
VIEW_GOAL_MS = 100.0
HARVEST_TOKENS = 100_000_000  # the GPU part's corpus size
H100_BF16_PEAK, ASSUMED_MFU = 989e12, 0.4
# `scale`: the reference configuration of issue 21 (the hand-written JAX trainer's memory probe of
# Llama-3.1-8B layer 18) and the shipped LM specs, compiled deviceless with XLA:GPU for H100s as
# written (the dry-run's own `xla_gpu_memory_limit_slop_factor`). `trainer_total_gib`: that
# trainer's program compiled the same way (issue 21's table).
SCALE_REFERENCE = "specs/llama8b_l18_reference.pd"
REMAT_CELLS = {  # the trainer's remat on/off → pdc's knobs (`strict_off`, beside that trainer's off, recomputes
    # not even norms and activations)
    "on": ("remat.recon_forwards=per_layer", "remat.ci=on"),
    "off": ("remat.recon_forwards=matmuls", "remat.ci=off"),
    "strict_off": ("remat.recon_forwards=off", "remat.ci=off"),
}
TRAINER_TOTAL_GIB = {(4, "on"): 57.9, (4, "off"): 63.3, (8, "on"): 94.7, (8, "off"): 106.7}
# that trainer's matmul TFLOP per device per step, counted on its optimized module the same way
# (issue 32): its step, and its step plus the 18 prefix layers it computes in a separate jit
TRAINER_STEP_TFLOP = {(4, "on"): 1034.4, (4, "off"): 877.0, (8, "on"): 2055.8, (8, "off"): 1743.3}
TRAINER_TFLOP = {(4, "on"): 1103.6, (4, "off"): 946.3, (8, "on"): 2195.0, (8, "off"): 1882.5}
SCALE_GOAL = 0.8  # pdc's per-device total at most this share of the trainer's


# ---- child side: each runs in its own process and prints one JSON line ------------------


def _cost_flops(compiled: Any) -> float | None:
    """FLOPs of a compiled executable from XLA's cost analysis: a dict, a list of dicts
    (one per program / device) or None, depending on the JAX version and backend."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 — some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        values = [c.get("flops") for c in cost if isinstance(c, dict) and c.get("flops") is not None]
        return float(sum(values)) if values else None
    if isinstance(cost, dict) and cost.get("flops") is not None:
        return float(cost["flops"])
    return None


def _compiled_memory(compiled: Any) -> dict[str, int] | None:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if stats is None:
        return None
    out = {k: int(getattr(stats, f"{k}_size_in_bytes", 0) or 0) for k in ("argument", "output", "alias", "temp")}
    out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def _device_memory(device: Any) -> dict[str, int] | None:
    """The device's own allocator statistics (GPUs/TPUs); None on CPU."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001
        return None
    if not stats:
        return None
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit", "largest_alloc_size")
    return {k: int(stats[k]) for k in keys if k in stats}


def _windows(run: Any, sync: Any, windows: int, window_s: float, warmup_s: float) -> dict[str, Any]:
    """Warm up for `warmup_s` (at least 3 calls), size a window to about `window_s` from
    the warm-up rate, then time `windows` windows: calls/s and CPU seconds per call."""
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < warmup_s:
        run()
        calls += 1
    sync()
    per_call = (time.perf_counter() - start) / calls
    n = max(1, round(window_s / per_call))
    rates, cpu = [], []
    for _ in range(windows):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            run()
        sync()
        rates.append(n / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / n)
    return {"calls_per_window": n, "rates": rates, "cpu_s_per_call": statistics.median(cpu)}


def _env_block() -> dict[str, Any]:
    import jax

    device = jax.devices()[0]
    return {"jax": jax.__version__, "backend": jax.default_backend(), "device_kind": device.device_kind,
            "device_count": jax.device_count(), "platform_version": getattr(device.client, "platform_version", None)}


def child_peak(args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    n = args.n
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    out: list[Any] = [matmul(a, b)]

    def run() -> None:
        out[0] = matmul(a, b)

    timing = _windows(run, lambda: out[0].block_until_ready(), args.windows, args.window_s, 0.5)
    flops = 2.0 * n ** 3
    gflops = [r * flops / 1e9 for r in timing["rates"]]
    return {"n": n, "dtype": "float32", "precision": "default", "gflops_median": statistics.median(gflops),
            "gflops_windows": [round(g, 2) for g in gflops], "env": _env_block(), "load_1m": os.getloadavg()[0]}


def _program(spec_path: Path, text: str | None = None) -> Any:
    from pdc.lower.program import lower_program
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    result = check_text(spec_path.read_text() if text is None else text, str(spec_path))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    assert not ir.diagnostics, [d.summary for d in ir.diagnostics]
    return lower_program(ir)


def _lm_batch(program: Any) -> Any:
    """One [batch, seq_len] int32 batch of byte tokens of the Python standard library."""
    import jax.numpy as jnp
    import numpy as np

    from pdc.lower.state import lead_shape
    from pdc.run.data import python_stdlib_bytes

    batch, seq_len = lead_shape(program)
    tokens = np.load(python_stdlib_bytes(Path(tempfile.gettempdir()) / "pdc-bench"), mmap_mode="r")
    rows = np.random.default_rng(0).choice(len(tokens) // seq_len, batch, replace=False)
    return jnp.asarray(np.stack([tokens[r * seq_len:(r + 1) * seq_len] for r in rows]).astype(np.int32))


def child_throughput(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    sys.path.insert(0, str(REPO))
    from pdc.lower.state import init_state, lead_shape
    from pdc.lower.step import make_train_step
    from pdc.models import load_params

    spec_file, weights = SPECS[args.spec]
    program = _program(REPO / spec_file)
    lead = lead_shape(program)
    if weights is None:
        params = jax.jit(program.target.init_params)(jax.random.PRNGKey(1))
        batch = _lm_batch(program)
    else:
        params = jax.device_put(load_params(program.target, REPO / weights))
        batch = None
    state = jax.jit(lambda: init_state(program))()
    jax.block_until_ready((state, params))
    step = jax.jit(make_train_step(program), donate_argnums=(0,))
    t0 = time.perf_counter()
    lowered = step.lower(state, params, batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    holder = [state, None]

    def run() -> None:
        holder[0], holder[1] = compiled(holder[0], params, batch)

    timing = _windows(run, lambda: jax.block_until_ready(holder), args.windows, args.window_s, args.warmup_s)
    flops = _cost_flops(compiled)
    steps = statistics.median(timing["rates"])
    tokens_per_step = lead[0] * lead[1] if len(lead) == 2 else None
    metrics = {k: float(v) for k, v in holder[1].items() if k == "loss/total"}
    return {
        "spec": args.spec, "spec_file": spec_file, "batch": lead[0], "seq_len": lead[1] if len(lead) == 2 else None,
        "tokens_per_step": tokens_per_step, "lower_s": round(t1 - t0, 3), "compile_s": round(t2 - t1, 3),
        "steps_per_s_median": steps, "steps_per_s_windows": [round(r, 3) for r in timing["rates"]],
        "steps_per_window": timing["calls_per_window"], "cpu_s_per_step": timing["cpu_s_per_call"],
        "tokens_per_s": steps * tokens_per_step if tokens_per_step else None,
        "flops_per_step": flops, "achieved_flops_per_s": flops * steps if flops else None,
        "loss_total_last": metrics.get("loss/total"), "compiled_memory": _compiled_memory(compiled),
        "device_memory": _device_memory(jax.devices()[0]), "env": _env_block(), "load_1m": os.getloadavg()[0],
    }


def _sites_spec(kinds: str, layers: int) -> str:
    """tiny_llama at `layers` layers with `kinds` (a decompose path pattern after
    `layers.*.`) decomposed in every layer; 4 kv-heads (as check_speed.py) so tp = 4
    can shard the attention sites."""
    text = (REPO / "specs" / "tiny_llama.pd").read_text().replace("    layers = 4\n", f"    layers = {layers}\n")
    text = text.replace("kv_heads = 2", "kv_heads = 4")
    return text.replace("layers[1..2].mlp.{gate_proj, up_proj, down_proj}", f"layers.*.{kinds}")


SITE_SETS = {  # sites per layer → decompose pattern
    1: "mlp.down_proj",
    3: "mlp.{gate_proj, up_proj, down_proj}",
    7: ("self_attn.{q_proj, k_proj, v_proj, o_proj} { C = 128 }\n"
        "    layers.*.mlp.{gate_proj, up_proj, down_proj}"),
}


def child_compile(args: argparse.Namespace) -> dict[str, Any]:
    """Lower + compile the sharded step on abstract values (8 fake CPU devices), as
    `compile_scaling.py` does."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from compile_scaling import spec_text  # noqa: E402 — the depth benchmark's own spec

    from pdc.inspect.dryrun import abstract_step
    from pdc.lower.sharding import make_mesh

    if args.kind == "depth":
        text, sites_per_layer = spec_text(args.layers), 3
    else:
        sites_per_layer = args.sites_per_layer
        text = _sites_spec(SITE_SETS[sites_per_layer], args.layers)
    program = _program(REPO / "specs" / "scaling.pd", text)
    start = time.perf_counter()
    step, step_args = abstract_step(program, make_mesh(program.ir))
    lowered = step.lower(*step_args)
    lowered_at = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    return {"layers": args.layers, "sites": sum(len(v) for v in program.layout.values()),
            "sites_per_layer": sites_per_layer, "lower_s": round(lowered_at - start, 3),
            "compile_s": round(done - lowered_at, 3), "total_s": round(done - start, 3), "load_1m": os.getloadavg()[0]}


def child_view(args: argparse.Namespace) -> dict[str, Any]:
    """`pdc view`'s server time per page on a synthetic 8B-size store (llama8b_l18's sites)."""
    import numpy as np
    from starlette.testclient import TestClient

    from pdc.analyze.store import load_harvest
    from pdc.analyze.synthetic import synthetic_store
    from pdc.analyze.view import make_app
    from pdc.analyze.view.data import Viewer
    from pdc.ir.nodes import SiteNode

    ir = _program(REPO / "specs" / "llama8b_l18.pd").ir
    nodes = sorted((n for _, n in ir.nodes(SiteNode)), key=lambda n: n.order)
    sites, C = [n.path for n in nodes], nodes[0].C
    with tempfile.TemporaryDirectory(prefix="pdc-bench-view-") as tmp:
        start = time.perf_counter()
        store = synthetic_store(Path(tmp) / "store", sites, C=C, top_k=32, reservoir_k=32, context=16,
                                vocab=128_256, tokens=10_000_000, tokenizer={"kind": "ids"})
        write_s = time.perf_counter() - start
        size = sum(f.stat().st_size for f in store.iterdir())
        client = TestClient(make_app(Viewer(Path(tmp), ir, load_harvest(store))))
        rng = np.random.default_rng(0)

        def timed(url: str) -> float:
            begin = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - begin) * 1e3
            assert response.status_code == 200, (url, response.text[:300])
            return elapsed

        pages = {
            "site_page": lambda s, c, o: f"/site/{s}?sort=mean_ci&order=desc&offset={o}&limit=50",
            "site_api": lambda s, c, o: f"/api/sites/{s}/components?sort=mean_ci&order=desc&offset={o}&limit=50",
            "component_page": lambda s, c, o: f"/component/{s}/{c}",
            "component_api": lambda s, c, o: f"/api/components/{s}/{c}",
        }
        out: dict[str, Any] = {"sites": len(sites), "C": C, "examples_per_component": 64, "window": 33,
                               "store_bytes": size, "write_s": round(write_s, 2)}
        for name, url in pages.items():
            timed(url(sites[0], 0, 0))  # the first query opens the Parquet files: not a page's cost
            times = [timed(url(sites[int(rng.integers(len(sites)))], int(rng.integers(C)),
                               int(rng.integers(C - 50)))) for _ in range(args.windows)]
            out[name] = {"median_ms": round(statistics.median(times), 2),
                         "p90_ms": round(float(np.percentile(times, 90)), 2), "requests": len(times),
                         "goal_ms": VIEW_GOAL_MS, "goal_met": statistics.median(times) <= VIEW_GOAL_MS}
        out["load_1m"] = os.getloadavg()[0]
        return out


def child_harvest(args: argparse.Namespace) -> dict[str, Any]:
    """tiny_llama's harvest step on one device: compile time, then batches/s and tokens/s."""
    import jax
    import numpy as np

    sys.path.insert(0, str(REPO))
    from pdc.lower.harvest import HarvestConfig, abstract_acc, acc_shardings, init_acc, jitted_harvest_step
    from pdc.lower.inputs import shardings_of, step_inputs
    from pdc.lower.sharding import batch_sharding, make_mesh
    from pdc.lower.state import init_state

    spec = REPO / SPECS["tiny_llama"][0]
    program = _program(spec, spec.read_text().replace("mesh { dp = 2 tp = 4 }", "mesh { dp = 1 tp = 1 }"))
    ir, mesh = program.ir, make_mesh(program.ir)
    data = ir.options("data")
    config = HarvestConfig(int(data.seq_len), int(data.batch), int(ir.facts["target"].dims["vocab"]), 0.0)
    inputs = step_inputs(program, mesh)
    acc_abstract = abstract_acc(program, config, mesh)
    params = jax.jit(program.target.init_params, out_shardings=shardings_of(inputs.params))(jax.random.PRNGKey(1))
    state = jax.jit(lambda: init_state(program), out_shardings=shardings_of(inputs.state))()
    acc = jax.jit(lambda: init_acc(acc_abstract), out_shardings=acc_shardings(acc_abstract))()
    tokens = jax.device_put(_lm_batch(program), batch_sharding(ir, mesh))
    windows = jax.numpy.arange(config.batch, dtype=jax.numpy.int32)
    step = jitted_harvest_step(program, config, acc_abstract, shardings_of(inputs.state),
                               shardings_of(inputs.params), batch_sharding(ir, mesh))
    t0 = time.perf_counter()
    compiled = step.lower(acc, state, params, tokens, windows).compile()
    compile_s = time.perf_counter() - t0
    holder = [acc]

    def run() -> None:
        holder[0] = compiled(holder[0], state, params, tokens, windows)

    timing = _windows(run, lambda: jax.block_until_ready(holder), args.windows, args.window_s, args.warmup_s)
    rate = statistics.median(timing["rates"])
    positions = config.batch * config.seq_len
    return {"spec": "tiny_llama", "batch": config.batch, "seq_len": config.seq_len, "compile_s": round(compile_s, 3),
            "batches_per_s_median": rate, "batches_per_s_windows": [round(r, 3) for r in timing["rates"]],
            "tokens_per_s": rate * positions, "cpu_s_per_batch": timing["cpu_s_per_call"],
            "firing_total": int(np.asarray(jax.device_get(holder[0]["kinds"]["gate_proj"]["firing"])).sum()),
            "env": _env_block(), "load_1m": os.getloadavg()[0]}


CHILDREN = {"peak": child_peak, "throughput": child_throughput, "compile": child_compile, "view": child_view,
            "harvest": child_harvest}


# ---- parent side ----------------------------------------------------------------------------


def run_child(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run a command with its stdout in a file; wall time and the child's own rusage
    (`wait4`: peak RSS is this child's, not the maximum over every child so far)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)
        deadline, status, usage = start + timeout, None, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"rc": proc.returncode, "wall_s": round(wall, 3), "peak_rss_bytes": int(usage.ru_maxrss) * scale,
            "user_s": round(usage.ru_utime, 3), "sys_s": round(usage.ru_stime, 3), "stdout": stdout,
            "stderr_tail": stderr[-3000:], "timed_out": wall > timeout}


def _child_json(result: dict[str, Any]) -> dict[str, Any] | None:
    for line in reversed(result["stdout"].strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _json_document(text: str) -> dict[str, Any] | None:
    """The (indented, multi-line) JSON object a `pdc ... --format json` run printed."""
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        return None


def _child(mode: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    result = run_child([sys.executable, str(Path(__file__).resolve()), "--child", mode, *extra], env, timeout)
    data = _child_json(result)
    row = {"rc": result["rc"], "wall_s": result["wall_s"], "peak_rss_bytes": result["peak_rss_bytes"]}
    if data is None or result["rc"] != 0:
        row["error"] = result["stderr_tail"] or "no JSON on stdout"
        print(f"  ! {mode} {' '.join(extra)} failed (rc {result['rc']}): {row['error'][-400:]}", file=sys.stderr)
        return row
    return {**data, **row}


def _env(**overrides: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _fake_devices_env(n: int) -> dict[str, str]:
    from pdc.run.host_devices import request_host_devices

    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", "")).strip()
    env = _env(XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    request_host_devices(n, env)
    return env


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"hostname": platform.node(), "platform": platform.platform(), "arch": platform.machine(),
            "cpu_model": cpu, "cpu_count": os.cpu_count(), "memory_bytes": memory,
            "python": platform.python_version(), "load_avg_start": list(os.getloadavg())}


def git_info() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def machine_name(info: dict[str, Any], peak: dict[str, Any]) -> str:
    env = peak.get("env") or {}
    if env.get("backend") not in (None, "cpu"):
        name = f"{env.get('device_kind', env['backend'])}"
    else:
        name = f"cpu{info['cpu_count']}-{info['arch']}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def tcmalloc_path() -> str | None:
    """gperftools' tcmalloc (Debian/Ubuntu: `apt-get install libtcmalloc-minimal4`), if installed."""
    for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                      "/usr/local/lib", "/opt/homebrew/lib"):
        for name in ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"):
            if (Path(directory) / name).exists():
                return str(Path(directory) / name)
    return None


def allocators(choice: str) -> list[str]:
    available = ["default", "glibc-tuned"] + (["tcmalloc"] if tcmalloc_path() else [])
    return available if choice == "all" else [choice]


def measure_throughput(spec: str, allocator: str, quick: bool) -> dict[str, Any]:
    """One spec's step in a fresh process with the C library's default allocator
    settings (any GLIBC_TUNABLES / LD_PRELOAD of this shell removed), glibc tuned to keep
    freed memory (`TUNED_ALLOCATOR`), or tcmalloc preloaded."""
    env = _env(GLIBC_TUNABLES=TUNED_ALLOCATOR if allocator == "glibc-tuned" else None,
               LD_PRELOAD=tcmalloc_path() if allocator == "tcmalloc" else None)
    windows, window_s, warmup_s = ("3", "0.3", "0.5") if quick else ("9", "1.5", "2.0")
    row = _child("throughput", "--spec", spec, "--windows", windows, "--window-s", window_s, "--warmup-s", warmup_s,
                 env=env)
    return {"allocator": allocator, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: fewer, shorter windows and points")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--specs", nargs="+", choices=list(SPECS), default=list(SPECS))
    parser.add_argument("--allocator", choices=("all", "default", "glibc-tuned", "tcmalloc"), default="all",
                        help="throughput with the C library's default allocator settings, glibc tuned to keep freed "
                             "memory, tcmalloc (when installed), or every one available (default)")
    parser.add_argument("--machine", help="name of this machine in the results file (default: derived)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON and markdown results")
    parser.add_argument("--merge", action="store_true",
                        help="update the parts run here in an existing results file of the same date and machine")
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=4096, help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, default=9, help=argparse.SUPPRESS)
    parser.add_argument("--window-s", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--warmup-s", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=("depth", "sites"), help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--sites-per-layer", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    parts = args.only or list(PARTS)
    started = dt.datetime.now().astimezone()
    report: dict[str, Any] = {"schema": SCHEMA, "date": started.date().isoformat(), "started": started.isoformat(
        timespec="seconds"), "quick": args.quick, "command": " ".join(["benchmarks/run.py", *sys.argv[1:]]),
        "machine": machine_info(), "git": git_info(),
        "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "JAX_PLATFORMS", "GLIBC_TUNABLES", "LD_PRELOAD")},
        "reference": REFERENCE}

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", file=sys.stderr, flush=True)

    log("peak: large f32 matmul")
    peak = _child("peak", "--n", "2048" if args.quick else "4096", "--windows", "3" if args.quick else "9",
                  "--window-s", "0.3" if args.quick else "1.0")
    report["peak_matmul"] = peak
    report["machine"]["name"] = args.machine or machine_name(report["machine"], peak)
    report["machine"].update({k: v for k, v in (peak.get("env") or {}).items()})
    peak_flops = (peak.get("gflops_median") or 0.0) * 1e9

    if "throughput" in parts:
        rows = []
        for spec in args.specs:
            for allocator in allocators(args.allocator):
                log(f"throughput: {spec} ({allocator} allocator)")
                row = measure_throughput(spec, allocator, args.quick)
                if row.get("achieved_flops_per_s") and peak_flops:
                    row["share_of_matmul_peak"] = row["achieved_flops_per_s"] / peak_flops
                ref = REFERENCE.get(spec)
                if ref and row.get("steps_per_s_median"):
                    row["speedup_vs_torch"] = row["steps_per_s_median"] / ref["torch_steps_per_s"]
                    row["goal_met"] = row["speedup_vs_torch"] >= ref["goal_speedup"]
                dm, cm = row.get("device_memory"), row.get("compiled_memory")
                if dm and cm and dm.get("peak_bytes_in_use"):
                    row["device_peak_over_estimate"] = dm["peak_bytes_in_use"] / max(cm["total"], 1)
                rows.append(row)
        report["throughput"] = rows

    if "compile_depth" in parts:
        rows = []
        for layers in ((2, 8) if args.quick else (2, 8, 32)):
            log(f"compile vs depth: {layers} layers")
            rows.append(_child("compile", "--kind", "depth", "--layers", str(layers), env=_fake_devices_env(8)))
        report["compile_depth"] = rows

    if "compile_sites" in parts:
        rows = []
        for per_layer in ((1, 3) if args.quick else (1, 3, 7)):
            log(f"compile vs sites: 8 layers × {per_layer} sites")
            rows.append(_child("compile", "--kind", "sites", "--layers", "8", "--sites-per-layer", str(per_layer),
                               env=_fake_devices_env(8)))
        report["compile_sites"] = rows

    if "dryrun" in parts:
        rows = []
        plan = [(DRYRUN_SPECS[0], 8)] if args.quick else [(s, n) for s in DRYRUN_SPECS for n in (8, 64, 128)]
        for spec, devices in plan:
            mesh = DRYRUN_MESHES.get((spec, devices), ("--devices", str(devices)))
            log(f"dry-run: pdc compile {spec} {' '.join(mesh)}")
            result = run_child([sys.executable, "-m", "pdc.cli", "compile", spec, *mesh,
                                "--format", "json"], _env(), timeout=3600)
            data = _json_document(result["stdout"])
            row = {"spec": Path(spec).stem, "devices": devices, "mesh_args": " ".join(mesh), "rc": result["rc"],
                   "wall_s": result["wall_s"],
                   "peak_rss_bytes": result["peak_rss_bytes"], "user_s": result["user_s"]}
            if data and "memory" in data:  # compiled: exit 0, or 2 when over the spec's budget
                peak = data.get("peak") or {}
                row.update({"outcome": "compiled", "memory_per_device": data.get("memory"),
                            "budget": data.get("budget"), "fits": data.get("fits"),
                            "report_seconds": data.get("seconds"), "level": data.get("level"),
                            "device_kind": data.get("device_kind"), "verdict": data.get("verdict"),
                            "xla_remat": data.get("xla_remat"), "peak_bytes": peak.get("bytes"),
                            "peak_top_groups": [(g["group"], g["bytes"], g["spec_line"])
                                                for g in peak.get("groups", [])[:3]]})
            elif data and data.get("diagnostics"):  # the spec is rejected at this device count
                first = data["diagnostics"][0]
                row.update({"outcome": "rejected", "diagnostic": f"{first.get('code')}: {first.get('summary')}"})
            else:
                row.update({"outcome": "error", "error": result["stderr_tail"]})
            rows.append(row)
        report["dryrun"] = rows

    if "scale" in parts:
        report["scale"] = measure_scale(log, args.quick)

    if "view" in parts:
        log("view: pdc view's server time on a synthetic 8B-size harvest store")
        report["view"] = _child("view", "--windows", "10" if args.quick else "40", env=_env(XLA_FLAGS=None))
    if "harvest" in parts:
        report["harvest"] = measure_harvest(log, args.quick)

    report["machine"]["load_avg_end"] = list(os.getloadavg())
    report["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{report['date']}-{report['machine']['name']}"
    previous = args.out / f"{stem}.json"
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())
        if old.get("schema") == SCHEMA:
            kept = {part: old[part] for part in PARTS if part in old and part not in report}
            report.update(kept)
            if "throughput" in kept:  # its shares of peak were computed against the old peak: keep that one
                report["peak_matmul_at_merge"], report["peak_matmul"] = report["peak_matmul"], old["peak_matmul"]
            report["merged"] = old.get("merged", []) + [{"command": report["command"], "parts": parts,
                                                          "started": report["started"], "kept_from": old["started"]}]
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    (args.out / f"{stem}.md").write_text(markdown)
    print(markdown)
    log(f"wrote {args.out / stem}.json and .md")


def scale_plan(quick: bool) -> list[dict[str, Any]]:
    """The `scale` cells: (label, spec, extra CLI arguments, the trainer's total if any)."""
    cells = []
    for per_device in ((4,) if quick else (4, 8)):
        for remat in ("on", "off", "strict_off"):
            sets = [f"data.batch={8 * per_device}", *REMAT_CELLS[remat]]
            cells.append({"cell": f"reference {per_device}/device remat {remat}", "spec": SCALE_REFERENCE,
                          "args": [a for kv in sets for a in ("--set", kv)],
                          "trainer_total_gib": TRAINER_TOTAL_GIB[(per_device, remat.removeprefix("strict_"))],
                          "trainer_tflop": TRAINER_TFLOP[(per_device, remat.removeprefix("strict_"))]})
    if not quick:
        cells.append({"cell": "llama8b_l18 (shipped)", "spec": "specs/llama8b_l18.pd", "args": []})
        for devices in (32, 64):
            cells.append({"cell": f"llama8b_full {devices} devices", "spec": "specs/llama8b_full.pd",
                          "args": ["--devices", str(devices)]})
    return cells


def measure_scale(log: Any, quick: bool) -> dict[str, Any]:
    """`pdc compile CELL --target h100_sxm --format json` per cell; skipped, with the reason,
    when this environment has no deviceless XLA:GPU (the `cuda` extra)."""
    import importlib.util

    from pdc.devices import CUDA_EXTRA

    if importlib.util.find_spec("jax_cuda12_plugin") is None:
        line = f"scale: skipped — the CUDA extra is not installed ({CUDA_EXTRA}); no deviceless XLA:GPU compile here"
        log(line)
        return {"skipped": line}
    rows = []
    for cell in scale_plan(quick):
        log(f"scale: {cell['cell']}")
        result = run_child([sys.executable, "-m", "pdc.cli", "compile", cell["spec"], "--target", "h100_sxm",
                            *cell["args"], "--format", "json"], _env(JAX_PLATFORMS="cpu"), timeout=3600)
        data = _json_document(result["stdout"]) or {}
        memory = data.get("memory") or {}
        row = {**cell, "rc": result["rc"], "wall_s": result["wall_s"], "peak_rss_bytes": result["peak_rss_bytes"],
               "level": data.get("level"), "device_kind": data.get("device_kind"), "verdict": data.get("verdict"),
               "memory_per_device": memory or None, "xla_remat": data.get("xla_remat"),
               "matmul_flops_per_device": data.get("matmul_flops_per_device"),
               "attention_calls": data.get("attention_calls"), "ascent_remat": data.get("ascent_remat"),
               "peak_groups": [(g["group"], g["bytes"], g["spec_line"]) for g in (data.get("peak") or {}).get(
                   "groups", [])[:5]]}
        if not memory:
            row["error"] = result["stderr_tail"]
        if memory and cell.get("trainer_total_gib"):
            row["share_of_trainer"] = memory["total"] / 2**30 / cell["trainer_total_gib"]
            row["goal_met"] = row["share_of_trainer"] <= SCALE_GOAL
        if row["matmul_flops_per_device"] and cell.get("trainer_tflop"):
            row["flops_goal_met"] = row["matmul_flops_per_device"] / 1e12 <= cell["trainer_tflop"]
        rows.append(row)
    return {"xla_flags": "xla_gpu_memory_limit_slop_factor=10000 (the dry-run's as-written compile)", "rows": rows}


def measure_harvest(log: Any, quick: bool) -> dict[str, Any]:
    """tiny_llama's harvest tokens/s on this CPU; llama8b_l18's harvest dry-run with XLA:GPU
    (skipped, with the reason, without the `cuda` extra)."""
    import importlib.util

    from pdc.devices import CUDA_EXTRA

    log("harvest: tiny_llama accumulate step on one CPU device")
    out: dict[str, Any] = {"cpu": _child("harvest", "--windows", "3" if quick else "7", "--window-s",
                                         "0.5" if quick else "1.0", env=_fake_devices_env(1))}
    if importlib.util.find_spec("jax_cuda12_plugin") is None:
        line = f"harvest gpu: skipped — the CUDA extra is not installed ({CUDA_EXTRA})"
        log(line)
        out["gpu"] = {"skipped": line}
        return out
    log("harvest: pdc harvest specs/llama8b_l18.pd --dry-run --target h100_sxm")
    result = run_child([sys.executable, "-m", "pdc.cli", "harvest", "specs/llama8b_l18.pd", "--dry-run", "--target",
                        "h100_sxm", "--format", "json"], _env(JAX_PLATFORMS="cpu"),
                       timeout=3600)
    data = _json_document(result["stdout"]) or {}
    h = data.get("harvest") or {}
    flops = h.get("matmul_flops_per_token")
    out["gpu"] = {"spec": "llama8b_l18", "args": "(the spec's batch)", "rc": result["rc"], "wall_s": result["wall_s"],
                  "level": data.get("level"), "device_kind": data.get("device_kind"), "verdict": data.get("verdict"),
                  "memory_per_device": data.get("memory"), "budget": data.get("budget"),
                  "matmul_flops_per_token": flops, "store_bytes": (h.get("store_bytes") or {}).get("total"),
                  "accumulators_top": (h.get("accumulators") or [])[:4], "tokens": HARVEST_TOKENS,
                  "estimated_hours_on_8": (flops * HARVEST_TOKENS / (8 * H100_BF16_PEAK * ASSUMED_MFU) / 3600)
                  if flops else None}
    if not data:
        out["gpu"]["error"] = result["stderr_tail"]
    return out


# ---- markdown ---------------------------------------------------------------------------------


def _f(value: Any, fmt: str = ".3g", scale: float = 1.0, missing: str = "–") -> str:
    if value is None or value == "":
        return missing
    return format(value * scale, fmt)


def _mib(value: Any) -> str:
    return _f(value, ".0f", 1 / 2**20)


def _gib(value: Any) -> str:
    return _f(value, ".2f", 1 / 2**30)


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    peak = r.get("peak_matmul", {})
    lines = [f"# pdc benchmarks — {r['date']}, {m.get('name')}", "",
             f"`{r['command']}`{' (quick)' if r.get('quick') else ''}; schema `{r['schema']}`; "
             f"commit `{(r['git'].get('commit') or '?')[:10]}`{' (dirty tree)' if r['git'].get('dirty') else ''}.", "",
             f"Machine: {m.get('cpu_model')}, {m.get('cpu_count')} CPUs, {_gib(m.get('memory_bytes'))} GiB; "
             f"backend {m.get('backend')} ({m.get('device_kind')}); jax {m.get('jax')}; Python {m.get('python')}. "
             f"Load average (1/5/15 min) at start {', '.join(f'{x:.2f}' for x in m['load_avg_start'])}, at end "
             f"{', '.join(f'{x:.2f}' for x in m.get('load_avg_end', []))}.", "",
             f"Matmul peak (f32 {peak.get('n')}², median of windows): **{_f(peak.get('gflops_median'), '.1f')} "
             f"GFLOP/s**.", ""]
    if r.get("throughput"):
        lines += ["## Train-step throughput", "",
                  "| spec | batch | allocator | steps/s (median) | windows min–max | tokens/s | CPU ms/step | "
                  "GFLOP/step | GFLOP/s | % of peak | peak RSS MiB | compile s | vs torch | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in r["throughput"]:
            if "error" in t:
                lines.append(f"| {t.get('spec', '?')} | | {t['allocator']} | failed (rc {t['rc']}) | | | | | | | | | | |")
                continue
            win = t.get("steps_per_s_windows") or []
            ref = r["reference"].get(t["spec"])
            vs = f"{t['speedup_vs_torch']:.2f}× (goal {ref['goal_speedup']:.0f}×)" if t.get("speedup_vs_torch") else "–"
            batch = f"{t['batch']}×{t['seq_len']}" if t.get("seq_len") else str(t["batch"])
            lines.append(
                f"| {t['spec']} | {batch} | {t['allocator']} | **{_f(t['steps_per_s_median'], '.1f')}** | "
                f"{_f(min(win) if win else None, '.1f')}–{_f(max(win) if win else None, '.1f')} | "
                f"{_f(t.get('tokens_per_s'), '.0f')} | {_f(t.get('cpu_s_per_step'), '.1f', 1e3)} | "
                f"{_f(t.get('flops_per_step'), '.2f', 1e-9)} | {_f(t.get('achieved_flops_per_s'), '.1f', 1e-9)} | "
                f"{_f(t.get('share_of_matmul_peak'), '.1f', 100)} | {_mib(t.get('peak_rss_bytes'))} | "
                f"{_f(t.get('compile_s'), '.1f')} | {vs} | {_f(t.get('load_1m'), '.2f')} |")
        gpu = [t for t in r["throughput"] if t.get("device_memory")]
        if gpu:
            lines += ["", "| spec | allocator | device peak GiB | compiled estimate GiB | peak / estimate |",
                      "|---|---|---|---|---|"]
            for t in gpu:
                lines.append(f"| {t['spec']} | {t['allocator']} | {_gib(t['device_memory'].get('peak_bytes_in_use'))} | "
                             f"{_gib((t.get('compiled_memory') or {}).get('total'))} | "
                             f"{_f(t.get('device_peak_over_estimate'), '.2f')} |")
        lines.append("")
    for key, title, what in (("compile_depth", "Compile time against depth", "tiny_llama, every layer's MLP"),
                             ("compile_sites", "Compile time against sites", "tiny_llama, 8 layers")):
        if r.get(key):
            lines += [f"## {title} ({what}; 8 fake CPU devices)", "",
                      "| layers | sites | lower s | compile s | total s | peak RSS MiB | load |", "|---|---|---|---|---|---|---|"]
            for c in r[key]:
                lines.append(f"| {c.get('layers', '?')} | {c.get('sites', '?')} | {_f(c.get('lower_s'), '.2f')} | "
                             f"{_f(c.get('compile_s'), '.2f')} | {_f(c.get('total_s'), '.2f')} | "
                             f"{_mib(c.get('peak_rss_bytes'))} | {_f(c.get('load_1m'), '.2f')} |")
            lines.append("")
    if r.get("dryrun"):
        lines += ["## Dry-run (`pdc compile SPEC --devices N`)", "",
                  "| spec | devices | mesh | level | wall s | peak RSS MiB | exit | outcome | per-device total GiB | "
                  "budget GiB | verdict | largest peak group |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for d in r["dryrun"]:
            mem = d.get("memory_per_device") or {}
            outcome = d.get("outcome", "?")
            if outcome == "rejected":
                outcome = f"rejected — {d.get('diagnostic', '')}".replace("|", "\\|")
            top = (d.get("peak_top_groups") or [("–", None, "")])[0]
            lines.append(f"| {d['spec']} | {d['devices']} | `{d.get('mesh_args', '')}` | {d.get('level', '–')} | "
                         f"{_f(d['wall_s'], '.1f')} | {_mib(d['peak_rss_bytes'])} | "
                         f"{d['rc']} | {outcome} | {_gib(mem.get('total'))} | {_gib(d.get('budget'))} | "
                         f"{d.get('verdict', d.get('fits', '–'))} | {top[0]} {_gib(top[1])} |")
        lines.append("")
    scale = r.get("scale")
    if scale and scale.get("skipped"):
        lines += ["## Scale (deviceless XLA:GPU, H100)", "", scale["skipped"], ""]
    elif scale:
        lines += ["## Scale (deviceless XLA:GPU, 8×H100 unless named; as written)", "",
                  "| cell | trainer total GiB | pdc temp GiB | pdc total GiB | share | verdict | trainer TFLOP/step/device "
                  "(+ prefix) | pdc TFLOP/step/device | largest peak groups |", "|---|---|---|---|---|---|---|---|---|"]
        for c in scale["rows"]:
            mem = c.get("memory_per_device") or {}
            groups = ", ".join(f"{g} {_gib(b)}" for g, b, _ in (c.get("peak_groups") or [])[:3])
            share = f"{c['share_of_trainer']:.2f}" + (" ✓" if c.get("goal_met") else " ✗") if c.get(
                "share_of_trainer") else "–"
            lines.append(f"| {c['cell']} | {_f(c.get('trainer_total_gib'), '.1f')} | {_gib(mem.get('temp'))} | "
                         f"**{_gib(mem.get('total'))}** | {share} | {c.get('verdict') or c.get('error', '–')[:60]} | "
                         f"{_f(c.get('trainer_tflop'), '.1f')} | {_f(c.get('matmul_flops_per_device'), '.1f', 1e-12)}"
                         f"{({True: ' ✓', False: ' ✗'}).get(c.get('flops_goal_met'), '')} | {groups} |")
        lines.append("")
    view = r.get("view")
    if view:
        lines += ["## `pdc view` server time (synthetic 8B-size store)", ""]
        if "error" in view:
            lines += [f"failed (rc {view.get('rc')})", ""]
        else:
            lines += [f"{view['sites']} sites × {view['C']} components, {view['examples_per_component']} examples of "
                      f"{view['window']} tokens each: {_gib(view['store_bytes'])} GiB on disk, written in "
                      f"{_f(view['write_s'], '.0f')} s; peak RSS {_mib(view.get('peak_rss_bytes'))} MiB.", "",
                      "| request | median ms | p90 ms | requests | goal ≤ 100 ms |", "|---|---|---|---|---|"]
            for name in ("site_page", "site_api", "component_page", "component_api"):
                row = view[name]
                lines.append(f"| {name} | **{_f(row['median_ms'], '.1f')}** | {_f(row['p90_ms'], '.1f')} | "
                             f"{row['requests']} | {'✓' if row['goal_met'] else '✗'} |")
            lines.append("")
    harvest = r.get("harvest")
    if harvest:
        lines += ["## Harvest (`pdc harvest`)", ""]
        cpu = harvest.get("cpu") or {}
        if "error" in cpu or not cpu:
            lines.append(f"tiny_llama on one CPU device: failed (rc {cpu.get('rc')})")
        else:
            lines.append(f"tiny_llama on one CPU device ({cpu['batch']}×{cpu['seq_len']} tokens per batch): "
                         f"**{_f(cpu['tokens_per_s'], '.0f')} tokens/s** ({_f(cpu['batches_per_s_median'], '.2f')} "
                         f"batches/s; compile {_f(cpu['compile_s'], '.1f')} s; load {_f(cpu.get('load_1m'), '.2f')}).")
        gpu = harvest.get("gpu") or {}
        if gpu.get("skipped"):
            lines += ["", gpu["skipped"]]
        elif gpu:
            mem = gpu.get("memory_per_device") or {}
            lines += ["", f"llama8b_l18 `{gpu['args']}` on 8 × {gpu.get('device_kind')} ({gpu.get('level')}): "
                          f"per device **{_gib(mem.get('total'))} GiB** of a {_gib(gpu.get('budget'))} GiB budget "
                          f"({gpu.get('verdict')}); {_f(gpu.get('matmul_flops_per_token'), '.1f', 1e-9)} GFLOP per "
                          f"token; store {_f(gpu.get('store_bytes'), '.2f', 1 / 2**30)} GiB; 100 M tokens ≈ "
                          f"{_f(gpu.get('estimated_hours_on_8'), '.2f')} h on 8 GPUs at 40 % MFU."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
