"""The IR passes: invariants between passes, site expansion at scale, determinism
hashes, and golden `--print-ir` / `--plan` output for every example spec."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pdc.cli import main
from pdc.passes import run_passes
from pdc.syntax.load import check_text, load_spec

from conftest import REPO, SPECS

GOLDEN = REPO / "tests" / "golden"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_passes_keep_the_ir_valid(spec: Path) -> None:
    ir = run_passes(load_spec(spec), check_invariants=True)
    assert not ir.diagnostics
    assert ir.facts["decomposition_hash"] and ir.facts["runtime_hash"]


def test_llama8b_full_resolves_224_sites_quickly() -> None:
    start = time.perf_counter()
    ir = run_passes(load_spec(REPO / "specs" / "llama8b_full.pd"))
    elapsed = time.perf_counter() - start
    sites = [n for n in ir.graph if n.startswith("site:")]
    assert len(sites) == 224
    assert elapsed < 10  # the acceptance bound is 2 s; this only guards against pathological slowness


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("mode", ["print-ir", "plan"])
def test_golden_ir_and_plan(spec: Path, mode: str, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["check", f"--{mode}", f"specs/{spec.name}"]) == 0
    out = capsys.readouterr().out
    expected = GOLDEN / f"spec_{spec.stem}" / ("ir.txt" if mode == "print-ir" else "plan.txt")
    if os.environ.get("PDC_UPDATE_GOLDEN"):
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(out)
    assert out == expected.read_text()


# ---- determinism hashes ---------------------------------------------------------------

BASE = (REPO / "specs" / "tiny_llama.pd").read_text()


def hashes(text: str) -> tuple[str, str]:
    result = check_text(text, str(REPO / "specs" / "tiny_llama.pd"))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    assert not ir.diagnostics, [d.summary for d in ir.diagnostics]
    return ir.facts["decomposition_hash"], ir.facts["runtime_hash"]


@pytest.mark.parametrize("old,new", [
    ("log { every = 50 }", "log { every = 7 tensorboard = false }"),
    ("eval { every = 500 metrics = [ci_l0, ce_kl, pgd_recon] }", "eval { every = 100 metrics = [ci_l0] }"),
    ("checkpoint { every = 500 keep = 2 }", "checkpoint { every = 50 keep = 9 }"),
    ("budget { device = cpu device_memory = 4 GiB }", "budget { device = h200 headroom = 20% }"),
    ("# MLP layers decomposed.", "# a different comment"),
])
def test_observation_blocks_change_no_hash(old: str, new: str) -> None:
    assert old in BASE
    assert hashes(BASE.replace(old, new)) == hashes(BASE)


def test_mesh_changes_only_the_runtime_hash() -> None:
    changed = hashes(BASE.replace("mesh { dp = 2 tp = 4 }", "mesh { dp = 4 tp = 2 }"))
    base = hashes(BASE)
    assert changed[0] == base[0] and changed[1] != base[1]


def test_c_changes_the_decomposition_hash() -> None:
    changed = hashes(BASE.replace("{ C = 128 }", "{ C = 256 }"))
    base = hashes(BASE)
    assert changed[0] != base[0] and changed[1] == base[1]


def test_equal_values_written_differently_hash_equal() -> None:
    assert hashes(BASE.replace("steps = 2000 seed = 0", "steps = 2k seed = 0")) == hashes(BASE)


def test_every_pass_code_has_a_golden_case() -> None:
    from pdc.syntax.codes import CODES

    cases = {p.name[:6].upper() for p in GOLDEN.glob("pd03*")}
    assert {c for c in CODES if c.startswith("PD03")} <= cases


@pytest.mark.parametrize("name", ["tms_5-2", "resid_mlp1"])  # the toy specs that name weights
def test_the_run_reads_the_weights_check_opened(name: str) -> None:
    """The typed options resolve a spec's paths against the spec's directory, also when the
    block comes from an imported base in another directory (specs/base/tms.pd)."""
    from pathlib import Path

    from pdc.passes import check

    result = check(REPO / "specs" / f"{name}.pd", inputs="required")
    assert result.ok, result.diagnostics
    weights = result.ir.options_node("target").path("weights")
    assert Path(weights).resolve() == (REPO / "targets" / Path(weights).name).resolve()
