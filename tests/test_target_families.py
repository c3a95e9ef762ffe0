"""Target families are one package each (pdc/targets/<family>/, `pdc.targets.FAMILIES`):
deleting one from a copy of pdc removes `target <family>` from the language (a PD-coded error)
and from the generated language reference, with nothing else edited; and a family from outside
the tree, installed through the `pdc.targets` entry point group (tests/target_plugin/: its
modules, METADATA and entry_points.txt — what pip writes into site-packages), checks, dry-runs
and trains. Each runs in a fresh process so this one's registry stays as shipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import REPO, check_with_broken_entry_point, install_plugin, run_with_plugin, spec_text

PLUGIN = REPO / "tests" / "target_plugin"

DELETED = """
import json, sys
import pdc
from pdc.docs import language_md
from pdc.targets import FAMILIES

result = pdc.check(sys.argv[1])
others = {name: pdc.check(path).ok for name, path in json.loads(sys.argv[2]).items()}
print(json.dumps({"file": pdc.__file__, "families": list(FAMILIES), "ok": result.ok,
                  "codes": [d.code for d in result.diagnostics], "messages": [d.summary for d in result.diagnostics],
                  "docs": language_md(), "others": others, "jax": "jax" in sys.modules}))
"""
# one shipped spec per family, to check the ones left still check (the LM specs' weights are absent: warnings only)
SPECS = {"tms": "specs/tms_5-2.pd", "resid_mlp": "specs/resid_mlp1.pd", "llama": "specs/tiny_llama.pd",
         "gpt2": "specs/gpt2_mlp.pd"}


def _copy_without(tmp: Path, family: str) -> Path:
    """pdc as shipped, in `tmp`, with one family's package deleted and nothing else touched."""
    shutil.copytree(REPO / "pdc", tmp / "pdc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(tmp / "pdc" / "targets" / family)
    return tmp


def _fresh(code: str, *args: str, path: Path, cwd: Path) -> dict:
    proc = run_with_plugin(path, "-c", code, *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", ["tms", "resid_mlp", "gpt2"])
def test_deleting_a_family_package_removes_it_from_the_language_and_its_reference(tmp_path: Path,
                                                                                    family: str) -> None:
    root = _copy_without(tmp_path / "copy", family)
    others = {name: str(REPO / path) for name, path in SPECS.items() if name != family}
    out = _fresh(DELETED, str(REPO / SPECS[family]), json.dumps(others), path=root, cwd=tmp_path)
    assert out["file"] == str(root / "pdc" / "__init__.py")
    from pdc.targets import FAMILIES

    assert out["families"] == [name for name in FAMILIES if name != family], out["families"]
    assert not out["ok"] and set(out["codes"]) == {"PD0210"}, out["codes"]  # unknown target family
    assert all(m.startswith(f"unknown target family `{family}`") for m in out["messages"]), out["messages"]
    assert f"## `target:{family}`" not in out["docs"] and f"`{family}`" not in out["docs"].split("## `target:")[0]
    for name in out["families"]:
        assert f"## `target:{name}`" in out["docs"], name
    assert all(out["others"].values()), out["others"]
    assert not out["jax"]


def test_the_shipped_reference_documents_every_family() -> None:
    """The reference's `target` variants are the registry's families, in their order."""
    from pdc.docs import language_md
    from pdc.targets import FAMILIES

    docs = language_md()
    assert list(FAMILIES)[:4] == ["tms", "resid_mlp", "llama", "simple_mlp"]
    positions = [docs.index(f"## `target:{name}`") for name in FAMILIES]
    assert positions == sorted(positions)


INSTALLED = """
import json, sys
import pdc
from pdc.docs import language_md

spec, out = sys.argv[1], sys.argv[2]
result = pdc.check(spec)
report = pdc.dry_run(spec)
run = pdc.train(spec, out, overrides=["train.steps=3"])
metrics = [json.loads(line) for line in open(out + "/metrics.jsonl")]
print(json.dumps({"ok": result.ok, "codes": [d.code for d in result.diagnostics], "verdict": report.verdict,
                  "step": run.step, "recon": [m.get("loss/stochastic_recon") for m in metrics],
                  "docs": "linear_toy_family_doc" in language_md(), "sites": run.sites}))
"""


def _toy_spec(tmp: Path) -> Path:
    """The TMS 5-2 spec with the plugin's target: one 5×5 site, shrunk to a few steps and one
    recon term (one compiled forward fewer: this test runs in the default suite)."""
    rng = np.random.default_rng(0)
    save_file({"proj.weight": rng.normal(size=(5, 5)).astype(np.float32) / 5 ** 0.5,
               "proj.bias": np.zeros(5, np.float32)}, str(tmp / "linear_toy.safetensors"))
    text = spec_text("tms_5-2")
    start, stop = text.index("  target tms {"), text.index("  data sparse_features")
    text = text[:start] + '  target linear_toy {\n    features = 5\n    weights = "linear_toy.safetensors"\n  }\n' + \
        text[stop:]
    start, stop = text.index("  decompose {"), text.index("  ci mlp")
    text = text[:start] + "  decompose {\n    proj { C = 8 }\n  }\n" + text[stop:]
    text = text[:text.index("  eval {")] + "}\n"
    text = "\n".join(line for line in text.splitlines()
                     if "stochastic_recon_layerwise" not in line and "faithfulness_warmup" not in line) + "\n"
    text = text.replace("batch = 4096", "batch = 64").replace("checkpoint { every = 2k keep = 2 }",
                                                               "checkpoint { every = 3 keep = 1 }")
    text = text.replace("log { every = 200", "log { every = 1")
    path = tmp / "linear_toy.pd"
    path.write_text(text)
    return path


def test_an_installed_family_checks_dry_runs_and_trains(tmp_path: Path) -> None:
    install_plugin(PLUGIN, tmp_path / "site", "pdc_linear_toy", ["pdc_linear_toy.py", "pdc_linear_toy_model.py"])
    out = _fresh(INSTALLED, str(_toy_spec(tmp_path)), str(tmp_path / "run"), path=tmp_path / "site", cwd=REPO)
    assert out["ok"] and out["verdict"] == "fits" and out["step"] == 3 and out["docs"], out
    assert out["sites"] == ["proj"], out
    assert len(out["recon"]) == 3 and all(isinstance(v, float) and v >= 0 for v in out["recon"]), out


def test_without_the_distribution_the_family_is_unknown(tmp_path: Path) -> None:
    from pdc.passes import check

    result = check(_toy_spec(tmp_path))
    assert [d.code for d in result.diagnostics] == ["PD0210"], result.diagnostics  # unknown target family


def test_a_broken_family_entry_point_names_itself(tmp_path: Path) -> None:
    install_plugin(PLUGIN, tmp_path / "site", "pdc_linear_toy", ["pdc_linear_toy.py", "pdc_linear_toy_model.py"])
    proc = check_with_broken_entry_point(tmp_path / "site", "pdc_linear_toy", "pdc.targets",
                                         "linear_toy = pdc_linear_toy:LinearToyKeys")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ("pdc: error: entry point `linear_toy = pdc_linear_toy:LinearToyKeys` in group "
                           "`pdc.targets` is a ModelMetaclass, not a TargetFamily\n")
