"""The `pdc check` / `pdc fmt` commands: exit codes, output forms, in-place rewriting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pdc.cli import main

from conftest import REPO


def test_check_specs_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--no-inputs", str(REPO / "specs")]) == 0
    files = len(list((REPO / "specs").rglob("*.pd")))  # the specs, their base and the sweep files (specs/*/)
    out = capsys.readouterr().out
    assert f"ok: {files} specs checked (inputs not opened: --no-inputs)" in out
    assert "sweep `seeds` in" in out and "8 points checked" in out


def test_check_opens_the_inputs_the_shipped_specs_name(capsys: pytest.CaptureFixture[str]) -> None:
    """The Llama-8B weights and token data are not shipped: `pdc check` warns that they are
    not there yet (and so not checked) and passes; `pdc train` would refuse them."""
    assert main(["check", str(REPO / "specs")]) == 0
    err = capsys.readouterr().err
    llamas = {str(REPO / "specs" / f"{name}.pd") for name in ("llama8b_full", "llama8b_l18", "llama8b_l18_reference")}
    for code in ("PD0401", "PD0420"):  # no weights, no token file
        assert {line.split(":")[0] for line in err.splitlines() if f"warning[{code}]" in line} == llamas
    assert err.count("warning[") == 6 and "error[" not in err


def test_check_ok_line_counts_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    """A token file not built yet (and weights not downloaded) are warnings: the `ok` line
    counts them, so a check that passes with warnings does not read as clean (issue 33)."""
    assert main(["check", str(REPO / "specs" / "llama8b_l18.pd")]) == 0
    out, err = capsys.readouterr()
    assert "warning[PD0420]" in err and "warning[PD0401]" in err
    assert out == "ok, 2 warnings: 1 spec checked\n"
    assert "error" not in err  # no `0 errors, 2 warnings` above: the ok line says it


def test_fmt_check_specs_ok() -> None:
    assert main(["fmt", "--check", str(REPO / "specs")]) == 0


def test_fmt_rewrites_in_place_and_diff_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.pd"
    spec.write_text("spec s {train{steps=1}}")
    assert main(["fmt", "--diff", str(spec)]) == 2
    assert "+  train { steps = 1 }" in capsys.readouterr().out
    assert spec.read_text() == "spec s {train{steps=1}}"
    assert main(["fmt", str(spec)]) == 0
    assert spec.read_text() == "spec s {\n  train { steps = 1 }\n}\n"
    assert main(["fmt", "--check", str(spec)]) == 0


def test_fmt_stdin() -> None:
    out = subprocess.run([sys.executable, "-m", "pdc.cli", "fmt", "-"], input="spec s{log{every=5}}",
                         capture_output=True, text=True, check=True).stdout
    assert out == "spec s {\n  log { every = 5 }\n}\n"


def test_json_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.pd"
    spec.write_text("spec s { train { stepz = 1 } }\n")
    assert main(["check", "--format", "json", str(spec)]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "pdc.diagnostics/1" and doc["ok"] is False
    diagnostics = doc["diagnostics"]
    positions = [(d["span"]["line"], d["span"]["col"]) for d in diagnostics]
    assert positions == sorted(positions)
    unknown = next(d for d in diagnostics if d["code"] == "PD0202")
    assert unknown["summary"] == "unknown key `stepz` in `train` — did you mean `steps`?"
    assert unknown["span"] == {"file": str(spec), "line": 1, "col": 18, "end_line": 1, "end_col": 23}
    assert {d["code"] for d in diagnostics} == {"PD0202", "PD0204", "PD0205"}


def test_missing_path_is_a_spec_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "does/not/exist.pd"]) == 2
    assert "error[PD0001]" in capsys.readouterr().err


def test_check_does_not_import_jax() -> None:
    code = "import sys; from pdc.cli import main; main(['check', 'specs']); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
