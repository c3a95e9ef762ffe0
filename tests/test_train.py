"""`pdc train`: the run directory, bit-identical resume, SIGTERM saves, NaN stops,
and refusing to resume a different decomposition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from pdc.lower.state import abstract_state
from pdc.passes import run_passes
from pdc.run.train import Trainer, TrainError, train
from pdc.syntax.load import check_text

from conftest import REPO

TMS = (REPO / "specs" / "tms_5-2.pd").read_text().replace("log { every = 200 }", "log { every = 10 }")


def ir_of(text: str, directory: Path):
    spec = directory / "tms.pd"
    spec.write_text(text.replace("../targets/", f"{REPO}/targets/"))
    result = check_text(spec.read_text(), str(spec))
    assert result.ok and result.spec is not None
    return run_passes(result.spec)


def components(run: Path, step: int, ir) -> dict:
    from pdc.lower.program import lower_program

    manager = ocp.CheckpointManager(run / "ckpts")
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state(lower_program(ir))))
    return jax.tree.map(np.asarray, state.components)


def test_resume_is_bit_identical_and_writes_the_run_directory(tmp_path: Path) -> None:
    ir = ir_of(TMS, tmp_path)
    train(ir, tmp_path / "straight", max_steps=60)
    train(ir, tmp_path / "split", max_steps=25)
    train(ir, tmp_path / "split", max_steps=60)  # resumes from step 25
    a, b = components(tmp_path / "straight", 60, ir), components(tmp_path / "split", 60, ir)
    assert jax.tree.all(jax.tree.map(np.array_equal, a, b))
    record = json.loads((tmp_path / "straight" / "run.json").read_text())
    assert record["decomposition_hash"] == ir.facts["decomposition_hash"]
    lines = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == list(range(10, 61, 10))
    assert (tmp_path / "straight" / "spec.pd").exists()


def test_changed_decomposition_is_refused(tmp_path: Path) -> None:
    train(ir_of(TMS, tmp_path), tmp_path / "run", max_steps=5)
    changed = ir_of(TMS.replace("linear1 { C = 20 }", "linear1 { C = 21 }"), tmp_path)
    with pytest.raises(TrainError, match="different decomposition"):
        train(changed, tmp_path / "run", max_steps=10)


def test_nan_stops_the_run_naming_the_term_and_keeps_the_checkpoint(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ir = ir_of(TMS, tmp_path)
    real = Trainer.compiled_step

    def poisoned(self, state, params, batch):  # type: ignore[no-untyped-def]
        step = real(self, state, params, batch)

        def run(s, p, b):  # type: ignore[no-untyped-def]
            s2, metrics = step(s, p, b)
            if int(s2.step) == 20:
                metrics = dict(metrics, **{"loss/stochastic_recon": jax.numpy.float32(np.nan)})
            return s2, metrics
        return run

    monkeypatch.setattr(Trainer, "compiled_step", poisoned)
    with pytest.raises(TrainError, match=r"step 20: loss/stochastic_recon"):
        train(ir, tmp_path / "run", max_steps=40)
    assert ocp.CheckpointManager(tmp_path / "run" / "ckpts").latest_step() == 0


def test_sigterm_saves_the_current_step(tmp_path: Path) -> None:
    spec = tmp_path / "tms.pd"
    spec.write_text(TMS.replace("../targets/", f"{REPO}/targets/"))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "pdc.cli", "train", str(spec), "--out", str(run)],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    saved = ocp.CheckpointManager(run / "ckpts").latest_step()
    assert saved is not None and saved > 0
    assert f"saved step {saved}" in err
