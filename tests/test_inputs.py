"""`pdc train` checks the input files as `pdc check` does, before any compute: a broken
checkpoint is the same coded diagnostic from both, exit 1, no traceback, no crash file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pdc.cli import main

from conftest import REPO

GOLDEN = REPO / "tests" / "golden"


@pytest.mark.parametrize("case,code", [("pd0401_missing_weights", "PD0401"), ("pd0403_transposed_tensor", "PD0403"),
                                       ("pd0404_integer_tensor", "PD0404")])
def test_train_reports_a_broken_checkpoint_like_check(case: str, code: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / case / "spec.pd"
    shutil.copytree(GOLDEN / case, spec.parent)
    assert main(["check", str(spec)]) == 1
    checked = capsys.readouterr().err
    assert main(["train", str(spec), "--out", str(tmp_path / "run")]) == 1
    trained = capsys.readouterr().err
    assert f"error[{code}]" in trained and trained == checked
    assert "Traceback" not in trained and "internal error" not in trained
    assert not (tmp_path / "run").exists()


def test_a_truncated_checkpoint_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "case" / "spec.pd"
    shutil.copytree(GOLDEN / "pd0402_missing_tensor", spec.parent)
    weights = spec.parent / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[PD0401]" in err and "model.safetensors" in err


def test_a_dry_run_needs_no_weights(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(GOLDEN / "pd0401_missing_weights" / "spec.pd"), "--target", "cpu"]) == 0
    assert "inputs not opened" in capsys.readouterr().out
