"""Spec families (issue 24): imports, parameters, provenance, sweeps and `pdc diff`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdc.cli import main
from pdc.passes import run_passes
from pdc.syntax.ast import strip_spans
from pdc.syntax.diagnostics import Diagnostic
from pdc.syntax.family import project_root, provenance
from pdc.syntax.format import format_spec
from pdc.syntax.load import check_file, check_text
from pdc.syntax.parse import parse_text
from pdc.syntax.sweep import expand, sweep_points

from conftest import REPO, SPECS, spec_text

# The decomposition and runtime hashes of the shipped specs before they became a family:
# importing a base must not change a single one.
HASHES = {
    "tms_5-2": ("3ca7aa11ea0cf9e2", "44136fa355b3678a"),
    "tms_5-2-id": ("c962f92f0cd3b924", "44136fa355b3678a"),
    "tms_40-10": ("87d02252dd1649bd", "44136fa355b3678a"),
}


def _ir(path: Path | str, **kwargs: object):  # type: ignore[no-untyped-def]
    from pdc.passes import check

    result = check(path, **kwargs)  # type: ignore[arg-type]
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    assert not ir.failed
    return result, ir


def _values(ir):  # type: ignore[no-untyped-def]
    """Every checked value of a spec (labels, keys with defaults, entries), block by block."""
    from pdc.passes.hashes import node_data

    return {name: node_data(node) for name, node in ir.spec.root.children.items()}


@pytest.mark.parametrize("name", sorted(HASHES))
def test_shipped_tms_family_keeps_its_hashes(name: str) -> None:
    _, ir = _ir(REPO / "specs" / f"{name}.pd")
    assert (ir.facts["decomposition_hash"], ir.facts["runtime_hash"]) == HASHES[name]


def test_import_with_two_overrides_equals_the_written_out_spec(tmp_path: Path) -> None:
    (tmp_path / "pdc.toml").write_text("")  # the project root
    base = spec_text("tms_5-2").replace("../targets/", f"{REPO}/targets/")
    (tmp_path / "base.pd").write_text(base)
    child = tmp_path / "child.pd"
    child.write_text('import "base.pd"\n\nspec tms_5_2 {\n  data sparse_features { batch = 1024 }\n'
                     "  train { seed = 7 }\n}\n")
    written = tmp_path / "written.pd"
    written.write_text(base.replace("batch = 4096", "batch = 1024").replace("seed = 0", "seed = 7"))
    result, ir = _ir(child)
    _, expected = _ir(written)
    assert ir.facts["decomposition_hash"] == expected.facts["decomposition_hash"]
    assert ir.facts["runtime_hash"] == expected.facts["runtime_hash"]
    assert _values(ir) == _values(expected)  # every block, observation ones too
    where = provenance(result.family.source)
    assert where["data.batch"] == f"{child}:4" and where["train.seed"] == f"{child}:5"
    assert where["train.steps"].startswith(f"{tmp_path / 'base.pd'}:")


def test_plan_shows_provenance_and_run_json_records_it(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--plan", str(REPO / "specs" / "tms_40-10.pd"), "--set", "train.seed=3"]) == 0
    out = capsys.readouterr().out
    assert "provenance (where each written value comes from" in out
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1].strip()
             for line in out.split("provenance (")[-1].splitlines()[1:] if line}
    assert lines["train.seed"] == "--set 1" and lines["train.steps"].endswith("tms_40-10.pd:26")
    assert lines["loss.stochastic_recon.weight"].endswith("base/tms.pd:21")
    from pdc.run.rundir import RunDir, write_record

    _, ir = _ir(REPO / "specs" / "tms_5-2.pd")
    write_record(RunDir(tmp_path / "run"), ir, str(REPO / "specs" / "tms_5-2.pd"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["provenance"]["decompose.linear1.C"].endswith("specs/tms_5-2.pd:12")
    assert any(f.endswith("specs/base/tms.pd") for f in record["spec_files"])
    again = check_text((tmp_path / "run" / "spec.pd").read_text(), str(REPO / "specs" / "tms_5-2.pd"))
    assert again.ok and again.family is not None and not again.family.sweeps  # RUN/spec.pd stands alone


def test_new_syntax_round_trips_through_the_formatter() -> None:
    text = ('# header\nimport "a.pd"  # the base\nimport "b.pd"\nsweep s { grid { train.seed = [0, 1] } }\n'
            'spec x { train { seed = $seed steps = cosine($lr, final = $f) } }\nparams { lr = 1 }\n'
            'param seed { type = int default = 0 }\n')
    source, diagnostics = parse_text(text)
    assert source is not None and not diagnostics
    formatted = format_spec(source)
    assert formatted.startswith('# header\nimport "a.pd"  # the base\nimport "b.pd"\n\nparam seed')
    assert formatted.index("params {") < formatted.index("spec x") < formatted.index("sweep s")
    assert "$seed" in formatted and "cosine($lr, final = $f)" in formatted
    again, more = parse_text(formatted)
    assert again is not None and not more and format_spec(again) == formatted
    assert strip_spans(again.imports) == strip_spans(source.imports)


def test_existing_specs_parse_as_before() -> None:
    """The shipped specs still parse and check. `import` is a keyword everywhere (issue 33:
    it was a keyword at the top of a file and a key name inside a block, which the grammar's
    fuzz could not tell apart); no registry key is named `import`, so a key written so was an
    unknown key before and is a syntax error that says why now, at any depth."""
    for spec in SPECS:
        assert check_file(spec).ok, spec
    for text in ("spec s { log { import = 1 } }", 'import = ""\n'):
        source, diagnostics = parse_text(text)
        assert source is None and [d.code for d in diagnostics] == ["PD0102"], text


def test_params_bind_and_check_types(tmp_path: Path) -> None:
    (tmp_path / "pdc.toml").write_text("")
    (tmp_path / "base.pd").write_text('param C { type = int default = 20 doc = "per site" }\n'
                                      "base b {\n  decompose { linear1 { C = $C } }\n}\n")
    spec = tmp_path / "s.pd"
    spec.write_text('import "base.pd"\nparams { C = 7 }\nspec s {}\n')
    result = check_file(spec)
    assert result.is_base is False
    assert "C = 7" in format_spec(result.family.source)
    spec.write_text('import "base.pd"\nparams { C = 1.5 }\nspec s {}\n')
    assert [d.code for d in check_file(spec).diagnostics] == ["PD0607"]
    spec.write_text('import "base.pd"\nparams { D = 1 }\nspec s {}\n')
    assert [d.code for d in check_file(spec).diagnostics] == ["PD0602"]


def test_base_checks_leniently_and_compile_refuses_it(capsys: pytest.CaptureFixture[str]) -> None:
    from pdc.passes import check

    result = check(REPO / "specs" / "base" / "tms.pd")
    assert result.is_base and result.spec is None and not result.diagnostics
    assert main(["compile", str(REPO / "specs" / "base" / "tms.pd")]) == 2
    assert "holds a `base`" in capsys.readouterr().err


def test_project_root_is_the_nearest_marked_directory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert project_root(str(tmp_path / "a" / "b" / "s.pd")) == tmp_path
    assert project_root(str(REPO / "specs" / "tms_5-2.pd")) == REPO


# ---- sweeps ---------------------------------------------------------------------------


def _sweep(text: str) -> tuple[list[str], list[list[str]], list[Diagnostic]]:
    source, _ = parse_text(text)
    assert source is not None
    diagnostics: list[Diagnostic] = []
    _, points = sweep_points([i for i in source.items if i.key.text == "sweep"], diagnostics)
    return [p.name for p in points], [p.changes for p in points], diagnostics


def test_grid_times_zip_expands_to_named_points() -> None:
    names, changes, diagnostics = _sweep("sweep s {\n grid { train.seed = [0, 1] data.batch = [16, 32] }\n"
                                         " zip { params.C = [4, 8] loss.importance_minimality.weight = [1e-3, 3e-3] }\n}")
    assert not diagnostics and len(names) == 8
    assert names[0] == "seed0-batch16-C4-weight1e-3" and names[-1] == "seed1-batch32-C8-weight3e-3"
    assert changes[1] == ["train.seed=0", "data.batch=16", "params.C=8", "loss.importance_minimality.weight=3e-3"]


def test_colliding_point_names_fall_back_to_indices() -> None:
    names, _, _ = _sweep("sweep s { grid { train.seed = [0, 1] target.pretrain.seed = [0] } }")
    assert names == ["seed0-seed0", "seed1-seed0"]
    names, _, _ = _sweep('sweep s { grid { log.every = [1, 1] } }')
    assert names == ["p0", "p1"]


def test_malformed_sweeps_are_pd0610() -> None:
    for text in ("sweep s {}", "sweep s { grid { train.seed = 1 } }", "sweep s { cross { train.seed = [1] } }",
                 "sweep s { zip { train.seed = [1] data.batch = [1, 2] } }",
                 "sweep s { grid { train.seed = [1] } }\nsweep t { grid { train.seed = [1] } }"):
        assert [d.code for d in _sweep(text)[2]] == ["PD0610"], text


def test_check_validates_every_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pdc.toml").write_text("")
    (tmp_path / "base.pd").write_text(spec_text("tms_5-2").replace("../targets/", f"{REPO}/targets/"))
    sweep = tmp_path / "sweep.pd"
    sweep.write_text('import "base.pd"\n\nsweep s {\n  grid { data.batch = [64, 0] }\n}\n')
    assert main(["check", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert f"{sweep}:4:" in err and "error[PD0207]" in err  # the bad point's value, in the sweep file
    sweep.write_text('import "base.pd"\n\nsweep s {\n  grid { data.batch = [64, 128] }\n}\n')
    assert main(["check", str(sweep)]) == 0
    assert "2 points checked" in capsys.readouterr().out


def test_train_point_and_slurm_helper(capsys: pytest.CaptureFixture[str]) -> None:
    sweep = str(REPO / "specs" / "tms_5-2_seeds.pd")
    assert main(["train", sweep, "--point", "seed9"]) == 2
    assert "no point `seed9`; points: seed0, seed1" in capsys.readouterr().err
    assert main(["train", sweep, "--slurm"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-7" in script and '--point "$POINT"' in script and "runs/tms_5_2-" in script


def test_tms_seed_sweep_compiles_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(REPO / "specs" / "tms_5-2_seeds.pd")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith("seed")]
    assert len(rows) == 8 and sum("compiled" in r.split()[-1] for r in rows) == 1
    assert "compiled 1 program for 8 points" in out and "every point fits" in out
    assert len({r.split()[2] for r in rows}) == 8  # a seed changes the decomposition hash


def test_a_sweep_point_hashes_as_the_same_override() -> None:
    """The TMS 5-2 seed sweep reproduces docs/results.md's `--set train.seed=S` runs exactly."""
    from pdc.syntax.sweep import check_points

    _, results, diagnostics = check_points(str(REPO / "specs" / "tms_5-2_seeds.pd"))
    assert not diagnostics and [p.name for p, _ in results] == [f"seed{s}" for s in range(8)]
    point, result = results[3]
    _, direct = _ir(REPO / "specs" / "tms_5-2.pd", overrides=["train.seed=3"])
    assert run_passes(result.spec).facts["decomposition_hash"] == direct.facts["decomposition_hash"]
    assert [o.to_json() for o in result.overrides] == [{"arg": "train.seed=3", "path": "train.seed", "value": "3",
                                                         "was": "0"}]


@pytest.mark.slow
def test_tiny_llama_sweep_of_3_seeds_by_2_batches_compiles_twice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(REPO / "specs" / "tiny_llama_seeds_batch.pd")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith("seed")]
    assert len(rows) == 6 and "compiled 2 programs for 6 points" in out


# ---- pdc diff ---------------------------------------------------------------------------


@pytest.fixture
def variant(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A copy of a shipped spec with one text replaced, in a project of its own (its base
    copied beside it, its weights path made absolute)."""
    (tmp_path / "pdc.toml").write_text("")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "tms.pd").write_text((REPO / "specs" / "base" / "tms.pd").read_text())

    def make(name: str, old: str, new: str) -> Path:
        text = (REPO / "specs" / f"{name}.pd").read_text().replace("../targets/", f"{REPO}/targets/")
        assert old in text
        path = tmp_path / f"{name}_changed.pd"
        path.write_text(text.replace(old, new))
        return path

    return make


def test_diff_classifies_changes(variant, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    tms = str(REPO / "specs" / "tms_5-2.pd")
    log = variant("tms_5-2", "  budget {", "  log { every = 100 }\n  budget {")
    assert main(["diff", tms, str(log)]) == 1
    out = capsys.readouterr().out
    assert "changes: observation only" in out and "log.every: 200 → 100" in out
    assert "decomposition hash: 3ca7aa11ea0cf9e2 → " in out and "names the same file" in out  # weights made absolute
    seed = variant("tms_5-2", "  budget {", "  train { seed = 1 }\n  budget {")
    assert main(["diff", tms, str(seed), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "decomposition" and [c["key"] for c in doc["changes"]] == ["train.seed"]
    assert doc["changes"][0]["a_from"].endswith("specs/base/tms.pd:30")
    remat = variant("tiny_llama", "recon_forwards = per_layer", "recon_forwards = off")
    assert main(["diff", str(REPO / "specs" / "tiny_llama.pd"), str(remat)]) == 1
    out = capsys.readouterr().out
    assert "changes: runtime" in out and "remat.recon_forwards" in out
    assert main(["diff", tms, tms]) == 0
    assert main(["diff", tms, str(REPO / "specs" / "nope.pd")]) == 2


def test_diff_reads_run_directories_and_git_revisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pdc.run.rundir import RunDir, write_record

    _, ir = _ir(REPO / "specs" / "tms_5-2.pd", overrides=["train.seed=2"])
    write_record(RunDir(tmp_path / "run"), ir, str(REPO / "specs" / "tms_5-2.pd"))
    assert main(["diff", str(tmp_path / "run"), str(REPO / "specs" / "tms_5-2.pd")]) == 1
    assert "train.seed: 2 → 0" in capsys.readouterr().out
    monkeypatch.chdir(REPO)
    assert main(["diff", "git:HEAD:specs/tms_5-2.pd", "specs/tms_5-2.pd"]) in (0, 1)  # a checkout may be dirty


@pytest.mark.slow
def test_diff_compile_shows_the_memory_delta(variant, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    remat = variant("tiny_llama", "recon_forwards = per_layer", "recon_forwards = off")
    assert main(["diff", "--compile", str(REPO / "specs" / "tiny_llama.pd"), str(remat)]) == 1
    out = capsys.readouterr().out
    assert "dry-run, per device:" in out and "total" in out
