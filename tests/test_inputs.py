"""`pdc train` checks the input files as `pdc check` does, before any compute: a broken
checkpoint is the same coded diagnostic from both, exit 1, no traceback, no crash file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pdc.cli import main

from conftest import REPO, spec_text

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


def test_not_downloaded_inputs_warn_in_check_and_stop_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "case" / "spec.pd"
    shutil.copytree(GOLDEN / "pd0402_missing_tensor", spec.parent)
    spec.write_text(spec.read_text().replace('weights = "model.safetensors"', 'weights = "not-downloaded/"'))
    assert main(["check", str(spec)]) == 0
    assert "warning[PD0401]" in capsys.readouterr().err
    assert main(["train", str(spec), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "error[PD0401]" in err and "not-downloaded" in err and "Traceback" not in err
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


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("pdc ")


def test_more_processes_than_mesh_devices_says_how_to_grow_the_mesh() -> None:
    from pdc.run.distributed import Processes, initialize

    with pytest.raises(ValueError, match=r"`--set mesh.dp=2`"):
        initialize(Processes("localhost:1234", 2, 0), 1)


def test_presets_use_any_mesh_axis_names() -> None:
    """`fsdp_tp` on `mesh { data = 2 model = 4 }`: the first axis plays dp, the second tp."""
    from pdc.ir.nodes import ShardingNode
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    text = (REPO / "specs" / "tiny_llama.pd").read_text()
    renamed = (text.replace("mesh { dp = 2 tp = 4 }", "mesh { data = 2 model = 4 }")
               .replace("[_, tp]", "[_, model]").replace("[tp, _]", "[model, _]").replace("= [dp]", "= [data]"))
    dims = {}
    for spec_text in (text, renamed):
        result = check_text(spec_text, str(REPO / "specs" / "x.pd"))
        ir = run_passes(result.spec)
        assert not ir.diagnostics, [d.summary for d in ir.diagnostics]
        dims[spec_text] = {n.tensor: n.dims for _, n in ir.nodes(ShardingNode) if n.tensor.startswith("ci.")}
    rename = {"dp": "data", "tp": "model"}
    assert dims[renamed] == {t: tuple(tuple(rename[a] for a in d) for d in ds) for t, ds in dims[text].items()}
    assert any(any(d) for d in dims[renamed].values())


def test_a_toy_target_whose_weights_do_not_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = spec_text("tms_5-2")
    weights = next(line for line in text.splitlines() if "weights =" in line)
    spec = tmp_path / "tms.pd"
    spec.write_text(text.replace(weights, '    weights = "missing.safetensors"'))
    assert main(["check", str(spec)]) == 0  # not downloaded yet: a warning for check, an error for train
    err = capsys.readouterr().err
    assert "warning[PD0401]" in err and "missing.safetensors" in err
    (tmp_path / "missing.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    assert main(["check", str(spec)]) == 1
    assert "error[PD0401]" in capsys.readouterr().err
    assert main(["check", str(REPO / "specs" / "tms_5-2.pd")]) == 0  # the shipped toy weights open
