"""A real tiny run and a real harvest of it, for the `pdc view` tests.

The run: tiny_llama with random frozen weights (no pretraining), C = 16, trained on a token file
of real text (a Python source file's bytes) for `steps` steps — or, with `steps=0`, only its
step-0 checkpoint (initialisation and faithfulness warmup, no train step compiled: seconds).

The harvest: per-site lower CI from `Run.ci` over the first windows of that token file, reduced
with plain NumPy into the store's tables and written with `write_store`, examples at their true
corpus positions. `pdc harvest` (issue 30) is the real writer; this is a stand-in of the same
contract so the viewer is tested on real numbers.
"""

from __future__ import annotations

import inspect
import json as json_module
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pdc.analyze.store import write_store
from pdc.analyze.synthetic import EDGES

from conftest import REPO

SEQ = 32
C = 16


def corpus_bytes() -> bytes:
    """Real text present on every machine: the json package's decoder source."""
    return Path(inspect.getsourcefile(json_module.decoder) or "").read_bytes()[:16384]


def tiny_spec(tmp: Path, steps: int = 4) -> Path:
    """tiny_llama shrunk (3 layers, hidden 32) on one device, random weights in HF format, a byte
    token file, C = 16 on layers 1 and 2's MLPs."""
    from pdc.models import build_target, hf_config, save_hf
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    text = (REPO / "specs" / "tiny_llama.pd").read_text()
    start = text.index("    pretrain {")
    end = text.index("    }\n", start) + len("    }\n")
    text = text[:start] + f'    weights = "{tmp / "weights"}"\n' + text[end:]
    np.save(tmp / "tokens.npy", np.frombuffer(corpus_bytes(), np.uint8).astype(np.int32))
    text = text.replace("data corpus {\n    corpus = python_stdlib\n    seq_len = 128\n    batch = 16\n  }",
                        f'data tokens {{ path = "{tmp / "tokens.npy"}" format = npy seq_len = {SEQ} batch = 4 }}')
    text = text.replace("{ C = 128 }", f"{{ C = {C} }}")
    for big, small in (("hidden = 64", "hidden = 32"), ("intermediate = 256", "intermediate = 64"),
                       ("layers = 4", "layers = 3"), ("d_model = 64", "d_model = 32"), ("mlp = 128", "mlp = 64")):
        text = text.replace(big, small, 1)  # a smaller model compiles faster; still 4 heads, 2 KV heads
    start = text.index("    persistent_pgd {")
    text = text[:start] + text[text.index("    }\n", start) + len("    }\n"):]
    text = text.replace("mesh { dp = 2 tp = 4 }", "mesh { dp = 1 tp = 1 }")
    text = text.replace("log { every = 50 }", "log { every = 1 }")
    text = text.replace("checkpoint { every = 500 keep = 2 }", f"checkpoint {{ every = {max(steps, 1)} keep = 2 }}")
    text = text.replace("faithfulness_warmup { steps = 100", "faithfulness_warmup { steps = 2")
    text = text.replace("metrics = [ci_l0, ce_kl, pgd_recon]", "metrics = [ci_l0]")
    text = text.replace("eval { every = 500", f"eval {{ every = {max(steps // 2, 1)}")
    spec = tmp / "tiny.pd"
    spec.write_text(text)
    result = check_text(text, str(spec))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    target = build_target(ir.facts["target"], [n[5:] for n in ir.graph if n.startswith("site:")])
    save_hf(target.init_params(jax.random.PRNGKey(3)), tmp / "weights", config=hf_config(target.config))
    return spec


def tiny_run(tmp: Path, steps: int = 0) -> Path:
    """A run directory of the tiny spec: trained `steps` steps, or only checkpointed at step 0."""
    import pdc

    spec = tiny_spec(tmp, steps)
    if steps:
        pdc.train(spec, tmp / "run", max_steps=steps)
        return tmp / "run"
    from pdc.lower.program import lower_program
    from pdc.lower.sharding import make_mesh
    from pdc.passes import run_passes
    from pdc.run.rundir import RunDir
    from pdc.run.train import Trainer
    from pdc.syntax.load import check_text

    result = check_text(spec.read_text(), str(spec))
    ir = run_passes(result.spec)  # type: ignore[arg-type]
    trainer = Trainer(ir, RunDir(tmp / "run"), lower_program(ir), make_mesh(ir))
    manager = trainer.manager()
    trainer.start(manager, trainer.params())
    manager.close()
    return tmp / "run"


def harvest(run: Any, out: Path, windows: int = 4, threshold: float = 0.1, top_k: int = 4, reservoir_k: int = 4,
            context: int = 4, pmi_k: int = 4, neighbor_k: int = 4, seed: int = 0) -> Path:
    """A store of `run` (a `pdc.Run`) over the first `windows` windows of its token file."""
    from pdc.run.evaluate import site_paths

    corpus = np.frombuffer(corpus_bytes(), np.uint8).astype(np.int32)
    n = windows * SEQ
    batch = corpus[:n].reshape(windows, SEQ)
    # one window at a time: `Run.ci` compiles once for [1, SEQ], the shape a SEQ-token probe reuses
    per_window = [run.ci(batch[i:i + 1]) for i in range(windows)]
    ci = {site: np.concatenate([w[site] for w in per_window]).reshape(n, -1) for site in per_window[0]}
    clean = jax.jit(run.program.target.clean)(run.params, jax.numpy.asarray(batch))
    probs = np.asarray(jax.nn.softmax(clean.output.astype(np.float32), axis=-1)).reshape(n, -1)
    acts = {}
    for kind, paths in site_paths(run.ir).items():
        for i, path in enumerate(paths):
            V, U = run.components(path)
            x = np.asarray(clean.site_inputs[kind][i], np.float32).reshape(n, -1)
            acts[path] = (x @ V) * np.linalg.norm(U, axis=1)[None, :]
    from pdc.ir.nodes import SiteNode

    sites = [path for _, path in sorted((node.order, node.path) for _, node in run.ir.nodes(SiteNode))]
    rng = np.random.default_rng(seed)
    tables: dict[str, dict[str, list[Any]]] = {t: {} for t in ("components", "examples", "token_pmi", "neighbors",
                                                               "histograms")}

    def add(table: str, **row: Any) -> None:
        for key, value in row.items():
            tables[table].setdefault(key, []).append(value)

    fires = np.concatenate([ci[s] > threshold for s in sites], axis=1)
    owners = [(s, c) for s in sites for c in range(ci[s].shape[1])]
    together = fires.T.astype(np.int64) @ fires.astype(np.int64)
    counts = fires.sum(axis=0)
    p_token = np.bincount(corpus[:n], minlength=256) / n
    p_next = probs.mean(axis=0)
    for s in sites:
        V, U = run.components(s)
        for c in range(ci[s].shape[1]):
            values, act = ci[s][:, c], acts[s][:, c]
            firing = np.flatnonzero(values > threshold)
            add("components", site=s, component=c, tokens=n, firing=len(firing), density=len(firing) / n,
                mean_ci=float(values.mean()), mean_abs_act=float(np.abs(act).mean()), alive=len(firing) > 0,
                v_norm=float(np.linalg.norm(V[:, c])), u_norm=float(np.linalg.norm(U[c])))
            top = np.argsort(-values, kind="stable")[:top_k]
            randoms = rng.choice(firing, min(reservoir_k, len(firing)), replace=False) if len(firing) else []
            for kind, chosen in (("top", top), ("random", randoms)):
                for rank, pos in enumerate(chosen):
                    lo, hi = max(0, int(pos) - context), min(n, int(pos) + context + 1)
                    add("examples", site=s, component=c, kind=kind, rank=rank, position=int(pos),
                        center=int(pos) - lo, tokens=corpus[lo:hi].tolist(), ci=values[lo:hi].tolist(),
                        act=act[lo:hi].tolist())
            add("histograms", site=s, component=c, counts=np.histogram(values, bins=EDGES)[0].tolist())
            if len(firing):
                seen = np.bincount(corpus[firing], minlength=256).astype(np.float64)
                mass = probs[firing].sum(axis=0)
                for direction, count, base in (("input", seen, p_token), ("output", mass, p_next)):
                    pmi = np.log(np.maximum(count / len(firing), 1e-12) / np.maximum(base, 1e-12))
                    present = np.flatnonzero(count > 0)
                    order = present[np.argsort(-pmi[present], kind="stable")]
                    for side, tokens in (("top", order[:pmi_k]), ("bottom", order[::-1][:pmi_k])):
                        for rank, token in enumerate(tokens):
                            add("token_pmi", site=s, component=c, direction=direction, side=side, rank=rank,
                                token=int(token), count=float(count[token]), pmi=float(pmi[token]))
            j = owners.index((s, c))
            union = counts[j] + counts - together[j]
            score = np.where(union > 0, together[j] / np.maximum(union, 1), 0.0)
            score[j] = -1.0
            for rank, k in enumerate(np.argsort(-score, kind="stable")[:neighbor_k]):
                add("neighbors", site=s, component=c, rank=rank, other_site=owners[k][0],
                    other_component=owners[k][1], together=int(together[j, k]), score=float(score[k]))
    manifest = {
        "pdc_version": "test", "run": str(Path(run.path).resolve()), "spec": run.spec.name, "step": run.step,
        "decomposition_hash": run.ir.facts["decomposition_hash"], "runtime_hash": run.ir.facts["runtime_hash"],
        "token_file": "tokens.npy", "token_sha256": None, "seq_len": SEQ, "windows": [0, windows],
        "positions": [0, n], "tokens": n, "threshold": threshold, "top_k": top_k, "reservoir_k": reservoir_k,
        "context": context, "histogram_edges": EDGES, "pmi_k": pmi_k, "neighbor_k": neighbor_k,
        "neighbor_score": "jaccard", "sites": [{"name": s, "C": int(ci[s].shape[1])} for s in sites],
        "tokenizer": {"kind": "bytes"},
    }
    return write_store(out, tables, manifest)
