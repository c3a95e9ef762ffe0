"""What a run tells its user while and after it trains (issue 33): wall-clock stamps on every
record, term values that read right (unweighted, weighted, importance minimality at the final
p), eval on fixed data that is the same at every pass and checkpoint, `pdc eval` over several
checkpoints as one table, and the progress clock's smoothing.

The LM run reuses the key-use probes' tiny random Llama (random HF weights and token files,
nothing pretrained): 20 steps, checkpoints and eval passes at 10 and 20 (slow). The default run
covers the same on a toy run in tests/test_run_outputs.py and the clock here.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import REPO
from test_key_use import CHUNKWISE, LM, LM_DATA, SITES, _lm_weights

STEPS = 20
SLOW = pytest.mark.slow  # the 20-step LM run and its pdc eval compiles take ~2.5 min on 2 CPU cores (CI's slow step)


def lm_spec(tmp: Path) -> Path:
    """The key-use LM (llama), 20 steps, p annealed, eval every 10 steps on 2 batches."""
    import numpy as np

    tokens = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.int32)
    np.save(tmp / "tokens.npy", tokens)
    np.save(tmp / "eval_tokens.npy", tokens[::-1].copy())
    weights, _ = _lm_weights("llama", tmp)
    text = (LM.replace("FAMILY", "llama").replace("SITES", SITES["llama"]).replace("TIED", "false")
            .replace("DATA", LM_DATA).replace("EVAL_TOKENS", str(tmp / "eval_tokens.npy"))
            .replace("TOKENS", str(tmp / "tokens.npy")).replace("TARGET_SOURCE", f'weights = "{weights}"')
            .replace("CI", CHUNKWISE))
    text = text.replace("importance_minimality { weight = 1e-3 }",
                        "importance_minimality { weight = 1e-3 p = linear(2.0, 0.5) frequency { weight = 1e-4 } }")
    text = text.replace("train { steps = 4 seed = 0 }", f"train {{ steps = {STEPS} seed = 0 }}\n"
                        "  checkpoint { every = 10 keep = 3 }\n  log { every = 5 tensorboard = false }")
    text = text.replace("eval { metrics = [ci_l0, ce_kl] }", "eval { every = 10 metrics = [ci_l0, ce_kl] batches = 2 }")
    spec = tmp / "lm.pd"
    spec.write_text(text)
    return spec


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pdc

    tmp = tmp_path_factory.mktemp("lm_run")
    pdc.train(lm_spec(tmp), tmp / "run")
    return tmp / "run"


def records(run: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


@SLOW
def test_every_metrics_and_eval_record_has_time_and_elapsed(lm_run: Path) -> None:
    for name in ("metrics.jsonl", "eval.jsonl"):
        rows = records(lm_run, name)
        assert rows, name
        for row in rows:
            stamp = datetime.fromisoformat(row["time"].replace("Z", "+00:00"))
            assert stamp.tzinfo is not None and stamp.utcoffset().total_seconds() == 0
            assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 3600
            assert row["elapsed_s"] >= 0.0
        elapsed = [r["elapsed_s"] for r in rows]
        assert elapsed == sorted(elapsed), f"{name}: elapsed_s never goes back within one process"
    assert [r["step"] for r in records(lm_run, "metrics.jsonl")] == [5, 10, 15, 20]


@SLOW
def test_weighted_terms_sum_to_the_total_and_final_p_is_logged(lm_run: Path) -> None:
    for row in records(lm_run, "metrics.jsonl"):
        weighted = {k: v for k, v in row.items() if k.startswith("weighted/")}
        assert sorted(weighted) == ["weighted/importance_minimality", "weighted/stochastic_recon"]
        assert math.isclose(sum(weighted.values()), row["loss/total"], rel_tol=1e-5)
        assert math.isclose(row["weighted/stochastic_recon"], 1.0 * row["loss/stochastic_recon"], rel_tol=1e-6)
        im = 1e-3 * row["loss/importance_minimality"] + 1e-4 * row["loss/importance_minimality.frequency"]
        assert math.isclose(row["weighted/importance_minimality"], im, rel_tol=1e-5)
        assert row["loss/importance_minimality.final_p"] > 0.0
    last = records(lm_run, "metrics.jsonl")[-1]
    # step 20 of 20 trains at p = 2.0 - 1.5 · 19/20; a larger p makes (ci + eps)^p of ci < 1 smaller
    assert last["loss/importance_minimality.final_p"] >= last["loss/importance_minimality"]


@SLOW
def test_eval_passes_read_the_same_windows(lm_run: Path) -> None:
    evals = records(lm_run, "eval.jsonl")
    assert [e["step"] for e in evals] == [10, 20]
    first, second = (e["eval_data"] for e in evals)
    assert first == second
    assert first["file"].endswith("eval_tokens.npy") and first["seq_len"] == 16
    assert len(first["rows"]) == 2 and all(len(rows) == 4 for rows in first["rows"])
    assert first["rows"][0] != first["rows"][1], "the two batches are different windows"


@SLOW
def test_zero_masked_kl_is_the_same_at_every_checkpoint(lm_run: Path) -> None:
    """With all components masked out the model does not depend on anything training moves,
    so on fixed data its KL is one number at every pass."""
    evals = records(lm_run, "eval.jsonl")
    values = [e["eval/ce_kl/kl_zero_masked"] for e in evals]
    assert values[0] > 0.0 and values[0] == values[1]
    assert evals[0]["eval/ce_kl/kl_unmasked"] != evals[1]["eval/ce_kl/kl_unmasked"], "training moved the state"


@SLOW
def test_pdc_eval_all_prints_one_row_per_checkpoint(lm_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pdc.cli import main

    assert main(["eval", str(lm_run), "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0].split(), [line.split() for line in lines[1:] if line.strip()]
    assert header[0] == "step" and "ce_kl/kl_zero_masked" in header
    assert [row[0] for row in rows] == ["0", "10", "20"]
    assert all(len(row) == len(header) for row in rows), "an aligned table: a value under every column"
    assert len({len(line.rstrip()) for line in lines[1:] if line.strip()}) <= len(rows)
    logged = {e["step"]: e for e in records(lm_run, "eval.jsonl")}
    column = header.index("ce_kl/kl_zero_masked")
    assert len({row[column] for row in rows}) == 1, "zero-masked KL: the same at every checkpoint"
    assert float(rows[2][column]) == pytest.approx(logged[20]["eval/ce_kl/kl_zero_masked"], rel=1e-5)


@SLOW
def test_pdc_eval_json_of_two_steps_recomputes_the_logged_passes(lm_run: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from pdc.cli import main

    assert main(["eval", str(lm_run), "--step", "10", "--step", "20", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    logged = {e["step"]: e for e in records(lm_run, "eval.jsonl")}
    assert [r["step"] for r in out] == [10, 20]
    for row in out:
        expected = {k: v for k, v in logged[row["step"]].items() if k not in ("time", "elapsed_s")}
        assert row == expected


@SLOW
def test_pdc_eval_text_of_one_checkpoint_is_an_aligned_table(lm_run: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from pdc.cli import main

    assert main(["eval", str(lm_run), "--step", "20"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    starts = {re.search(r"\S+\s{2,}(?=\S)", line).end() for line in lines[1:]}  # where each value starts
    assert len(starts) == 1, "every value starts in one column, however long its key"
    assert all(" " in line.strip() for line in lines)


# ---- the progress clock -------------------------------------------------------------------------


def test_step_clock_skips_the_first_interval_and_compiles_and_clips_slow_steps() -> None:
    from pdc.run.progress import OUTLIER, StepClock

    clock = StepClock(start=100, total=200, tokens_per_step=64)
    clock.tick(100, 0.0)
    clock.tick(101, 50.0)  # the first interval (startup): left out
    assert clock.seconds is None and clock.eta_s is None
    clock.tick(102, 51.0)
    assert clock.seconds == 1.0 and clock.steps_per_s == 1.0 and clock.tokens_per_s == 64.0
    clock.tick(103, 100.0, compiled=True)  # the first eval pass compiled: left out
    assert clock.seconds == 1.0
    clock.tick(104, 101.0 + 60.0)  # a 60 s checkpoint save: enters clipped to OUTLIER × 1 s
    assert clock.seconds == pytest.approx(1.0 + 0.1 * (OUTLIER - 1.0))
    assert clock.eta_s == pytest.approx((200 - 104) * clock.seconds)
    for k in range(200):  # a lasting change of pace is followed
        clock.tick(105 + k, 161.0 + 2.0 * (k + 1))
    assert clock.seconds == pytest.approx(2.0, rel=1e-3)


def test_progress_without_a_terminal_prints_sparse_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from pdc.run.progress import Progress

    progress = Progress(0, 3, None, terminal=False)
    for step in (1, 2, 3):
        progress.update(step)
    progress.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pdc train: step 3/3")
    assert "\r" not in err
