"""A real tiny run and a real harvest of it, for the `pdc view` tests.

The run: tiny_llama with random frozen weights (no pretraining), C = 16, trained on a token file
of real text (a Python source file's bytes) for `steps` steps — or, with `steps=0`, only its
step-0 checkpoint (initialisation and faithfulness warmup, no train step compiled: seconds).

The harvest: `pdc harvest` over the first windows of that token file (tests/test_harvest.py
checks its numbers against a NumPy recomputation; here the viewer reads them).
"""

from __future__ import annotations

import inspect
import json as json_module
from pathlib import Path
from typing import Any

import numpy as np


from conftest import REPO, write_with_random_weights

SEQ = 32
C = 16


def corpus_bytes() -> bytes:
    """Real text present on every machine: the json package's decoder source."""
    return Path(inspect.getsourcefile(json_module.decoder) or "").read_bytes()[:16384]


def tiny_spec(tmp: Path, steps: int = 4) -> Path:
    """tiny_llama shrunk (3 layers, hidden 32) on one device, random weights in HF format, a byte
    token file, C = 16 on layers 1 and 2's MLPs."""
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
    return write_with_random_weights(text, tmp)


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
            context: int = 4, pmi_k: int = 4, neighbor_k: int = 4) -> Path:
    """The store `pdc harvest` writes for `run` (a `pdc.Run`) over the first `windows` windows of
    its token file (the spec's batch is 4 windows)."""
    import pdc

    return pdc.harvest(run.path, out=out, step=run.step, batches=windows // 4, threshold=threshold, top_k=top_k,
                       reservoir_k=reservoir_k, context=context, pmi_k=pmi_k, neighbor_k=neighbor_k)
