"""A loss term is one file under `pdc/terms/` (plus its tests): its keys, role and lowering.
Nothing else in the package names it, and taking the file away takes the term out of the
language, the validator, the docs and the lowering with nothing else edited."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, spec_text

from pdc.terms import TERMS


@pytest.mark.parametrize("name", ["faithfulness", "stochastic_recon_layerwise"])
def test_the_term_is_named_in_its_own_file_only(name: str) -> None:
    """(`faithfulness` is also a role — `Role` in pdc/terms/base.py — which is not the term.)"""
    mentions = [f"{p.relative_to(REPO)}: {line.strip()}" for p in (REPO / "pdc").rglob("*.py") if p.name != f"{name}.py"
                for line in p.read_text().splitlines()
                if re.search(rf"[\"']{name}[\"']", line) and not line.startswith("Role = ")]
    assert mentions == [], f"`{name}` is named outside pdc/terms/{name}.py"


def test_in_tree_terms_have_fixed_distinct_streams() -> None:
    """A term's random stream is its `stream` (pdc.decomp.rng): fixed per term, so adding a
    term never changes another's draws; the shipped order is pinned here."""
    assert {name: term.stream for name, term in TERMS.items()} == {
        "faithfulness": 0, "stochastic_recon": 1, "stochastic_recon_layerwise": 2, "ci_masked_recon": 3,
        "ci_masked_recon_layerwise": 4, "unmasked_recon": 5, "pgd_recon": 6, "pgd_recon_layerwise": 7,
        "persistent_pgd": 8, "importance_minimality": 9, "smooth_l0": 10}


def test_removing_the_file_removes_the_term(tmp_path: Path) -> None:
    shutil.copytree(REPO / "pdc", tmp_path / "pdc", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pdc" / "terms" / "unmasked_recon.py").unlink()
    spec = tmp_path / "uses_it.pd"
    spec.write_text(spec_text("tms_5-2").replace(
        "stochastic_recon { weight = 1.0 }", "stochastic_recon { weight = 1.0 }\n    unmasked_recon { weight = 1.0 }"))
    code = ("import sys; from pdc.docs import language_md; from pdc.passes import check; "
            "print('unmasked_recon' in language_md(), [d.code for d in check(sys.argv[1]).diagnostics])")
    out = subprocess.run([sys.executable, "-c", code, str(spec)], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False ['PD0201']"
