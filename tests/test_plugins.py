"""Out-of-tree extensions: a distribution that registers a loss term through the `pdc.terms`
entry point group (tests/plugin/: a module, its METADATA and entry_points.txt — what pip
writes into site-packages) is found by pdc: a spec using the term checks, compiles and trains
3 steps, and its keys appear in the generated language reference. The distribution is laid
out in a temporary directory put on PYTHONPATH of a fresh process, so this process's registry
stays as shipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, check_with_broken_entry_point, install_plugin, run_with_plugin, spec_text

PLUGIN = REPO / "tests" / "plugin"
SCRIPT = """
import json, sys
import pdc
from pdc.docs import language_md

spec, out = sys.argv[1], sys.argv[2]
result = pdc.check(spec)
report = pdc.dry_run(spec)
run = pdc.train(spec, out, overrides=["train.steps=3"])
metrics = [json.loads(line) for line in open(out + "/metrics.jsonl")]
print(json.dumps({"ok": result.ok, "verdict": report.verdict, "step": run.step,
                  "l2": [m.get("loss/l2_penalty") for m in metrics],
                  "docs": "l2_penalty_scale_doc" in language_md()}))
"""


def _spec(tmp: Path) -> Path:
    text = spec_text("tms_5-2").replace("../targets/", f"{REPO}/targets/")
    text = text.replace("importance_minimality {", "l2_penalty { weight = 0.1 scale = 2.0 }\n    importance_minimality {")
    text = text.replace("batch = 4096", "batch = 64").replace("steps = 200 lr", "steps = 2 lr")
    for cadence in ("checkpoint { every = 2k", "log { every = 200", "every = 1k"):
        text = text.replace(cadence, cadence.rsplit("=", 1)[0] + "= 1")
    path = tmp / "with_plugin.pd"
    path.write_text(text)
    return path


@pytest.mark.slow  # ~30 s: a fresh process compiles and trains the TMS step
def test_an_installed_term_checks_compiles_trains_and_is_documented(tmp_path: Path) -> None:
    install_plugin(PLUGIN, tmp_path / "site", "pdc_l2_penalty", ["pdc_l2_penalty.py"])
    proc = run_with_plugin(tmp_path / "site", "-c", SCRIPT, str(_spec(tmp_path)), str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["verdict"] == "fits" and out["step"] == 3 and out["docs"], out
    assert len(out["l2"]) == 3 and all(isinstance(v, float) and v > 0 for v in out["l2"]), out


def test_without_the_distribution_the_term_is_unknown(tmp_path: Path) -> None:
    """The same spec in this process (plugin not installed): PD0201, with no code executed."""
    from pdc.passes import check

    result = check(_spec(tmp_path))
    assert [d.code for d in result.diagnostics] == ["PD0201"], result.diagnostics


def test_a_broken_entry_point_names_itself(tmp_path: Path) -> None:
    install_plugin(PLUGIN, tmp_path / "site", "pdc_l2_penalty", ["pdc_l2_penalty.py"])
    proc = check_with_broken_entry_point(tmp_path / "site", "pdc_l2_penalty", "pdc.terms",
                                         "l2_penalty = pdc_l2_penalty:L2PenaltyKeys")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ("pdc: error: entry point `l2_penalty = pdc_l2_penalty:L2PenaltyKeys` in group `pdc.terms` "
                           "is a ModelMetaclass, not a LossTerm\n")
