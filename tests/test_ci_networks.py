"""A CI network is one file under `pdc/ci/` (plus its tests): its keys, the IR shapes of its
parameters and the nnx module it builds. Taking the file away takes the network out of the
language and the docs with nothing else edited; a network from another distribution, declared
through the `pdc.ci` entry point group (tests/plugin_ci/: a package, its METADATA and
entry_points.txt — what pip writes into site-packages), checks, trains and is documented.
Both run in a fresh process, so this process's registry stays as shipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, check_with_broken_entry_point, install_plugin, run_with_plugin, spec_text

from pdc.ci import NETWORKS

PLUGIN = REPO / "tests" / "plugin_ci"


def test_in_tree_networks_keep_their_order() -> None:
    """`rank` orders the `ci` labels of the language reference; the shipped order is pinned."""
    assert {name: network.rank for name, network in NETWORKS.items()} == {
        "mlp": 0, "vector_mlp": 1, "shared_mlp": 2, "global_mlp": 3, "global_transformer": 4,
        "chunkwise_transformer": 5}


def test_every_network_file_defines_its_network() -> None:
    """`pdc/ci/<name>.py` holds the network `name` (the layering test relies on it)."""
    files = sorted(p.stem for p in (REPO / "pdc" / "ci").glob("[!_]*.py") if p.stem != "base")
    assert files == sorted(NETWORKS)
    assert all(sys.modules[n.keys.__module__].__file__ == str(REPO / "pdc" / "ci" / f"{name}.py")
               for name, n in NETWORKS.items())


def _toy_spec(tmp: Path, ci: str) -> Path:
    """TMS 5-2 with another CI network, shrunk to train a few steps quickly."""
    text = spec_text("tms_5-2").replace("../targets/", f"{REPO}/targets/")
    assert "ci mlp {" in text
    head, rest = text.split("ci mlp {", 1)
    text = head + ci + rest.split("}", 1)[1]
    text = text.replace("batch = 4096", "batch = 64").replace("steps = 200 lr", "steps = 2 lr")
    text = text.replace("log { every = 200", "log { every = 1")  # the loss of every step; no eval, one checkpoint
    path = tmp / "toy.pd"
    path.write_text(text)
    return path


def test_removing_the_file_removes_the_network(tmp_path: Path) -> None:
    shutil.copytree(REPO / "pdc", tmp_path / "pdc", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pdc" / "ci" / "global_mlp.py").unlink()
    spec = _toy_spec(tmp_path, "ci global_mlp { hidden = [8] }")
    code = ("import sys; from pdc.docs import language_md; from pdc.passes import check; "
            "print('global_mlp' in language_md(), [d.code for d in check(sys.argv[1]).diagnostics])")
    out = subprocess.run([sys.executable, "-c", code, str(spec)], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False ['PD0210']"


def test_the_same_spec_checks_with_the_file(tmp_path: Path) -> None:
    """The spec the test above refuses is a valid one while the file is there."""
    from pdc.docs import language_md
    from pdc.passes import check

    assert check(_toy_spec(tmp_path, "ci global_mlp { hidden = [8] }")).ok and "`global_mlp`" in language_md()


SCRIPT = """
import json, sys
import pdc
from pdc.docs import language_md

spec, out = sys.argv[1], sys.argv[2]
result = pdc.check(spec)
run = pdc.train(spec, out, overrides=["train.steps=3"])
metrics = [json.loads(line) for line in open(out + "/metrics.jsonl")]
print(json.dumps({"ok": result.ok, "step": run.step,
                  "loss": [m.get("loss/total") for m in metrics],
                  "ci": sorted(".".join(str(p) for p in path) for path, _ in run.state.ci.flat_state()),
                  "docs": "linear_ci_doc" in language_md()}))
"""


def test_an_installed_network_checks_trains_and_is_documented(tmp_path: Path) -> None:
    install_plugin(PLUGIN, tmp_path / "site", "pdc_linear_ci", ["pdc_linear_ci"])
    spec = _toy_spec(tmp_path, "ci linear_ci { init_scale = 0.5 }")
    proc = run_with_plugin(tmp_path / "site", "-c", SCRIPT, str(spec), str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["step"] == 3 and out["docs"], out
    assert out["ci"] == ["linear1.b", "linear1.w", "linear2.b", "linear2.w"], out
    assert len(out["loss"]) == 3 and all(isinstance(v, float) and v > 0 for v in out["loss"]), out


def test_without_the_distribution_the_network_is_unknown(tmp_path: Path) -> None:
    from pdc.passes import check

    result = check(_toy_spec(tmp_path, "ci linear_ci { init_scale = 0.5 }"))
    assert [d.code for d in result.diagnostics] == ["PD0210"], result.diagnostics


def test_a_broken_ci_entry_point_names_itself(tmp_path: Path) -> None:
    install_plugin(PLUGIN, tmp_path / "site", "pdc_linear_ci", ["pdc_linear_ci"])
    proc = check_with_broken_entry_point(tmp_path / "site", "pdc_linear_ci", "pdc.ci",
                                         "linear_ci = pdc_linear_ci:LinearCiKeys")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ("pdc: error: entry point `linear_ci = pdc_linear_ci:LinearCiKeys` in group `pdc.ci` "
                           "is a ModelMetaclass, not a CiNetwork\n")
