"""What a run leaves behind: eval passes (`eval.jsonl`, `pdc eval`), the safetensors export
(`pdc export`), `pdc.load_run`, TensorBoard files — and that none of it, nor SIGKILL at any
step, changes the trained weights by a single bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import pdc
from pdc.passes import run_passes
from pdc.run.train import train
from pdc.syntax.load import check_text

from conftest import shrunk_toy_spec

STEPS = 24
# TMS 5-2, shrunk so a run takes seconds: small batches, a short warmup, and every
# logging / eval / checkpoint cadence hit several times within STEPS.
TMS = (shrunk_toy_spec("tms_5-2", batch=512, warmup=20, checkpoint=5, keep=2, eval_every=4)
       .replace("metrics = [ci_l0, mmcs, ml2r, identity_ci_error]",
                "metrics = [ci_l0, mmcs, ml2r, identity_ci_error, pgd_recon, activation_density]\n    pgd_steps = 3"))


def write_spec(directory: Path, text: str = TMS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    spec = directory / "tms.pd"
    spec.write_text(text)
    return spec


def ir_of(spec: Path):
    result = check_text(spec.read_text(), str(spec))
    assert result.ok and result.spec is not None
    return run_passes(result.spec)


def exported(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(pdc.load_run(run).export()))


def assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run of STEPS steps that the other tests compare against."""
    base = tmp_path_factory.mktemp("straight")
    train(ir_of(write_spec(base)), base / "run", max_steps=STEPS)
    return base / "run"


def _train_until_killed(spec: Path, run: Path, kill_at: int) -> int | None:
    """Start `pdc train` and SIGKILL it once it has logged step `kill_at` (possibly inside
    the eval pass or checkpoint save that follows); its exit status."""
    proc = subprocess.Popen([sys.executable, "-m", "pdc.cli", "train", str(spec), "--out", str(run),
                             "--max-steps", str(STEPS)], stderr=subprocess.DEVNULL, env=dict(os.environ))
    last, deadline = 0, time.time() + 180
    while proc.poll() is None and time.time() < deadline:
        if (run / "metrics.jsonl").exists():
            lines = (run / "metrics.jsonl").read_text().splitlines()
            last = json.loads(lines[-1])["step"] if lines and lines[-1].endswith("}") else last
            if last >= kill_at:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    return proc.wait(timeout=60)


# Five kill steps drawn once; each trial is a fresh process (a compile), so one runs in the
# default suite and the other four with the slow tests.
KILLS = random.Random(6).sample(range(1, STEPS), 5)


@pytest.mark.parametrize("kill_at", [pytest.param(k, marks=[pytest.mark.slow] if i >= 1 else [], id=f"step{k}")
                                     for i, k in enumerate(KILLS)])
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(straight: Path, tmp_path: Path, kill_at: int) -> None:
    spec = write_spec(tmp_path)
    run = tmp_path / "run"
    status = _train_until_killed(spec, run, kill_at)
    assert status == -signal.SIGKILL, f"the run ended ({status}) before the kill at {kill_at}"
    train(ir_of(spec), run, max_steps=STEPS)
    assert_bit_identical(exported(straight), exported(run))
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), f"metric records {steps}"


def test_changing_only_the_log_block_retrains_bit_identical_weights(straight: Path, tmp_path: Path) -> None:
    quiet = TMS.replace("log { every = 1 }", "log { every = 7 tensorboard = false }")
    train(ir_of(write_spec(tmp_path, quiet)), tmp_path / "run", max_steps=STEPS)
    assert_bit_identical(exported(straight), exported(tmp_path / "run"))
    assert any((straight / "tb").glob("events.out.tfevents.*")), "the default run writes TensorBoard events"
    assert not (tmp_path / "run" / "tb").exists()


def test_pdc_eval_json_recomputes_the_logged_pass(straight: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pdc.cli", "eval", str(straight), "--format", "json"],
                         capture_output=True, text=True, env=dict(os.environ), timeout=180)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["step"] == STEPS
    for site in ("linear1", "linear2"):
        assert 0.0 < record[f"eval/mmcs/{site}"] <= 1.0 + 1e-6
        assert 0 < record[f"eval/alive/{site}"] <= 20
        assert len(record[f"eval/activation_density/{site}"]) == 20
        assert isinstance(record[f"eval/identity_ci_error/{site}"], int)
        assert 0.0 <= record[f"eval/probe_l0/{site}"] <= 20.0
    logged = [json.loads(line) for line in (straight / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(4, STEPS + 1, 4))
    assert {k: v for k, v in logged[-1].items() if k not in ("time", "elapsed_s")} == record  # stamps: when it ran


def test_export_names_and_shapes(straight: Path) -> None:
    tensors = exported(straight)
    assert tensors["model.linear1.components.V"].shape == (5, 20)
    assert tensors["model.linear1.components.U"].shape == (20, 2)
    assert tensors["model.linear2.components.V"].shape == (2, 20)
    assert tensors["model.linear2.components.U"].shape == (20, 5)
    assert all(t.dtype == np.float32 for t in tensors.values())
    ci = sorted(k for k in tensors if k.startswith("ci."))
    assert ci and all(k.startswith(("ci.linear1.", "ci.linear2.")) for k in ci)
    assert (straight / "export" / f"model_{STEPS}.safetensors").exists()


def test_load_run_round_trip(straight: Path) -> None:
    run = pdc.load_run(straight)
    assert run.step == STEPS and int(run.state.step) == STEPS and run.spec.name == "tms_5_2"
    assert run.sites == ["linear1", "linear2"]
    tensors = exported(straight)
    V, U = run.components("linear2")
    assert np.array_equal(V, tensors["model.linear2.components.V"])
    assert np.array_equal(U, tensors["model.linear2.components.U"])
    assert run.weights("linear1").shape == (5, 2)
    assert all(np.array_equal(a, tensors[f"ci.{k}"]) for k, a in run.ci_params().items())
    earlier = pdc.load_run(straight, step=20)
    assert earlier.step == 20 and not np.array_equal(earlier.components("linear1")[0], V)
    with pytest.raises(KeyError, match="not a decomposed site"):
        run.components("linear3")


def test_records_carry_wall_clock_stamps_weighted_terms_and_fixed_eval_data(straight: Path) -> None:
    from datetime import datetime

    metrics = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    evals = [json.loads(line) for line in (straight / "eval.jsonl").read_text().splitlines()]
    for record in metrics + evals:
        assert datetime.fromisoformat(record["time"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
        assert record["elapsed_s"] >= 0.0
    for record in metrics:
        weighted = [v for k, v in record.items() if k.startswith("weighted/")]
        assert len(weighted) >= 2 and np.isclose(sum(weighted), record["loss/total"], rtol=1e-5)
    assert evals[0]["eval_data"] == {"stream": "seeded", "seed": 0, "batches": 1}
    assert all(e["eval_data"] == evals[0]["eval_data"] for e in evals)


def test_pdc_eval_all_is_a_table_with_a_row_per_checkpoint(straight: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pdc.cli import main
    from pdc.run.load import checkpoint_steps

    assert main(["eval", str(straight), "--all"]) == 0
    captured = capsys.readouterr()
    header, *rows = captured.out.splitlines()
    assert header.split()[0] == "step" and "mmcs/linear1" in header.split()
    assert [int(row.split()[0]) for row in rows] == checkpoint_steps(straight)
    assert all(len(row.split()) == len(header.split()) for row in rows)
    assert "same eval data" in captured.err
