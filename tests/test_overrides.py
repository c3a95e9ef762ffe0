"""`--set path=value`: applied to the parsed spec before validation, so the validator, the
passes and the hashes see it, and a bad one is an ordinary diagnostic pointing into the
command-line argument (no JAX here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdc.cli import main
from pdc.passes import run_passes
from pdc.syntax.format import format_spec
from pdc.syntax.load import check_text

from conftest import REPO

TMS_PATH = REPO / "specs" / "tms_5-2.pd"
TMS = TMS_PATH.read_text()


def check(*overrides: str):  # type: ignore[no-untyped-def]
    return check_text(TMS, str(TMS_PATH), overrides)


def test_values_in_spec_syntax_replace_and_add_keys() -> None:
    result = check("train.steps=500", "loss.importance_minimality.weight=1e-3", "data.batch=1024",
                   "budget.device_memory=4 GiB", "optimize.components.adamw.lr=cosine(2e-3, final = 0.1)",
                   "data.values=[0.5, 1.0]", "train.seed=7")
    assert result.ok, result.diagnostics
    spec = result.spec
    assert spec is not None
    assert spec.block("train").get("steps") == 500 and spec.block("train").get("seed") == 7
    assert spec.block("loss").child("importance_minimality").get("weight") == pytest.approx(1e-3)
    assert spec.block("data").get("batch") == 1024
    assert spec.block("budget").get("device_memory") == 4 * 2**30
    assert [o.to_json() for o in result.overrides][:3] == [
        {"arg": "train.steps=500", "path": "train.steps", "value": "500", "was": "10k"},
        {"arg": "loss.importance_minimality.weight=1e-3", "path": "loss.importance_minimality.weight",
         "value": "1e-3", "was": "3e-3"},
        {"arg": "data.batch=1024", "path": "data.batch", "value": "1024", "was": "4096"},
    ]
    assert result.overrides[5].was is None  # `data.values` was left at its default: added


def test_absent_blocks_and_entries_are_added() -> None:
    result = check("remat.recon_forwards=whole", "mesh.dp=1", "decompose.linear1.C=21",
                   "eval.ci_pattern.linear1=dense(2)")
    assert result.ok, result.diagnostics
    spec = result.spec
    assert spec is not None
    assert spec.block("remat").get("recon_forwards") == "whole"
    assert [e.value for e in spec.block("mesh").entries] == [1]
    assert spec.block("decompose").entries[0].value.C == 21
    assert [o.was for o in result.overrides] == [None, None, "20", "identity"]
    text = format_spec(spec.source)  # what the run directory's spec.pd holds
    assert "linear1 { C = 21 }" in text and "remat { recon_forwards = whole }" in text
    assert check_text(text, str(TMS_PATH)).ok


def test_hashes_see_overrides() -> None:
    base = run_passes(check().spec).facts
    steps = run_passes(check("train.steps=500").spec).facts
    log = run_passes(check("log.every=7").spec).facts
    assert steps["decomposition_hash"] != base["decomposition_hash"]
    assert log["decomposition_hash"] == base["decomposition_hash"] and log["runtime_hash"] == base["runtime_hash"]


@pytest.mark.parametrize("arg, code, col, summary", [
    ("train.stepz=5", "PD0202", 7, "unknown key `stepz` in `train` — did you mean `steps`?"),
    ("trian.steps=5", "PD0201", 1, "unknown block `trian` in `spec` — did you mean `train`?"),
    ("train.steps.x=1", "PD0201", 7, "`steps` is a key in `train`, not a block"),
    ("train=5", "PD0202", 1, "`train` is a block in `spec`, not a key"),
    ("train.steps", "PD0102", 1, "`--set train.steps` has no `=`"),
    ("train.steps=", "PD0102", 1, "`--set train.steps=` has no value after `=`"),
    ("train.steps=5 train.seed=1", "PD0102", 1, "a `--set` override is exactly one `path = value`"),
    ("train.steps=abc", "PD0206", 13, "`steps` expects an integer like `10k`, found `abc`"),
    ("eval.every=10%", "PD0209", 12, "unit `%` does not apply to `every`"),
    ("data.probability=2", "PD0207", 18, "`probability` must be ≤ 1.0, found 2.0"),
    ("decompose.linear3.C=5", "PD0303", 11, "site pattern `linear3` matches no matrix of the target"),
    ("layers[1].x=1", "PD0216", 1, "a block or key name in a `--set` path is a plain name"),
])
def test_bad_overrides_are_diagnostics_in_the_argument(arg: str, code: str, col: int, summary: str) -> None:
    from pdc.passes import check

    result = check(TMS_PATH, overrides=[arg])
    assert [(d.code, d.span.file, d.span.col, d.summary) for d in result.diagnostics] == \
        [(code, "<--set 1>", col, summary)]
    assert result.sources["<--set 1>"] == arg


def test_setting_a_key_twice_names_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(TMS_PATH), "--set", "train.steps=5", "--set", "train.steps=6"]) == 2
    err = capsys.readouterr().err
    assert "<--set 2>:1:1: error[PD0203]: `train.steps` is set twice on the command line" in err
    assert "note: first set at <--set 1>:1:1" in err


def test_cli_renders_the_argument_and_json_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(TMS_PATH), "--set", "train.stepz=500"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[:3] == [
        "<--set 1>:1:7: error[PD0202]: unknown key `stepz` in `train` — did you mean `steps`?",
        "   1 | train.stepz=500",
        "     |       ^^^^^ unknown key",
    ]
    assert main(["check", "--format", "json", str(TMS_PATH), "--set", "train.steps=x"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert [(d["code"], d["span"]["file"]) for d in doc["diagnostics"]] == [("PD0206", "<--set 1>")]
    assert main(["check", str(TMS_PATH), "--set", "train.steps=500"]) == 0


def test_compile_accepts_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(TMS_PATH), "--lint", "--set", "data.batchh=5"]) == 2
    assert "did you mean `batch`?" in capsys.readouterr().err
