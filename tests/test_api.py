"""The public API: what `pdc` exports, with type hints and docstrings, and the notebook
example of `docs/api.md` run as written (its printed lines checked against its comments)."""

from __future__ import annotations

import contextlib
import inspect
import io
import re

import pytest

import pdc
from conftest import REPO

API = ("load_spec", "check", "plan", "compile", "dry_run", "train", "load_run", "harvest", "load_harvest")


@pytest.mark.parametrize("name", API)
def test_api_functions_are_exported_typed_and_documented(name: str) -> None:
    fn = getattr(pdc, name)
    assert name in pdc.__all__
    signature = inspect.signature(fn)
    assert signature.return_annotation is not inspect.Signature.empty, name
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), name
    assert fn.__doc__ and len(fn.__doc__.split()) > 8, name


def test_importing_pdc_and_checking_never_starts_jax() -> None:
    import subprocess
    import sys

    code = "import sys, pdc; r = pdc.check('specs/tms_5-2.pd'); pdc.plan(r); print('jax' in sys.modules, r.ok)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False True"


def _example() -> str:
    text = (REPO / "docs" / "api.md").read_text()
    return re.search(r"## A notebook session.*?```python\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


@pytest.mark.slow  # ~40 s: a dry-run, a 20-step run and two restores; CI runs it in its slow step
def test_the_docs_example_runs_and_prints_what_it_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_example(), "docs/api.md", "exec"), {})
    printed = out.getvalue().splitlines()
    expected = [m.group(1).strip() for m in re.finditer(r"# (.*)$", _example(), re.M)]
    assert printed[0] == "tms_5_2" == expected[0]
    assert printed[1].startswith("hashes: decomposition ")
    assert printed[3] == "PD0205"
    assert printed[4] == "['linear1', 'linear2'] 10000"
    assert printed[5] == "fits True"
    assert printed[6] == "20 ['linear1', 'linear2']"
    assert printed[7] == "(5, 20) (20, 2)"
    assert printed[-1] == "10"
