"""`pdc migrate`: the mapping derived from two specs, the value-exact copy and its
verification, the refusals (PD07xx, one test each), bounded host RAM, and — slow — the
tiny_llama acceptance run: train 30 steps, re-pattern the sites and grow C by 8, migrate,
resume 10 steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from pdc.cli import main
from pdc.run import migrate as mig
from pdc.run.migrate import LeafReader, MigrateError, plan_migration
from pdc.syntax.codes import RUN_CODES
from pdc.passes import check

from conftest import REPO, spec_text

TMS = spec_text("tms_5-2").replace('"../targets/', f'"{REPO}/targets/')
assert len(jax.devices()) >= 8  # JAX starts with conftest's 8 host devices, before a CLI call would size them
SHOWN: set[str] = set()  # PD07xx codes the tests below produced


def grown(text: str, old: int = 20, new: int = 28) -> str:
    return text.replace(f"linear1 {{ C = {old} }}", f"linear1 {{ C = {new} }}").replace(
        f"linear2 {{ C = {old} tied_to", f"linear2 {{ C = {new} tied_to")


def new_ir(path: Path):
    result = check(str(path))
    assert result.ok and result.ir is not None, [d.summary for d in result.diagnostics]
    return result.ir


def refused(code: str, call, *args, **kwargs) -> MigrateError:
    with pytest.raises(MigrateError) as info:
        call(*args, **kwargs)
    assert code in [d.code for d in info.value.diagnostics], [d.summary for d in info.value.diagnostics]
    SHOWN.add(code)
    return info.value


@pytest.fixture(scope="module")
def tms_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TMS 5-2 run trained 3 steps (checkpoints at 0 and 3)."""
    root = tmp_path_factory.mktemp("tms")
    (root / "tms.pd").write_text(TMS)
    assert main(["train", str(root / "tms.pd"), "--out", str(root / "old"), "--max-steps", "3"]) == 0
    return root


def test_sites_are_matched_by_matrix_across_restacking() -> None:
    """A site added in the middle of a stack: the old rows move to the new indices of their
    matrices, the new row is fresh (left to the new spec's init), V grows from C 4 to 6."""
    old = mig.Side({"gate": ("layers.1.gate", "layers.3.gate")}, {"gate": 4}, (), "")
    new = mig.Side({"gate": ("layers.1.gate", "layers.2.gate", "layers.3.gate")}, {"gate": 6}, (), "")
    c = mig.Constants(old, new, {"components.gate.V": ((2, 8, 4), "float32")},
                      {"components.gate.V": ((3, 8, 6), "float32"), "components.gate.U": ((3, 6, 8), "float32")})
    leaf = mig.derive("components.gate.V", c)
    assert leaf.source == "components.gate.V" and leaf.what == "grown"
    assert leaf.runs == (((0, 0, 1), (2, 1, 1)), ((0, 0, 8),), ((0, 0, 4),))
    src = np.arange(2 * 8 * 4, dtype=np.float32).reshape(2, 8, 4)
    out = np.full((3, 8, 6), -1.0, np.float32)
    for new_index, old_index in leaf.blocks():
        out[new_index] = src[old_index]
    assert np.array_equal(out[0, :, :4], src[0]) and np.array_equal(out[2, :, :4], src[1])
    assert (out[1] == -1).all() and (out[:, :, 4:] == -1).all()
    assert mig.derive("components.gate.U", c).what == "fresh"  # not in the old state


def test_grown_c_is_carried_bit_for_bit(tms_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tms_v2.pd"
    spec.write_text(grown(TMS))
    assert main(["migrate", str(tms_run / "old"), str(spec), "--out", str(tmp_path / "new"), "--dry"]) == 0
    table = capsys.readouterr().out
    assert "components.linear1.V" in table and "grown" in table and "[:; :; 0:20←0:20]" in table
    assert not (tmp_path / "new").exists()  # --dry writes nothing
    assert main(["migrate", str(tms_run / "old"), str(spec), "--out", str(tmp_path / "new")]) == 0
    assert "verification: ok" in capsys.readouterr().out
    report = json.loads((tmp_path / "new" / "migration.json").read_text())
    assert report["ok"] and report["problems"] == [] and report["step"] == 3 and report["fresh"] == 0
    old, new = LeafReader(tms_run / "old" / "ckpts" / "3" / "default"), LeafReader(tmp_path / "new" / "ckpts" / "3" /
                                                                                   "default")
    V_old, V_new = old.read("components.linear1.V"), new.read("components.linear1.V")
    assert V_old.shape[-1] == 20 and V_new.shape[-1] == 28
    assert np.array_equal(V_new[..., :20], V_old) and not np.array_equal(V_new[..., 20:], 0 * V_new[..., 20:])
    mu = new.read("opt_components.0.0.mu.linear1.V")
    assert np.array_equal(mu[..., :20], old.read("opt_components.0.0.mu.linear1.V")) and not mu[..., 20:].any()
    record = json.loads((tmp_path / "new" / "run.json").read_text())
    assert record["migrated_from"]["step"] == 3


@pytest.mark.slow  # ~35 s: a migration and a train-step compile
def test_the_migrated_run_resumes_under_the_new_spec(tms_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tms_v2.pd"
    spec.write_text(grown(TMS))
    assert main(["migrate", str(tms_run / "old"), str(spec), "--out", str(tmp_path / "new")]) == 0
    assert main(["train", str(spec), "--out", str(tmp_path / "new"), "--max-steps", "5"]) == 0
    assert "resuming from step 3" in capsys.readouterr().err


def test_a_wrong_plan_fails_verification_naming_the_leaf(tms_run: Path, tmp_path: Path) -> None:
    """The copy follows `plan`; the verification derives the mapping again from the constants,
    so a plan that maps one leaf onto another of the same shape (mu onto nu) is caught."""
    spec = tmp_path / "tms_v2.pd"
    spec.write_text(grown(TMS))
    m = plan_migration(tms_run / "old", new_ir(spec))
    mu, nu = "opt_components.0.0.mu.linear1.V", "opt_components.0.0.nu.linear1.V"
    m.plan[mu], m.plan[nu] = (m.plan[mu].__class__(mu, nu, m.plan[mu].runs, "grown"),
                              m.plan[nu].__class__(nu, mu, m.plan[nu].runs, "grown"))
    error = refused("PD0705", mig.migrate, m, tmp_path / "new", str(spec))
    assert any(f"`{mu}`" in d.summary and f"`{mu}`" in d.summary.split("source")[1] for d in error.diagnostics)
    report = json.loads((tmp_path / "new" / "migration.json").read_text())
    assert not report["ok"] and any(p.startswith(f"`{mu}`") for p in report["problems"])


def test_c_shrunk_and_site_dropped_are_refused(tms_run: Path, tmp_path: Path) -> None:
    spec = tmp_path / "small.pd"
    spec.write_text(grown(TMS, 20, 16))
    error = refused("PD0702", plan_migration, tms_run / "old", new_ir(spec))
    assert "shrinks from 20 to 16" in error.diagnostics[0].summary


def test_another_target_is_refused(tms_run: Path, tmp_path: Path) -> None:
    spec = tmp_path / "other.pd"
    text = TMS.replace("tms_5-2_pentagon.safetensors", "tms_5-2_other.safetensors")
    assert text != TMS
    spec.write_text(text)
    refused("PD0701", plan_migration, tms_run / "old", new_ir(spec))


def test_another_ci_network_is_refused(tms_run: Path, tmp_path: Path) -> None:
    spec = tmp_path / "ci.pd"
    text = TMS.replace("hidden = [16]", "hidden = [32]")
    assert text != TMS
    spec.write_text(text)
    error = refused("PD0703", plan_migration, tms_run / "old", new_ir(spec))
    assert "ci" in error.diagnostics[0].summary


def test_no_run_and_a_full_out_dir_are_refused(tms_run: Path, tmp_path: Path) -> None:
    spec = tmp_path / "same.pd"
    spec.write_text(TMS)
    refused("PD0704", plan_migration, tmp_path / "nowhere", new_ir(spec))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    m = plan_migration(tms_run / "old", new_ir(spec))
    refused("PD0706", mig.migrate, m, tmp_path / "busy", str(spec))
    refused("PD0706", mig.migrate, m, tmp_path / "tight", str(spec), max_ram=64)


def test_every_migrate_code_is_shown_by_a_test() -> None:
    """PD07xx have no golden case (no spec alone shows them): the tests above make each one.
    Runs after them (pytest keeps file order)."""
    assert sorted(RUN_CODES) == sorted(SHOWN)


@pytest.mark.slow  # ~40 s on 2 shared cores: two migrations of an 80 MB state, leaf by leaf
def test_a_checkpoint_larger_than_the_ram_limit_migrates_within_it(tms_run: Path, tmp_path: Path) -> None:
    """A run with C = 60000 per site (made by migrating the small run: no training compile)
    holds ~80 MB of state; migrating it with `--max-ram 24MiB` succeeds, and the copy loop's
    traced peak (the leaves it reads and builds, and everything else Python allocates) stays
    below the limit."""
    big = grown(TMS, 20, 60000).replace("batch = 4096", "batch = 8")
    (tmp_path / "big.pd").write_text(big)
    assert main(["migrate", str(tms_run / "old"), str(tmp_path / "big.pd"), "--out", str(tmp_path / "old")]) == 0
    (tmp_path / "big2.pd").write_text(grown(big, 60000, 60008))
    limit = 24 * 2 ** 20
    assert main(["migrate", str(tmp_path / "old"), str(tmp_path / "big2.pd"), "--out", str(tmp_path / "new"),
                 "--max-ram", "24MiB"]) == 0
    report = json.loads((tmp_path / "new" / "migration.json").read_text())
    total = sum(mig.host_bytes(*shape) for shape in
                mig.stored_leaves(tmp_path / "old" / "ckpts" / "3" / "default").values())
    assert report["ok"] and total > 2 * limit, total
    assert report["copy"]["host_peak_traced_bytes"] <= limit, report["copy"]
    assert report["copy"]["largest_leaf_bytes"] >= 60000 * 16 * 4
    print(f"checkpoint {total} bytes, limit {limit}, copy {report['copy']}")


# ---- the acceptance run on tiny_llama ------------------------------------------------------


@pytest.mark.slow  # 3–5 min on 2 shared cores: 30 + 10 tiny_llama steps, three migrations
def test_tiny_llama_train_repattern_grow_migrate_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_multihost import spec_with_weights

    spec = spec_with_weights(tmp_path)
    text = spec.read_text().replace("checkpoint { every = 2 keep = 5 }", "checkpoint { every = 10 keep = 2 }")
    spec.write_text(text)
    assert main(["train", str(spec), "--out", str(tmp_path / "old"), "--max-steps", "30"]) == 0
    v2 = tmp_path / "tiny_v2.pd"
    v2.write_text(text.replace("layers[1..2].mlp.{gate_proj, up_proj, down_proj} { C = 128 }",
                               "layers.{1, 2}.mlp.{down_proj, up_proj, gate_proj} { C = 136 }"))
    assert main(["migrate", str(tmp_path / "old"), str(v2), "--out", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "verification: ok" in out
    report = json.loads((tmp_path / "new" / "migration.json").read_text())
    assert report["ok"] and report["step"] == 30
    heads = [e for e in report["leaves"] if e["leaf"] == "ci.head.value"]
    assert heads and heads[0]["what"] == "grown"
    assert main(["train", str(v2), "--out", str(tmp_path / "new"), "--max-steps", "40"]) == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "new" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 40
    # gate mapped onto up: the verification names the leaf
    m = plan_migration(tmp_path / "old", new_ir(v2))
    gate, up = "components.gate_proj.V", "components.up_proj.V"
    m.plan[gate] = m.plan[gate].__class__(gate, up, m.plan[gate].runs, "grown")
    error = refused("PD0705", mig.migrate, m, tmp_path / "wrong", str(v2))
    assert any(d.summary.startswith(f"verification failed: `{gate}`") for d in error.diagnostics)
    shutil.rmtree(tmp_path / "wrong", ignore_errors=True)
